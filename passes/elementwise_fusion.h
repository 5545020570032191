// Elementwise fusion: chains of elementwise ops (and the broadcasts and random draws feeding
// them) become one fused_elementwise node, one loop, one pass over memory.
//
// A training step is full of short elementwise chains: GELU is seven ops, dropout three, the
// AdamW update of one parameter about fifteen. Unfused, every op reads its inputs from memory
// and writes its result back; for tensors bigger than the cache that traffic, not the math, is
// the cost. Fused, the chain runs as a program over registers (ops/fused_elementwise.h).
//
// Which nodes fuse. A node is fusable when it is an elementwise op with an opcode (arithmetic,
// comparisons, logic, where, casts between a float type and bool), a broadcast_to, or a
// random_uniform, and its inputs and output are one float type T (f32 or f64) or bool. A GROUP
// is a set of fusable nodes with the same output shape (the loop's shape) and the same T.
//
// How groups grow. Nodes are visited from the last to the first. A node joins the group of one
// of its readers, the group that runs first, when
//   - that group has the node's shape and T, and
//   - every other reader runs after that group: it comes later in the graph than the group's
//     last node (or belongs to a group whose last node does).
// Its value then becomes internal to the group, or, when something outside still reads it (the
// backward pass reads GELU's input; an optimizer update is assigned to a parameter), one more
// output of the fused node (dropout's keep-mask is computed in the forward loop that applies it,
// and stored for the backward loop that reads it again). Otherwise the node starts a group of
// its own.
//
// Why this never creates a cycle, and why the fused node can stand where the group's last node
// stood: a node joins a group only when all of its readers inside the group come after it in
// graph order (graph order is topological), so no path leads from the group back into the
// node; and every reader outside the group runs after the group's last node, where the fused
// node is emitted. Scalar constants become immediates of the program. A group of one node is
// left alone (there is nothing to fuse).
//
// Recomputation (rematerialisation). After grouping, a value that a group would store only so
// that other groups can read it (GELU's intermediates, computed in the forward loop and read
// by GELU's backward loop) is computed again by each of those readers from the first group's
// inputs, when that is a short chain without random draws whose inputs no group computes
// (a matmul's result, a parameter): those are stored anyway, so recomputations never chain. The forward loop then
// writes less, the backward loop reads less, and a few operations per element are done twice: on a machine where these
// loops wait on memory, that is the better trade. A group left with no value anyone reads disappears.
//
// When it runs: after autodiff, on the whole training step (passes/pipeline.h). Before autodiff
// the forward chains would be fused without knowing which values the backward pass needs, and
// fused_elementwise has no gradient rule.
#pragma once

#include <cstddef>

#include "fovea/passes/rewriter.h"

namespace fovea::passes {

struct ElementwiseFusionOptions {
  // A group stops growing at this many nodes or inputs (keeps programs small enough for the
  // GPU kernel's parameter block; the CPU does not care).
  std::size_t max_nodes = 64;
  std::size_t max_inputs = 24;
  // A value that one group stores only for other groups is recomputed by them instead, when it
  // takes at most this many nodes (and no random draw) from the first group's inputs. 0: never.
  std::size_t max_recompute_nodes = 12;
};

PassResult fuse_elementwise(const Graph& graph, std::span<const ValueRef> roots,
                            const ElementwiseFusionOptions& options = {});

}  // namespace fovea::passes
