// The pipelines in a training program: optimize the forward graph, then differentiate and
// update through it; or clean up a whole training step.
#include <cstring>

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

}  // namespace
