// Fused attention: softmax(scale·q·kᵀ + mask)·v as one node, and its backward as another.
//
// These ops are the graph optimizer's output, not a user's building blocks (DESIGN.md,
// decisions 1 and 4): a user writes attention as the plain chain of nn/attention.h, and the
// attention fusion pass replaces matmul → scale → (+ mask) → softmax → matmul by one
// fused_attention node. The builder functions below exist for that pass and for the tests.
//
// fused_attention(q, k, v, [mask]) {scale, causal} -> (o, lse), with
//
//   q [..., Tq, D],  k [..., Tk, D],  v [..., Tk, Dv]     leading dims (batch, heads) equal
//   s[i, j] = scale·Σ_d q[i, d]·k[j, d] + mask[i, j]  (+ -∞ where causal forbids j)
//   lse[i]  = log Σ_j exp(s[i, j])                                           [..., Tq]
//   o[i, :] = Σ_j exp(s[i, j] - lse[i])·v[j, :]                              [..., Tq, Dv]
//
// - The leading dims of q, k and v must be equal (no broadcasting between them). Only the
//   additive mask broadcasts, NumPy-style, to the scores [..., Tq, Tk]: [Tq,Tk] for every
//   sequence, [B,1,1,Tk] for padding, [B,H,Tq,Tk] for everything. Its entries are 0 where
//   attending is allowed and a large negative number (-1e9) or -∞ where it is not. The mask
//   has q's dtype.
// - causal: query i attends to key j only when j <= i + (Tk - Tq). The diagonal is aligned to
//   the bottom-right corner, as in FlashAttention-2: with Tq = Tk it is the usual "no peeking
//   ahead"; with Tq < Tk (decoding with a key cache) the last query sees every key; with
//   Tq > Tk the first Tq - Tk queries see no key at all.
// - A fully masked row, one whose every score is -∞ (by the mask, by causality, or Tk = 0),
//   has no softmax. It is defined as o = 0 and lse = -∞, never NaN. (A row masked with the
//   finite -1e9 is not fully masked: its scores are all equal, so its weights are uniform, as
//   the unfused chain gives.)
//
// The kernels never hold the [Tq, Tk] score matrix: they stream k and v in blocks with an
// online softmax (FlashAttention), so memory is O(Tq·D + Tk·D). lse is what the backward
// needs to recompute the probabilities block by block.
//
// Gradients: fused_attention's rule builds one fused_attention_backward node. Only o is
// differentiable: lse is an auxiliary output for the backward, and asking for a gradient
// that flows through it is an error. The mask gets no gradient (it is a constant pattern).
// fused_attention_backward has no gradient rule, so second derivatives through fused
// attention are not supported: asking for one raises fovea::Error.
#pragma once

#include "fovea/ops/elementwise.h"

namespace fovea {

struct FusedAttentionOutputs {
  Value output;  // o   [..., Tq, Dv]
  Value lse;     // lse [..., Tq]: the log-sum-exp of each row of scores
};

struct FusedAttentionGradients {
  Value dq, dk, dv;  // shaped like q, k and v
};

// The fused forward. `mask` may be an undefined Value (no mask).
FusedAttentionOutputs fused_attention(Value q, Value k, Value v, Value mask, double scale, bool causal,
                                      Loc where = Loc::current());

// The fused backward, FlashAttention-2 style: from the forward's inputs, its outputs o and lse,
// and d_o = ∂L/∂o, the gradients ∂L/∂q, ∂L/∂k, ∂L/∂v. `scale` and `causal` must be the
// forward's. With P = softmax(s) row by row, Δ[i] = Σ_d d_o[i, d]·o[i, d]:
//
//   dv = Pᵀ·d_o,   dP = d_o·vᵀ,   dS = P ⊙ (dP - Δ),   dq = scale·dS·k,   dk = scale·dSᵀ·q
FusedAttentionGradients fused_attention_backward(Value q, Value k, Value v, Value mask, Value o, Value lse, Value d_o,
                                                 double scale, bool causal, Loc where = Loc::current());

// The op definitions. Attributes: scale (double), causal (bool). The mask, when present, is
// the last input of fused_attention (q, k, v, mask) and the fourth of fused_attention_backward
// (q, k, v, mask, o, lse, d_o); kernels tell by the number of inputs.
namespace ops {
extern const OpDef fused_attention;
extern const OpDef fused_attention_backward;
}  // namespace ops

}  // namespace fovea
