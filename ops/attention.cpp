#include "fovea/ops/attention.h"

#include <cmath>
#include <limits>
#include <variant>

#include <fmt/format.h>

#include "fovea/ops/creation.h"
#include "fovea/ops/indexing.h"
#include "fovea/ops/matmul.h"
#include "fovea/ops/reduce.h"
#include "fovea/ops/shape_ops.h"
#include "fovea/ops/vjp.h"

namespace fovea {

namespace {

// The dims every attention input is checked against.
struct AttentionDims {
  Shape batch;  // the leading dims shared by q, k and v
  std::int64_t tq = 0, tk = 0, d = 0, dv = 0;

  Shape with(std::initializer_list<std::int64_t> tail) const {
    std::vector<std::int64_t> dims = batch.dims();
    dims.insert(dims.end(), tail);
    return Shape(std::move(dims));
  }
};

Shape leading(const Shape& s, int keep_last) {
  return Shape(std::span(s.dims()).first(static_cast<std::size_t>(s.rank() - keep_last)));
}

// The dtype the scores are computed in: q's, or f32 for half inputs (mixed precision). The
// mask and lse have it.
DType compute_dtype(DType q) { return is_half(q) ? DType::f32 : q; }

// q [..., Tq, D], k [..., Tk, D], v [..., Tk, Dv] with equal leading dims and one float dtype;
// the mask (when there is one) has the compute dtype.
AttentionDims check_qkv(const InferContext& ctx, const FusedAttentionInputs& in) {
  const TensorType &q = ctx.input(0), &k = ctx.input(1), &v = ctx.input(2);
  const char* names[] = {"q", "k", "v"};
  for (std::size_t i = 0; i < 3; ++i)
    if (ctx.input(i).shape.rank() < 2)
      ctx.fail(fmt::format("{} must have rank >= 2 ([..., T, D]), got {}", names[i], ctx.input(i).to_string()));
  // k and v have q's dtype; the mask the compute dtype (q's but for half q). The backward's
  // o, lse and d_o are checked by its shape rule.
  for (std::size_t i = 1; i < 3; ++i)
    if (ctx.input(i).dtype != q.dtype)
      ctx.fail(fmt::format("inputs must have the same dtype, got {} (input 0) and {} (input {}); use cast() to convert",
                           q.to_string(), ctx.input(i).to_string(), i));
  if (in.has_mask && ctx.input(in.mask).dtype != compute_dtype(q.dtype))
    ctx.fail(fmt::format("the mask must be {} for q {}{}, got {}", dtype_name(compute_dtype(q.dtype)), q.to_string(),
                         is_half(q.dtype) ? " (half inputs are multiplied in f32, and the mask is added there)" : "",
                         ctx.input(in.mask).to_string()));
  ctx.require_floating(0);
  const std::string all = fmt::format("q {}, k {}, v {}", q.to_string(), k.to_string(), v.to_string());
  AttentionDims dims{leading(q.shape, 2), q.shape[q.shape.rank() - 2], k.shape[k.shape.rank() - 2],
                     q.shape[q.shape.rank() - 1], v.shape[v.shape.rank() - 1]};
  if (leading(k.shape, 2) != dims.batch || leading(v.shape, 2) != dims.batch)
    ctx.fail(
        fmt::format("q, k and v must have equal leading (batch, head) dims, got {}; fused attention does not "
                    "broadcast them (use broadcast_to first)",
                    all));
  if (k.shape[k.shape.rank() - 1] != dims.d)
    ctx.fail(fmt::format("q and k must have the same last dim (the head dim D), got {}", all));
  if (v.shape[v.shape.rank() - 2] != dims.tk)
    ctx.fail(fmt::format("k and v must have the same length (dim -2, the number of keys), got {}", all));
  return dims;
}

// An additive mask must broadcast to the scores [..., Tq, Tk] without growing them.
void check_mask(const InferContext& ctx, std::size_t index, const AttentionDims& dims) {
  const TensorType& mask = ctx.input(index);
  const Shape scores = dims.with({dims.tq, dims.tk});
  bool fits = mask.shape.rank() <= scores.rank();
  for (int i = 1; fits && i <= mask.shape.rank(); ++i) {
    const std::int64_t m = mask.shape[mask.shape.rank() - i], s = scores[scores.rank() - i];
    fits = m == s || m == 1;
  }
  if (!fits)
    ctx.fail(fmt::format("the mask {} does not broadcast to the scores {}{} (it may be [Tq,Tk], [B,1,1,Tk], ...)",
                         mask.to_string(), dtype_name(mask.dtype), scores.to_string()));
}

// The attributes every node of the family carries, the dropout ones when there is dropout,
// and where the optional inputs sit.
FusedAttentionInputs check_attributes(const InferContext& ctx, bool backward) {
  const Attributes& attrs = ctx.attrs();
  attrs.get_float("scale");
  attrs.get_bool("causal");
  const AttentionDropout dropout = attention_dropout(attrs);
  if (attrs.has("dropout") && !(dropout.p >= 0.0 && dropout.p < 1.0))
    ctx.fail(fmt::format("the dropout probability must lie in [0, 1), got {}", dropout.p));
  if (attrs.has("dropout") && !std::isfinite(dropout.scale))
    ctx.fail(fmt::format("the dropout scale must be finite, got {}", dropout.scale));
  const FusedAttentionInputs in = fused_attention_inputs(attrs, ctx.inputs().size(), backward);
  const std::size_t base = backward ? 6 : 3;
  if (ctx.inputs().size() < base + (in.has_step ? 1 : 0) || ctx.inputs().size() > base + 1 + (in.has_step ? 1 : 0))
    ctx.fail(fmt::format("takes the inputs (q, k, v, [mask]{}{}), got {}", backward ? ", o, lse, d_o" : "",
                         in.has_step ? ", step: dropout_step is set" : "", ctx.inputs().size()));
  if (in.has_step) {
    const TensorType& step = ctx.input(in.step);
    if (step.dtype != DType::i64 || step.shape.rank() != 0)
      ctx.fail(
          fmt::format("the dropout step (the last input) must be an i64 scalar (i64[]), got {}", step.to_string()));
  }
  return in;
}

// (q, k, v, [mask], [step]) -> (o [..., Tq, Dv], lse [..., Tq])
std::vector<TensorType> infer_fused_attention(const InferContext& ctx) {
  const FusedAttentionInputs in = check_attributes(ctx, false);
  const AttentionDims dims = check_qkv(ctx, in);
  if (in.has_mask) check_mask(ctx, in.mask, dims);
  const DType dtype = ctx.input(0).dtype;
  return {TensorType{dtype, dims.with({dims.tq, dims.dv})}, TensorType{compute_dtype(dtype), dims.with({dims.tq})}};
}

// (q, k, v, [mask], o, lse, d_o, [step]) -> (dq, dk, dv)
std::vector<TensorType> infer_fused_attention_backward(const InferContext& ctx) {
  const FusedAttentionInputs in = check_attributes(ctx, true);
  const AttentionDims dims = check_qkv(ctx, in);
  if (in.has_mask) check_mask(ctx, in.mask, dims);
  const std::size_t first = in.saved;
  const TensorType want_o{ctx.input(0).dtype, dims.with({dims.tq, dims.dv})};
  const TensorType want_lse{compute_dtype(ctx.input(0).dtype), dims.with({dims.tq})};
  const char* names[] = {"o", "lse", "d_o"};
  const TensorType* wants[] = {&want_o, &want_lse, &want_o};
  for (std::size_t i = 0; i < 3; ++i)
    if (ctx.input(first + i) != *wants[i])
      ctx.fail(fmt::format("{} must be {} for q {}, k {}, v {}, got {}", names[i], wants[i]->to_string(),
                           ctx.input(0).to_string(), ctx.input(1).to_string(), ctx.input(2).to_string(),
                           ctx.input(first + i).to_string()));
  return {ctx.input(0), ctx.input(1), ctx.input(2)};
}

// ∂L/∂mask, when something wants it (a learned attention bias passed as the mask). The mask
// enters the scores additively, so its gradient is the scores' gradient dS, summed over the
// dims the mask was broadcast along:
//
//   s  = scale·q·kᵀ + mask  (-∞ where causal forbids)   P = exp(s - lse)  (0 on a fully masked row)
//   dP = d_o·vᵀ,   D = Σ_d d_o ⊙ o  (per query),   dS = P ⊙ (dP - D)
//
// Built from ordinary ops, so it holds the [..., Tq, Tk] scores the fused kernel avoids: the mask
// broadcasts to that size anyway. Dropout would need its random mask again, and half inputs
// have no matmul: both are refused here, and the attention fusion pass never fuses a mask that
// depends on a parameter (passes/attention_fusion.h), so only a hand-built fused_attention meets
// this error.
Value mask_gradient(const VjpContext& c, const FusedAttentionInputs& in, const AttentionDropout& dropout) {
  if (dropout.p > 0.0 || is_half(c.x(0).dtype()))
    c.node.fail(fmt::format(
        "the mask {} needs a gradient, which fused attention gives only without dropout and for f32/f64 "
        "inputs (this one has {} inputs and dropout {}); build the attention from ordinary ops "
        "(nn::scaled_dot_product_attention, which the optimizer leaves unfused when its mask needs a gradient)",
        c.x(in.mask).type().to_string(), dtype_name(c.x(0).dtype()), dropout.p));
  const Value q = c.x(0), k = c.x(1), v = c.x(2), mask = c.x(in.mask), o = c.y(0), lse = c.y(1), d_o = c.g(0);
  Graph& g = q.graph();
  Value s = add(mul(matmul(q, k, false, true), scalar_like(mask, c.attrs().get_float("scale"))), mask);
  // lse = -∞ marks a fully masked row: subtracting +∞ instead makes every P there 0.
  const Value infinity = scalar_like(lse, std::numeric_limits<double>::infinity());
  const Value row_lse = unsqueeze(where(equal(lse, neg(infinity)), infinity, lse), -1);
  Value p = exp(sub(s, row_lse));
  if (c.attrs().get_bool("causal")) {
    const Shape& scores = s.shape();
    const std::int64_t tq = scores[scores.rank() - 2], tk = scores[scores.rank() - 1];
    const Value ahead = sub(iota(g, {tq, tk}, 1), iota(g, {tq, tk}, 0));
    p = where(greater(ahead, g.scalar(double(tk - tq), DType::i64)), scalar_like(p, 0.0), p);
  }
  const Value dp = matmul(d_o, v, false, true);
  const Value row_dot = reduce_sum(mul(d_o, o), {-1}, true);
  return unbroadcast(mul(p, sub(dp, row_dot)), mask.shape());
}

// The forward's gradient rule: ḡ_o flows into one fused_attention_backward node, which
// recomputes the probabilities from the saved lse. lse itself is not differentiable here,
// and the mask gets no gradient.
std::vector<Value> vjp_fused_attention(const VjpContext& c) {
  if (c.g(1).defined())
    c.node.fail(
        "a gradient flows into its lse output (output 1), but only o (output 0) is differentiable: lse is saved "
        "for the backward pass; compute a log-sum-exp you want to differentiate with ordinary ops");
  const FusedAttentionInputs in = fused_attention_inputs(c.attrs(), c.inputs.size(), false);
  AttentionDropout dropout = attention_dropout(c.attrs());
  if (in.has_step) dropout.step = c.x(in.step);
  const FusedAttentionGradients g =
      fused_attention_backward(c.x(0), c.x(1), c.x(2), in.has_mask ? c.x(in.mask) : Value{}, c.y(0), c.y(1), c.g(0),
                               c.attrs().get_float("scale"), c.attrs().get_bool("causal"), dropout);
  std::vector<Value> grads{g.dq, g.dk, g.dv};
  if (in.has_mask) grads.push_back(c.wants(in.mask) ? mask_gradient(c, in, dropout) : Value{});
  if (in.has_step) grads.emplace_back();  // the step is a counter
  return grads;
}

Graph& graph_of(const Value& q, std::string_view op, SourceLoc where) {
  if (!q.defined()) throw Error("q is an undefined Value", std::string(op), "", where);
  return q.graph();
}

// scale and causal, and the dropout's attributes when there is dropout.
Attributes attributes_of(double scale, bool causal, const AttentionDropout& dropout) {
  Attributes attrs{{"scale", scale}, {"causal", causal}};
  if (dropout.p == 0.0) return attrs;  // anything else is checked by the op's shape rule
  attrs.set("dropout", dropout.p);
  attrs.set("dropout_scale", dropout.scale);
  attrs.set("dropout_seed", dropout.seed);
  attrs.set("dropout_stream", dropout.stream);
  attrs.set("dropout_step", dropout.step.defined());
  return attrs;
}

}  // namespace

namespace ops {
const OpDef fused_attention{.name = "fused_attention",
                            .min_inputs = 3,
                            .max_inputs = 5,
                            .infer = infer_fused_attention,
                            .half_types = true,
                            .vjp = vjp_fused_attention,
                            .decode = decode_as<AttentionParams>};
// No gradient rule: a second derivative through fused attention raises fovea::Error.
const OpDef fused_attention_backward{.name = "fused_attention_backward",
                                     .min_inputs = 6,
                                     .max_inputs = 8,
                                     .infer = infer_fused_attention_backward,
                                     .half_types = true,
                                     .decode = decode_as<AttentionParams>};
}  // namespace ops

FusedAttentionInputs fused_attention_inputs(const Attributes& attrs, std::size_t input_count, bool backward) {
  FusedAttentionInputs in;
  const Attribute* step = attrs.find("dropout_step");
  in.has_step = attrs.has("dropout") && step && std::holds_alternative<bool>(*step) && std::get<bool>(*step);
  const std::size_t rest = input_count - (in.has_step ? 1 : 0);  // q, k, v, [mask], and o, lse, d_o
  in.has_mask = rest == (backward ? 7u : 4u);
  in.saved = in.has_mask ? 4 : 3;
  in.step = input_count - 1;
  return in;
}

AttentionDropout attention_dropout(const Attributes& attrs) {
  AttentionDropout dropout;
  if (!attrs.has("dropout")) return dropout;
  dropout.p = attrs.get_float("dropout");
  dropout.scale = attrs.get_float("dropout_scale");
  dropout.seed = attrs.get_int("dropout_seed");
  dropout.stream = attrs.get_int("dropout_stream");
  return dropout;
}

AttentionParams AttentionParams::decode(const DecodeContext& context) {
  const Attributes& a = context.attrs;
  const bool backward = context.inputs.size() >= 6;
  return {a.get_float("scale"), a.get_bool("causal"), attention_dropout(a),
          fused_attention_inputs(a, context.inputs.size(), backward)};
}

FusedAttentionOutputs fused_attention(Value q, Value k, Value v, Value mask, double scale, bool causal,
                                      const AttentionDropout& dropout, Loc where) {
  Graph& g = graph_of(q, ops::fused_attention.name, where);
  std::vector<Value> inputs{q, k, v};
  if (mask.defined()) inputs.push_back(mask);
  if (dropout.p != 0.0 && dropout.step.defined()) inputs.push_back(dropout.step);
  const std::vector<Value> out = g.apply(ops::fused_attention, inputs, attributes_of(scale, causal, dropout), where);
  return {out[0], out[1]};
}

FusedAttentionGradients fused_attention_backward(Value q, Value k, Value v, Value mask, Value o, Value lse, Value d_o,
                                                 double scale, bool causal, const AttentionDropout& dropout,
                                                 Loc where) {
  Graph& g = graph_of(q, ops::fused_attention_backward.name, where);
  std::vector<Value> inputs{q, k, v};
  if (mask.defined()) inputs.push_back(mask);
  inputs.insert(inputs.end(), {o, lse, d_o});
  if (dropout.p != 0.0 && dropout.step.defined()) inputs.push_back(dropout.step);
  const std::vector<Value> out =
      g.apply(ops::fused_attention_backward, inputs, attributes_of(scale, causal, dropout), where);
  return {out[0], out[1], out[2]};
}

}  // namespace fovea
