// The schedule: which nodes an executable runs, and in which order (runtime/executable.h).
#pragma once

#include <cstdint>
#include <vector>

#include "fovea/core/graph.h"

namespace fovea {

// The nodes `roots` depend on (core/needed.h): sources first, then the rest in graph order
// (which is topological), then the assigns. Putting sources first lets run() copy every feed
// in before any kernel runs without a later kernel's buffer overlapping a placeholder's;
// putting assigns last makes every read of a parameter's old value happen before it is
// overwritten. A node whose op is schedule_early (an asynchronous collective's start) runs,
// with the nodes that only feed it, as soon as its inputs have run. Throws fovea::Error naming the node that reads an assign's output, which the
// same step cannot use.
std::vector<std::uint32_t> schedule_for(const Graph& graph, const std::vector<Value>& roots);

}  // namespace fovea
