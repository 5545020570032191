#include "fovea/ops/shape_ops.h"

#include <array>
#include <limits>

#include <fmt/format.h>

#include "fovea/ops/creation.h"
#include "fovea/ops/indexing.h"
#include "fovea/ops/vjp.h"

namespace fovea {

namespace {

// Normalises a possibly negative axis of a rank-`rank` tensor into [0, rank); false when it
// is out of range. (64-bit throughout, so that a huge axis cannot wrap into range.)
bool normalize(std::int64_t axis, std::int64_t rank, std::int64_t& out) {
  if (axis < -rank || axis >= rank) return false;
  out = axis < 0 ? axis + rank : axis;
  return true;
}

// --- reshape ------------------------------------------------------------------------------

// Resolves `requested` (at most one -1) for an input of type `in`. Returns the reason it
// cannot, or an empty string and the resolved shape in `resolved`.
std::string resolve_reshape(const TensorType& in, const Shape& requested, Shape& resolved) {
  int inferred = -1;
  std::int64_t known = 1;
  for (int i = 0; i < requested.rank(); ++i) {
    const std::int64_t d = requested[i];
    if (d == -1) {
      if (inferred >= 0)
        return fmt::format("shape {} has more than one -1 (dims {} and {})", requested.to_string(), inferred, i);
      inferred = i;
    } else if (d < 0) {
      return fmt::format("shape {} has a negative dim {} (only -1, for 'infer this dim', is allowed)",
                         requested.to_string(), d);
    } else {
      if (d > 0 && known > std::numeric_limits<std::int64_t>::max() / d)
        return fmt::format("shape {} has too many elements", requested.to_string());
      known *= d;
    }
  }
  const std::int64_t numel = in.shape.numel();
  std::vector<std::int64_t> dims = requested.dims();
  if (inferred >= 0) {
    if (known == 0 || numel % known != 0)
      return fmt::format("cannot reshape {} ({} elements) into {}: no size of the -1 dim gives {} elements",
                         in.to_string(), numel, requested.to_string(), numel);
    dims[static_cast<std::size_t>(inferred)] = numel / known;
  } else if (known != numel) {
    return fmt::format("cannot reshape {} ({} elements) into {}{} ({} elements)", in.to_string(), numel,
                       dtype_name(in.dtype), requested.to_string(), known);
  }
  resolved = Shape(std::move(dims));
  return {};
}

std::vector<TensorType> infer_reshape(const InferContext& ctx) {
  Shape resolved;
  const std::string why = resolve_reshape(ctx.input(0), Shape(ctx.attrs().get_ints("shape")), resolved);
  if (!why.empty()) ctx.fail(why);
  return {TensorType{ctx.input(0).dtype, resolved}};
}

// --- permute ------------------------------------------------------------------------------

// Normalises `axes` in place into a permutation of 0..rank-1; returns the reason when they
// are not one.
std::string normalize_permutation(std::vector<std::int64_t>& axes, const TensorType& in) {
  const int rank = in.shape.rank();
  const std::string given = Shape(axes).to_string();
  if (static_cast<int>(axes.size()) != rank)
    return fmt::format("axes {} are not a permutation of 0..{} for input {}: they name {} axes, the input has {}",
                       given, rank - 1, in.to_string(), axes.size(), rank);
  std::vector<bool> seen(static_cast<std::size_t>(rank), false);
  for (std::int64_t& a : axes) {
    const std::int64_t original = a;
    if (!normalize(a, rank, a))
      return fmt::format("axes {} are not a permutation for input {}: axis {} is out of range for rank {}", given,
                         in.to_string(), original, rank);
    if (seen[static_cast<std::size_t>(a)])
      return fmt::format("axes {} are not a permutation for input {}: axis {} appears twice", given, in.to_string(), a);
    seen[static_cast<std::size_t>(a)] = true;
  }
  return {};
}

std::vector<TensorType> infer_permute(const InferContext& ctx) {
  std::vector<std::int64_t> axes = ctx.attrs().get_ints("axes");
  const std::string why = normalize_permutation(axes, ctx.input(0));
  if (!why.empty()) ctx.fail(why);
  const Shape& in = ctx.input(0).shape;
  std::vector<std::int64_t> dims;
  for (std::int64_t a : axes) dims.push_back(in[static_cast<int>(a)]);
  return {TensorType{ctx.input(0).dtype, Shape(std::move(dims))}};
}

// --- broadcast_to -------------------------------------------------------------------------

std::vector<TensorType> infer_broadcast_to(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  const Shape target(ctx.attrs().get_ints("shape"));
  for (std::int64_t d : target)
    if (d < 0) ctx.fail(fmt::format("target shape {} has a negative dim", target.to_string()));
  if (target.rank() < x.shape.rank())
    ctx.fail(fmt::format("cannot broadcast {} to {}: the target has fewer dims than the input", x.to_string(),
                         target.to_string()));
  const int lead = target.rank() - x.shape.rank();
  for (int i = 0; i < x.shape.rank(); ++i)
    if (x.shape[i] != target[lead + i] && x.shape[i] != 1)
      ctx.fail(
          fmt::format("cannot broadcast {} to {}: input dim {} is {} but target dim {} is {} "
                      "(they must be equal, or the input's must be 1)",
                      x.to_string(), target.to_string(), i, x.shape[i], lead + i, target[lead + i]));
  return {TensorType{x.dtype, target}};
}

// --- slice --------------------------------------------------------------------------------

// Elements in [start, end) taken every `step` (start and end already clamped).
std::int64_t slice_length(std::int64_t start, std::int64_t end, std::int64_t step) {
  return end > start ? (end - start - 1) / step + 1 : 0;
}

std::vector<TensorType> infer_slice(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  const int axis = ctx.axis(ctx.attrs().get_int("axis"), x.shape.rank());
  const std::int64_t step = ctx.attrs().get_int("step");
  if (step < 1)
    ctx.fail(fmt::format("step must be at least 1, got {} (slicing {} along axis {})", step, x.to_string(), axis));
  const std::int64_t dim = x.shape[axis];
  const std::int64_t start = slice_bound(ctx.attrs().get_int("start"), dim);
  const std::int64_t end = slice_bound(ctx.attrs().get_int("end"), dim);
  Shape out = x.shape;
  out[axis] = slice_length(start, end, step);
  return {TensorType{x.dtype, out}};
}

// --- concat -------------------------------------------------------------------------------

std::vector<TensorType> infer_concat(const InferContext& ctx) {
  ctx.require_same_dtype();
  const TensorType& first = ctx.input(0);
  const int rank = first.shape.rank();
  for (std::size_t i = 1; i < ctx.inputs().size(); ++i)
    if (ctx.input(i).shape.rank() != rank)
      ctx.fail(fmt::format("input {} is {} but input 0 is {}: all inputs need the same rank", i,
                           ctx.input(i).to_string(), first.to_string()));
  const int axis = ctx.axis(ctx.attrs().get_int("axis"), rank);
  Shape out = first.shape;
  for (std::size_t i = 1; i < ctx.inputs().size(); ++i) {
    const Shape& s = ctx.input(i).shape;
    for (int d = 0; d < rank; ++d)
      if (d != axis && s[d] != first.shape[d])
        ctx.fail(
            fmt::format("input {} ({}) differs from input 0 ({}) in dim {} ({} vs {}); only dim {}, the "
                        "concat axis, may differ",
                        i, ctx.input(i).to_string(), first.to_string(), d, s[d], first.shape[d], axis));
    out[axis] += s[axis];
  }
  return {TensorType{first.dtype, out}};
}

// --- building -----------------------------------------------------------------------------

void require_defined(Value x, std::string_view op, SourceLoc where) {
  if (!x.defined()) throw Error("the input is an undefined Value", std::string(op), "", where);
}

Value apply_one(const OpDef& op, Value x, Attributes attrs, SourceLoc where, const std::string& name = "") {
  require_defined(x, op.name, where);
  const std::array<Value, 1> in{x};
  return x.graph().apply1(op, in, std::move(attrs), where, name);
}

// A reshape node named after the convenience that built it ("squeeze", "flatten").
Value reshape_as(Value x, Shape shape, SourceLoc where, const std::string& name) {
  return apply_one(ops::reshape, x, {{"shape", shape.dims()}}, where, name);
}

// --- Gradient rules ----------------------------------------------------------------------
// ḡ = ∂L/∂y. Every shape op is linear, so each rule applies the op's transpose to ḡ.

// y = x under another shape:  ∂x = ḡ under x's shape.
std::vector<Value> vjp_reshape(const VjpContext& c) { return {reshape(c.g(), c.x(0).shape())}; }

// y = x with axes reordered by `axes`:  ∂x = ḡ reordered by the inverse permutation,
// inverse[axes[i]] = i.
std::vector<Value> vjp_permute(const VjpContext& c) {
  const std::vector<std::int64_t>& axes = c.attrs().get_ints("axes");
  std::vector<std::int64_t> inverse(axes.size());
  for (std::size_t i = 0; i < axes.size(); ++i)
    inverse[static_cast<std::size_t>(axes[i])] = static_cast<std::int64_t>(i);
  return {permute(c.g(), inverse)};
}

// Each element of x is copied to every position it is broadcast to:  ∂x = ḡ summed over the
// broadcast dims.
std::vector<Value> vjp_broadcast_to(const VjpContext& c) { return {unbroadcast(c.g(), c.x(0).shape())}; }

// y[.., j, ..] = x[.., start + j·step, ..]:  ∂x is zero except ∂x[.., start + j·step, ..] = ḡ[.., j, ..].
std::vector<Value> vjp_slice(const VjpContext& c) {
  const Value x = c.x(0);
  const std::int64_t axis = c.attrs().get_int("axis"), step = c.attrs().get_int("step");
  const std::int64_t start = slice_bound(c.attrs().get_int("start"), x.shape()[static_cast<int>(axis)]);
  const std::int64_t taken = c.g().shape()[static_cast<int>(axis)];
  if (x.shape() == c.g().shape()) return {c.g()};  // the slice took everything
  std::vector<std::int64_t> positions(static_cast<std::size_t>(taken));
  for (std::int64_t j = 0; j < taken; ++j) positions[static_cast<std::size_t>(j)] = start + j * step;
  const Value indices = c.graph.constant(Tensor::from<std::int64_t>(positions, Shape{taken}));
  return {scatter_add(zeros_like(x), indices, c.g(), axis)};
}

// The inputs sit side by side in y:  ∂x_i = the part of ḡ at x_i's offset along the axis.
std::vector<Value> vjp_concat(const VjpContext& c) {
  const std::int64_t axis = c.attrs().get_int("axis");
  std::vector<Value> grads;
  std::int64_t offset = 0;
  for (const Value& x : c.inputs) {
    const std::int64_t size = x.shape()[static_cast<int>(axis)];
    grads.push_back(slice(c.g(), axis, offset, offset + size));
    offset += size;
  }
  return grads;
}

}  // namespace

namespace ops {
// They only move elements, so they take the half types too (though the gradients of
// broadcast_to and slice, a sum and a scatter, need f32).
const OpDef reshape{.name = "reshape",
                    .min_inputs = 1,
                    .max_inputs = 1,
                    .infer = infer_reshape,
                    .view = true,
                    .half_types = true,
                    .vjp = vjp_reshape};
const OpDef permute{.name = "permute",
                    .min_inputs = 1,
                    .max_inputs = 1,
                    .infer = infer_permute,
                    .half_types = true,
                    .vjp = vjp_permute,
                    .decode = decode_as<PermuteParams>};
const OpDef broadcast_to{.name = "broadcast_to",
                         .min_inputs = 1,
                         .max_inputs = 1,
                         .infer = infer_broadcast_to,
                         .half_types = true,
                         .vjp = vjp_broadcast_to};
const OpDef slice{.name = "slice",
                  .min_inputs = 1,
                  .max_inputs = 1,
                  .infer = infer_slice,
                  .half_types = true,
                  .vjp = vjp_slice,
                  .decode = decode_as<SliceParams>};
const OpDef concat{.name = "concat",
                   .min_inputs = 1,
                   .max_inputs = -1,
                   .infer = infer_concat,
                   .half_types = true,
                   .vjp = vjp_concat,
                   .decode = decode_as<AxisParams>};
}  // namespace ops

PermuteParams PermuteParams::decode(const DecodeContext& context) {
  const int rank = context.inputs[0].shape.rank();
  PermuteParams p{context.attrs.get_ints("axes")};
  for (std::int64_t& a : p.axes) a = normalize_axis(static_cast<int>(a), rank);
  return p;
}

SliceParams SliceParams::decode(const DecodeContext& context) {
  const Shape& shape = context.inputs[0].shape;
  const int axis = normalize_axis(static_cast<int>(context.attrs.get_int("axis")), shape.rank());
  return {axis, slice_bound(context.attrs.get_int("start"), shape[axis]), context.attrs.get_int("step")};
}

// The builders store normalised attributes (the resolved shape, non-negative axes, clamped
// bounds) so that the text IR and the passes see plain numbers. When the arguments are
// invalid they pass them on unchanged, and shape inference reports the mistake with the
// node's name and the user's line.

Value reshape(Value x, Shape shape, Loc where) {
  require_defined(x, "reshape", where);
  Shape resolved;
  if (resolve_reshape(x.type(), shape, resolved).empty()) shape = resolved;
  return apply_one(ops::reshape, x, {{"shape", shape.dims()}}, where);
}

Value permute(Value x, std::vector<std::int64_t> axes, Loc where) {
  require_defined(x, "permute", where);
  std::vector<std::int64_t> normalized = axes;
  if (normalize_permutation(normalized, x.type()).empty()) axes = normalized;
  return apply_one(ops::permute, x, {{"axes", axes}}, where);
}

Value transpose(Value x, std::int64_t axis0, std::int64_t axis1, Loc where) {
  require_defined(x, "transpose", where);
  const int rank = x.rank();
  std::int64_t a = 0, b = 0;
  if (!normalize(axis0, rank, a) || !normalize(axis1, rank, b))
    throw Error(fmt::format("cannot swap axes {} and {} of {}: an axis is out of range for rank {}", axis0, axis1,
                            x.type().to_string(), rank),
                "transpose", "", where);
  std::vector<std::int64_t> axes(static_cast<std::size_t>(rank));
  for (int i = 0; i < rank; ++i) axes[static_cast<std::size_t>(i)] = i;
  std::swap(axes[static_cast<std::size_t>(a)], axes[static_cast<std::size_t>(b)]);
  return apply_one(ops::permute, x, {{"axes", axes}}, where, "transpose");
}

Value broadcast_to(Value x, Shape shape, Loc where) {
  return apply_one(ops::broadcast_to, x, {{"shape", shape.dims()}}, where);
}

Value slice(Value x, std::int64_t axis, std::int64_t start, std::int64_t end, std::int64_t step, Loc where) {
  require_defined(x, "slice", where);
  std::int64_t a = 0;
  if (normalize(axis, x.rank(), a) && step >= 1) {
    const std::int64_t dim = x.shape()[static_cast<int>(a)];
    axis = a;
    start = slice_bound(start, dim);
    end = std::max(start, slice_bound(end, dim));  // an empty slice prints as [s:s]
  }
  return apply_one(ops::slice, x, {{"axis", axis}, {"start", start}, {"end", end}, {"step", step}}, where);
}

Value concat(std::vector<Value> values, std::int64_t axis, Loc where) {
  if (values.empty()) throw Error("needs at least one input, got none", "concat", "", where);
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!values[i].defined()) throw Error(fmt::format("input {} is an undefined Value", i), "concat", "", where);
  std::int64_t a = 0;
  if (normalize(axis, values[0].rank(), a)) axis = a;
  return values[0].graph().apply1(ops::concat, values, {{"axis", axis}}, where);
}

