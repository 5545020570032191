// Constant folding: small pure computations on constants become constants.
#include "optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::random_tensor;

passes::OptimizedGraph run_fold(const Graph& g, const std::vector<Value>& outputs, passes::FoldOptions options = {}) {
  passes::PassManager pm;
  pm.add("fold", [options](const Graph& graph, std::span<const ValueRef> roots) {
    return passes::fold_constants(graph, roots, options);
  });
  return pm.run(g, outputs);
}

TEST_CASE("fold evaluates a chain of constant ops into one constant, in f32 and f64") {
  for (DType t : {f32, f64}) {
    Graph g;
    Value x = g.placeholder("x", t, {2, 3});
    Value c = g.constant(random_tensor(t, {2, 3}, 5, 0.5, 2.0));
    Value scale = sqrt(c) / reduce_sum(c, {1}, true);  // sqrt, reduce_sum, div: all constant
    Value y = x * scale;
    passes::OptimizedGraph opt = run_fold(g, {y});
    CHECK(opt.passes[0].stats.rewrites.at("sqrt folded") == 1);
    CHECK(opt.passes[0].stats.rewrites.at("div folded") == 1);
    const Value folded = opt.value(scale);
    CHECK(folded.node().op == &constant_op);
    CHECK(folded.name() == scale.name());  // the constant keeps the node's name and line
    CHECK(folded.node().where.line == scale.node().where.line);
    CHECK(testing::live_nodes(*opt.graph, opt.outputs) == 3);  // x, the folded constant, mul
    testing::check_same_results(g, {y, scale}, opt, {{x, random_tensor(t, {2, 3}, 6)}});
  }
}

TEST_CASE("fold turns iota and fill into constants when small and leaves big ones to run time") {
  Graph g;
  Value small = iota(g, {4, 5}, 1, i64) + fill(g, {4, 5}, 2.0, i64);
  Value big = fill(g, {100, 100}, 1.0);
  passes::OptimizedGraph opt = run_fold(g, {small, big});
  CHECK(opt.outputs[0].node().op == &constant_op);
  CHECK(opt.outputs[1].node().op == &ops::fill);  // 10000 elements > max_elements
  testing::check_same_results(g, {small, big}, opt);
  passes::OptimizedGraph tiny = run_fold(g, {small}, {.max_elements = 4});
  CHECK(tiny.outputs[0].node().op == &ops::add);
}

TEST_CASE("fold never folds random ops, placeholders or what reads them") {
  Graph g;
  Value x = g.placeholder("x", f32, {3});
  Value r = random_normal(g, {3});
  Value y = r * 2.0 + x;
  passes::OptimizedGraph opt = run_fold(g, {y});
  CHECK(opt.passes[0].stats.rewrites.empty());
  CHECK(opt.graph->size() == g.size());
}

TEST_CASE("fold leaves a node whose evaluation fails to raise its error at run time") {
  Graph g;
  Value table = g.constant(random_tensor(f32, {3, 2}, 1));
  Value ids = g.constant(Tensor::from<std::int64_t>({0, 7}, {2}));  // 7 is out of range
  Value rows = gather(table, ids, 0);
  passes::OptimizedGraph opt = run_fold(g, {rows});
  CHECK(opt.outputs[0].node().op == &ops::gather);
  CHECK(opt.passes[0].stats.blocked.at("gather left to run time: evaluating it failed") == 1);
  CHECK_THROWS_AS(testing::run1(*opt.graph, opt.outputs[0]), Error);
}

}  // namespace
