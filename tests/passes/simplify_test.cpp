// Algebraic simplification: every rule, with the values checked before and after.
#include "optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::random_tensor;

passes::OptimizedGraph run_simplify(const Graph& g, const std::vector<Value>& outputs) {
  passes::PassManager pm;
  pm.add("simplify", passes::simplify);
  return pm.run(g, outputs);
}

// Builds y = rule(x) for x [2,3,4] in f32 and f64, simplifies, and checks that y became `x_like`
// (x itself, or the node named by `op`), the rule was counted, and the values agree.
template <typename Build>
void check_rule(const std::string& kind, Build build, const OpDef* result_op = nullptr) {
  for (DType t : {f32, f64}) {
    CAPTURE(kind);
    Graph g;
    Value x = g.placeholder("x", t, {2, 3, 4});
    Value y = build(x);
    passes::OptimizedGraph opt = run_simplify(g, {y});
    CHECK(opt.passes[0].stats.rewrites.at(kind) >= 1);
    if (result_op)
      CHECK(opt.outputs[0].node().op == result_op);
    else
      CHECK(opt.outputs[0] == opt.value(x));
    testing::check_same_results(g, {y}, opt, {{x, random_tensor(t, {2, 3, 4}, 11)}});
  }
}

TEST_CASE("simplify removes multiplications by one on either side") {
  check_rule("x·1 → x", [](Value x) { return x * 1.0; });
  check_rule("1·x → x", [](Value x) { return 1.0 * x; });
  check_rule("x·1 → x", [](Value x) { return x * ones(x.graph(), {3, 4}, x.dtype()); });  // broadcast ones
}

TEST_CASE("simplify removes additions and subtractions of zero and divisions by one") {
  check_rule("x+0 → x", [](Value x) { return x + 0.0; });
  check_rule("0+x → x", [](Value x) { return 0.0 + x; });
  check_rule("x-0 → x", [](Value x) { return x - 0.0; });
  check_rule("x/1 → x", [](Value x) { return x / 1.0; });
}

TEST_CASE("simplify keeps x·1 when the ones would broadcast x to a larger shape") {
  Graph g;
  Value x = g.placeholder("x", f32, {3});
  Value y = x * ones(g, {2, 3});
  passes::OptimizedGraph opt = run_simplify(g, {y});
  CHECK(opt.passes[0].stats.rewrites.empty());
  CHECK(opt.outputs[0].shape() == Shape{2, 3});
}

TEST_CASE("simplify keeps 1-x, 0/x and x·2, which are not identities") {
  Graph g;
  Value x = g.placeholder("x", f32, {3});
  passes::OptimizedGraph opt = run_simplify(g, {1.0 - x, 0.0 / (x + 2.0), x * 2.0});
  CHECK(opt.passes[0].stats.rewrites.empty());
}

TEST_CASE("simplify cancels a permute followed by its inverse") {
  check_rule("permute∘permute → x", [](Value x) { return permute(permute(x, {1, 2, 0}), {2, 0, 1}); });
  check_rule("permute∘permute → x", [](Value x) { return transpose(transpose(x)); });
}

TEST_CASE("simplify composes two permutes into one, and removes an identity permute") {
  check_rule(
      "permute∘permute → permute",
      [](Value x) {
        return permute(permute(x, {1, 0, 2}), {0, 2, 1});
      },
      &ops::permute);
  check_rule("permute(identity) → x", [](Value x) { return permute(x, {0, 1, 2}); });
  // Three permutes collapse into one in a single sweep.
  Graph g;
  Value x = g.placeholder("x", f32, {2, 3, 4});
  Value y = permute(permute(permute(x, {1, 0, 2}), {0, 2, 1}), {2, 1, 0});
  passes::OptimizedGraph opt = run_simplify(g, {y});
  CHECK(testing::live_nodes(*opt.graph, opt.outputs) == 2);
  testing::check_same_results(g, {y}, opt, {{x, random_tensor(f32, {2, 3, 4}, 2)}});
}

TEST_CASE("simplify merges a reshape of a reshape and removes reshapes to the same shape") {
  check_rule(
      "reshape∘reshape → reshape",
      [](Value x) {
        return reshape(reshape(x, {6, 4}), {4, 6});
      },
      &ops::reshape);
  check_rule("reshape∘reshape → x", [](Value x) { return reshape(reshape(x, {24}), {2, 3, 4}); });
  check_rule("reshape to its own shape → x", [](Value x) { return reshape(x, {2, 3, 4}); });
}

TEST_CASE("simplify turns broadcast_to of a one-element constant into a fill, and drops no-op broadcasts") {
  check_rule(
      "broadcast_to(scalar) → fill",
      [](Value x) {
        return x + broadcast_to(scalar_like(x, 1.5), {2, 3, 4});
      },
      &ops::add);
  check_rule("broadcast_to its own shape → x", [](Value x) { return broadcast_to(x, {2, 3, 4}); });
  Graph g;
  Value b = broadcast_to(g.constant(Tensor::from<float>({2.5f}, {1, 1})), {3, 2});
  passes::OptimizedGraph opt = run_simplify(g, {b});
  CHECK(opt.outputs[0].node().op == &ops::fill);
  CHECK(opt.outputs[0].name() == b.name());
  testing::check_same_results(g, {b}, opt);
}

}  // namespace
