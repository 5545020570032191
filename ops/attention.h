// Fused attention: softmax(scale·q·kᵀ + mask)·v as one node, and its backward as another,
// optionally with dropout on the probabilities.
//
// These ops are the graph optimizer's output, not a user's building blocks (docs/architecture.md,
// decisions 1 and 4): a user writes attention as the plain chain of nn/attention.h, and the
// attention fusion pass replaces matmul → scale → (+ mask) → softmax → (dropout) → matmul by
// one fused_attention node. The builder functions below exist for that pass and for the tests.
//
// fused_attention(q, k, v, [mask], [step]) {scale, causal, [dropout...]} -> (o, lse), with
//
//   q [..., Tq, D],  k [..., Tk, D],  v [..., Tk, Dv]     leading dims (batch, heads) equal
//   s[i, j] = scale·Σ_d q[i, d]·k[j, d] + mask[i, j]  (+ -∞ where causal forbids j)
//   lse[i]  = log Σ_j exp(s[i, j])                                           [..., Tq]
//   P[i, j] = exp(s[i, j] - lse[i])
//   o[i, :] = Σ_j Z[i, j]·P[i, j]·v[j, :]                                     [..., Tq, Dv]
//
// where Z = 1 without dropout, and with dropout (p, c) Z[i, j] = keep[i, j]·c: the very mask
// nn::dropout draws for the probabilities [..., Tq, Tk], so the fused node reproduces the
// unfused graph's numbers. For batch item b (flat over the leading dims),
//
//   e = (b·Tq + i)·Tk + j,   u = T(philox::uniform(seed, stream + step, e)),   keep = u >= T(p)
//
// (core/philox.h: lane e % 4 of block e / 4), and c is normally 1/(1-p). lse stays the
// log-sum-exp of the un-dropped scores. The mask bits are never stored: the backward draws
// them again from (seed, stream + step).
//
// - The leading dims of q, k and v must be equal (no broadcasting between them). Only the
//   additive mask broadcasts, NumPy-style, to the scores [..., Tq, Tk]: [Tq,Tk] for every
//   sequence, [B,1,1,Tk] for padding, [B,H,Tq,Tk] for everything. Its entries are 0 where
//   attending is allowed and a large negative number (-1e9) or -∞ where it is not. The mask
//   has q's dtype.
// - Mixed precision: q, k and v may be bf16 or f16 (core/half.h; the mixed-precision pass of
//   passes/mixed_precision.h puts them there). The products are then summed, and the softmax
//   computed, in f32: the mask and lse are f32, o has q's half type. The backward takes o and
//   d_o in the half type, lse in f32, and returns dq, dk, dv in the half type.
// - causal: query i attends to key j only when j <= i + (Tk - Tq). The diagonal is aligned to
//   the bottom-right corner, as in FlashAttention-2: with Tq = Tk it is the usual "no peeking
//   ahead"; with Tq < Tk (decoding with a key cache) the last query sees every key; with
//   Tq > Tk the first Tq - Tk queries see no key at all.
// - A fully masked row, one whose every score is -∞ (by the mask, by causality, or Tk = 0),
//   has no softmax. It is defined as o = 0 and lse = -∞, never NaN, with zero gradients; the
//   unfused chain agrees, because nn::softmax defines such a row's softmax as 0. (A row masked
//   with a finite -1e9 is not fully masked: its scores are all equal, so its weights are
//   uniform. In f32 such a row's scores keep no digits below 64, and lse cannot tell them apart
//   either, so its backward is inexact: mask with -∞, as nn::masked_score does.)
//
// The kernels never hold the [Tq, Tk] score matrix: they stream k and v in blocks with an
// online softmax (FlashAttention), so memory is O(Tq·D + Tk·D). lse is what the backward
// needs to recompute the probabilities block by block.
//
// Gradients: fused_attention's rule builds one fused_attention_backward node. Only o is
// differentiable: lse is an auxiliary output for the backward, and asking for a gradient
// that flows through it is an error. The mask and the step get no gradient (a constant
// pattern and a counter). fused_attention_backward has no gradient rule, so second
// derivatives through fused attention are not supported: asking for one raises fovea::Error.
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

