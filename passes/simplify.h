// Algebraic simplification: rewrite a node into something cheaper that computes the same values.
//
// What it rewrites (each rule only when the result keeps the node's exact type, so a rule
// never hides a broadcast):
//
//   x·1, 1·x        → x              x + 0, 0 + x   → x          x - 0 → x          x / 1 → x
//   permute(permute(x, a), b)       → permute(x, c) with c[i] = a[b[i]]   (→ x when c is 0,1,2,..)
//   permute(x, 0,1,..,n-1)          → x
//   reshape(reshape(x, s), t)       → reshape(x, t)                       (→ x when t is x's shape)
//   reshape(x, x's shape)           → x
//   broadcast_to(x, x's shape)      → x
//   broadcast_to(c, shape), c a one-element constant → fill(shape, c): no tensor stored, and a
//                                      fill is what CSE merges by its attributes (not for i64,
//                                      whose values beyond 2^53 a fill's double cannot hold)
//
// "1" and "0" are constants (or fills) whose every element is 1 (or 0), of any shape that
// broadcasts into x's. Rules look at the inputs as already rewritten, so chains collapse in
// one sweep: reshape(reshape(reshape(x))) becomes one reshape.
//
// Why it is correct: each rule is an identity of real arithmetic that also holds bit for bit in
// IEEE arithmetic: x·1, x/1 and x - 0 are exact; x + 0 is exact except that -0 + 0 gives +0
// while the rewrite keeps -0 (the two compare equal). Each rule is an identity of gradients too
// (the derivative of x·1 with respect to x is 1), so it may run before autodiff.
//
//   before                                                    after
//     %2 = reshape(%x) {shape=[4,2]} : f32[4,2]                 %3 = reshape(%x) {shape=[8]} : f32[8]
//     %3 = reshape(%2) {shape=[8]} : f32[8]
#pragma once

#include "fovea/passes/rewriter.h"

namespace fovea::passes {

PassResult simplify(const Graph& graph, std::span<const ValueRef> roots);

}  // namespace fovea::passes
