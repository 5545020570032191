// Elementwise fusion: which chains become one fused_elementwise node, and that the fused
// graph computes what the plain one does.
#include "optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::random_tensor;

passes::OptimizedGraph fuse_only(const Graph& g, const std::vector<Value>& outputs) {
  passes::PassManager pm;
  pm.add("elementwise_fusion",
         [](const Graph& graph, std::span<const ValueRef> roots) { return passes::fuse_elementwise(graph, roots); });
  return pm.run(g, outputs);
}

std::size_t fused_count(const passes::OptimizedGraph& opt) {
  return testing::count_op(*opt.graph, ops::fused_elementwise);
}

TEST_CASE("a GELU chain becomes one fused_elementwise node with the same values, f32 and f64") {
  for (DType t : {f32, f64}) {
    Graph g;
    Value x = g.placeholder("x", t, {3, 5, 7});
    Value y = nn::gelu(x);
    passes::OptimizedGraph opt = fuse_only(g, {y});
    CHECK(fused_count(opt) == 1);
    CHECK(testing::count_op(*opt.graph, ops::tanh) == 0);
    testing::check_same_results(g, {y}, opt, {{x, random_tensor(t, x.shape(), 1, -4, 4)}});
  }
}

TEST_CASE("inputs of every broadcast kind are read in place: [D], [B,T,1], a scalar, [T,1] and a bool mask") {
  for (DType t : {f32, f64}) {
    Graph g;
    Value x = g.placeholder("x", t, {2, 3, 4});
    Value bias = g.placeholder("bias", t, {4});
    Value row = g.placeholder("row", t, {2, 3, 1});
    Value s = g.placeholder("s", t, {});
    Value middle = g.placeholder("middle", t, {3, 1});
    Value keep = g.placeholder("keep", DType::boolean, {2, 1, 4});
    Value y = where(keep, exp(x + bias) * row - s, middle / (abs(x) + 1.0));
    passes::OptimizedGraph opt = fuse_only(g, {y});
    CHECK(fused_count(opt) == 1);
    CHECK(testing::live_nodes(*opt.graph, opt.outputs) == 7);  // six placeholders and the fused node
    Tensor mask = Tensor::empty(DType::boolean, {2, 1, 4});
    for (std::int64_t i = 0; i < mask.numel(); ++i) mask.data<std::uint8_t>()[i] = (i * 5) % 3 != 0;
    testing::check_same_results(g, {y}, opt,
                                {{x, random_tensor(t, x.shape(), 1)},
                                 {bias, random_tensor(t, bias.shape(), 2)},
                                 {row, random_tensor(t, row.shape(), 3)},
                                 {s, random_tensor(t, s.shape(), 4)},
                                 {middle, random_tensor(t, middle.shape(), 5)},
                                 {keep, mask}});
  }
}

TEST_CASE("a value also read after the chain becomes a second output of the fused node") {
  Graph g;
  Value x = g.placeholder("x", f64, {4, 6});
  Value w = g.placeholder("w", f64, {6, 6});
  Value h = tanh(x * 2.0);
  Value y = h * h + 1.0;
  Value kept = matmul(h, w);  // reads h after the chain's last node, as a backward pass does
  passes::OptimizedGraph opt = fuse_only(g, {y, kept});
  REQUIRE(fused_count(opt) == 1);
  for (std::uint32_t id = 0; id < opt.graph->size(); ++id)
    if (opt.graph->node(id).op == &ops::fused_elementwise) CHECK(opt.graph->node(id).outputs.size() == 2);
  testing::check_same_results(g, {y, kept}, opt,
                              {{x, random_tensor(f64, x.shape(), 1)}, {w, random_tensor(f64, w.shape(), 2)}});
}

TEST_CASE("a value read in the middle of a chain splits it: the fused node stands at the chain's end") {
  Graph g;
  Value x = g.placeholder("x", f64, {4, 6});
  Value w = g.placeholder("w", f64, {6, 6});
  Value h = tanh(x * 2.0);
  Value kept = matmul(h, w);  // built before the rest of the chain: h must exist before it
  Value y = h * h + 1.0;
  passes::OptimizedGraph opt = fuse_only(g, {y, kept});
  CHECK(fused_count(opt) == 2);  // tanh(x·2), then h·h + 1
  opt.graph->verify();
  testing::check_same_results(g, {y, kept}, opt,
                              {{x, random_tensor(f64, x.shape(), 1)}, {w, random_tensor(f64, w.shape(), 2)}});
}

TEST_CASE("a chain that feeds a matmul whose result flows back into it is split, never made a cycle") {
  // a = x·2 feeds both the matmul and b; b also reads the matmul. Fusing a into b's group would
  // make the fused node need the matmul, which needs a from the fused node.
  Graph g;
  Value x = g.placeholder("x", f32, {4, 4});
  Value a = exp(x * 0.5);
  Value m = matmul(a, a);
  Value b = (a + m) * 3.0;
  passes::OptimizedGraph opt = fuse_only(g, {b});
  opt.graph->verify();
  testing::check_same_results(g, {b}, opt, {{x, random_tensor(f32, x.shape(), 7)}});
}

