// The memory plan: where every value of a compiled graph lives, decided before the first run.
//
// Values produced by the schedule live in one arena. Each gets a *buffer* (an offset and a
// size) that is live from the step that writes it to the last step that reads it. Buffers
// whose lifetimes do not overlap may share bytes. Two kinds of sharing go further:
//
//  - a view op (reshape) reuses its input's buffer outright, and the buffer stays live until
//    the last use of either value;
//  - an elementwise op may write its output over input 0 when that input's buffer dies at
//    this step and has the output's size ("in place").
//
// Sources do not live in the arena: parameters and constants keep their own buffers;
// placeholders get arena buffers that the feeds are copied into (by run() on the CPU, by a
// to_device step on a device: see Executable). Graph outputs computed by kernels do not live in
// the arena either on the CPU: the kernel writes straight into the Tensor that run() returns,
// so results are never copied. Offsets are assigned greedily, best fit over the free
// ranges, in schedule order; the peak is the arena's size (which the executable extends by
// the verdicts of the steps that check their data on a device: backends/backend.h, Verdict).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "fovea/core/graph.h"

namespace fovea {

struct MemoryPlan {
  static constexpr std::size_t alignment = 64;
  // `bytes` rounded up to the alignment.
  static constexpr std::size_t align_up(std::size_t bytes) { return (bytes + alignment - 1) / alignment * alignment; }

  struct Buffer {
    std::size_t offset = 0;
    std::size_t bytes = 0;  // rounded up to the alignment
    std::size_t first = 0;  // schedule step that writes it
    std::size_t last = 0;   // last schedule step that reads it (inclusive)
  };
  std::vector<Buffer> buffers;
  // The buffer holding each value; values outside the arena (parameters, constants, computed
  // outputs) are absent.
  std::map<ValueRef, std::size_t> buffer_of;
  std::size_t peak_bytes = 0;      // the arena's size
  std::size_t naive_bytes = 0;     // what one buffer per value would take
  std::size_t in_place_count = 0;  // outputs written over a dying input
  std::size_t view_count = 0;      // outputs aliasing their input

  // One line per buffer: offset, size, live range and the values in it.
  std::string to_string(const Graph& graph) const;
};

// Plans the arena for running `schedule` (node ids in execution order) to produce `outputs`.
// With `outputs_in_arena` (device backends, whose results must be copied to the host
// anyway), computed outputs get arena buffers too, live until the end of the run.
MemoryPlan plan_memory(const Graph& graph, std::span<const std::uint32_t> schedule, std::span<const ValueRef> outputs,
                       bool outputs_in_arena = false);

}  // namespace fovea
