// node_cost: the work (floating-point operations) and the memory traffic (bytes) of one node,
// for the explorer, cost reports and benchmarks.
//
// The figures are the textbook counts of each op, not a measurement of any kernel: they say how
// much a node must do at the least, so that a run's time can be set against the machine's peak
// (runtime/machine.h). One function decides the rule for every op family:
//
//   bytes   every input read once plus every output written once; 0 for the sources
//           (placeholders, parameters, constants) and the views (reshape, stop_gradient,
//           check_indices), which move nothing. assign reads its new value and writes the
//           target, whose old contents it never reads.
//   flops   matmul                    2·K per output element (2·M·N·K·batch)
//           convolutions              2·(Cin/groups)·R·S per element of the convolution's output
//                                     (conv2d, fused_conv2d and both backward ops alike)
//           fused_attention           2·B·H·Tq·Tk·(D + Dv), the two products (4·B·H·Tq·Tk·D when
//                                     Dv = D), halved when causal; its backward 2.5 times that
//           fused_elementwise         output elements × the program's instructions
//           reductions (reduce_*, argmax, argmin, cumsum)   the input's elements
//           pools                     the pooled tensor's elements × the window's size
//           normalizations (softmax, log_softmax, layer norm, cross entropy, batch norm, and
//                                     their backward ops)   8 per element of the largest tensor
//           data movement (permute, broadcast_to, slice, concat, gather, pad, cast, fill, iota,
//                                     transfers, assign)   0
//           everything else (the elementwise ops, where, scatter_add, random draws)
//                                     one per output element
#pragma once

#include <cstdint>

#include "fovea/core/graph.h"

namespace fovea {

// The cost of node `node` of `graph`, from its types and attributes alone (nothing runs).
Cost node_cost(const Graph& graph, std::uint32_t node);

}  // namespace fovea
