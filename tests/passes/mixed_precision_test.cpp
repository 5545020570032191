// The mixed-precision pass (passes/mixed_precision.h): fused attention in bf16 or f16, checked
// against the plain f32 graph within the rounding of 8 (bf16) or 11 (f16) significant bits.
#include <cstring>

#include "passes/optimize_testing.h"

using namespace fovea;
using testing::random_tensor;

namespace {

// The fused_attention nodes of `g` whose q has dtype `t`.
std::size_t fused_attention_in(const Graph& g, DType t) {
  std::size_t count = 0;
  for (std::uint32_t id = 0; id < g.size(); ++id) {
    const Node& n = g.node(id);
    if (n.op == &ops::fused_attention && g.type(n.inputs[0]).dtype == t) ++count;
  }
  return count;
}

// ‖a - b‖ / ‖b‖ over all elements.
double relative_error(const Tensor& a, const Tensor& b) {
  double diff = 0, norm = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    diff += (a.at(i) - b.at(i)) * (a.at(i) - b.at(i));
    norm += b.at(i) * b.at(i);
  }
  return std::sqrt(diff / std::max(norm, 1e-300));
}

struct SmallGpt {
  Graph g;
  nn::GPT gpt;
  Value ids, targets, loss;
  Feeds feeds;
  explicit SmallGpt(DType t = f32)
      : gpt(g, {.vocab = 13, .d_model = 32, .heads = 2, .d_ff = 64, .layers = 2, .max_len = 16, .dtype = t}) {
    g.set_seed(5);
    ids = g.placeholder("ids", i64, {3, 16});
    targets = g.placeholder("targets", i64, {3, 16});
    loss = nn::cross_entropy(gpt(ids), targets);
    feeds = {{ids, random_tensor(i64, {3, 16}, 1, 0, 13)}, {targets, random_tensor(i64, {3, 16}, 2, 0, 13)}};
  }
};

}  // namespace

TEST_CASE("mixed precision puts every fused attention of a GPT in bf16 or f16, and the loss and gradients stay close") {
  for (DType h : {bf16, f16}) {
    CAPTURE(dtype_name(h));
    SmallGpt m;
    passes::PipelineOptions options;
    options.mixed_precision = passes::MixedPrecisionOptions{.type = h};
    passes::OptimizedGraph opt = passes::optimize_forward(m.g, {m.loss}, options);
    CHECK(fused_attention_in(*opt.graph, h) == 2);
    CHECK(fused_attention_in(*opt.graph, f32) == 0);
    CHECK(opt.report().find("mixed_precision") != std::string::npos);

    // The loss: within a few bf16 roundings.
    const double expected = testing::run1(m.g, m.loss, m.feeds).item();
    const double actual = testing::run1(*opt.graph, opt.outputs[0], testing::mapped_feeds(opt, m.feeds)).item();
    CHECK(actual == doctest::Approx(expected).epsilon(h == bf16 ? 1e-2 : 2e-3));
    CHECK(actual != expected);  // the pass did change the arithmetic

    // The gradients of every parameter, through the half fused_attention_backward.
    const std::vector<Value> params = m.g.parameters();
    std::vector<Value> mapped;
    for (Value p : params) mapped.push_back(opt.value(p));
    const std::vector<Value> plain_grads = grad(m.loss, params), mixed_grads = grad(opt.outputs[0], mapped);
    CHECK(testing::count_op(*opt.graph, ops::fused_attention_backward) == 2);
    const std::vector<Tensor> want = testing::run(m.g, plain_grads, m.feeds);
    const std::vector<Tensor> got = testing::run(*opt.graph, mixed_grads, testing::mapped_feeds(opt, m.feeds));
    for (std::size_t i = 0; i < params.size(); ++i) {
      CAPTURE(params[i].name());
      // The key projection's bias gets no gradient in exact arithmetic (a softmax row does not
      // change when all its scores move by q·b): both graphs give rounding noise there.
      if (params[i].name().ends_with("k_proj/bias")) continue;
      CHECK(relative_error(got[i], want[i]) < (h == bf16 ? 5e-2 : 1e-2));
    }
  }
}

TEST_CASE("mixed precision leaves f64 attention, and graphs without attention, as they were") {
  SmallGpt m(f64);
  passes::PipelineOptions options;
  options.mixed_precision = passes::MixedPrecisionOptions{};
  passes::OptimizedGraph opt = passes::optimize_forward(m.g, {m.loss}, options);
  passes::OptimizedGraph plain = passes::optimize_forward(m.g, {m.loss});
  CHECK(fused_attention_in(*opt.graph, f64) == 2);
  CHECK(testing::count_op(*opt.graph, ops::cast) == testing::count_op(*plain.graph, ops::cast));
  testing::check_same_results(m.g, {m.loss}, opt, m.feeds);
  CHECK(testing::error_of([&] { passes::mixed_precision(m.g, {}, {.type = f32}); }).find("bf16 or f16") !=
        std::string::npos);
}

TEST_CASE("a translator trained in mixed precision follows the f32 losses within bf16 rounding") {
  Graph g;
  g.set_seed(4);
  nn::Transformer model(
      g, {.source_vocab = 13, .target_vocab = 12, .d_model = 32, .heads = 2, .d_ff = 64, .layers = 1, .max_len = 8});
  Value source = g.placeholder("source", i64, {4, 7});
  Value target_in = g.placeholder("target_in", i64, {4, 6});
  Value target_out = g.placeholder("target_out", i64, {4, 6});
  const nn::AttentionMask mask = nn::padding_mask(equal(source, scalar_like(source, 0.0)), f32);
  Value loss = nn::cross_entropy(model(source, target_in, mask), target_out, {.ignore_index = 0});
  Tensor src = random_tensor(i64, {4, 7}, 8, 1, 13);
  src.data<std::int64_t>()[6] = 0;  // one padded source position: the mask stays f32
  const Feeds feeds{{source, src},
                    {target_in, random_tensor(i64, {4, 6}, 9, 1, 12)},
                    {target_out, random_tensor(i64, {4, 6}, 10, 0, 12)}};
  auto build = [](Graph& graph, const std::vector<Value>& outputs) {
    nn::TrainStep step = nn::adamw(outputs[0], graph.parameters(), {.lr = nn::constant_lr(0.01), .eps = 1e-3});
    return passes::StepParts{{outputs[0]}, step.updates};
  };
  std::vector<Tensor> start;
  for (Value p : g.persistent_values()) start.push_back(g.parameter_value(p).clone());
  auto train = [&](bool mixed) {
    const std::vector<Value> persistent = g.persistent_values();
    for (std::size_t i = 0; i < persistent.size(); ++i)
      std::memcpy(g.parameter_value(persistent[i]).raw(), start[i].raw(), start[i].nbytes());
    passes::TrainingStepOptions options;
    if (mixed) options.pipeline.mixed_precision = passes::MixedPrecisionOptions{};
    passes::CompiledTrainingStep step = passes::compile_training_step(g, {loss}, build, cpu(), options);
    CHECK(fused_attention_in(step.graph(), mixed ? bf16 : f32) == 3);  // encoder, decoder self and cross
    std::vector<double> losses;
    for (int i = 0; i < 8; ++i) losses.push_back(step.run(feeds)[0].item());
    return losses;
  };
  const std::vector<double> plain = train(false), mixed = train(true);
  CHECK(mixed.back() < mixed.front() - 0.3);  // it learns
  for (std::size_t i = 0; i < plain.size(); ++i) {
    CAPTURE(i);
    CHECK(mixed[i] == doctest::Approx(plain[i]).epsilon(2e-2));
  }
}
