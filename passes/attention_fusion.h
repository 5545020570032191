// Attention fusion: matmul → scale → (+ mask) → softmax → (dropout) → matmul  ⇒  fused_attention.
//
// What it rewrites: the chain nn::scaled_dot_product_attention builds,
//
//   s = matmul(q, k, transpose_b=true)      or matmul(q, permute(k) swapping the last two axes)
//   s = s · c     (optional; or c · s, or s / c; and/or q = q' · c before the matmul)
//   s = s + mask  (optional; either operand order)
//   p = softmax(s) over the LAST axis, matched as nn::softmax builds it,
//         e = exp(s - stop_gradient(max(reduce_max(s, {-1}, keepdims), lowest)))
//         p = e / where(z == 0, 1, z),  z = reduce_sum(e, {-1}, keepdims)
//       or without the guards (max(·, lowest) and the where: they only make a row of only -∞ give
//       0, as the fused op does), without the stop_gradient, or without the max subtraction at
//       all (e = exp(s))
//   p = where(greater_equal(random_uniform(shape of p, low 0, high 1, [step]), p_drop), p · c, 0)
//       (optional: nn::dropout in training mode; c · p also; p_drop and c one-element constants)
//   o = matmul(p, v)
//
// becomes fused_attention(q, k, v, [mask], [step]) {scale = product of the c's, causal,
// [dropout = p_drop, dropout_scale = c, dropout_seed and dropout_stream = the random node's,
// dropout_step]} (ops/attention.h), whose output o replaces the last matmul. Batch and heads
// are the leading dims of q, k, v. When the mask is exactly a causal mask (nn::causal_mask's
// nodes, or a constant with 0 on and below the bottom-right-aligned diagonal and <= -1e9 above
// it) and Tq <= Tk, it is dropped and the node gets causal=true: the kernel then skips the
// blocks above the diagonal instead of adding the mask to them.
//
// Why it is correct: fused_attention computes exactly o = softmax(scale·q·kᵀ + mask)·v, with the
// same max-subtracted softmax (its online form, FlashAttention); a softmax written without the
// max subtraction is the same function, which the kernel evaluates without its overflow. A causal
// mask adds -∞ (nn::masked_score) or at most -1e9 above the diagonal, whose exp() is exactly 0 in
// f32 and f64 (for scores far below 1e9 in size, which is every trained model's), as the kernel's
// -∞ is; with Tq <= Tk every row keeps at least one key, so no row is fully masked and the two
// agree (for Tq > Tk the first rows are fully masked, where a -1e9 would give uniform weights and
// -∞ gives 0, so the mask is then kept as an additive input). Only values inside the match disappear: if
// the scores or the probabilities are used anywhere else (the user keeps the probabilities for a
// heatmap, or a gradient already reads them) the rewrite is blocked (passes/pattern.h). That is
// why the pass runs on the forward graph before autodiff: the gradient of fused_attention is then
// one fused_attention_backward node, which recomputes the probabilities from the saved
// log-sum-exp instead of keeping the [Tq,Tk] matrix alive.
//
// With dropout, the fused node draws the very bits the random_uniform node would have drawn:
// a random node's numbers are a pure function of its seed, its stream (plus the step) and the
// element's index (core/philox.h), and the fused kernels compute u for element (b, i, j) of
// the probabilities from the same three, compare it with T(p_drop) as greater_equal does, and
// multiply the kept probabilities by T(c), as the mul does. The random node, the comparison,
// the where and the mul become interior nodes, so the keep mask must not be read elsewhere
// either. The statistics count these as "attention with dropout → fused_attention".
//
// Not fused (each one is a test): a probability or score used outside; softmax over another axis; a
// mask that depends on a parameter through differentiable ops (a learned attention bias: the fused
// op gives the mask no gradient, so fusing would zero the bias's; "blocked: the mask depends on
// parameter 'bias' ..." in the statistics); a mask that the fused op does not accept (one that
// would enlarge the scores, or of another dtype); a scale that is not a one-element constant (a
// vector, or a placeholder: the fused op takes its scale as a number); matmuls that broadcast q, k
// or v against each other (fused_attention wants equal leading dims); a dropout on the
// probabilities in another form than nn::dropout's (a random tensor whose shape differs from the
// scores', or low/high other than 0/1, a rescale that is not a one-element constant, another
// dtype): the fused op could not draw the same mask. The statistics say "blocked: ... dropout on
// the probabilities" for it.
//
//   before (nn::MultiHeadAttention, 8 heads of 64, N = 1024: examples/attention_fusion's dump)
//     %26 = matmul(%15, %20) {transpose_a=false, transpose_b=true} : f32[1,8,1024,1024]
//     %27 = constant 0.125 : f32[]
//     %28 = mul(%26, %27) : f32[1,8,1024,1024]
//     %29 = reduce_max(%28) {axes=[3], keepdims=true} : f32[1,8,1024,1]
//     %30 = stop_gradient(%29) : f32[1,8,1024,1]
//     %31 = sub(%28, %30) : f32[1,8,1024,1024]
//     %32 = exp(%31) : f32[1,8,1024,1024]
//     %33 = reduce_sum(%32) {axes=[3], keepdims=true} : f32[1,8,1024,1]
//     %34 = div(%32, %33) : f32[1,8,1024,1024]
//     %35 = matmul(%34, %25) {transpose_a=false, transpose_b=false} : f32[1,8,1024,64]
//   after
//     %27.0, %27.1 = fused_attention(%15, %20, %25) {causal=false,
//         replaces="attn/attention/matmul .. attn/attention/matmul_1 (9 nodes)", scale=0.125}
//         : f32[1,8,1024,64], f32[1,8,1024]
//   (the node's `replaces` attribute names the first and last node it stands for, so a dump says
//   where it came from; the constant 0.125, now unused, goes with the next dead-code pass)
#pragma once

#include "fovea/passes/pattern.h"

namespace fovea::passes {

struct AttentionFusionOptions {
  // Replace an exact causal mask by causal=true (see above).
  bool recognize_causal_masks = true;
};

PassResult fuse_attention(const Graph& graph, std::span<const ValueRef> roots,
                          const AttentionFusionOptions& options = {});

// The pattern alone, for the pattern rewriter: a Rewrite rooted at node `root` (the final
// matmul) when the chain above is there.
std::optional<Rewrite> match_attention(const Graph& graph, std::uint32_t root, const UseCounts& uses,
                                       const AttentionFusionOptions& options = {});

}  // namespace fovea::passes
