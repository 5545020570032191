// Normalization fusion: the softmax, log-softmax, layer-norm and cross-entropy chains that nn/
// builds (and users write by hand) become one fused node each (ops/normalization.h).
//
// What it rewrites, all over the LAST axis (reductions {-1} with keepdims, as nn builds them;
// "mean" is reduce_mean's form, reduce_sum(v)·(1/n), or reduce_sum(v)/n):
//
//   softmax       e = exp(x - [stop_gradient](reduce_max(x)));  e / reduce_sum(e)
//                 ⇒ fused_softmax(x)
//   log_softmax   s = x - [stop_gradient](reduce_max(x));  s - log(reduce_sum(exp(s)))
//                 ⇒ fused_log_softmax(x)
//   layer_norm    c = x - mean(x);  v = mean(c·c);  (c·rsqrt(v + eps))·γ + β    (or c / sqrt(v + eps))
//                 with γ, β of shape [D]   ⇒ fused_layer_norm(x, γ, β) {eps}, output 0
//   cross_entropy -reduce_sum(log_softmax(x) · one_hot(t), {-1})                 (no keepdims)
//                 and its label-smoothing mix a·(1-ε) + (-mean(log_softmax(x), no keepdims))·ε
//                 ⇒ fused_softmax_cross_entropy(x, t) {label_smoothing = ε}, output 0
//
// with every binary op accepted in either operand order. The one-hot is nn::one_hot's
// cast(equal(iota(axis -1), unsqueeze(t, -1))), the iota possibly already folded into a constant;
// its nodes are not part of the match (they die with the next dead-code pass when nothing else
// reads them). The cross-entropy's `valid` mask multiply (ignore_index) reads the per-example
// value and stays outside, as does the mean over the batch.
//
// Why it is correct: each fused op computes exactly the chain's function (ops/normalization.h),
// in the same precision, with sums accumulated in at least the chain's precision; the fused
// cross-entropy reproduces the chain's value for a target outside [0, C), whose one-hot row is all
// zero. The max subtraction and stop_gradient change neither values nor gradients, so the three
// spellings of softmax (stop_gradient'ed max, plain max, no max) are one function. A softmax
// written WITHOUT the max, exp(x) / Σ exp(x), is fused as well, deliberately: wherever it is
// finite it equals the fused result to rounding, and where it overflows (x beyond ~88 in f32, so
// that it gives inf/inf = NaN) the fused kernel, which always subtracts the max, gives the right
// probabilities. The statistics name that case apart ("... without the max shift"), so the change
// is visible. The pass runs on the forward graph before autodiff (after attention fusion, whose
// softmax is gone by then): the gradients of the fused nodes are then single backward nodes
// (fused_*_backward) instead of the chain's dozen.
//
// Interior values are private (passes/pattern.h): if the exp, the centred x, a log-probability
// inside a cross-entropy, ... is read outside the match, the rewrite is blocked ("an inner value is
// used outside the match"): fusing anyway would compute it twice. The root's own value may be
// used anywhere, so a softmax whose probabilities the user keeps (a heatmap) is still fused.
// A cross-entropy whose log-probabilities are read elsewhere is not fused, but its log_softmax
// then is. Cross-entropy is matched first, in its own sweep, so that its log_softmax is not taken
// by the log_softmax pattern before the whole chain is seen.
//
// Not fused (each one is a test): a reduction over another axis than the last (counted as blocked,
// "over an axis other than the last"), a reduction without keepdims where the chain needs it, γ or
// β of another shape than [D] (counted as blocked: "gamma or beta is not [D]"), a layer norm
// without γ and β, an interior value read elsewhere, a softmax and a log_softmax of the same x
// whose shared exp CSE merged (each one's interior is read by the other).
//
//   before (nn::softmax on f32[8,10])                   after
//     %2 = reduce_max(%x) {axes=[1], keepdims=true}       %2 = fused_softmax(%x) {replaces=
//     %3 = stop_gradient(%2)                                  "reduce_max .. div (6 nodes)"}
//     %4 = sub(%x, %3)                                        : f32[8,10]
//     %5 = exp(%4)
//     %6 = reduce_sum(%5) {axes=[1], keepdims=true}
//     %7 = div(%5, %6) : f32[8,10]
#pragma once

#include "fovea/passes/pattern.h"

namespace fovea::passes {

PassResult fuse_normalizations(const Graph& graph, std::span<const ValueRef> roots);

// The patterns alone, for the pattern rewriter. match_cross_entropy's root is the per-example
// value (the neg, or the add of the label-smoothing mix); match_normalization's is the last node
// of a softmax (div), log_softmax (sub) or layer norm (add β).
std::optional<Rewrite> match_cross_entropy(const Graph& graph, std::uint32_t root, const UseCounts& uses);
std::optional<Rewrite> match_normalization(const Graph& graph, std::uint32_t root, const UseCounts& uses);

}  // namespace fovea::passes
