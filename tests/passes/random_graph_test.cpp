// Randomized graphs: chains of elementwise, reduce, reshape, permute and matmul ops, sprinkled
// with what the passes look for (x·1, repeated expressions, constant subgraphs, dead ends), run
// optimized and unoptimized on the same feeds.
#include <random>

#include "optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::random_tensor;

class RandomGraph {
 public:
  RandomGraph(DType dtype, std::uint64_t seed) : dtype_(dtype), rng_(seed), seed_(seed) {
    x = g.placeholder("x", dtype, {2, 3, 4});
    Value y = g.placeholder("y", dtype, {4});
    feeds = {{x, random_tensor(dtype, {2, 3, 4}, seed * 7 + 1)}, {y, random_tensor(dtype, {4}, seed * 7 + 2)}};
    pool_ = {x, y, g.constant(random_tensor(dtype, {3, 4}, seed * 7 + 3))};
  }

  // Appends one random op reading the pool; its result joins the pool.
  void step() {
    Value a = pick();
    Value out;
    switch (below(11)) {
      case 0:
        out = unary(a);
        break;
      case 1:
        out = binary(a);
        break;
      case 2:
        out = a / (abs(pick_broadcastable(a)) + 1.0);
        break;
      case 3:
        out = reduce(a);
        break;
      case 4:
        out = reshape_randomly(a);
        break;
      case 5:
        out = permute_randomly(a);
        break;
      case 6:
        out = matmul_randomly(a);
        break;
      case 7:
        out = identity_in_disguise(a);
        break;
      case 8:
        out = repeat_a_node();
        break;
      case 9:
        out = constant_subgraph(a);
        break;
      default:
        out = a + broadcast_to(scalar_like(a, 0.25), a.shape());
        break;
    }
    if (out.defined() && out.shape().numel() > 0) pool_.push_back(out);
  }

  std::vector<Value> outputs() {
    std::vector<Value> out{pool_.back()};
    for (int i = 0; i < 2; ++i) out.push_back(pick());
    return out;
  }

  Graph g;
  Value x;
  Feeds feeds;

 private:
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(rng_() % n); }
  Value pick() { return pool_[below(pool_.size())]; }

  // A pool value that broadcasts with `a` into at most 256 elements, or a scalar.
  Value pick_broadcastable(Value a) {
    for (int tries = 0; tries < 8; ++tries) {
      Value b = pick();
      Shape out;
      if (broadcast_shapes(a.shape(), b.shape(), out) && out.numel() <= 256) return b;
    }
    return scalar_like(a, 0.5);
  }

  Value unary(Value a) {
    switch (below(6)) {
      case 0:
        return tanh(a);
      case 1:
        return sigmoid(a);
      case 2:
        return neg(a);
      case 3:
        return abs(a);
      case 4:
        return relu(a);
      default:
        return sin(a);
    }
  }

  Value binary(Value a) {
    Value b = pick_broadcastable(a);
    switch (below(4)) {
      case 0:
        return a + b;
      case 1:
        return a - b;
      case 2:
        return maximum(a, b);
      default:
        return tanh(a * b);
    }
  }

  Value reduce(Value a) {
    if (a.rank() == 0) return a * 2.0;
    const auto axis = static_cast<std::int64_t>(below(static_cast<std::size_t>(a.rank())));
    const bool keepdims = below(2) == 0;
    return below(2) == 0 ? reduce_sum(a, {axis}, keepdims) : reduce_max(a, {axis}, keepdims);
  }

  Value reshape_randomly(Value a) {
    const std::int64_t n = a.shape().numel();
    Value flat = reshape(a, {n});
    if (n % 2 == 0 && below(2) == 0) flat = reshape(flat, {2, n / 2});
    return below(2) == 0 ? reshape(flat, a.shape()) : flat;  // sometimes straight back
  }

  Value permute_randomly(Value a) {
    std::vector<std::int64_t> axes(static_cast<std::size_t>(a.rank()));
    for (std::size_t i = 0; i < axes.size(); ++i) axes[i] = static_cast<std::int64_t>(i);
    std::shuffle(axes.begin(), axes.end(), rng_);
    Value p = permute(a, axes);
    if (below(2) == 0) {
      std::shuffle(axes.begin(), axes.end(), rng_);
      p = permute(p, axes);
    }
    return p;
  }

  Value matmul_randomly(Value a) {
    if (a.rank() < 1) return a;
    if (a.rank() == 1) a = reshape(a, {1, a.shape()[0]});
    const std::int64_t k = a.shape()[a.rank() - 1], n = 2 + static_cast<std::int64_t>(below(3));
    Value b = g.constant(random_tensor(dtype_, {k, n}, seed_ * 31 + pool_.size()));
    return matmul(a, b);
  }

  Value identity_in_disguise(Value a) {
    switch (below(5)) {
      case 0:
        return a * 1.0;
      case 1:
        return 0.0 + a;
      case 2:
        return a - 0.0;
      case 3:
        return a / 1.0;
      default:
        return broadcast_to(a, a.shape());
    }
  }

  // The same op on the same inputs again: a common subexpression.
  Value repeat_a_node() {
    for (int tries = 0; tries < 8; ++tries) {
      const Node& n = g.node(static_cast<std::uint32_t>(below(g.size())));
      if (n.op->source || n.outputs.size() != 1) continue;
      std::vector<Value> inputs;
      for (const ValueRef& in : n.inputs) inputs.push_back(g.value(in));
      return g.apply1(*n.op, inputs, n.attrs, n.where);
    }
    return {};
  }

  // exp(c)·2 + c for a fresh constant c: folds into one constant.
  Value constant_subgraph(Value a) {
    Value c = g.constant(random_tensor(dtype_, {4}, seed_ * 17 + pool_.size()));
    Value folded = exp(c) * 2.0 + c;
    Shape out;
    return broadcast_shapes(a.shape(), folded.shape(), out) && out.numel() <= 256 ? a * folded : folded;
  }

  DType dtype_;
  std::mt19937_64 rng_;
  std::uint64_t seed_;
  std::vector<Value> pool_;
};

