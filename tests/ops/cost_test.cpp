// node_cost (ops/cost.h): the FLOPs and bytes of each op family, worked out by hand for small
// nodes, and finite non-negative figures for every node of a whole training step, fused or not.
#include <cmath>
#include <string>
#include <vector>

#include <fovea/ops/cost.h>

#include "testing.h"

using namespace fovea;

namespace {

Cost cost_of(const Value& value) { return node_cost(value.graph(), value.ref().node); }

// The first node of `graph` with op `op`, which the test expects to exist.
std::uint32_t first_node_of(const Graph& graph, std::string_view op) {
  for (std::uint32_t id = 0; id < graph.size(); ++id)
    if (graph.node(id).op_name() == op) return id;
  FAIL("no node of op " << op);
  return 0;
}

// Every node of `graph` must have finite, non-negative figures.
void check_every_node_sane(const Graph& graph) {
  for (std::uint32_t id = 0; id < graph.size(); ++id) {
    const Cost cost = node_cost(graph, id);
    CAPTURE(graph.node(id).name);
    CHECK(std::isfinite(cost.flops));
    CHECK(std::isfinite(cost.bytes));
    CHECK(cost.flops >= 0);
    CHECK(cost.bytes >= 0);
  }
}

}  // namespace

TEST_CASE("node_cost: a matmul does 2·M·N·K FLOPs and moves its operands and result once") {
  Graph g;
  const Value a = g.placeholder("a", f32, {8, 16});
  const Value b = g.placeholder("b", f32, {16, 4});
  const Cost cost = cost_of(matmul(a, b));
  CHECK(cost.flops == 2.0 * 8 * 4 * 16);
  CHECK(cost.bytes == 4.0 * (8 * 16 + 16 * 4 + 8 * 4));
  // The contracted dim comes from a transposed operand's other side.
  const Value at = g.placeholder("at", f32, {16, 8});
  CHECK(cost_of(matmul(at, b, true, false)).flops == 2.0 * 8 * 4 * 16);
}

TEST_CASE("node_cost: a batched matmul counts every matrix of the batch, a broadcast weight read once") {
  Graph g;
  const Value a = g.placeholder("a", f64, {3, 5, 6});
  const Value w = g.placeholder("w", f64, {6, 7});
  const Cost cost = cost_of(matmul(a, w));
  CHECK(cost.flops == 2.0 * 3 * 5 * 7 * 6);
  CHECK(cost.bytes == 8.0 * (3 * 5 * 6 + 6 * 7 + 3 * 5 * 7));
}

TEST_CASE("node_cost: the three convolutions each do 2·(Cin/groups)·R·S FLOPs per output element") {
  Graph g;
  const Value x = g.placeholder("x", f32, {2, 4, 8, 8});
  const Value w = g.placeholder("w", f32, {6, 2, 3, 3});
  const Value y = conv2d(x, w, {.padding = 1, .groups = 2});  // [2,6,8,8]
  const double expected = 2.0 * (2 * 6 * 8 * 8) * (2 * 3 * 3);
  CHECK(cost_of(y).flops == expected);
  CHECK(cost_of(y).bytes == 4.0 * (2 * 4 * 8 * 8 + 6 * 2 * 3 * 3 + 2 * 6 * 8 * 8));
  const ConvAttributes attrs{.padding = {1, 1, 1, 1}, .groups = 2};
  CHECK(cost_of(conv2d_backward_data(y, w, {8, 8}, attrs)).flops == expected);
  CHECK(cost_of(conv2d_backward_filter(x, y, {3, 3}, attrs)).flops == expected);
}

TEST_CASE("node_cost: fused attention does 4·B·H·Tq·Tk·D FLOPs, half when causal, its backward 2.5 times") {
  Graph g;
  const Value q = g.placeholder("q", f32, {2, 3, 5, 8});
  const Value k = g.placeholder("k", f32, {2, 3, 7, 8});
  const Value v = g.placeholder("v", f32, {2, 3, 7, 8});
  const double full = 4.0 * 2 * 3 * 5 * 7 * 8;
  const FusedAttentionOutputs plain = fused_attention(q, k, v, {}, 0.35, false);
  const FusedAttentionOutputs causal = fused_attention(q, k, v, {}, 0.35, true);
  CHECK(cost_of(plain.output).flops == full);
  CHECK(cost_of(causal.output).flops == full / 2);
  // Inputs q, k, v; outputs o [2,3,5,8] and the f32 lse [2,3,5].
  CHECK(cost_of(plain.output).bytes == 4.0 * (2 * 3 * 5 * 8 + 2 * (2 * 3 * 7 * 8) + 2 * 3 * 5 * 8 + 2 * 3 * 5));
  const Value d_o = g.placeholder("d_o", f32, {2, 3, 5, 8});
  const FusedAttentionGradients grads =
      fused_attention_backward(q, k, v, {}, plain.output, plain.lse, d_o, 0.35, false);
  CHECK(cost_of(grads.dq).flops == 2.5 * full);
}

