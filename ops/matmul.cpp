#include "fovea/ops/matmul.h"

#include <array>

#include <fmt/format.h>

#include "fovea/ops/shape_ops.h"
#include "fovea/ops/vjp.h"

namespace fovea {

namespace {

// The matrix dims of an operand after its optional transpose: {rows, cols}.
std::array<std::int64_t, 2> matrix_dims(const Shape& s, bool transpose) {
  const std::int64_t rows = s[s.rank() - 2], cols = s[s.rank() - 1];
  return transpose ? std::array{cols, rows} : std::array{rows, cols};
}

// "f32[10,784]", or "f32[784,10] (transpose_b=true)" for a transposed operand.
std::string describe_operand(const TensorType& t, bool transpose, const char* flag) {
  return transpose ? fmt::format("{} ({}=true)", t.to_string(), flag) : t.to_string();
}

std::vector<TensorType> infer_matmul(const InferContext& ctx) {
  const TensorType &a = ctx.input(0), &b = ctx.input(1);
  const bool ta = ctx.attrs().get_bool("transpose_a"), tb = ctx.attrs().get_bool("transpose_b");
  if (a.shape.rank() < 2 || b.shape.rank() < 2)
    ctx.fail(
        fmt::format("both operands must have rank >= 2 (a matrix or a batch of matrices), got {} x {}; "
                    "reshape a vector to [1,K] or [K,1]",
                    a.to_string(), b.to_string()));
  ctx.require_same_dtype();
  ctx.require_floating(0);

  const auto [m, k_a] = matrix_dims(a.shape, ta);
  const auto [k_b, n] = matrix_dims(b.shape, tb);
  if (k_a != k_b) {
    // Suggest the transposes that would make the inner dims agree.
    std::string hint;
    const auto fits = [&](bool ta2, bool tb2) { return matrix_dims(a.shape, ta2)[1] == matrix_dims(b.shape, tb2)[0]; };
    if (fits(ta, !tb))
      hint = fmt::format("; did you mean transpose_b={}?", !tb);
    else if (fits(!ta, tb))
      hint = fmt::format("; did you mean transpose_a={}?", !ta);
    else if (fits(!ta, !tb))
      hint = fmt::format("; did you mean transpose_a={} and transpose_b={}?", !ta, !tb);
    ctx.fail(fmt::format("inner dims differ: {} x {} (K {} vs {}){}", describe_operand(a, ta, "transpose_a"),
                         describe_operand(b, tb, "transpose_b"), k_a, k_b, hint));
  }

  const Shape batch_a(std::span(a.shape.dims()).first(static_cast<std::size_t>(a.shape.rank() - 2)));
  const Shape batch_b(std::span(b.shape.dims()).first(static_cast<std::size_t>(b.shape.rank() - 2)));
  Shape batch;
  if (!broadcast_shapes(batch_a, batch_b, batch))
    ctx.fail(fmt::format("batch dims {} and {} do not broadcast: {} x {}", batch_a.to_string(), batch_b.to_string(),
                         a.to_string(), b.to_string()));
  std::vector<std::int64_t> dims = batch.dims();
  dims.push_back(m);
  dims.push_back(n);
  return {TensorType{a.dtype, Shape(std::move(dims))}};
}

// y = A·B with A = op(a), B = op(b), op the optional transpose, and ḡ = ∂L/∂y:
//
//   ∂A = ḡ·Bᵀ,  ∂B = Aᵀ·ḡ,   so   ∂a = ta ? B·ḡᵀ : ḡ·Bᵀ,   ∂b = tb ? ḡᵀ·A : Aᵀ·ḡ
//
// (the gradient of a transposed operand is the transpose of its matrix's gradient), each
// summed over the batch dims its operand was broadcast along. The transposes are passed to
// matmul as flags, so no transpose is ever materialised.
std::vector<Value> vjp_matmul(const VjpContext& c) {
  const bool ta = c.attrs().get_bool("transpose_a"), tb = c.attrs().get_bool("transpose_b");
  const Value a = c.x(0), b = c.x(1), g = c.g();
  const Value ga = ta ? matmul(b, g, tb, true) : matmul(g, b, false, !tb);
  Value gb;
  if (b.rank() == 2 && a.rank() > 2 && !ta) {
    // One weight shared by a batch of untransposed a's (a layer's [B,T,K] x [K,N]): the sum
    // over the batch of Aᵀ·ḡ is one product of the flattened batch, [K, B·T]·[B·T, N],
    // instead of a [B,K,N] intermediate summed afterwards.
    const std::int64_t k = a.shape()[a.rank() - 1], n = g.shape()[g.rank() - 1];
    std::int64_t rows = 1;
    for (int i = 0; i + 1 < a.rank(); ++i) rows *= a.shape()[i];
    const Value a2 = reshape(a, {rows, k}), g2 = reshape(g, {rows, n});
    gb = tb ? matmul(g2, a2, true, false) : matmul(a2, g2, true, false);
  } else {
    gb = unbroadcast(tb ? matmul(g, a, true, ta) : matmul(a, g, !ta, false), b.shape());
  }
  return {unbroadcast(ga, a.shape()), gb};
}

}  // namespace

namespace ops {
const OpDef matmul{.name = "matmul",
                   .min_inputs = 2,
                   .max_inputs = 2,
                   .infer = infer_matmul,
                   .vjp = vjp_matmul,
                   .decode = decode_as<MatmulParams>};
}  // namespace ops

MatmulParams MatmulParams::decode(const DecodeContext& context) {
  return {context.attrs.get_bool("transpose_a"), context.attrs.get_bool("transpose_b")};
}

Value matmul(Value a, Value b, bool transpose_a, bool transpose_b, Loc where) {
  if (!a.defined() || !b.defined())
    throw Error(fmt::format("input {} is an undefined Value", a.defined() ? 1 : 0), "matmul", "", where);
  const std::array<Value, 2> in{a, b};
  return a.graph().apply1(ops::matmul, in, {{"transpose_a", transpose_a}, {"transpose_b", transpose_b}}, where);
}

}  // namespace fovea
