// Constant folding: compute now what depends on constants only.
//
// What it rewrites: a node whose inputs are all constants (or that has no inputs, like fill
// and iota), whose op is pure, and whose outputs are small (at most max_elements elements in
// all) is evaluated once, here, and replaced by a constant holding the result. It keeps the
// node's name, scope and source line, so the dump still says where the value came from.
// Folding works on the rewritten graph as it grows, so a chain of constant ops folds link by
// link into one constant.
//
// Why it is correct: the result is computed by the very kernel that would compute it at run
// time (the node is copied into a scratch graph of constants, compiled for the CPU backend and
// run), so the constant holds the same bits. Impure ops (random numbers) and assigns are never
// folded. If evaluating fails (an index out of range in a gather), the node is left alone and
// the error is raised, as before, when the graph runs. The size limit keeps big tensors out of
// the graph: a fill of a million zeros costs nothing until it runs, a constant of a million
// zeros costs 4 MB for as long as the graph lives.
//
//   before                                        after
//     %2 = constant 2 : f32[]                       %4 = constant 0.707107 : f32[]
//     %3 = sqrt(%2) : f32[]                         %5 = mul(%x, %4) : f32[4]
//     %4 = div(%1, %3) : f32[]    (%1 = 1)
//     %5 = mul(%x, %4) : f32[4]
#pragma once

#include <cstdint>

#include "fovea/passes/rewriter.h"

namespace fovea::passes {

struct FoldOptions {
  // Nodes whose outputs hold more elements than this (in all) are left to run time.
  std::int64_t max_elements = 4096;
};

PassResult fold_constants(const Graph& graph, std::span<const ValueRef> roots, const FoldOptions& options = {});

}  // namespace fovea::passes
