// The pipelines in a training program: optimize the forward graph, then differentiate and
// update through it; or clean up a whole training step.
#include <cstring>
#include <functional>
#include <map>

#include "nn/translator_testing.h"
#include "optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::random_tensor;

// Copies `from` into `to`'s own storage (so every graph sharing `to` sees the values).
void overwrite(Tensor& to, const Tensor& from) { std::memcpy(to.raw(), from.raw(), to.nbytes()); }

TEST_CASE("optimize_forward, then adam on the optimized graph, trains the user's own parameters") {
  Graph g;
  Value x = g.placeholder("x", f32, {4, 6, 8});
  Value target = g.placeholder("target", f32, {4, 6, 8});
  nn::MultiHeadAttention attn(g, "attn", 8, 2);
  Value loss = nn::mse_loss(attn(x, x, nn::causal_mask(g, 6, 6)), target);
  const Tensor before = g.parameter_value(attn.q_proj.weight).clone();

  passes::OptimizedGraph opt = passes::optimize_forward(g, {loss});
  REQUIRE(testing::count_op(*opt.graph, ops::fused_attention) == 1);
  Graph& fg = *opt.graph;
  nn::TrainStep step = nn::adam(opt.outputs[0], fg.parameters(), {.lr = nn::constant_lr(0.01)});
  CHECK(testing::count_op(fg, ops::fused_attention_backward) == 1);
  Executable train = compile(fg, {opt.outputs[0]}, cpu(), {.updates = step.updates});
  const Feeds feeds = testing::mapped_feeds(
      opt, {{x, random_tensor(f32, x.shape(), 1)}, {target, random_tensor(f32, target.shape(), 2, -0.5, 0.5)}});
  const double first = train.run(feeds)[0].item();
  double last = first;
  for (int i = 0; i < 30; ++i) last = train.run(feeds)[0].item();
  CHECK(last < 0.7 * first);
  // The user's graph holds the trained weights: its parameters and the optimized graph's share buffers.
  CHECK(g.parameter_value(attn.q_proj.weight).shares_storage_with(fg.parameter_value(opt.value(attn.q_proj.weight))));
  CHECK(g.parameter_value(attn.q_proj.weight).at(0) != before.at(0));
  const Tensor eval = testing::run1(g, loss, {{x, feeds[0].second}, {target, feeds[1].second}});
  CHECK(eval.item() == doctest::Approx(train.run(feeds)[0].item()).epsilon(0.05));
}

TEST_CASE("optimize on a whole sgd training step keeps its updates and takes the same step") {
  for (DType t : {f32, f64}) {
    Graph g;
    Value x = g.placeholder("x", t, {5, 3});
    Value w = g.parameter("w", t, {3, 2}, init::normal(0.0, 0.5));
    Value b = g.parameter("b", t, {2}, init::zeros());
    Value y = matmul(x, w) * 1.0 + b + 0.0;  // something for simplify
    Value loss = reduce_mean(y * y);
    nn::TrainStep step = nn::sgd(loss, g.parameters(), {.lr = nn::constant_lr(0.1), .momentum = 0.9});
    passes::OptimizedGraph opt = passes::optimize(g, {loss}, step.updates);
    REQUIRE(opt.updates.size() == step.updates.size());
    CHECK(opt.passes[0].stats.rewrites.at("x·1 → x") == 2);  // y·1 and, in the backward, ḡ·1

    const Tensor input = random_tensor(t, {5, 3}, 3);
    std::vector<Tensor> start;
    for (Value p : g.persistent_values()) start.push_back(g.parameter_value(p).clone());
    Executable plain = compile(g, {loss}, cpu(), {.updates = step.updates});
    for (int i = 0; i < 3; ++i) plain.run({{x, input}});
    std::vector<Tensor> expected;
    for (Value p : g.persistent_values()) expected.push_back(g.parameter_value(p).clone());

    const std::vector<Value> persistent = g.persistent_values();
    for (std::size_t i = 0; i < persistent.size(); ++i) overwrite(g.parameter_value(persistent[i]), start[i]);
    Executable optimized = compile(*opt.graph, opt.outputs, cpu(), {.updates = opt.updates});
    for (int i = 0; i < 3; ++i) optimized.run({{opt.value(x), input}});
    for (std::size_t i = 0; i < persistent.size(); ++i) {
      CAPTURE(persistent[i].name());
      testing::check_close(g.parameter_value(persistent[i]), expected[i], testing::agree_rtol(t),
                           testing::agree_atol(t));
    }
  }
}

