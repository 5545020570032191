// Matrix multiplication, batched, with optionally transposed operands.
//
//   y[..., m, n] = Σ_k a[..., m, k] · b[..., k, n]
//
// Both operands have rank >= 2: their last two dims are the matrix, the dims before are a
// batch that broadcasts NumPy-style:
//
//   f32[B,M,K]   x f32[K,N]   -> f32[B,M,N]       (one weight matrix for the whole batch)
//   f32[B,1,M,K] x f32[H,K,N] -> f32[B,H,M,N]
//
// transpose_a / transpose_b swap the last two dims of an operand before multiplying, without
// copying it: matmul(q, k, false, true) is q·kᵀ for attention scores. Floating dtypes only,
// and both operands of one dtype.
#pragma once

#include "fovea/ops/elementwise.h"

namespace fovea {

Value matmul(Value a, Value b, bool transpose_a = false, bool transpose_b = false, Loc where = Loc::current());

// The primitive op. Attributes: transpose_a, transpose_b (bool).
struct MatmulParams {
  bool transpose_a = false, transpose_b = false;
  static MatmulParams decode(const DecodeContext& context);
};
namespace ops {
extern const OpDef matmul;
}  // namespace ops

}  // namespace fovea
