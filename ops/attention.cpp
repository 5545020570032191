#include "fovea/ops/attention.h"

#include <fmt/format.h>

#include "fovea/autograd/vjp.h"

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

// q [..., Tq, D], k [..., Tk, D], v [..., Tk, Dv] with equal leading dims and one float dtype.
AttentionDims check_qkv(const InferContext& ctx) {
  const TensorType &q = ctx.input(0), &k = ctx.input(1), &v = ctx.input(2);
  const char* names[] = {"q", "k", "v"};
  for (std::size_t i = 0; i < 3; ++i)
    if (ctx.input(i).shape.rank() < 2)
      ctx.fail(fmt::format("{} must have rank >= 2 ([..., T, D]), got {}", names[i], ctx.input(i).to_string()));
  ctx.require_same_dtype();
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

// The attributes every node of the family carries.
void check_attributes(const InferContext& ctx) {
  ctx.attrs().get_float("scale");
  ctx.attrs().get_bool("causal");
}

// (q, k, v, [mask]) -> (o [..., Tq, Dv], lse [..., Tq])
std::vector<TensorType> infer_fused_attention(const InferContext& ctx) {
  check_attributes(ctx);
  const AttentionDims dims = check_qkv(ctx);
  if (ctx.inputs().size() == 4) check_mask(ctx, 3, dims);
  const DType dtype = ctx.input(0).dtype;
  return {TensorType{dtype, dims.with({dims.tq, dims.dv})}, TensorType{dtype, dims.with({dims.tq})}};
}

// (q, k, v, [mask], o, lse, d_o) -> (dq, dk, dv)
std::vector<TensorType> infer_fused_attention_backward(const InferContext& ctx) {
  check_attributes(ctx);
  const AttentionDims dims = check_qkv(ctx);
  const bool has_mask = ctx.inputs().size() == 7;
  if (has_mask) check_mask(ctx, 3, dims);
  const std::size_t first = has_mask ? 4 : 3;
  const TensorType want_o{ctx.input(0).dtype, dims.with({dims.tq, dims.dv})};
  const TensorType want_lse{ctx.input(0).dtype, dims.with({dims.tq})};
  const char* names[] = {"o", "lse", "d_o"};
  const TensorType* wants[] = {&want_o, &want_lse, &want_o};
  for (std::size_t i = 0; i < 3; ++i)
    if (ctx.input(first + i) != *wants[i])
      ctx.fail(fmt::format("{} must be {} for q {}, k {}, v {}, got {}", names[i], wants[i]->to_string(),
                           ctx.input(0).to_string(), ctx.input(1).to_string(), ctx.input(2).to_string(),
                           ctx.input(first + i).to_string()));
  return {ctx.input(0), ctx.input(1), ctx.input(2)};
}

// The forward's gradient rule: ḡ_o flows into one fused_attention_backward node, which
// recomputes the probabilities from the saved lse. lse itself is not differentiable here,
// and the mask gets no gradient.
std::vector<Value> vjp_fused_attention(const VjpContext& c) {
  if (c.g(1).defined())
    c.node.fail(
        "a gradient flows into its lse output (output 1), but only o (output 0) is differentiable: lse is saved "
        "for the backward pass; compute a log-sum-exp you want to differentiate with ordinary ops");
  const bool has_mask = c.inputs.size() == 4;
  const FusedAttentionGradients g =
      fused_attention_backward(c.x(0), c.x(1), c.x(2), has_mask ? c.x(3) : Value{}, c.y(0), c.y(1), c.g(0),
                               c.attrs().get_float("scale"), c.attrs().get_bool("causal"));
  std::vector<Value> grads{g.dq, g.dk, g.dv};
  if (has_mask) grads.emplace_back();  // no gradient for the mask
  return grads;
}

Graph& graph_of(const Value& q, std::string_view op, SourceLoc where) {
  if (!q.defined()) throw Error("q is an undefined Value", std::string(op), "", where);
  return q.graph();
}

}  // namespace

namespace ops {
const OpDef fused_attention{.name = "fused_attention",
                            .min_inputs = 3,
                            .max_inputs = 4,
                            .infer = infer_fused_attention,
                            .vjp = vjp_fused_attention};
// No gradient rule: a second derivative through fused attention raises fovea::Error.
const OpDef fused_attention_backward{
    .name = "fused_attention_backward", .min_inputs = 6, .max_inputs = 7, .infer = infer_fused_attention_backward};
}  // namespace ops

FusedAttentionOutputs fused_attention(Value q, Value k, Value v, Value mask, double scale, bool causal, Loc where) {
  Graph& g = graph_of(q, ops::fused_attention.name, where);
  std::vector<Value> inputs{q, k, v};
  if (mask.defined()) inputs.push_back(mask);
  const std::vector<Value> out = g.apply(ops::fused_attention, inputs, {{"scale", scale}, {"causal", causal}}, where);
  return {out[0], out[1]};
}

FusedAttentionGradients fused_attention_backward(Value q, Value k, Value v, Value mask, Value o, Value lse, Value d_o,
                                                 double scale, bool causal, Loc where) {
  Graph& g = graph_of(q, ops::fused_attention_backward.name, where);
  std::vector<Value> inputs{q, k, v};
  if (mask.defined()) inputs.push_back(mask);
  inputs.insert(inputs.end(), {o, lse, d_o});
  const std::vector<Value> out =
      g.apply(ops::fused_attention_backward, inputs, {{"scale", scale}, {"causal", causal}}, where);
  return {out[0], out[1], out[2]};
}

}  // namespace fovea
