// Node::gradient_of: every node a gradient rule builds names the forward node whose rule it
// was, the printers show it, and the passes keep it.
#include <map>
#include <string>

#include "testing.h"

namespace {

using namespace fovea;

// A two-layer MLP's mean squared error, under the scope "mlp": its matmuls are 'mlp/matmul'
// (x · w1) and 'mlp/matmul_1' (h · w2).
struct Mlp {
  Graph g;
  Value x, y, loss;
  Mlp() {
    x = g.placeholder("x", f32, {4, 3});
    y = g.placeholder("y", f32, {4, 2});
    auto scope = g.scope("mlp");
    Value w1 = g.parameter("w1", f32, {3, 5}, init::normal(0.0, 0.5));
    Value w2 = g.parameter("w2", f32, {5, 2}, init::normal(0.0, 0.5));
    Value out = matmul(relu(matmul(x, w1)), w2);
    loss = reduce_mean((out - y) * (out - y));
  }
};

// How many nodes of `op` name each forward node in gradient_of.
std::map<std::string, int> gradient_ops(const Graph& g, const OpDef& op) {
  std::map<std::string, int> counts;
  for (std::uint32_t id = 0; id < g.size(); ++id)
    if (g.node(id).op == &op && !g.node(id).gradient_of.empty()) ++counts[g.node(id).gradient_of];
  return counts;
}

TEST_CASE("every backward node names the forward node whose gradient rule built it") {
  Mlp m;
  const std::size_t forward_size = m.g.size();
  grad(m.loss, m.g.parameters());
  std::size_t named = 0;
  std::uint32_t first_named = 0;
  for (std::uint32_t id = 0; id < m.g.size(); ++id) {
    const Node& n = m.g.node(id);
    CAPTURE(n.name);
    if (id < forward_size) {
      CHECK(n.gradient_of.empty());
      continue;
    }
    CHECK(n.role == NodeRole::backward);
    if (n.gradient_of.empty()) {
      CHECK(named == 0);  // only the seed, ones_like(loss), built before every rule, names none
      continue;
    }
    if (named++ == 0) first_named = id;
    const Node* forward = m.g.find(n.gradient_of);
    REQUIRE(forward != nullptr);
    CHECK(forward->role == NodeRole::forward);
  }
  CHECK(named > 0);
  CHECK(first_named > forward_size);
  // dh = ḡ·w2ᵀ and dw2 = hᵀ·ḡ; dw1 = xᵀ·ḡ, and maybe x's gradient too, which nothing reads
  // (the optimized step below has lost it).
  const std::map<std::string, int> matmuls = gradient_ops(m.g, ops::matmul);
  CHECK(matmuls.at("mlp/matmul") >= 1);
  CHECK(matmuls.at("mlp/matmul_1") == 2);
  CHECK(m.g.gradient_of().empty());  // restored after grad()
}

TEST_CASE("the text IR and the DOT tooltips name the forward node of each backward node") {
  Mlp m;
  grad(m.loss, m.g.parameters());
  const std::string text = to_text(m.g, TextOptions{});
  CHECK(text.find("(gradient of mlp/matmul_1)") != std::string::npos);
  CHECK(to_text(m.g, TextOptions{.show_locations = false}).find("gradient of") == std::string::npos);
  CHECK(to_dot(m.g).find("gradient of mlp/matmul_1") != std::string::npos);
}

TEST_CASE("gradient_of survives passes::optimize of a whole training step") {
  Mlp m;
  nn::TrainStep step = nn::sgd(m.loss, m.g.parameters(), {.lr = nn::constant_lr(0.1)});
  passes::OptimizedGraph opt = passes::optimize(m.g, {m.loss}, step.updates);
  const Graph& fg = *opt.graph;
  std::size_t named = 0;
  for (std::uint32_t id = 0; id < fg.size(); ++id) {
    const Node& n = fg.node(id);
    if (n.gradient_of.empty()) continue;
    ++named;
    CAPTURE(n.name);
    CHECK(n.role == NodeRole::backward);
    // The name is the forward node's in the user's graph, where the rule ran.
    const Node* forward = m.g.find(n.gradient_of);
    REQUIRE(forward != nullptr);
    CHECK(forward->role == NodeRole::forward);
  }
  CHECK(named > 0);
  const std::map<std::string, int> matmuls = gradient_ops(fg, ops::matmul);
  CHECK(matmuls.at("mlp/matmul") == 1);  // dw1 only
  CHECK(matmuls.at("mlp/matmul_1") == 2);
  // The fused loops of the backward pass name the forward node of their last member.
  for (std::uint32_t id = 0; id < fg.size(); ++id)
    if (fg.node(id).op == &ops::fused_elementwise && fg.node(id).role == NodeRole::backward)
      CHECK_FALSE(fg.node(id).gradient_of.empty());
}

}  // namespace
