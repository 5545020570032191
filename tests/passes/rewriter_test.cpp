// GraphRewriter: a rebuilt graph is the same graph, node for node, sharing its parameters.
#include "optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::random_tensor;

TEST_CASE("copy_graph keeps every node's op, name, scope, location, role, attributes and types") {
  Graph g("model");
  Value x = g.placeholder("x", f32, {2, 3});
  Value y;
  {
    auto scope = g.scope("layer");
    Value w = g.parameter("w", f32, {3, 4}, init::normal(0.0, 0.1));
    y = relu(matmul(x, w)) * 2.0;
  }
  Value loss = reduce_sum(y);
  grad(loss, g.parameters());  // backward nodes, with their own role and scope

  passes::PassResult copy = passes::copy_graph(g);
  const Graph& c = *copy.graph;
  CHECK(c.name() == "model");
  REQUIRE(c.size() == g.size());
  for (std::uint32_t id = 0; id < g.size(); ++id) {
    const Node &a = g.node(id), &b = c.node(id);
    CHECK(a.op == b.op);
    CHECK(a.name == b.name);
    CHECK(a.scope == b.scope);
    CHECK(a.where.line == b.where.line);
    CHECK(std::string(a.where.file) == b.where.file);
    CHECK(a.role == b.role);
    CHECK(a.attrs.to_string() == b.attrs.to_string());
    CHECK(a.outputs == b.outputs);
    CHECK(a.inputs == b.inputs);
    CHECK(copy.value_map.at({id, 0}) == ValueRef{id, 0});
  }
  CHECK(to_text(c, TextOptions{}) == to_text(g, TextOptions{}));
  c.verify();
}

TEST_CASE("a rebuilt graph's parameters and state share their buffers with the original graph") {
  Graph g;
  Value w = g.parameter("w", f32, {3}, init::normal(0.0, 1.0));
  Value s = g.state("count", i64, {}, init::zeros());
  Value update = assign(w, w * 0.5);

  passes::PassResult copy = passes::copy_graph(g);
  Graph& c = *copy.graph;
  const Value cw = c.value(copy.value_map.at(w.ref()));
  const Value cs = c.value(copy.value_map.at(s.ref()));
  CHECK(c.parameter_value(cw).shares_storage_with(g.parameter_value(w)));
  CHECK(c.parameter_value(cs).shares_storage_with(g.parameter_value(s)));
  CHECK(c.parameters().size() == 1);  // the state stays non-trainable
  CHECK(c.persistent_values().size() == 2);

  // Running the copy's assign updates the weights the original graph holds.
  const Tensor before = g.parameter_value(w).clone();
  auto exe = compile(c, {}, cpu(), {.updates = {c.value(copy.value_map.at(update.ref()))}});
  exe.run({});
  for (std::int64_t i = 0; i < 3; ++i) CHECK(g.parameter_value(w).at(i) == doctest::Approx(before.at(i) * 0.5));
}

TEST_CASE("a rebuilt graph keeps the seed, so random ops draw the same numbers in both graphs") {
  Graph g;
  g.set_seed(1234);
  Value r = random_uniform(g, {16});
  passes::PassResult copy = passes::copy_graph(g);
  CHECK(copy.graph->seed() == 1234);
  const Tensor a = testing::run1(g, r);
  const Tensor b = testing::run1(*copy.graph, copy.graph->value(copy.value_map.at(r.ref())));
  testing::check_close(b, a, 0.0, 0.0);
}

TEST_CASE("a pass that drops a node still in use is reported as a bug naming the node") {
  Graph g;
  Value x = g.placeholder("x", f32, {2});
  Value y = exp(x);
  neg(y);
  passes::GraphRewriter rw(g);
  CHECK_THROWS_AS(rw.rebuild([&](std::uint32_t id) { return id == y.ref().node; }), Error);
  try {
    passes::GraphRewriter again(g);
    again.rebuild([&](std::uint32_t id) { return id == y.ref().node; });
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("removed by a pass but is still used") != std::string::npos);
    CHECK(std::string(e.what()).find("rewriter_test.cpp") != std::string::npos);
  }
}

// The pass docs/optimizer.md shows, section 8, as written there.
passes::PassResult negate_twice_is_identity(const Graph& graph, std::span<const ValueRef>) {
  using namespace fovea::passes;
  PassStats stats;
  GraphRewriter rw(graph);
  rw.rebuild([&](std::uint32_t id) {
    if (graph.node(id).op != &ops::neg) return false;
    const Value x = rw.inputs(id)[0];
    const Node* inner = producer(rw.target(), x.ref(), ops::neg);
    if (!inner) return false;
    rw.replace(id, {rw.target().value(inner->inputs[0])});
    stats.count("neg(neg(x)) → x");
    return true;
  });
  return rw.finish(std::move(stats));
}

TEST_CASE("the pass written in docs/optimizer.md removes neg(neg(x)) and registers with a PassManager") {
  Graph g;
  Value x = g.placeholder("x", f64, {5});
  Value y = exp(neg(neg(neg(neg(x)))));
  passes::PassManager pm;
  pm.add("double_negation", negate_twice_is_identity).add("dce", passes::eliminate_dead_code);
  passes::OptimizedGraph opt = pm.run(g, {y});
  CHECK(opt.passes[0].stats.rewrites.at("neg(neg(x)) → x") == 2);
  CHECK(testing::count_op(*opt.graph, ops::neg) == 0);
  testing::check_same_results(g, {y}, opt, {{x, random_tensor(f64, {5}, 8)}});
}

}  // namespace