TEST_CASE("node_cost: fused_elementwise does one FLOP per element and instruction of its program") {
  Graph g;
  const Value x = g.placeholder("x", f32, {3, 4});
  const Value b = g.placeholder("b", f32, {4});
  fused::Program p;
  p.inputs = 2;
  p.immediates = {0.5};
  fused::Opcode mul_op{}, tanh_op{}, add_op{};
  REQUIRE(fused::opcode_of("mul", mul_op));
  REQUIRE(fused::opcode_of("tanh", tanh_op));
  REQUIRE(fused::opcode_of("add", add_op));
  p.code = {{mul_op, 0, 2}, {tanh_op, 3}, {add_op, 4, 1}};
  p.outputs = {5};
  p.output_is_bool = {false};
  p.shape = {3, 4};
  const std::vector<Value> inputs{x, b};
  const Cost cost = cost_of(fused_elementwise(g, inputs, p, f32)[0]);
  CHECK(cost.flops == 12.0 * 3);
  CHECK(cost.bytes == 4.0 * (12 + 4 + 12));
}

TEST_CASE("node_cost: a broadcasting elementwise op counts output elements and reads the small operand once") {
  Graph g;
  const Value x = g.placeholder("x", f32, {6, 10});
  const Value row = g.placeholder("row", f32, {10});
  const Cost cost = cost_of(x + row);
  CHECK(cost.flops == 60);
  CHECK(cost.bytes == 4.0 * (60 + 10 + 60));
}

TEST_CASE("node_cost: reshape is free, a permute moves bytes without FLOPs, a reduction reads every element") {
  Graph g;
  const Value x = g.placeholder("x", f64, {4, 6});
  const Cost reshaped = cost_of(reshape(x, {24}));
  CHECK(reshaped.flops == 0);
  CHECK(reshaped.bytes == 0);
  const Cost permuted = cost_of(permute(x, {1, 0}));
  CHECK(permuted.flops == 0);
  CHECK(permuted.bytes == 8.0 * 48);
  const Cost summed = cost_of(reduce_sum(x, {1}));
  CHECK(summed.flops == 24);
  CHECK(summed.bytes == 8.0 * (24 + 4));
  // Sources cost nothing: their bytes are where they live already.
  CHECK(cost_of(x).bytes == 0);
}

TEST_CASE("node_cost: every node of a transformer training step has finite non-negative figures, fused or not") {
  Graph g;
  nn::GPT gpt(g, {.vocab = 11, .d_model = 16, .heads = 2, .d_ff = 32, .layers = 1, .max_len = 8, .dropout = 0.1});
  const Value ids = g.placeholder("ids", i64, {2, 8});
  const Value targets = g.placeholder("targets", i64, {2, 8});
  const Value step = g.placeholder("step", i64, {});
  const Value loss = nn::cross_entropy(gpt(ids, {.training = true, .step = step}), targets);
  const nn::TrainStep train = nn::adamw(loss, g.parameters(), {.lr = nn::constant_lr(1e-3)});
  check_every_node_sane(g);
  CHECK(node_cost(g, first_node_of(g, "matmul")).flops > 0);

  Graph user;
  nn::GPT model(user, {.vocab = 11, .d_model = 16, .heads = 2, .d_ff = 32, .layers = 1, .max_len = 8});
  const Value user_ids = user.placeholder("ids", i64, {2, 8});
  const Value user_targets = user.placeholder("targets", i64, {2, 8});
  const Value user_loss = nn::cross_entropy(model(user_ids), user_targets);
  const passes::TrainingGraph fused =
      passes::optimize_training(user, {user_loss}, [](Graph& forward, const std::vector<Value>& out) {
        const nn::TrainStep adam = nn::adamw(out[0], forward.parameters());
        return passes::StepParts{{out[0]}, adam.updates};
      });
  const Graph& step_graph = *fused.step.graph;
  check_every_node_sane(step_graph);
  CHECK(node_cost(step_graph, first_node_of(step_graph, "fused_attention")).flops > 0);
  CHECK(node_cost(step_graph, first_node_of(step_graph, "fused_attention_backward")).flops > 0);
  CHECK(node_cost(step_graph, first_node_of(step_graph, "fused_elementwise")).flops > 0);
}
