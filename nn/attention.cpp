#include "fovea/nn/attention.h"

#include <cmath>

#include <fmt/format.h>

#include "fovea/nn/losses.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/indexing.h"
#include "fovea/ops/matmul.h"
#include "fovea/ops/shape_ops.h"

namespace fovea::nn {

namespace {

std::string scoped(const Graph& g, const std::string& name) {
  return g.current_scope().empty() ? name : g.current_scope() + "/" + name;
}

// An additive mask from "may not attend" flags: masked_score where set, 0 elsewhere.
Value additive_from_flags(Value blocked, DType dtype) {
  Graph& g = blocked.graph();
  return fovea::where(blocked, g.scalar(masked_score, dtype), g.scalar(0.0, dtype));
}

// The mask must broadcast to the scores' shape without enlarging it.
void check_mask(const AttentionMask& mask, Value scores, SourceLoc where) {
  Graph& g = scores.graph();
  const Shape& s = scores.shape();
  const Value m = mask.additive;
  Shape out;
  if (&m.graph() == &g && m.dtype() == scores.dtype() && broadcast_shapes(m.shape(), s, out) && out == s) return;
  const std::int64_t tq = s[s.rank() - 2], tk = s[s.rank() - 1];
  std::string padding_example;
  if (s.rank() == 4) padding_example = fmt::format(" or [B,1,1,Tk] = [{},1,1,{}]", s[0], tk);
  throw Error(fmt::format("the mask {} does not fit the attention scores {}: expected an additive mask of the "
                          "scores' dtype that broadcasts to [B,H,Tq,Tk] = {}, such as [Tq,Tk] = [{},{}]{}",
                          m.type().to_string(), scores.type().to_string(), s.to_string(), tq, tk, padding_example),
              "scaled_dot_product_attention", g.current_scope(), where);
}

}  // namespace

// --- Masks ----------------------------------------------------------------------------------

AttentionMask causal_mask(Graph& g, std::int64_t query_length, std::int64_t key_length, DType dtype,
                          std::source_location where) {
  auto at = g.at(where);
  if (query_length < 0 || key_length < 0 || !is_floating(dtype))
    throw Error(fmt::format("needs lengths >= 0 and a floating dtype, got [{},{}] {}", query_length, key_length,
                            dtype_name(dtype)),
                "causal_mask", scoped(g, "causal_mask"), at.where());
  auto scope = g.scope("causal_mask");
  // Key j lies in query i's future when j - i > Tk - Tq.
  const Value row = iota(g, {query_length, key_length}, 0, DType::i64);
  const Value column = iota(g, {query_length, key_length}, 1, DType::i64);
  const Value ahead = column - row;
  const Value future = greater(ahead, g.scalar(double(key_length - query_length), DType::i64));
  return {additive_from_flags(future, dtype)};
}

AttentionMask padding_mask(Value is_padding, DType dtype, std::source_location where) {
  if (!is_padding.defined()) throw Error("the padding flags are an undefined Value", "padding_mask", "", where);
  Graph& g = is_padding.graph();
  auto at = g.at(where);
  if (is_padding.rank() != 2 || !is_floating(dtype))
    throw Error(fmt::format("expects padding flags [B,Tk] and a floating mask dtype, got {} and {}",
                            is_padding.type().to_string(), dtype_name(dtype)),
                "padding_mask", is_padding.name(), at.where());
  auto scope = g.scope("padding_mask");
  Value blocked = is_padding;
  if (is_padding.dtype() != DType::boolean) blocked = not_equal(is_padding, scalar_like(is_padding, 0.0));
  const Shape& s = is_padding.shape();
  return {reshape(additive_from_flags(blocked, dtype), {s[0], 1, 1, s[1]})};
}

AttentionMask padding_mask_from_lengths(Value lengths, std::int64_t key_length, DType dtype,
                                        std::source_location where) {
  if (!lengths.defined()) throw Error("the lengths are an undefined Value", "padding_mask", "", where);
  Graph& g = lengths.graph();
  auto at = g.at(where);
  if (lengths.rank() != 1 || !is_integer(lengths.dtype()) || key_length < 0)
    throw Error(fmt::format("expects integer lengths [B] and key_length >= 0, got {} and {}",
                            lengths.type().to_string(), key_length),
                "padding_mask", lengths.name(), at.where());
  const Value position = iota(g, {lengths.shape()[0], key_length}, 1, lengths.dtype());
  return padding_mask(greater_equal(position, unsqueeze(lengths, -1)), dtype);
}

AttentionMask combine(const AttentionMask& a, const AttentionMask& b, std::source_location where) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  auto at = a.additive.graph().at(where);
  return {a.additive + b.additive};
}

// --- Scaled dot-product attention ------------------------------------------------------------