Value squeeze(Value x, std::vector<std::int64_t> axes, Loc where) {
  require_defined(x, "squeeze", where);
  const Shape& shape = x.shape();
  std::vector<bool> drop(static_cast<std::size_t>(shape.rank()), false);
  if (axes.empty())
    for (int i = 0; i < shape.rank(); ++i) drop[static_cast<std::size_t>(i)] = shape[i] == 1;
  for (std::int64_t axis : axes) {
    std::int64_t a = 0;
    if (!normalize(axis, shape.rank(), a))
      throw Error(fmt::format("axis {} is out of range for {}", axis, x.type().to_string()), "squeeze", "", where);
    if (shape[static_cast<int>(a)] != 1)
      throw Error(fmt::format("cannot squeeze axis {} of {}: its size is {}, not 1", axis, x.type().to_string(),
                              shape[static_cast<int>(a)]),
                  "squeeze", "", where);
    drop[static_cast<std::size_t>(a)] = true;
  }
  std::vector<std::int64_t> dims;
  for (int i = 0; i < shape.rank(); ++i)
    if (!drop[static_cast<std::size_t>(i)]) dims.push_back(shape[i]);
  return reshape_as(x, Shape(std::move(dims)), where, "squeeze");
}

Value unsqueeze(Value x, std::int64_t axis, Loc where) {
  require_defined(x, "unsqueeze", where);
  std::int64_t a = 0;
  if (!normalize(axis, x.rank() + 1, a))
    throw Error(fmt::format("axis {} is out of range for inserting a dim into {} (valid: {}..{})", axis,
                            x.type().to_string(), -(x.rank() + 1), x.rank()),
                "unsqueeze", "", where);
  std::vector<std::int64_t> dims = x.shape().dims();
  dims.insert(dims.begin() + a, 1);
  return reshape_as(x, Shape(std::move(dims)), where, "unsqueeze");
}

Value flatten(Value x, std::int64_t start_axis, std::int64_t end_axis, Loc where) {
  require_defined(x, "flatten", where);
  const Shape& shape = x.shape();
  if (shape.rank() == 0) return reshape_as(x, Shape{1}, where, "flatten");
  std::int64_t first = 0, last = 0;
  if (!normalize(start_axis, shape.rank(), first) || !normalize(end_axis, shape.rank(), last) || first > last)
    throw Error(fmt::format("cannot flatten axes {}..{} of {}: they must be in range and in order", start_axis,
                            end_axis, x.type().to_string()),
                "flatten", "", where);
  std::vector<std::int64_t> dims;
  std::int64_t merged = 1;
  for (int i = 0; i < shape.rank(); ++i) {
    if (i < first || i > last) {
      dims.push_back(shape[i]);
    } else {
      merged *= shape[i];
      if (i == last) dims.push_back(merged);
    }
  }
  return reshape_as(x, Shape(std::move(dims)), where, "flatten");
}

}  // namespace fovea
