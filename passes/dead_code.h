// Dead-code elimination: drop every node that no output or update needs.
//
// What it rewrites: a node is kept when some root (an output the caller will compile, or an
// optimizer's assign) depends on it, directly or through other nodes; every other computing
// node and constant is not copied. Placeholders, parameters and state are always kept, even
// unused: a user feeds placeholders and checkpoints parameters by name, and a graph should not
// forget them because one compile does not read them.
//
// Why it is correct: the executable runs only what the roots need anyway (compile() schedules
// the same cone), so dropping the rest changes no result; it only makes dumps and later passes
// smaller. Other passes leave dead nodes behind (a rewritten x·1 leaves its constant 1 unused),
// so the pipeline ends with this one.
//
//   before                                        after (roots: %4)
//     %2 = constant 1 : f32[]                       %3 = exp(%x) : f32[4]
//     %3 = exp(%x) : f32[4]                         %4 = neg(%3) : f32[4]
//     %4 = neg(%3) : f32[4]                         return %4
//     %5 = mul(%3, %2) : f32[4]     (unused)
//     return %4
#pragma once

#include "fovea/passes/rewriter.h"

namespace fovea::passes {

PassResult eliminate_dead_code(const Graph& graph, std::span<const ValueRef> roots);

}  // namespace fovea::passes