Value scaled_dot_product_attention(Value q, Value k, Value v, const AttentionMask& mask, double dropout,
                                   const Mode& mode, Value* probabilities, std::source_location where) {
  if (!q.defined() || !k.defined() || !v.defined())
    throw Error("q, k and v must all be defined Values", "scaled_dot_product_attention", "", where);
  Graph& g = q.graph();
  auto at = g.at(where);
  auto scope = g.scope("attention");
  const auto fail = [&](const std::string& message) {
    throw Error(
        fmt::format("{} (q {}, k {}, v {})", message, q.type().to_string(), k.type().to_string(), v.type().to_string()),
        "scaled_dot_product_attention", g.current_scope(), at.where());
  };
  if (q.rank() < 2 || k.rank() < 2 || v.rank() < 2) fail("q, k and v need rank >= 2: [..., T, Dh]");
  if (q.dtype() != k.dtype() || q.dtype() != v.dtype() || !is_floating(q.dtype()))
    fail("q, k and v need one floating dtype");
  const std::int64_t head_dim = q.shape()[q.rank() - 1];
  if (k.shape()[k.rank() - 1] != head_dim)
    fail(fmt::format("q and k must have the same head dim (last axis): {} vs {}", head_dim, k.shape()[k.rank() - 1]));
  if (k.shape()[k.rank() - 2] != v.shape()[v.rank() - 2])
    fail(fmt::format("k and v must have the same length Tk (axis -2): {} vs {}", k.shape()[k.rank() - 2],
                     v.shape()[v.rank() - 2]));

  Value scores = matmul(q, k, false, /*transpose_b=*/true) * (1.0 / std::sqrt(static_cast<double>(head_dim)));
  if (mask.defined()) {
    check_mask(mask, scores, at.where());
    scores = scores + mask.additive;
  }
  const Value probs = softmax(scores, -1);
  if (probabilities) *probabilities = probs;
  return matmul(nn::dropout(probs, dropout, mode), v);
}

// --- Multi-head attention --------------------------------------------------------------------

Value split_heads(Value x, std::int64_t heads, std::source_location where) {
  if (!x.defined()) throw Error("the input is an undefined Value", "split_heads", "", where);
  auto at = x.graph().at(where);
  const Shape& s = x.shape();
  if (x.rank() != 3 || heads < 1 || s[2] % heads != 0)
    throw Error(
        fmt::format("expects [B,T,H·Dh] with a last dim divisible by {} heads, got {}", heads, x.type().to_string()),
        "split_heads", x.name(), at.where());
  return permute(reshape(x, {s[0], s[1], heads, s[2] / heads}), {0, 2, 1, 3});
}

Value merge_heads(Value x, std::source_location where) {
  if (!x.defined()) throw Error("the input is an undefined Value", "merge_heads", "", where);
  auto at = x.graph().at(where);
  const Shape& s = x.shape();
  if (x.rank() != 4)
    throw Error(fmt::format("expects [B,H,T,Dh], got {}", x.type().to_string()), "merge_heads", x.name(), at.where());
  return reshape(permute(x, {0, 2, 1, 3}), {s[0], s[2], s[1] * s[3]});
}

static void check_heads(std::int64_t d_model, std::int64_t heads, double dropout, const std::string& name,
                        SourceLoc where) {
  if (heads < 1 || d_model < 1 || d_model % heads != 0)
    throw Error(fmt::format("d_model ({}) must be a positive multiple of heads ({})", d_model, heads),
                "multi_head_attention", name, where);
  if (!(dropout >= 0.0 && dropout < 1.0))
    throw Error(fmt::format("the drop probability must lie in [0, 1), got {}", dropout), "multi_head_attention", name,
                where);
}

MultiHeadAttention::MultiHeadAttention(Graph& g, const std::string& layer_name, std::int64_t model_dim,
                                       std::int64_t head_count, double dropout_p, DType dtype,
                                       std::source_location where)
    : q_proj(in_scope(g, layer_name, where, [&] { return Linear(g, "q_proj", model_dim, model_dim, true, dtype); })),
      k_proj(in_scope(g, layer_name, where, [&] { return Linear(g, "k_proj", model_dim, model_dim, true, dtype); })),
      v_proj(in_scope(g, layer_name, where, [&] { return Linear(g, "v_proj", model_dim, model_dim, true, dtype); })),
      out_proj(
          in_scope(g, layer_name, where, [&] { return Linear(g, "out_proj", model_dim, model_dim, true, dtype); })),
      d_model(model_dim),
      heads(head_count),
      dropout(dropout_p),
      name(layer_name) {
  auto at = g.at(where);
  check_heads(model_dim, head_count, dropout_p, scoped(g, layer_name), at.where());
}

Value MultiHeadAttention::operator()(Value query, Value key_value, const AttentionMask& mask, const Mode& mode,
                                     Value* probabilities, std::source_location where) const {
  if (!query.defined() || !key_value.defined())
    throw Error("query and key_value must be defined Values", "multi_head_attention", name, where);
  Graph& g = query.graph();
  auto at = g.at(where);
  auto scope = g.scope(name);
  const auto fits = [&](Value x) { return x.rank() == 3 && x.shape()[2] == d_model; };
  if (!fits(query) || !fits(key_value) || query.shape()[0] != key_value.shape()[0])
    throw Error(fmt::format("expects query [B,Tq,{0}] and key_value [B,Tk,{0}] with one batch size B, got {1} and {2}",
                            d_model, query.type().to_string(), key_value.type().to_string()),
                "multi_head_attention", g.current_scope(), at.where());
  const Value q = split_heads(q_proj(query), heads);
  const Value k = split_heads(k_proj(key_value), heads);
  const Value v = split_heads(v_proj(key_value), heads);
  const Value o = scaled_dot_product_attention(q, k, v, mask, dropout, mode, probabilities);
  return out_proj(merge_heads(o));
}

}  // namespace fovea::nn
