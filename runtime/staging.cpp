#include "fovea/runtime/staging.h"

#include <algorithm>

#include <fmt/format.h>

#include "fovea/backends/backend.h"
#include "fovea/runtime/memory_plan.h"

namespace fovea {

namespace {

std::string value_name(const Graph& graph, ValueRef v) {
  const Node& n = graph.node(v.node);
  return n.outputs.size() > 1 ? fmt::format("{}.{}", n.name, v.output) : n.name;
}

}  // namespace

StagingPlan plan_staging(const Graph& graph, std::span<const std::uint32_t> schedule, std::span<const ValueRef> outputs,
                         std::size_t verdict_count) {
  StagingPlan plan;
  // Slot after slot: nothing in the block is reused within a run, and it is small (a batch
  // and the results), so there is nothing to gain from sharing bytes.
  auto place = [&](ValueRef v) {
    const std::size_t bytes = graph.type(v).nbytes();
    const StagingPlan::Slot slot{v, plan.bytes, bytes};
    plan.bytes += MemoryPlan::align_up(bytes);
    return slot;
  };
  for (std::uint32_t id : schedule)
    if (graph.node(id).op == &placeholder_op) plan.feeds.push_back(place({id, 0}));
  for (const ValueRef& v : outputs)
    if (std::none_of(plan.outputs.begin(), plan.outputs.end(), [&](const auto& s) { return s.value == v; }))
      plan.outputs.push_back(place(v));
  plan.verdict_count = verdict_count;
  plan.verdicts_offset = plan.bytes;
  plan.bytes += MemoryPlan::align_up(verdict_count * sizeof(Verdict));
  return plan;
}

const StagingPlan::Slot& StagingPlan::output(ValueRef value) const {
  for (const Slot& s : outputs)
    if (s.value == value) return s;
  throw Error(fmt::format("internal error: output %{}.{} has no staging slot", value.node, value.output));
}

std::string StagingPlan::to_string(const Graph& graph) const {
  std::string s = fmt::format("host staging: {} bytes, {} feeds, {} outputs, {} verdicts\n", bytes, feeds.size(),
                              outputs.size(), verdict_count);
  for (const Slot& slot : feeds)
    s += fmt::format("  feed    offset {:>10}  {:>10} B  {}\n", slot.offset, slot.bytes, value_name(graph, slot.value));
  for (const Slot& slot : outputs)
    s += fmt::format("  output  offset {:>10}  {:>10} B  {}\n", slot.offset, slot.bytes, value_name(graph, slot.value));
  if (verdict_count > 0)
    s += fmt::format("  verdict offset {:>10}  {:>10} B  one per step that checks on the device\n", verdicts_offset,
                     verdict_count * sizeof(Verdict));
  return s;
}

}  // namespace fovea
