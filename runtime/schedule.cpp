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

// The nodes that run early (OpDef::schedule_early) and those that exist only to feed them:
// every needed consumer of a feeder is early or a feeder itself. Walking the graph backwards
// (it is in topological order) sees every consumer of a node before the node.
std::vector<bool> early_group(const Graph& graph, const std::vector<bool>& needed) {
  std::vector<int> consumers(graph.size(), 0), early_consumers(graph.size(), 0);
  std::vector<bool> early(graph.size(), false);
  for (std::uint32_t id = graph.size(); id-- > 0;) {
    const Node& node = graph.node(id);
    if (!needed[id] || node.op->source || node.op->assigns) continue;
    early[id] = node.op->schedule_early || (consumers[id] > 0 && early_consumers[id] == consumers[id]);
    for (const ValueRef& in : node.inputs) {
      ++consumers[in.node];
      if (early[id]) ++early_consumers[in.node];
    }
  }
  return early;
}

// The nodes between the sources and the assigns: in graph order, except that each early node
// (and its feeders) runs as soon as the last of its inputs has run. The order stays
// topological: an early node runs only once its inputs have, and a later node never waits for
// an early one, whose inputs all come before it in graph order and so have run by then.
std::vector<std::uint32_t> middle_with_early(const Graph& graph, const std::vector<bool>& needed) {
  const std::vector<bool> early = early_group(graph, needed);
  auto in_middle = [&](std::uint32_t id) {
    return needed[id] && !graph.node(id).op->source && !graph.node(id).op->assigns;
  };
  std::vector<int> waiting(graph.size(), 0);  // inputs of an early node not run yet
  std::vector<std::vector<std::uint32_t>> early_consumers(graph.size());
  for (std::uint32_t id = 0; id < graph.size(); ++id) {
    if (!early[id]) continue;
    for (const ValueRef& in : graph.node(id).inputs)
      if (in_middle(in.node)) {
        ++waiting[id];
        early_consumers[in.node].push_back(id);
      }
  }
  std::vector<std::uint32_t> order;
  std::vector<std::uint32_t> ready;
  auto run = [&](std::uint32_t id) {
    order.push_back(id);
    for (std::uint32_t consumer : early_consumers[id])
      if (--waiting[consumer] == 0) ready.push_back(consumer);
  };
  auto run_ready = [&] {
    while (!ready.empty()) {
      const std::uint32_t next = ready.back();
      ready.pop_back();
      run(next);
    }
  };
  for (std::uint32_t id = 0; id < graph.size(); ++id)
    if (early[id] && waiting[id] == 0) ready.push_back(id);
  run_ready();
  for (std::uint32_t id = 0; id < graph.size(); ++id)
    if (in_middle(id) && !early[id]) {
      run(id);
      run_ready();
    }
  return order;
}

}  // namespace

std::vector<std::uint32_t> schedule_for(const Graph& graph, const std::vector<Value>& roots) {
  std::vector<ValueRef> refs;
  for (const Value& v : roots) refs.push_back(v.ref());
  const std::vector<bool> needed = needed_nodes(graph, refs);
  std::vector<std::uint32_t> schedule;
  for (std::uint32_t id = 0; id < graph.size(); ++id)
    if (needed[id] && graph.node(id).op->source) schedule.push_back(id);
  bool any_early = false;
  for (std::uint32_t id = 0; id < graph.size(); ++id) any_early = any_early || (needed[id] && graph.node(id).op->schedule_early);
  if (any_early) {
    const std::vector<std::uint32_t> middle = middle_with_early(graph, needed);
    schedule.insert(schedule.end(), middle.begin(), middle.end());
  } else {
    for (std::uint32_t id = 0; id < graph.size(); ++id)
      if (needed[id] && !graph.node(id).op->source && !graph.node(id).op->assigns) schedule.push_back(id);
  }
  for (std::uint32_t id = 0; id < graph.size(); ++id)
    if (needed[id] && graph.node(id).op->assigns) schedule.push_back(id);
  check_no_read_of_assigns(graph, schedule);
  return schedule;
}

}  // namespace fovea
