// The staging plan: where a device executable's feeds, outputs and verdicts sit in host memory,
// decided at compile time like the arena (runtime/memory_plan.h).
//
// On a backend whose memory is not the host's, a run goes through one block of host memory
// (page-locked on the CUDA backend, Backend::allocate_host_staging):
//
//   run() copies each feed into its slot        host → staging
//   a to_device step copies it into the arena    staging → placeholder's buffer
//   ... the kernels ...
//   a to_host step copies each output out        output's buffer → staging
//   a to_host step copies the verdicts out       arena's verdicts → staging
//   run() waits once, reads the verdicts, and copies each output out of its slot
//
// Every step between the two host copies is on the device's stream, so a recorded run replays
// all of them with one launch. The block is allocated once at compile time; a run allocates
// nothing but the Tensors it returns. Slots are 64-byte aligned and never overlap:
//
//   [feed x][feed labels][output loss][output logits][verdicts]
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fovea/core/graph.h"

namespace fovea {

struct StagingPlan {
  struct Slot {
    ValueRef value;
    std::size_t offset = 0;  // in the staging block
    std::size_t bytes = 0;   // the value's size, exactly
  };
  std::vector<Slot> feeds;    // one per placeholder of the schedule, in schedule order
  std::vector<Slot> outputs;  // one per distinct requested output, in the order first requested
  std::size_t verdict_count = 0;
  std::size_t verdicts_offset = 0;  // where the verdicts' copy starts in the block
  std::size_t bytes = 0;            // the block's size

  // The slot of a requested output.
  const Slot& output(ValueRef value) const;
  // One line per slot: offset, size and the value in it.
  std::string to_string(const Graph& graph) const;
};

// Plans the staging block for feeding the placeholders of `schedule` (node ids in execution
// order), returning `outputs` and reading back `verdict_count` verdicts.
StagingPlan plan_staging(const Graph& graph, std::span<const std::uint32_t> schedule, std::span<const ValueRef> outputs,
                         std::size_t verdict_count);

}  // namespace fovea
