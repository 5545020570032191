#include "fovea/passes/constant_folding.h"

#include <optional>

#include "fovea/runtime/executable.h"

namespace fovea::passes {

namespace {

bool foldable(const Node& n, std::int64_t max_elements) {
  if (n.op->source || n.op->impure || n.op->assigns || n.outputs.empty()) return false;
  std::int64_t elements = 0;
  for (const TensorType& t : n.outputs) elements += t.shape.numel();
  return elements <= max_elements;
}

// Runs `n`'s op on constant inputs with the CPU backend: a scratch graph holding the inputs as
// constants and one copy of the node. Nothing when building or running it fails.
std::optional<std::vector<Tensor>> evaluate(const Node& n, const std::vector<Tensor>& inputs) {
  try {
    Graph scratch("constant_folding");
    std::vector<Value> constants;
    for (const Tensor& t : inputs) constants.push_back(scratch.constant(t));
    const std::vector<Value> outputs = scratch.apply(*n.op, constants, n.attrs, n.where);
    Executable exe = compile(scratch, outputs, cpu());
    return exe.run({});
  } catch (const Error&) {
    return std::nullopt;
  }
}

}  // namespace

PassResult fold_constants(const Graph& graph, std::span<const ValueRef>, const FoldOptions& options) {
  PassStats stats;
  GraphRewriter rewriter(graph);
  rewriter.rebuild([&](std::uint32_t id) {
    const Node& n = graph.node(id);
    if (!foldable(n, options.max_elements)) return false;
    std::vector<Tensor> inputs;
    for (const Value& v : rewriter.inputs(id)) {
      if (v.node().op != &constant_op) return false;
      inputs.push_back(v.node().attrs.get_tensor("value"));
    }
    const std::optional<std::vector<Tensor>> values = evaluate(n, inputs);
    if (!values) {
      stats.block(std::string(n.op_name()) + " left to run time: evaluating it failed");
      return false;
    }
    std::vector<Value> constants;
    for (std::size_t k = 0; k < values->size(); ++k)
      constants.push_back(rewriter.constant_at(id, (*values)[k], k == 0));
    rewriter.replace(id, constants);
    stats.count(std::string(n.op_name()) + " folded");
    return true;
  });
  return rewriter.finish(std::move(stats));
}

}  // namespace fovea::passes
