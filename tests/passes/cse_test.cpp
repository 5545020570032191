// Common-subexpression elimination: one node per distinct expression, never for random ops.
#include "optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::random_tensor;

passes::OptimizedGraph run_cse(const Graph& g, const std::vector<Value>& outputs) {
  passes::PassManager pm;
  pm.add("cse", passes::eliminate_common_subexpressions);
  return pm.run(g, outputs);
}

TEST_CASE("cse merges equal constants, then the expressions that read them, in f32 and f64") {
  for (DType t : {f32, f64}) {
    Graph g;
    Value x = g.placeholder("x", t, {3, 4});
    Value a = exp(x * 0.5);
    Value b = exp(x * 0.5);  // the same expression, written again
    Value y = a + b;
    passes::OptimizedGraph opt = run_cse(g, {y});
    // x, 0.5, mul, exp, add: the second 0.5, mul and exp are gone.
    CHECK(g.size() == 8);
    CHECK(opt.graph->size() == 5);
    const passes::PassStats& stats = opt.passes[0].stats;
    CHECK(stats.rewrites.at("equal constants merged") == 1);
    CHECK(stats.rewrites.at("repeated mul merged") == 1);
    CHECK(stats.rewrites.at("repeated exp merged") == 1);
    CHECK(opt.value(a) == opt.value(b));
    testing::check_same_results(g, {y, a, b}, opt, {{x, random_tensor(t, {3, 4}, 7)}});
  }
}

TEST_CASE("cse keeps nodes whose attributes, inputs or constant values differ") {
  Graph g;
  Value x = g.placeholder("x", f32, {3, 4});
  Value s0 = reduce_sum(x, {0});
  Value s1 = reduce_sum(x, {1});       // another axis
  Value k = reduce_sum(x, {0}, true);  // keepdims differs
  Value c1 = x * 2.0, c2 = x * 3.0;    // different constants
  Value z1 = x * 0.0, z2 = x * -0.0;   // 0 and -0 differ bit for bit
  passes::OptimizedGraph opt = run_cse(g, {s0, s1, k, c1, c2, z1, z2});
  CHECK(opt.graph->size() == g.size());
  CHECK(opt.passes[0].stats.rewrites.empty());
}

TEST_CASE("cse never merges random ops, placeholders or parameters") {
  Graph g;
  Value a = g.placeholder("a", f32, {2});
  Value b = g.placeholder("b", f32, {2});
  Value p = g.parameter("p", f32, {2}, init::zeros());
  Value q = g.parameter("q", f32, {2}, init::zeros());
  Value r1 = random_uniform(g, {2});
  Value r2 = random_uniform(g, {2});
  Value y = a + b + p + q + r1 + r2;
  passes::OptimizedGraph opt = run_cse(g, {y});
  CHECK(opt.graph->size() == g.size());
  CHECK(testing::count_op(*opt.graph, ops::random_uniform) == 2);
}

TEST_CASE("cse merges large equal constants by content and fills by attributes") {
  Graph g;
  Value x = g.placeholder("x", f64, {64});
  const Tensor values = random_tensor(f64, {64}, 3);
  Value c1 = g.constant(values.clone());
  Value c2 = g.constant(values.clone());
  Value y = (x + c1) * (x + c2) + zeros_like(x) + zeros_like(x);
  passes::OptimizedGraph opt = run_cse(g, {y});
  CHECK(testing::count_op(*opt.graph, constant_op) == 1);
  CHECK(testing::count_op(*opt.graph, ops::fill) == 1);
  CHECK(testing::count_op(*opt.graph, ops::add) == 3);  // x + c, then the two adds of zeros
  testing::check_same_results(g, {y}, opt, {{x, random_tensor(f64, {64}, 4)}});
}

}  // namespace
