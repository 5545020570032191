// Common-subexpression elimination: compute each distinct expression once.
//
// What it rewrites: two nodes with the same op, the same inputs (after earlier merges) and
// equal attributes compute the same values, so the second is dropped and its readers read the
// first. Equal constants (same dtype, shape and bytes) merge too: `x * 0.5` written twice
// builds two scalar constants 0.5, and after this pass both multiplications read one, which
// then lets the two multiplications merge as well (inputs are compared after rewriting, so
// merges cascade down the graph in one sweep).
//
// Why it is correct: ops are functions of their inputs and attributes, except those marked
// impure (random numbers: two dropout masks must differ) and assign (a side effect); those,
// placeholders and parameters are never merged. Doubles are compared bit for bit, so 0.0 and
// -0.0 stay apart.
//
//   before                                        after
//     %2 = constant 0.5 : f32[]                     %2 = constant 0.5 : f32[]
//     %3 = mul(%x, %2) : f32[4]                     %3 = mul(%x, %2) : f32[4]
//     %4 = constant 0.5 : f32[]                     %6 = add(%3, %3) : f32[4]
//     %5 = mul(%x, %4) : f32[4]
//     %6 = add(%3, %5) : f32[4]
#pragma once

#include "fovea/passes/rewriter.h"

namespace fovea::passes {

PassResult eliminate_common_subexpressions(const Graph& graph, std::span<const ValueRef> roots);

// Whether two attribute lists are equal: doubles bit for bit, tensors by dtype, shape and bytes.
bool attributes_equal(const Attributes& a, const Attributes& b);

}  // namespace fovea::passes