TEST_CASE("randomized graphs give the same outputs optimized and unoptimized, in f32 and f64") {
  std::size_t rewrites = 0;
  for (DType t : {f32, f64}) {
    for (std::uint64_t seed = 0; seed < 40; ++seed) {
      CAPTURE(seed);
      CAPTURE(dtype_name(t));
      RandomGraph r(t, seed);
      for (int i = 0; i < 30; ++i) r.step();
      const std::vector<Value> outputs = r.outputs();
      passes::OptimizedGraph opt = passes::optimize_forward(r.g, outputs);
      CHECK(testing::live_nodes(*opt.graph, opt.outputs) <= testing::live_nodes(r.g, outputs));
      for (const passes::PassReport& p : opt.passes) rewrites += p.stats.total_rewrites();
      testing::check_same_results(r.g, outputs, opt, r.feeds);
    }
  }
  CHECK(rewrites > 100);  // the generator does give the passes work
}

TEST_CASE("randomized graphs agree after each pass alone, so a failure names its pass") {
  const std::vector<std::string> names{"dce", "simplify", "cse", "fold"};
  for (const std::string& only : names) {
    CAPTURE(only);
    for (std::uint64_t seed = 100; seed < 110; ++seed) {
      RandomGraph r(f64, seed);
      for (int i = 0; i < 30; ++i) r.step();
      const std::vector<Value> outputs = r.outputs();
      passes::PassManager pm = passes::forward_pipeline();
      for (const std::string& name : pm.names())
        if (name != only) pm.disable(name);
      testing::check_same_results(r.g, outputs, pm.run(r.g, outputs), r.feeds);
    }
  }
}

TEST_CASE("randomized graphs agree through the step pipeline, whose elementwise fusion merges their chains") {
  std::size_t fused = 0;
  for (DType t : {f32, f64}) {
    for (std::uint64_t seed = 200; seed < 240; ++seed) {
      CAPTURE(seed);
      CAPTURE(dtype_name(t));
      RandomGraph r(t, seed);
      for (int i = 0; i < 30; ++i) r.step();
      const std::vector<Value> outputs = r.outputs();
      passes::OptimizedGraph opt = passes::optimize_inference(r.g, outputs);
      opt.graph->verify();
      fused += testing::count_op(*opt.graph, ops::fused_elementwise);
      testing::check_same_results(r.g, outputs, opt, r.feeds);
    }
  }
  CHECK(fused > 40);  // the generator does give elementwise fusion work
}

}  // namespace