TEST_CASE("chains of different shapes or element types stay apart, and a lone op is left alone") {
  Graph g;
  Value x = g.placeholder("x", f32, {8, 16});
  Value mean = reduce_mean(x, {-1}, true);                             // [8,1]
  Value centred = x - mean;                                            // [8,16]
  Value r = rsqrt(reduce_mean(centred * centred, {-1}, true) + 1e-5);  // [8,1]: its own group
  Value y = centred * r;
  Value ints = g.placeholder("ids", DType::i32, {8, 16});
  Value z = cast(ints + 1, f32) * 2.0;  // the i32 add does not fuse; cast and mul do
  Value lone = neg(g.placeholder("lone", f32, {5}));
  passes::OptimizedGraph opt = fuse_only(g, {y, z, lone});
  CHECK(testing::count_op(*opt.graph, ops::neg) == 1);
  CHECK(testing::count_op(*opt.graph, ops::add) == 1);  // the i32 one
  Tensor ids = Tensor::empty(DType::i32, {8, 16});
  for (std::int64_t i = 0; i < ids.numel(); ++i) ids.data<std::int32_t>()[i] = static_cast<std::int32_t>(i % 7);
  testing::check_same_results(g, {y, z, lone}, opt,
                              {{x, random_tensor(f32, x.shape(), 1)},
                               {ints, ids},
                               {g.value(lone.node().inputs[0]), random_tensor(f32, {5}, 2)}});
}

TEST_CASE("dropout fuses with its random draw, and the fused mask is the unfused one bit for bit") {
  Graph g;
  Value x = g.placeholder("x", f32, {3, 50, 7});  // 1050 elements: tiles and Philox blocks end mid-way
  Value step = g.placeholder("step", DType::i64, {});
  Value y = nn::dropout(x, 0.3, {.training = true, .step = step});
  passes::OptimizedGraph opt = fuse_only(g, {y});
  CHECK(fused_count(opt) == 1);
  CHECK(testing::count_op(*opt.graph, ops::random_uniform) == 0);
  for (std::int64_t s : {0, 1, 17}) {
    const Feeds feeds{{x, Tensor::full(f32, x.shape(), 1.0)}, {step, Tensor::scalar(s)}};
    const Tensor expected = testing::run1(g, y, feeds);
    const Tensor actual = testing::run1(*opt.graph, opt.outputs[0], testing::mapped_feeds(opt, feeds));
    for (std::int64_t i = 0; i < expected.numel(); ++i) REQUIRE(actual.data<float>()[i] == expected.data<float>()[i]);
  }
}

TEST_CASE("comparisons and logic inside a chain, and bool outputs, match the unfused ops") {
  Graph g;
  Value a = g.placeholder("a", f64, {6, 5});
  Value b = g.placeholder("b", f64, {5});
  Value both = logical_and(greater(a, b), logical_not(less_equal(a, scalar_like(a, 0.25))));
  Value picked = where(both, a * b, maximum(a, b) - minimum(a, b));
  Value as_float = cast(logical_or(equal(a, b), not_equal(a, scalar_like(a, 0.0))), f64) + cast(both, f64);
  passes::OptimizedGraph opt = fuse_only(g, {both, picked, as_float});
  // `both` is read by two chains: it joins the first, which also stores it for the second.
  // Siblings that only share inputs are not merged (no horizontal fusion): two nodes.
  CHECK(fused_count(opt) == 2);
  testing::check_same_results(g, {both, picked, as_float}, opt,
                              {{a, random_tensor(f64, a.shape(), 3)}, {b, random_tensor(f64, b.shape(), 4)}});
}

TEST_CASE("zero-size and rank-0 chains fuse and run") {
  for (const Shape& shape : {Shape{0, 4}, Shape{}}) {
    Graph g;
    Value x = g.placeholder("x", f32, shape);
    Value y = exp(x) * 2.0 + x;
    passes::OptimizedGraph opt = fuse_only(g, {y});
    CHECK(fused_count(opt) == 1);
    testing::check_same_results(g, {y}, opt, {{x, random_tensor(f32, shape, 1)}});
  }
}

