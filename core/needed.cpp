#include "fovea/core/needed.h"

namespace fovea {

std::vector<bool> needed_nodes(const Graph& graph, std::span<const ValueRef> roots) {
  std::vector<bool> needed(graph.size(), false);
  std::vector<std::uint32_t> stack;
  for (const ValueRef& root : roots) stack.push_back(root.node);
  while (!stack.empty()) {
    const std::uint32_t id = stack.back();
    stack.pop_back();
    if (needed[id]) continue;
    needed[id] = true;
    for (const ValueRef& in : graph.node(id).inputs) stack.push_back(in.node);
  }
  return needed;
}

}  // namespace fovea
