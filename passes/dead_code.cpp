#include "fovea/passes/dead_code.h"

namespace fovea::passes {

PassResult eliminate_dead_code(const Graph& graph, std::span<const ValueRef> roots) {
  // Mark the cone of the roots, walking inputs backwards.
  std::vector<bool> needed(graph.size(), false);
  std::vector<std::uint32_t> stack;
  for (const ValueRef& r : roots) stack.push_back(r.node);
  for (std::uint32_t id = 0; id < graph.size(); ++id)
    if (graph.node(id).op == &placeholder_op || graph.node(id).op == &parameter_op) stack.push_back(id);
  while (!stack.empty()) {
    const std::uint32_t id = stack.back();
    stack.pop_back();
    if (needed[id]) continue;
    needed[id] = true;
    for (const ValueRef& in : graph.node(id).inputs) stack.push_back(in.node);
  }

  PassStats stats;
  GraphRewriter rewriter(graph);
  rewriter.rebuild([&](std::uint32_t id) {
    if (needed[id]) return false;
    stats.count(graph.node(id).op == &constant_op ? "unused constant removed" : "unused node removed");
    return true;
  });
  return rewriter.finish(std::move(stats));
}

}  // namespace fovea::passes