// Dropout on the probabilities, drawn as nn::dropout draws it (see the top of the file):
// probabilities whose uniform u satisfies u >= p are kept and multiplied by `scale`, the
// others become 0. `seed` and `stream` are the random_uniform node's, `step` its optional
// i64 scalar input (Mode::step), which shifts the stream.
struct AttentionDropout {
  double p = 0;      // the drop probability, in [0, 1); 0: no dropout
  double scale = 1;  // the factor kept probabilities are multiplied by, normally 1/(1-p)
  std::int64_t seed = 0, stream = 0;
  Value step = {};  // undefined: the stream is used as it is

  bool enabled() const { return p > 0; }
};

// The fused forward. `mask` may be an undefined Value (no mask).
FusedAttentionOutputs fused_attention(Value q, Value k, Value v, Value mask, double scale, bool causal,
                                      const AttentionDropout& dropout = {}, Loc where = Loc::current());

// The fused backward, FlashAttention-2 style: from the forward's inputs, its outputs o and lse,
// and d_o = ∂L/∂o, the gradients ∂L/∂q, ∂L/∂k, ∂L/∂v. `scale` and `causal` must be the
// forward's, and so must `dropout` (the mask bits are drawn again, not stored). With
// P = softmax(s) row by row, Z the dropout factors (1 without dropout) and
// Δ[i] = Σ_d d_o[i, d]·o[i, d] (still Σ_j P[i, j]·dP[i, j] with dropout, since o = (Z ⊙ P)·v):
//
//   dv = (Z ⊙ P)ᵀ·d_o,   dP = Z ⊙ (d_o·vᵀ),   dS = P ⊙ (dP - Δ),   dq = scale·dS·k,   dk = scale·dSᵀ·q
FusedAttentionGradients fused_attention_backward(Value q, Value k, Value v, Value mask, Value o, Value lse, Value d_o,
                                                 double scale, bool causal, const AttentionDropout& dropout = {},
                                                 Loc where = Loc::current());

// The op definitions. Attributes: scale (double), causal (bool) and, only when there is
// dropout, dropout (double p > 0), dropout_scale (double), dropout_seed and dropout_stream
// (ints) and dropout_step (bool: the step is the node's LAST input, an i64 scalar). Inputs:
//
//   fused_attention            (q, k, v, [mask], [step])
//   fused_attention_backward   (q, k, v, [mask], o, lse, d_o, [step])
//
// The mask is there when the count of inputs says so once the step is set aside; kernels
// read the layout through fused_attention_inputs(), and the dropout through
// attention_dropout(), rather than counting for themselves.
struct FusedAttentionInputs {
  bool has_mask = false;
  std::size_t mask = 3;   // the mask's index, when has_mask
  std::size_t saved = 0;  // fused_attention_backward: the index of o (lse and d_o follow)
  bool has_step = false;
  std::size_t step = 0;  // the step's index, when has_step
};
FusedAttentionInputs fused_attention_inputs(const Attributes& attrs, std::size_t input_count, bool backward);

// The dropout a node's attributes describe, p = 0 when none; `step` is left undefined (the
// kernels read it from input fused_attention_inputs().step).
AttentionDropout attention_dropout(const Attributes& attrs);

// What the kernels of both ops read (core/op.h, decoded attributes). A node with 6 or more
// inputs is a fused_attention_backward (the forward takes 3 to 5).
struct AttentionParams {
  double scale = 1;
  bool causal = false;
  AttentionDropout dropout;  // p = 0: none
  FusedAttentionInputs inputs;
  static AttentionParams decode(const DecodeContext& context);
};

namespace ops {
extern const OpDef fused_attention;
extern const OpDef fused_attention_backward;
}  // namespace ops

}  // namespace fovea
