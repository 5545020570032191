// Dead-code elimination keeps what the outputs and updates need, and every placeholder and
// parameter.
#include "optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::random_tensor;

TEST_CASE("dce drops the nodes no output needs and the outputs keep their values") {
  Graph g;
  Value x = g.placeholder("x", f32, {4});
  Value unused_input = g.placeholder("unused", f32, {2});
  Value w = g.parameter("w", f32, {4}, init::ones());
  Value y = neg(exp(x) * w);
  Value dead = tanh(x) + 3.0;  // nobody asks for it
  (void)dead;

  passes::PassManager pm;
  pm.add("dce", passes::eliminate_dead_code);
  passes::OptimizedGraph opt = pm.run(g, {y});
  // x, unused, w, exp, mul, neg stay; tanh, the constant 3 and the add go.
  CHECK(g.size() == 9);
  CHECK(opt.graph->size() == 6);
  CHECK(opt.passes[0].stats.rewrites.at("unused node removed") == 2);
  CHECK(opt.passes[0].stats.rewrites.at("unused constant removed") == 1);
  CHECK(opt.has(unused_input));  // placeholders and parameters are kept even when unused
  CHECK(opt.has(w));
  CHECK_FALSE(opt.has(dead));
  testing::check_same_results(g, {y}, opt, {{x, random_tensor(f32, {4}, 1)}});
}

TEST_CASE("dce keeps the assigns named as updates, and what they read") {
  Graph g;
  Value w = g.parameter("w", f64, {3}, init::ones());
  Value keep = assign(w, w * 2.0);
  Value other = g.parameter("v", f64, {3}, init::ones());
  assign(other, other + 1.0);  // not passed as an update: dropped

  passes::PassManager pm;
  pm.add("dce", passes::eliminate_dead_code);
  passes::OptimizedGraph opt = pm.run(g, {}, {keep});
  REQUIRE(opt.updates.size() == 1);
  CHECK(opt.updates[0].node().op == &ops::assign);
  CHECK(testing::count_op(*opt.graph, ops::assign) == 1);
  CHECK(testing::count_op(*opt.graph, ops::add) == 0);
  auto exe = compile(*opt.graph, {}, cpu(), {.updates = opt.updates});
  exe.run({});
  CHECK(g.parameter_value(w).at(0) == 2.0);      // shared buffer: the user's graph sees it
  CHECK(g.parameter_value(other).at(0) == 1.0);  // its assign was not kept
}

}  // namespace
