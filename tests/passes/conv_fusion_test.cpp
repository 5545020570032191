// Convolution fusion (passes/conv_fusion.h): a per-channel affine chain after conv2d folds into
// the weights and one bias add, in inference graphs; training batch norms and shared values stay.
// Then the bias add and a ReLU join the convolution as one fused_conv2d, with the same values
// and gradients, unless a value between them has another reader.
#include <algorithm>
#include <cmath>

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

const std::string kBiased = "conv2d + bias → fused_conv2d";
const std::string kBiasedRelu = "conv2d + bias + relu → fused_conv2d";

std::size_t epilogues(const passes::OptimizedGraph& opt, const std::string& kind) {
  for (const passes::PassReport& p : opt.passes)
    if (p.name == "conv_epilogue_fusion") return p.stats.rewrites.contains(kind) ? p.stats.rewrites.at(kind) : 0;
  FAIL("no conv_epilogue_fusion pass ran");
  return 0;
}

// The nodes of the optimized graph whose output has `numel` elements: those over the activations.
std::size_t nodes_of_size(const Graph& g, std::int64_t numel) {
  std::size_t count = 0;
  for (std::uint32_t id = 0; id < g.size(); ++id) {
    const Node& n = g.node(id);
    if (!n.outputs.empty() && n.outputs[0].shape.numel() == numel) ++count;
  }
  return count;
}

// loss = Σ y ⊙ r with a fixed random r: every element of y matters.
Value weighted_sum(Value y) {
  return reduce_sum(y * y.graph().constant(random_tensor(y.dtype(), y.shape(), 99, 0.5, 1.5), "r"));
}

// ∂loss/∂w for every w in `wrt`, by autodiff of the user's graph and of the optimized one.
void check_same_gradients(Graph& g, Value loss, const std::vector<Value>& wrt, passes::OptimizedGraph& opt,
                          const Feeds& feeds) {
  std::vector<Value> mapped;
  for (const Value& w : wrt) mapped.push_back(opt.value(w));
  const std::vector<Tensor> expected = testing::run(g, grad(loss, wrt), feeds);
  const std::vector<Tensor> actual =
      testing::run(*opt.graph, grad(opt.outputs[0], mapped), testing::mapped_feeds(opt, feeds));
  for (std::size_t i = 0; i < wrt.size(); ++i) {
    CAPTURE(wrt[i].name());
    double scale = 0;
    for (std::int64_t j = 0; j < expected[i].numel(); ++j) scale = std::max(scale, std::abs(expected[i].at(j)));
    testing::check_close(actual[i], expected[i], 1e-10, std::max(1e-12, 1e-10 * scale));
  }
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
    // The activations see one fused_conv2d and nothing else; the per-channel work is on [K] vectors.
    CHECK(epilogues(opt, kBiasedRelu) == 1);
    CHECK(testing::count_op(*opt.graph, ops::fused_conv2d) == 1);
    CHECK(testing::count_op(*opt.graph, ops::conv2d) == 0);
    CHECK(nodes_of_size(*opt.graph, 2 * 4 * 6 * 5) == 1);
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
  const Value kept = conv * s;  // the caller keeps it: the chain ends here
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

TEST_CASE("conv2d + bias + relu becomes one fused_conv2d with equal values and gradients, f64") {
  Graph g;
  nn::Conv2d conv(g, "conv", 3, 4, {3, 3}, {.padding = 1}, /*with_bias=*/true, f64);
  nn::Conv2d depthwise(g, "depthwise", 4, 4, {3, 3}, {.stride = {2, 2}, .padding = 1, .groups = 4}, false, f64);
  g.parameter_value(conv.bias) = random_tensor(f64, {4}, 21);
  const Value b = g.parameter("b", f64, {4, 1, 1}, init::uniform(-1, 1));
  const Value x = g.placeholder("x", f64, {2, 3, 6, 5});
  // A [1,K,1,1] bias and a ReLU after the first; a [K,1,1] bias on the left and no activation
  // after the second, depthwise and strided.
  const Value y = b + depthwise(relu(conv(x)));
  const Value loss = weighted_sum(y);
  passes::OptimizedGraph opt = passes::optimize_forward(g, {loss});
  CHECK(epilogues(opt, kBiasedRelu) == 1);
  CHECK(epilogues(opt, kBiased) == 1);
  CHECK(testing::count_op(*opt.graph, ops::fused_conv2d) == 2);
  CHECK(testing::count_op(*opt.graph, ops::conv2d) == 0);
  CHECK(testing::count_op(*opt.graph, ops::relu) == 0);
  const Feeds feeds{{x, random_tensor(f64, x.shape(), 11)}};
  testing::check_same_results(g, {loss}, opt, feeds);
  check_same_gradients(g, loss, {x, conv.weight, conv.bias, depthwise.weight, b}, opt, feeds);
}

TEST_CASE("a value with another reader stops the epilogue fusion there") {
  Graph g;
  const Value x = g.placeholder("x", f64, {1, 2, 4, 4});
  const Value w = g.parameter("w", f64, {3, 2, 3, 3}, init::uniform(-1, 1));
  const Value b = g.parameter("b", f64, {1, 3, 1, 1}, init::uniform(-1, 1));
  // The pre-activation is kept too: the bias joins the convolution, the ReLU stays outside.
  const Value pre = conv2d(x, w, {.padding = 1}) + b;
  const Value post = relu(pre);
  // The convolution's own output is kept: nothing joins it.
  const Value kept = conv2d(x, w);
  const Value kept_biased = kept + g.parameter("c", f64, {3, 1, 1}, init::uniform(-1, 1));
  // A scalar bias is not one value per channel: left alone.
  const Value scalar = conv2d(x, w, {.padding = 2}) + 1.0;
  const std::vector<Value> outputs{pre, post, kept, kept_biased, scalar};
  passes::OptimizedGraph opt = passes::optimize_forward(g, outputs);
  CHECK(epilogues(opt, kBiased) == 1);
  CHECK(epilogues(opt, kBiasedRelu) == 0);
  CHECK(testing::count_op(*opt.graph, ops::fused_conv2d) == 1);
  CHECK(testing::count_op(*opt.graph, ops::conv2d) == 2);
  CHECK(testing::count_op(*opt.graph, ops::relu) == 1);
  testing::check_same_results(g, outputs, opt, {{x, random_tensor(f64, x.shape(), 12)}});
}