// Trains `steps` AdamW steps of `loss` (training mode, dropout on) twice from the same start:
// compiled straight from the user's graph, and through optimize_training. The losses of every
// step and the final parameters and optimizer state must agree. AdamW's eps is 1e-3, not 1e-8:
// the key projection's bias has a gradient that is exactly zero in real arithmetic (softmax
// does not change when every score of a row moves by q·b), so what each graph computes for it
// is rounding noise, which Adam with a tiny eps would normalise into full-size, unrelated steps.
void check_same_training(Graph& g, Value loss, const std::function<Feeds(std::int64_t)>& feeds, DType t,
                         int steps = 3) {
  auto build_step = [](Graph& graph, const std::vector<Value>& outputs) {
    nn::TrainStep step =
        nn::adamw(outputs[0], graph.parameters(), {.lr = nn::constant_lr(0.01), .eps = 1e-3, .weight_decay = 0.1});
    return passes::StepParts{{outputs[0]}, step.updates};
  };
  std::vector<Tensor> start;
  for (Value p : g.persistent_values()) start.push_back(g.parameter_value(p).clone());

  passes::TrainingGraph tg = passes::optimize_training(g, {loss}, build_step);
  Graph& sg = *tg.step.graph;
  CHECK(testing::count_op(sg, ops::fused_elementwise) > 0);
  std::vector<double> fused_losses;
  {
    Executable exe = compile(sg, tg.step.outputs, cpu(), {.updates = tg.step.updates});
    for (std::int64_t i = 0; i < steps; ++i) {
      Feeds f = feeds(i);
      for (auto& [value, tensor] : f) value = tg.step.value(value);
      fused_losses.push_back(exe.run(f)[0].item());
    }
  }
  // The step graph's persistent values (parameters and AdamW's moments) after training, by name.
  std::map<std::string, Tensor> trained;
  for (Value p : sg.persistent_values()) trained[p.name()] = sg.parameter_value(p).clone();
  const std::vector<Value> persistent = g.persistent_values();
  for (std::size_t i = 0; i < persistent.size(); ++i)
    std::memcpy(g.parameter_value(persistent[i]).raw(), start[i].raw(), start[i].nbytes());

  const passes::StepParts plain_parts = build_step(g, {loss});
  Executable plain = compile(g, plain_parts.outputs, cpu(), {.updates = plain_parts.updates});
  for (std::int64_t i = 0; i < steps; ++i) {
    CAPTURE(i);
    CHECK(plain.run(feeds(i))[0].item() ==
          doctest::Approx(fused_losses[static_cast<std::size_t>(i)]).epsilon(testing::agree_rtol(t)));
  }
  std::size_t compared = 0;
  for (Value p : g.persistent_values()) {
    auto it = trained.find(p.name());
    if (it == trained.end()) continue;
    CAPTURE(p.name());
    testing::check_close(it->second, g.parameter_value(p), testing::agree_rtol(t), testing::agree_atol(t));
    ++compared;
  }
  CHECK(compared == trained.size());
}

TEST_CASE("a GPT trained through optimize_training takes the same steps as the plain graph, f32 and f64") {
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    Graph g;
    g.set_seed(3);
    nn::GPT gpt(g, testing::tiny_gpt_config(t));
    Value ids = g.placeholder("ids", i64, {2, 8});
    Value targets = g.placeholder("targets", i64, {2, 8});
    Value step = g.placeholder("step", i64, {});
    Value loss = nn::cross_entropy(gpt(ids, {.training = true, .step = step}), targets, {.label_smoothing = 0.1});
    const Tensor id_values = random_tensor(i64, {2, 8}, 6, 0, 11), target_values = random_tensor(i64, {2, 8}, 7, 0, 11);
    check_same_training(
        g, loss,
        [&](std::int64_t i) {
          return Feeds{{ids, id_values}, {targets, target_values}, {step, Tensor::scalar(i)}};
        },
        t);
  }
}

TEST_CASE("the translator trained through optimize_training takes the same steps as the plain graph, f32 and f64") {
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    Graph g;
    g.set_seed(4);
    const testing::TrainingTranslator tr(g, testing::tiny_translator_config(t), 2, 7, 6);
    check_same_training(
        g, tr.loss, [&](std::int64_t i) { return tr.feeds(i); }, t);
  }
}

}  // namespace
