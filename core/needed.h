// The nodes some values need: the one backward walk that the schedule (runtime/schedule.h),
// dead-code elimination (passes/dead_code.h), the printers' "only what the outputs use"
// (core/printer.h) and the gradient (autograd/grad.h) share.
#pragma once

#include <span>
#include <vector>

#include "fovea/core/graph.h"

namespace fovea {

// The cone of `roots`: needed[id] is true for each root's node and for every node some root
// depends on, directly or through other nodes (walking inputs backwards). Nodes only a root's
// other outputs use are included too: a node is needed whole.
std::vector<bool> needed_nodes(const Graph& graph, std::span<const ValueRef> roots);

}  // namespace fovea
