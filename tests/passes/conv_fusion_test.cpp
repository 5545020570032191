// Convolution fusion (passes/conv_fusion.h): a per-channel affine chain after conv2d folds into
// the weights and one bias add, in inference graphs; training batch norms and shared values stay.
#include <fovea/nn/convolution.h>
#include <fovea/passes/conv_fusion.h>
#include <fovea/passes/pipeline.h>

#include "passes/optimize_testing.h"

using namespace fovea;
using fovea::testing::random_tensor;

namespace {

const std::string kFolded = "per-channel affine after conv2d → conv2d(x, w·a) + b";

std::size_t folds(const passes::OptimizedGraph& opt) {
  for (const passes::PassReport& p : opt.passes)
    if (p.name == "conv_fusion") return p.stats.rewrites.contains(kFolded) ? p.stats.rewrites.at(kFolded) : 0;
  FAIL("no conv_fusion pass ran");
  return 0;
}

// Running statistics and affine parameters that are not the identity.
void set_statistics(Graph& g, const nn::BatchNormState& s, std::uint64_t seed) {
  auto fill = [&](Value v, std::uint64_t k, double low, double high) {
    g.parameter_value(v) = random_tensor(v.dtype(), v.shape(), seed + k, low, high);
  };
  fill(s.gamma, 1, 0.5, 2.0);
  fill(s.beta, 2, -1.0, 1.0);
  fill(s.running_mean, 3, -0.5, 0.5);
  fill(s.running_var, 4, 0.2, 3.0);
}

}  // namespace

TEST_CASE("an inference batch norm after a convolution folds into its weights, with equal results, f32 and f64") {
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    Graph g;
    nn::Conv2d conv(g, "conv", 3, 4, {3, 3}, {.padding = 1}, /*with_bias=*/true, t);
    nn::BatchNorm2d norm(g, "norm", 4, 0.1, 1e-5, t);
    set_statistics(g, norm.state, 10);
    g.parameter_value(conv.bias) = random_tensor(t, {4}, 20);
    const Value x = g.placeholder("x", t, {2, 3, 6, 5});
    const Value y = relu(norm(conv(x), {}));
    const passes::OptimizedGraph opt = passes::optimize_forward(g, {y});
    CHECK(folds(opt) == 1);
    // The activations see one conv2d, one add and the ReLU; the per-channel work is on [K] vectors.
    CHECK(testing::count_op(*opt.graph, ops::conv2d) == 1);
    std::size_t big_elementwise = 0;
    for (std::uint32_t id = 0; id < opt.graph->size(); ++id) {
      const Node& n = opt.graph->node(id);
      if (n.op->elementwise && !n.outputs.empty() && n.outputs[0].shape.numel() == 2 * 4 * 6 * 5) ++big_elementwise;
    }
    CHECK(big_elementwise == 2);  // the bias add and the ReLU
    testing::check_same_results(g, {y}, opt, {{x, random_tensor(t, x.shape(), 5)}});
  }
}

TEST_CASE("a training batch norm, whose statistics read the convolution, is not folded") {
  Graph g;
  nn::Conv2d conv(g, "conv", 2, 3, {3, 3}, {.padding = 1}, false, f64);
  nn::BatchNorm2d norm(g, "norm", 3, 0.1, 1e-5, f64);
  const Value x = g.placeholder("x", f64, {2, 2, 4, 4});
  std::vector<Value> running;
  const Value y = norm(conv(x), {.training = true, .updates = &running});
  const passes::OptimizedGraph opt = passes::optimize_forward(g, {y});
  CHECK(folds(opt) == 0);
  testing::check_same_results(g, {y}, opt, {{x, random_tensor(f64, x.shape(), 6)}});
}

TEST_CASE("every affine form folds: p - y, y / p, scalars and [1,K,1,1] operands") {
  Graph g;
  const Value x = g.placeholder("x", f64, {1, 2, 5, 5});
  const Value w = g.parameter("w", f64, {3, 2, 3, 3}, init::uniform(-1, 1));
  const Value a = g.parameter("a", f64, {1, 3, 1, 1}, init::uniform(0.5, 2));
  const Value b = g.parameter("b", f64, {3, 1, 1}, init::uniform(-1, 1));
  const Value y = ((2.0 - conv2d(x, w) / a) * 0.5 + b) / 3.0;
  const passes::OptimizedGraph opt = passes::optimize_forward(g, {y});
  CHECK(folds(opt) == 1);
  testing::check_same_results(g, {y}, opt, {{x, random_tensor(f64, x.shape(), 7)}});
}

TEST_CASE("the chain stops at a value kept by the caller, and an add-only chain is left alone") {
  Graph g;
  const Value x = g.placeholder("x", f64, {1, 2, 4, 4});
  const Value w = g.parameter("w", f64, {2, 2, 3, 3}, init::uniform(-1, 1));
  const Value s = g.parameter("s", f64, {2, 1, 1}, init::uniform(0.5, 2));
  const Value conv = conv2d(x, w);
  const Value kept = conv * s;     // the caller keeps it: the chain ends here
  const Value more = kept * s + 1.0;
  passes::OptimizedGraph opt = passes::optimize_forward(g, {kept, more});
  CHECK(folds(opt) == 1);
  testing::check_same_results(g, {kept, more}, opt, {{x, random_tensor(f64, x.shape(), 8)}});

  Graph h;
  const Value hx = h.placeholder("x", f64, {1, 2, 4, 4});
  const Value hw = h.parameter("w", f64, {2, 2, 3, 3}, init::uniform(-1, 1));
  const Value only_add = conv2d(hx, hw) + h.parameter("b", f64, {2, 1, 1}, init::zeros());
  CHECK(folds(passes::optimize_forward(h, {only_add})) == 0);
}

TEST_CASE("an operand computed from the convolution's output is not folded into it") {
  Graph g;
  const Value x = g.placeholder("x", f64, {1, 2, 4, 4});
  const Value w = g.parameter("w", f64, {2, 2, 3, 3}, init::uniform(-1, 1));
  const Value y = conv2d(x, w);
  // A per-channel scale that reads y itself (a batch statistic): not a constant of the fold.
  const Value scale = reduce_mean(y, {0, 2, 3}, true);
  const Value out = y * scale;
  const passes::OptimizedGraph opt = passes::optimize_forward(g, {out});
  CHECK(folds(opt) == 0);
  testing::check_same_results(g, {out}, opt, {{x, random_tensor(f64, x.shape(), 9)}});
}
