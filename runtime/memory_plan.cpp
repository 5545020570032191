#include "fovea/runtime/memory_plan.h"

#include <algorithm>
#include <limits>
#include <set>

#include <fmt/format.h>

namespace fovea {

namespace {

// Free byte ranges of the arena, kept sorted and coalesced; the arena grows at the end.
class FreeList {
 public:
  std::size_t allocate(std::size_t bytes) {
    // Best fit: the smallest free range that holds `bytes`.
    auto best = ranges_.end();
    for (auto it = ranges_.begin(); it != ranges_.end(); ++it)
      if (it->second >= bytes && (best == ranges_.end() || it->second < best->second)) best = it;
    if (best != ranges_.end()) {
      const std::size_t offset = best->first;
      if (best->second == bytes)
        ranges_.erase(best);
      else
        ranges_[offset + bytes] = best->second - bytes, ranges_.erase(offset);
      return offset;
    }
    // Grow: if the last free range touches the end, extend it instead of leaving a gap.
    std::size_t offset = end_;
    if (!ranges_.empty()) {
      auto last = std::prev(ranges_.end());
      if (last->first + last->second == end_) {
        offset = last->first;
        ranges_.erase(last);
      }
    }
    end_ = offset + bytes;
    return offset;
  }

  void release(std::size_t offset, std::size_t bytes) {
    auto [it, inserted] = ranges_.emplace(offset, bytes);
    // Merge with the following range, then with the preceding one.
    auto next = std::next(it);
    if (next != ranges_.end() && it->first + it->second == next->first) {
      it->second += next->second;
      ranges_.erase(next);
    }
    if (it != ranges_.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second == it->first) {
        prev->second += it->second;
        ranges_.erase(it);
      }
    }
  }

  std::size_t end() const { return end_; }

 private:
  std::map<std::size_t, std::size_t> ranges_;  // offset -> bytes
  std::size_t end_ = 0;
};

}  // namespace

MemoryPlan plan_memory(const Graph& graph, std::span<const std::uint32_t> schedule, std::span<const ValueRef> outputs,
                       bool outputs_in_arena) {
  MemoryPlan plan;
  constexpr std::size_t forever = std::numeric_limits<std::size_t>::max();

  // Last schedule step reading each value; graph outputs are read "forever".
  std::map<ValueRef, std::size_t> last_use;
  for (std::size_t step = 0; step < schedule.size(); ++step)
    for (const ValueRef& in : graph.node(schedule[step]).inputs) last_use[in] = step;
  for (const ValueRef& out : outputs) last_use[out] = forever;
  const std::set<ValueRef> external_outputs(outputs.begin(), outputs.end());

  // Pass 1: give every arena value a buffer, sharing with the input for views and in place.
  for (std::size_t step = 0; step < schedule.size(); ++step) {
    const std::uint32_t id = schedule[step];
    const Node& node = graph.node(id);
    if (node.op->source && node.op != &placeholder_op) continue;  // parameter, constant
    if (node.op->assigns) continue;                               // its output is the target's persistent buffer
    for (std::uint32_t k = 0; k < node.outputs.size(); ++k) {
      const ValueRef value{id, k};
      // A computed output is written into the Tensor run() returns, outside the arena.
      if (!outputs_in_arena && node.op != &placeholder_op && external_outputs.contains(value)) continue;
      const std::size_t bytes = MemoryPlan::align_up(node.outputs[k].nbytes());
      const std::size_t dies = last_use.contains(value) ? last_use[value] : step;
      if (k == 0 && !node.inputs.empty() && plan.buffer_of.contains(node.inputs[0])) {
        const std::size_t shared = plan.buffer_of[node.inputs[0]];
        MemoryPlan::Buffer& b = plan.buffers[shared];
        // Exact sizes, not aligned ones: a broadcast input is smaller than the output even
        // when both round up to the same 64 bytes, and writing over it would corrupt it.
        const bool same_size = graph.type(node.inputs[0]).nbytes() == node.outputs[0].nbytes() && b.bytes == bytes;
        const bool input_used_once = std::count(node.inputs.begin(), node.inputs.end(), node.inputs[0]) == 1;
        if (node.op->view && same_size) {
          plan.buffer_of[value] = shared;
          b.last = std::max(b.last, dies);
          ++plan.view_count;
          continue;
        }
        // In place: the input's buffer is read for the last time here, by this node alone.
        if (node.op->elementwise && same_size && b.last == step && input_used_once &&
            graph.type(node.inputs[0]).dtype == node.outputs[0].dtype) {
          plan.buffer_of[value] = shared;
          b.last = dies;
          ++plan.in_place_count;
          continue;
        }
      }
      plan.buffer_of[value] = plan.buffers.size();
      plan.buffers.push_back({0, bytes, step, dies});
      // The peak never exceeds this sum, so once it fits no offset below can overflow.
      if (__builtin_add_overflow(plan.naive_bytes, bytes, &plan.naive_bytes))
        node.fail(
            fmt::format("the arena cannot be planned: its buffers, this {} one included, add up to more "
                        "bytes than a 64-bit integer can count",
                        node.outputs[k].to_string()));
    }
  }

  // Pass 2: assign offsets in schedule order, freeing each buffer after its last reader.
  std::vector<std::vector<std::size_t>> starting(schedule.size()), ending(schedule.size());
  for (std::size_t b = 0; b < plan.buffers.size(); ++b) {
    starting[plan.buffers[b].first].push_back(b);
    if (plan.buffers[b].last != forever) ending[std::max(plan.buffers[b].last, plan.buffers[b].first)].push_back(b);
  }
  FreeList free_list;
  for (std::size_t step = 0; step < schedule.size(); ++step) {
    for (std::size_t b : starting[step]) plan.buffers[b].offset = free_list.allocate(plan.buffers[b].bytes);
    // A buffer written and last read at this step is released after the step (a node's
    // outputs never overlap its inputs or each other).
    for (std::size_t b : ending[step]) free_list.release(plan.buffers[b].offset, plan.buffers[b].bytes);
  }
  plan.peak_bytes = free_list.end();
  return plan;
}

std::string MemoryPlan::to_string(const Graph& graph) const {
  std::vector<std::vector<std::string>> names(buffers.size());
  for (const auto& [value, b] : buffer_of) {
    const Node& n = graph.node(value.node);
    names[b].push_back(n.outputs.size() > 1 ? fmt::format("{}.{}", n.name, value.output) : n.name);
  }
  std::string s = fmt::format(
      "memory plan: {} buffers, peak {} bytes (one buffer per value: {} bytes), "
      "{} in place, {} views\n",
      buffers.size(), peak_bytes, naive_bytes, in_place_count, view_count);
  for (std::size_t b = 0; b < buffers.size(); ++b) {
    const Buffer& buf = buffers[b];
    const std::string last = buf.last == std::numeric_limits<std::size_t>::max() ? "end" : std::to_string(buf.last);
    s += fmt::format("  #{:<4} offset {:>10}  {:>10} B  steps {}..{}  {}\n", b, buf.offset, buf.bytes, buf.first, last,
                     fmt::join(names[b], ", "));
  }
  return s;
}

}  // namespace fovea
