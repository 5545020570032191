// Mixed precision: the fused attention reads q, k and v in bf16 (or f16) and computes in f32.
//
// Attention's two products are where a Transformer spends its time at long sequences, and
// tensor cores multiply 16-bit floats many times faster than f32 (an H100: ~990 dense bf16
// TFLOP/s against ~60 f32 on CUDA cores). So this pass, asked for with
// PipelineOptions::mixed_precision, rewrites every f32 fused_attention node (attention fusion
// made them) to take its inputs in the half type:
//
//   before                                        after
//     %o, %lse = fused_attention(%q, %k, %v, %m)    %q16 = cast(%q) {dtype=bf16}   (k, v alike)
//       : f32[B,H,T,D], f32[B,H,T]                  %o16, %lse = fused_attention(%q16, %k16, %v16, %m)
//                                                     : bf16[B,H,T,D], f32[B,H,T]
//                                                   %o = cast(%o16) {dtype=f32}
//
// Only the operands are rounded: the scores, the softmax and the sums stay f32 inside the
// kernel (ops/attention.h), the mask and lse stay f32, and everything around the attention (the
// projections, the weights, the optimizer) is untouched. The error is that of rounding q, k, v
// and o to 8 significant bits (bf16): about 0.4% relative on each, which training absorbs (the
// examples' losses move in the third digit).
//
// It runs on the forward graph, after attention fusion and before autodiff: the gradient of the
// rewritten graph is then a fused_attention_backward node in the half type (o and d_o half,
// dq, dk, dv half, cast back to f32 by the casts' own gradients). Nodes already in a half type,
// f64 nodes (whose user asked for precision) and backward nodes are left alone.
//
// bf16 keeps f32's exponent range, so nothing overflows; f16 has three more mantissa bits but
// overflows beyond 65504 (q·k scores never are, but inputs of that size would become ±inf).
#pragma once

#include "fovea/passes/rewriter.h"

namespace fovea::passes {

struct MixedPrecisionOptions {
  DType type = DType::bf16;  // bf16 or f16
};

PassResult mixed_precision(const Graph& graph, std::span<const ValueRef> roots,
                           const MixedPrecisionOptions& options = {});

}  // namespace fovea::passes
