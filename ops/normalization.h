// Fused normalizations: softmax, log-softmax, layer norm and softmax cross-entropy, each as one
// node over the LAST axis, with a backward op beside each.
//
// Like fused_attention, these ops are the graph optimizer's output, not a user's building blocks
// (docs/architecture.md, decision 1): a user writes nn::softmax, nn::log_softmax, nn::layer_norm or
// nn::cross_entropy, which are chains of primitives, and the normalization fusion pass
// (passes/normalization_fusion.h) replaces each chain by one of these nodes. The builders below
// exist for that pass and for the tests.
//
// Every op works on rows: x [..., n] is rows = Π leading dims of n elements each.
//
//   fused_softmax(x)          y[i] = exp(x[i] - lse),   lse = log Σ_j exp(x[j])
//   fused_log_softmax(x)      y[i] = x[i] - lse
//   fused_layer_norm(x, γ, β) {eps}
//                             μ = (1/n) Σ_j x[j],   σ² = (1/n) Σ_j (x[j] - μ)²,   r = 1/√(σ² + eps)
//                             y[i] = (x[i] - μ)·r·γ[i] + β[i]
//                             outputs (y [..., n], μ [..., 1], r [..., 1]): the statistics keep the
//                             last dim as 1, so later ops broadcast them against x
//   fused_softmax_cross_entropy(x [..., C], t [...] integer) {label_smoothing = ε}
//                             lse = log Σ_c exp(x[c])
//                             loss = (1-ε)·(lse - x[t]) + ε·(lse - (1/C) Σ_c x[c])   for 0 <= t < C
//                             loss = ε·(lse - (1/C) Σ_c x[c])                        otherwise
//                             outputs (loss [...], lse [...])
//
// The cross-entropy's rule for a target outside [0, C) is exactly what nn::cross_entropy's
// per-example value is for it: its one-hot row is all zero, so the picked log-probability is 0
// and only the smoothing term remains (ignore_index is applied afterwards, by a separate `valid`
// mask multiply that stays outside the fused node).
//
// Gradients (ḡ = ∂L/∂y; each rule builds one backward node):
//
//   fused_softmax_backward(y, ḡ)           dx = y ⊙ (ḡ - Σ_j ḡ[j]·y[j])
//   fused_log_softmax_backward(y, ḡ)       dx = ḡ - exp(y) · Σ_j ḡ[j]
//   fused_layer_norm_backward(ḡ, x, γ, μ, r) -> (dx, dγ, dβ), with x̂ = (x - μ)·r, g = ḡ ⊙ γ:
//                                          dx = r·(g - mean(g) - x̂·mean(g ⊙ x̂))   (means over the row)
//                                          dγ = Σ_rows ḡ ⊙ x̂,   dβ = Σ_rows ḡ
//   fused_softmax_cross_entropy_backward(x, t, lse, ḡ) {label_smoothing}, with p = exp(x - lse):
//                                          dx[c] = ḡ·(k·p[c] - (1-ε)·[c = t] - ε/C),
//                                          k = 1 for 0 <= t < C, ε otherwise
//
// Only the main output of each forward op is differentiable: layer norm's μ and r, and the
// cross-entropy's lse, are saved for the backward; a gradient flowing into them is an error.
// Targets get no gradient. The backward ops have no gradient rule: a second derivative through a
// fused normalization raises fovea::Error (gradient checks cover first derivatives).
//
// Edge cases: a zero-size dim gives empty outputs (no error), a row of one element has softmax 1
// and log-softmax 0, a row of only -∞ has softmax 0 (as nn::softmax and fused_attention define it:
// a fully masked row attends to nothing) and log-softmax NaN; layer norm of a row with no elements
// (n = 0) has μ = r = NaN, as the chain gives. Cross-entropy needs at least one class.
#pragma once

#include "fovea/ops/elementwise.h"

namespace fovea {

// y = softmax(x) over the last axis, and its backward dx = y ⊙ (dy - Σ dy ⊙ y).
Value fused_softmax(Value x, Loc where = Loc::current());
Value fused_softmax_backward(Value y, Value dy, Loc where = Loc::current());

// y = log softmax(x) over the last axis, and its backward dx = dy - exp(y)·Σ dy.
Value fused_log_softmax(Value x, Loc where = Loc::current());
Value fused_log_softmax_backward(Value y, Value dy, Loc where = Loc::current());

struct FusedLayerNormOutputs {
  Value y;     // [..., D]
  Value mean;  // [..., 1]
  Value rstd;  // [..., 1]: 1/√(σ² + eps)
};

struct FusedLayerNormGradients {
  Value dx;      // [..., D]
  Value dgamma;  // [D]
  Value dbeta;   // [D]
};

// Layer norm over the last axis of x [..., D] with gamma, beta [D], all of one float dtype.
FusedLayerNormOutputs fused_layer_norm(Value x, Value gamma, Value beta, double eps, Loc where = Loc::current());
FusedLayerNormGradients fused_layer_norm_backward(Value dy, Value x, Value gamma, Value mean, Value rstd,
                                                  Loc where = Loc::current());

struct FusedCrossEntropyOutputs {
  Value loss;  // [...]: the per-example loss
  Value lse;   // [...]: log Σ_c exp(logits[c]), saved for the backward
};

// Softmax cross-entropy of logits [..., C] (f32 or f64) against integer targets [...] (i32 or
// i64), with label smoothing ε in [0, 1]; and its backward, dlogits from dloss [...].
FusedCrossEntropyOutputs fused_softmax_cross_entropy(Value logits, Value targets, double label_smoothing = 0.0,
                                                     Loc where = Loc::current());
Value fused_softmax_cross_entropy_backward(Value logits, Value targets, Value lse, Value dloss,
                                           double label_smoothing = 0.0, Loc where = Loc::current());

// The op definitions. Attributes: eps (double) on fused_layer_norm, label_smoothing (double)
// on both cross-entropy ops. The pass adds `replaces` (a string naming the nodes a fused node
// stands for), which the kernels ignore.
struct LayerNormParams {
  double eps = 0;
  static LayerNormParams decode(const DecodeContext& context);
};
struct CrossEntropyParams {
  double label_smoothing = 0;
  static CrossEntropyParams decode(const DecodeContext& context);
};
namespace ops {
extern const OpDef fused_softmax, fused_softmax_backward;
extern const OpDef fused_log_softmax, fused_log_softmax_backward;
extern const OpDef fused_layer_norm, fused_layer_norm_backward;
extern const OpDef fused_softmax_cross_entropy, fused_softmax_cross_entropy_backward;
}  // namespace ops

}  // namespace fovea
