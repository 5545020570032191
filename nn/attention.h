// Attention as a composition of primitive ops (docs/architecture.md, decisions 1 and 4).
//
// Scaled dot-product attention (Vaswani et al., 2017) for queries q [B,H,Tq,Dh], keys
// k [B,H,Tk,Dh] and values v [B,H,Tk,Dh]:
//
//   scores = q·kᵀ / √Dh  (+ mask)          [B,H,Tq,Tk]
//   probs  = softmax over the last axis     rows sum to 1
//   out    = dropout(probs)·v               [B,H,Tq,Dh]
//
// It is built as exactly that chain, matmul → mul(scale) → (add mask) → softmax → matmul, with
// nothing in between: the optimizer's attention fusion pattern-matches this chain to replace it
// by one FusedAttention node, so keep it plain when editing.
//
// A mask is additive: 0 where a query may look at a key, -∞ (masked_score) where it may not, so
// that exp() of a masked score is exactly 0. A row whose keys are all masked attends to nothing:
// softmax defines such a row as 0 (nn::softmax), so its output is 0 and its gradients are 0,
// fused or not (ops/attention.h). -∞ rather than a large finite number such as -1e9: a row of
// scores that all sit near -1e9 keeps only 64-unit precision in f32, which the fused kernel's
// saved log-sum-exp cannot represent, so its backward would be wrong on such a row.
//
//   auto mask = nn::combine(nn::causal_mask(g, T, T, f32), nn::padding_mask(is_pad));
//   nn::MultiHeadAttention attn(g, "self_attn", 512, 8);
//   Value y = attn(x, x, mask);                    // self-attention
//   Value z = attn(x, memory, {}, {}, &probs);     // cross-attention, keeping the weights
#pragma once

#include <cstdint>
#include <limits>
#include <source_location>
#include <string>

#include "fovea/core/graph.h"
#include "fovea/nn/layers.h"
#include "fovea/nn/linear.h"

namespace fovea::nn {

// The additive score of a position nobody may attend to.
inline constexpr double masked_score = -std::numeric_limits<double>::infinity();

// An additive attention mask, broadcast against the scores [B,H,Tq,Tk]: [Tq,Tk] (the same for
// every sequence), [B,1,1,Tk] (per-sequence padding), [B,1,Tq,Tk], ... Undefined means none.
struct AttentionMask {
  Value additive;
  bool defined() const { return additive.defined(); }
};

// [Tq,Tk]: no peeking ahead. Query i may attend to key j (0) when j <= i + (Tk - Tq), and not
// otherwise (masked_score); built from iota, a comparison and a where. With Tq = Tk this is
// the usual lower triangle (PyTorch's generate_square_subsequent_mask). The diagonal is
// aligned to the bottom-right corner, as fused_attention's `causal` (ops/attention.h): with
// Tq < Tk (new queries after a cache of keys) the last query sees every key.
AttentionMask causal_mask(Graph& g, std::int64_t query_length, std::int64_t key_length, DType dtype = DType::f32,
                          std::source_location where = std::source_location::current());

// [B,1,1,Tk] from "is padding" flags [B,Tk] (bool, or integers where nonzero means padding):
// no query attends to a padded key.
AttentionMask padding_mask(Value is_padding, DType dtype = DType::f32,
                           std::source_location where = std::source_location::current());

// [B,1,1,Tk] from the true lengths [B] (i32 or i64) of sequences padded to `key_length`:
// key j of sequence b is padding when j >= lengths[b].
AttentionMask padding_mask_from_lengths(Value lengths, std::int64_t key_length, DType dtype = DType::f32,
                                        std::source_location where = std::source_location::current());

// Both masks at once (their sum, broadcast); either may be undefined.
AttentionMask combine(const AttentionMask& a, const AttentionMask& b,
                      std::source_location where = std::source_location::current());

// softmax(q·kᵀ/√Dh + mask)·v, with dropout on the probabilities when mode.training. Builds its
// nodes under the scope "attention". When `probabilities` is given, it receives the attention
// weights [B,H,Tq,Tk] (before dropout), for heatmaps. q, k and v need rank >= 2 with batch dims
// that broadcast; a mismatch of head dims, key/value lengths, dtypes, or a mask that does not
// broadcast to the scores' shape is a fovea::Error at the user's line.
Value scaled_dot_product_attention(Value q, Value k, Value v, const AttentionMask& mask = {}, double dropout = 0.0,
                                   const Mode& mode = {}, Value* probabilities = nullptr,
                                   std::source_location where = std::source_location::current());

// Multi-head attention: queries from `query` [B,Tq,d_model], keys and values from `key_value`
// [B,Tk,d_model] (the same Value for self-attention), each projected and split into `heads`
// heads of d_model/heads dims, attended to separately, merged and projected back:
//
//   Q = query·W_q, K = key_value·W_k, V = key_value·W_v         [B,T,d_model]
//   split: [B,T,d_model] → reshape [B,T,H,Dh] → permute → [B,H,T,Dh]
//   O = attention(Q, K, V, mask)                                [B,H,Tq,Dh]
//   merge: permute → [B,Tq,H,Dh] → reshape [B,Tq,d_model];  y = O·W_out
struct MultiHeadAttention {
  Linear q_proj, k_proj, v_proj, out_proj;
  std::int64_t d_model = 0;
  std::int64_t heads = 0;
  double dropout = 0.0;  // on the attention probabilities

  MultiHeadAttention(Graph& g, const std::string& name, std::int64_t d_model, std::int64_t heads, double dropout = 0.0,
                     DType dtype = DType::f32, std::source_location where = std::source_location::current());

  // → [B,Tq,d_model]; `probabilities` receives the weights [B,H,Tq,Tk] when given.
  Value operator()(Value query, Value key_value, const AttentionMask& mask = {}, const Mode& mode = {},
                   Value* probabilities = nullptr, std::source_location where = std::source_location::current()) const;

  std::string name;
};

// [B,T,H·Dh] → [B,H,T,Dh] and back: the reshape and permute that split and merge heads.
Value split_heads(Value x, std::int64_t heads, std::source_location where = std::source_location::current());
Value merge_heads(Value x, std::source_location where = std::source_location::current());

}  // namespace fovea::nn
