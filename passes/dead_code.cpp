#include "fovea/passes/dead_code.h"

#include "fovea/core/needed.h"

namespace fovea::passes {

PassResult eliminate_dead_code(const Graph& graph, std::span<const ValueRef> roots) {
  // The cone of the roots, and every placeholder and parameter (kept even when unused).
  std::vector<ValueRef> kept(roots.begin(), roots.end());
  for (std::uint32_t id = 0; id < graph.size(); ++id)
    if (graph.node(id).op == &placeholder_op || graph.node(id).op == &parameter_op) kept.push_back({id, 0});
  const std::vector<bool> needed = needed_nodes(graph, kept);

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