TEST_CASE("the fused node prints its program, and an inconsistent program is rejected at build time") {
  Graph g;
  Value x = g.placeholder("x", f32, {4});
  Value y = tanh(x * 0.5) + x;
  passes::OptimizedGraph opt = fuse_only(g, {y});
  const std::string text = to_text(*opt.graph);
  CHECK(text.find("r0 = mul(in0, 0.5); r1 = tanh(r0); r2 = add(r1, in0); out0 = r2") != std::string::npos);

  fused::Program bad;
  bad.inputs = 1;
  bad.code.push_back({fused::Opcode::add, 0, 5});  // register 5 does not exist yet
  bad.outputs = {1};
  bad.output_is_bool = {false};
  bad.shape = {4};
  const std::array<Value, 1> in{x};
  try {
    fused_elementwise(g, in, bad, f32);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("reads register 5") != std::string::npos);
    CHECK(std::string(e.what()).find("elementwise_fusion_test.cpp") != std::string::npos);
  }
  bad.code[0].b = 0;
  bad.shape = {3};
  CHECK_THROWS_WITH_AS(fused_elementwise(g, in, bad, f32), doctest::Contains("does not broadcast"), Error);
}

TEST_CASE("asking for a gradient through a fused node is an error naming it") {
  Graph g;
  Value x = g.placeholder("x", f64, {3});
  Value y = reduce_sum(exp(x) * 2.0);
  passes::OptimizedGraph opt = fuse_only(g, {y});
  Graph& fg = *opt.graph;
  CHECK_THROWS_WITH_AS(grad(opt.outputs[0], {opt.value(x)}), doctest::Contains("fused_elementwise"), Error);
  (void)fg;
}

TEST_CASE("an AdamW step fuses each parameter's update into one node and takes the same step") {
  for (DType t : {f32, f64}) {
    Graph g;
    Value x = g.placeholder("x", t, {8, 5});
    nn::Linear layer(g, "layer", 5, 3, true, t);
    Value loss = reduce_mean(nn::gelu(layer(x)) * 2.0);
    nn::TrainStep step = nn::adamw(loss, g.parameters(), {.lr = nn::constant_lr(0.01), .weight_decay = 0.1});
    const std::vector<Value> persistent = g.persistent_values();
    std::vector<Tensor> start;
    for (Value p : persistent) start.push_back(g.parameter_value(p).clone());
    const Tensor input = random_tensor(t, x.shape(), 9);

    Executable plain = compile(g, {loss}, cpu(), {.updates = step.updates});
    for (int i = 0; i < 3; ++i) plain.run({{x, input}});
    std::vector<Tensor> expected;
    for (Value p : persistent) expected.push_back(g.parameter_value(p).clone());
    for (std::size_t i = 0; i < persistent.size(); ++i)
      std::memcpy(g.parameter_value(persistent[i]).raw(), start[i].raw(), start[i].nbytes());

    passes::OptimizedGraph opt = passes::optimize(g, {loss}, step.updates);
    CHECK(fused_count(opt) >= 3);
    CHECK(opt.graph->size() < g.size() / 2);
    Executable fused = compile(*opt.graph, opt.outputs, cpu(), {.updates = opt.updates});
    for (int i = 0; i < 3; ++i) fused.run({{opt.value(x), input}});
    for (std::size_t i = 0; i < persistent.size(); ++i) {
      CAPTURE(persistent[i].name());
      testing::check_close(g.parameter_value(persistent[i]), expected[i], testing::agree_rtol(t),
                           testing::agree_atol(t));
    }
  }
}

TEST_CASE("GELU's intermediates are recomputed by its backward loop instead of stored, with the same gradients") {
  for (DType t : {f32, f64}) {
    Graph g;
    Value x = g.placeholder("x", t, {6, 40});
    Value w = g.placeholder("w", t, {40, 40});
    Value h = matmul(x, w);  // a value no group computes: the recomputation starts from it
    Value loss = reduce_sum(nn::gelu(h) * nn::gelu(h));
    const std::vector<Value> grads = grad(loss, {w});
    auto stored_outputs = [&](const passes::ElementwiseFusionOptions& options) {
      passes::PassManager pm;
      pm.add("elementwise_fusion", [options](const Graph& graph, std::span<const ValueRef> roots) {
        return passes::fuse_elementwise(graph, roots, options);
      });
      passes::OptimizedGraph opt = pm.run(g, {loss, grads[0]});
      std::size_t outputs = 0;
      for (std::uint32_t id = 0; id < opt.graph->size(); ++id)
        if (opt.graph->node(id).op == &ops::fused_elementwise) outputs += opt.graph->node(id).outputs.size();
      testing::check_same_results(
          g, {loss, grads[0]}, opt,
          {{x, random_tensor(t, x.shape(), 1)}, {w, random_tensor(t, w.shape(), 2, -0.3, 0.3)}});
      return std::pair{outputs, opt.passes[0].stats.rewrites["value recomputed instead of stored"]};
    };
    const auto [with_recompute, recomputed] = stored_outputs({});
    const auto [without, none] = stored_outputs({.max_recompute_nodes = 0});
    CHECK(recomputed >= 2);
    CHECK(none == 0);
    CHECK(with_recompute + recomputed == without);
  }
}

}  // namespace
