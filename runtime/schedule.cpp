#include "fovea/runtime/schedule.h"

#include <fmt/format.h>

#include "fovea/core/needed.h"

namespace fovea {

namespace {

// Rejects a scheduled node that reads an assign's result: it would see the old value or the
// new one depending on the order, so the same step cannot use it.
void check_no_read_of_assigns(const Graph& graph, const std::vector<std::uint32_t>& schedule) {
  for (std::uint32_t id : schedule)
    for (const ValueRef& in : graph.node(id).inputs)
      if (graph.node(in.node).op->assigns)
        graph.node(id).fail(
            fmt::format("reads the output of assign '{}'; an assign's result cannot be used in the "
                        "same step (read the value that was assigned instead)",
                        graph.node(in.node).name));
}

}  // namespace

std::vector<std::uint32_t> schedule_for(const Graph& graph, const std::vector<Value>& roots) {
  std::vector<ValueRef> refs;
  for (const Value& v : roots) refs.push_back(v.ref());
  const std::vector<bool> needed = needed_nodes(graph, refs);
  std::vector<std::uint32_t> schedule;
  for (std::uint32_t id = 0; id < graph.size(); ++id)
    if (needed[id] && graph.node(id).op->source) schedule.push_back(id);
  for (std::uint32_t id = 0; id < graph.size(); ++id)
    if (needed[id] && !graph.node(id).op->source && !graph.node(id).op->assigns) schedule.push_back(id);
  for (std::uint32_t id = 0; id < graph.size(); ++id)
    if (needed[id] && graph.node(id).op->assigns) schedule.push_back(id);
  check_no_read_of_assigns(graph, schedule);
  return schedule;
}

}  // namespace fovea
