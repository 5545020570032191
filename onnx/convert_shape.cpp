// ONNX's ops on shapes and indices: Reshape, Transpose, Slice, Gather, Concat, Split, Shape,
// Constant, Expand, Tile, Range, OneHot, Trilu, ...
#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "fovea/onnx/converter.h"
#include "fovea/onnx/tensor_proto.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/indexing.h"
#include "fovea/ops/shape_ops.h"

namespace fovea::onnx {

namespace {

std::vector<Value> reshape_(NodeContext& ctx) {
  const Value x = ctx.input(0);
  std::vector<std::int64_t> dims = ctx.constant_ints(1);
  const bool allow_zero = ctx.version() >= 14 && ctx.attribute_int("allowzero", 0) != 0;
  int inferred = -1;
  std::int64_t known = 1;
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == 0 && !allow_zero) {
      if (static_cast<int>(i) >= x.rank()) ctx.invalid("a 0 in the shape names a dim the input lacks");
      dims[i] = x.shape()[static_cast<int>(i)];
    }
    if (dims[i] == -1) {
      if (inferred >= 0) ctx.invalid("the shape has two -1 dims");
      inferred = static_cast<int>(i);
    } else if (dims[i] < 0) {
      ctx.invalid(fmt::format("the shape has the dim {}", dims[i]));
    } else {
      known *= dims[i];
    }
  }
  if (inferred >= 0) {
    if (known == 0 || x.shape().numel() % known != 0)
      ctx.invalid(fmt::format("{} elements do not reshape to {}", x.shape().numel(), fmt::join(dims, ",")));
    dims[static_cast<std::size_t>(inferred)] = x.shape().numel() / known;
  }
  return {reshape(x, Shape(std::move(dims)))};
}

std::vector<Value> flatten_(NodeContext& ctx) {
  const Value x = ctx.input(0);
  std::int64_t axis = ctx.attribute_int("axis", 1);
  if (axis < 0) axis += x.rank();
  if (axis < 0 || axis > x.rank()) ctx.invalid(fmt::format("axis {} is outside [-{}, {}]", axis, x.rank(), x.rank()));
  std::int64_t outer = 1, inner = 1;
  for (int d = 0; d < x.rank(); ++d) (d < axis ? outer : inner) *= x.shape()[d];
  return {reshape(x, Shape{outer, inner})};
}

// Squeeze and Unsqueeze take their axes as an input since version 13, as an attribute before.
std::vector<std::int64_t> axes_of(NodeContext& ctx, bool required) {
  if (ctx.version() >= 13) {
    if (ctx.has_input(1)) return ctx.constant_ints(1);
    if (required) ctx.invalid("its axes input is missing");
    return {};
  }
  return required ? ctx.attribute_ints("axes") : ctx.attribute_ints("axes", std::vector<std::int64_t>{});
}

std::vector<Value> squeeze_(NodeContext& ctx) {
  const Value x = ctx.input(0);
  std::vector<std::int64_t> axes = axes_of(ctx, false);
  for (auto& a : axes) {
    a = normalize_axis(ctx, a, x.rank());
    if (x.shape()[static_cast<int>(a)] != 1) ctx.invalid(fmt::format("it squeezes axis {}, which is not of size 1", a));
  }
  return {squeeze(x, axes)};
}

std::vector<Value> unsqueeze_(NodeContext& ctx) {
  Value x = ctx.input(0);
  std::vector<std::int64_t> axes = axes_of(ctx, true);
  const auto rank = static_cast<std::int64_t>(x.rank() + axes.size());
  for (auto& a : axes) a = normalize_axis(ctx, a, rank);
  std::sort(axes.begin(), axes.end());
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end()) ctx.invalid("its axes repeat");
  for (std::int64_t a : axes) x = unsqueeze(x, a);
  return {x};
}

std::vector<Value> transpose_(NodeContext& ctx) {
  const Value x = ctx.input(0);
  std::vector<std::int64_t> reversed(static_cast<std::size_t>(x.rank()));
  std::iota(reversed.rbegin(), reversed.rend(), 0);
  return {permute(x, ctx.attribute_ints("perm", reversed))};
}

std::vector<Value> concat_(NodeContext& ctx) {
  std::vector<Value> values;
  for (int i = 0; i < ctx.input_count(); ++i) values.push_back(ctx.input(i));
  const std::int64_t axis = normalize_axis(ctx, ctx.attribute_int("axis"), values.at(0).rank());
  return {concat(values, axis)};
}

std::vector<Value> split_(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const std::int64_t axis = normalize_axis(ctx, ctx.attribute_int("axis", 0), x.rank());
  const std::int64_t dim = x.shape()[static_cast<int>(axis)];
  std::vector<std::int64_t> sizes;
  if (ctx.version() >= 13) {
    if (ctx.has_input(1)) sizes = ctx.constant_ints(1);
  } else {
    sizes = ctx.attribute_ints("split", std::vector<std::int64_t>{});
  }
  const int parts = ctx.output_count();
  if (sizes.empty()) {
    if (parts == 0 || dim % parts != 0)
      ctx.invalid(fmt::format("a dim of {} does not split into {} parts", dim, parts));
    sizes.assign(static_cast<std::size_t>(parts), dim / parts);
  }
  if (static_cast<int>(sizes.size()) != parts || std::accumulate(sizes.begin(), sizes.end(), std::int64_t{0}) != dim)
    ctx.invalid(fmt::format("split sizes {} do not tile a dim of {} in {} outputs", fmt::join(sizes, ","), dim, parts));
  std::vector<Value> out;
  std::int64_t start = 0;
  for (std::int64_t size : sizes) {
    out.push_back(slice(x, axis, start, start + size));
    start += size;
  }
  return out;
}

// One axis of ONNX's Slice. Bounds are clamped as ONNX specifies: for a positive step to
// [0, dim], for a negative one to [0, dim-1] (start) and [-1, dim-1] (end). A negative step
// reverses: it becomes a gather of the indices it visits.
Value slice_axis(const NodeContext& ctx, Value x, std::int64_t axis, std::int64_t start, std::int64_t end,
                 std::int64_t step) {
  if (step == 0) ctx.invalid("a step is 0");
  const std::int64_t dim = x.shape()[static_cast<int>(axis)];
  if (step > 0) return slice(x, axis, std::clamp(start, -dim - 1, dim), std::clamp(end, -dim - 1, dim), step);
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  start = std::clamp<std::int64_t>(start, 0, dim - 1);
  end = std::clamp<std::int64_t>(end, -1, dim - 1);
  std::vector<std::int64_t> picks;
  for (std::int64_t i = start; i > end; i += step) picks.push_back(i);
  return gather(x, int64_constant(x.graph(), picks), axis);
}

std::vector<Value> slice_(NodeContext& ctx) {
  Value x = ctx.input(0);
  std::vector<std::int64_t> starts, ends, axes, steps;
  if (ctx.version() < 10) {
    starts = ctx.attribute_ints("starts");
    ends = ctx.attribute_ints("ends");
    axes = ctx.attribute_ints("axes", std::vector<std::int64_t>{});
  } else {
    starts = ctx.constant_ints(1);
    ends = ctx.constant_ints(2);
    if (ctx.has_input(3)) axes = ctx.constant_ints(3);
    if (ctx.has_input(4)) steps = ctx.constant_ints(4);
  }
  if (axes.empty()) {
    axes.resize(starts.size());
    std::iota(axes.begin(), axes.end(), 0);
  }
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
    ctx.invalid("starts, ends, axes and steps differ in length");
  for (std::size_t i = 0; i < starts.size(); ++i)
    x = slice_axis(ctx, x, normalize_axis(ctx, axes[i], x.rank()), starts[i], ends[i], steps[i]);
  return {x};
}

std::vector<Value> gather_(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const std::int64_t axis = normalize_axis(ctx, ctx.attribute_int("axis", 0), x.rank());
  const Value indices = wrap_negative_indices(ctx.input(1), x.shape()[static_cast<int>(axis)]);
  return {gather(x, indices, axis)};
}

std::vector<Value> gather_elements(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const Value indices = ctx.input(1);
  const std::int64_t axis = normalize_axis(ctx, ctx.attribute_int("axis", 0), x.rank());
  if (indices.rank() != x.rank()) ctx.invalid("data and indices differ in rank");
  const Value flat = reshape(x, Shape{x.shape().numel()});
  return {gather(flat, flat_positions(indices, x.shape(), axis), 0)};
}

std::vector<Value> scatter_elements(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const Value indices = ctx.input(1);
  const Value updates = ctx.input(2);
  const std::int64_t axis = normalize_axis(ctx, ctx.attribute_int("axis", 0), x.rank());
  const std::string reduction = ctx.version() >= 16 ? ctx.attribute_string("reduction", "none") : "none";
  if (reduction != "none" && reduction != "add") ctx.unsupported(fmt::format("reduction '{}'", reduction));
  const std::int64_t n = x.shape().numel();
  const Value positions = reshape(flat_positions(indices, x.shape(), axis), Shape{indices.shape().numel()});
  const Value flat_x = reshape(x, Shape{n});
  const Value flat_updates = reshape(updates, Shape{indices.shape().numel()});
  const Value added = scatter_add(zeros_like(flat_x), positions, flat_updates, 0);
  if (reduction == "add") return {reshape(flat_x + added, x.shape())};
  // Replace: where some update lands, take it (ONNX leaves repeated indices undefined).
  const Value hits = scatter_add(zeros(x.graph(), Shape{n}, DType::i32), positions,
                                 ones(x.graph(), Shape{indices.shape().numel()}, DType::i32), 0);
  return {reshape(where(greater(hits, scalar_like(hits, 0.0)), added, flat_x), x.shape())};
}

// GatherND and ScatterND address the first `leading` dims of data (after `batch` batch dims)
// with the last axis of indices. Both flatten those dims into one and compute, for every index
// tuple, its position in the flattened axis: Σ_j index_j · stride_j, plus the batch's offset.
Value nd_positions(const NodeContext& ctx, const Value& indices, const Shape& data, std::int64_t batch) {
  const std::int64_t k = indices.shape()[indices.rank() - 1];
  if (k < 1 || batch + k > data.rank()) ctx.invalid("the indices' last dim does not fit the data's rank");
  Value position;
  std::int64_t stride = 1;
  for (std::int64_t j = k - 1; j >= -batch; --j) {
    const std::int64_t d = batch + j;  // the data dim this term addresses
    Value term;
    if (j >= 0) {
      const Value component = squeeze(slice(indices, indices.rank() - 1, j, j + 1), {indices.rank() - 1});
      term = wrap_negative_indices(component, data[static_cast<int>(d)]);
    } else {  // a batch dim: the index tuple's own coordinate
      std::vector<std::int64_t> dims(indices.shape().dims().begin(), indices.shape().dims().end() - 1);
      term = iota(indices.graph(), Shape(dims), d, DType::i64);
    }
    if (stride != 1) term = term * static_cast<double>(stride);
    position = position.defined() ? position + term : term;
    stride *= data[static_cast<int>(d)];
  }
  return position;
}

// data with its first `count` dims flattened into one.
Value flatten_leading(const Value& x, std::int64_t count) {
  std::vector<std::int64_t> dims{1};
  for (int d = 0; d < x.rank(); ++d) {
    if (d < count)
      dims[0] *= x.shape()[d];
    else
      dims.push_back(x.shape()[d]);
  }
  return reshape(x, Shape(std::move(dims)));
}

std::vector<Value> gather_nd(NodeContext& ctx) {
  const Value data = ctx.input(0), indices = ctx.input(1);
  const std::int64_t batch = ctx.version() >= 12 ? ctx.attribute_int("batch_dims", 0) : 0;
  if (indices.rank() < 1 || batch < 0 || batch >= std::min(data.rank(), indices.rank()))
    ctx.invalid("batch_dims or the ranks do not fit");
  const std::int64_t k = indices.shape()[indices.rank() - 1];
  const Value positions = nd_positions(ctx, indices, data.shape(), batch);
  return {gather(flatten_leading(data, batch + k), positions, 0)};
}

std::vector<Value> scatter_nd(NodeContext& ctx) {
  const Value data = ctx.input(0), indices = ctx.input(1), updates = ctx.input(2);
  const std::string reduction = ctx.version() >= 16 ? ctx.attribute_string("reduction", "none") : "none";
  if (reduction != "none" && reduction != "add") ctx.unsupported(fmt::format("reduction '{}'", reduction));
  if (indices.rank() < 1) ctx.invalid("its indices are a scalar");
  const std::int64_t k = indices.shape()[indices.rank() - 1];
  const Value positions = reshape(nd_positions(ctx, indices, data.shape(), 0),
                                  Shape{indices.shape().numel() / std::max<std::int64_t>(k, 1)});
  const Value flat = flatten_leading(data, k);
  const Value flat_updates = flatten_leading(updates, indices.rank() - 1);
  const Value added = scatter_add(zeros_like(flat), positions, flat_updates, 0);
  if (reduction == "add") return {reshape(flat + added, data.shape())};
  const std::int64_t rows = flat.shape()[0];
  const Value hits = scatter_add(zeros(data.graph(), Shape{rows}, DType::i32), positions,
                                 ones(data.graph(), positions.shape(), DType::i32), 0);
  std::vector<std::int64_t> column(static_cast<std::size_t>(flat.rank()), 1);
  column[0] = rows;
  const Value hit = reshape(greater(hits, scalar_like(hits, 0.0)), Shape(column));
  return {reshape(where(hit, added, flat), data.shape())};
}

std::vector<Value> shape_(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const auto rank = static_cast<std::int64_t>(x.rank());
  std::int64_t start = 0, end = rank;
  if (ctx.version() >= 15) {
    start = std::clamp<std::int64_t>(ctx.attribute_int("start", 0), -rank, rank);
    end = std::clamp<std::int64_t>(ctx.attribute_int("end", rank), -rank, rank);
    if (start < 0) start += rank;
    if (end < 0) end += rank;
  }
  std::vector<std::int64_t> dims;
  for (std::int64_t d = start; d < end; ++d) dims.push_back(x.shape()[static_cast<int>(d)]);
  return {int64_constant(ctx.graph(), dims)};
}

std::vector<Value> size_(NodeContext& ctx) {
  return {int64_constant(ctx.graph(), {ctx.input(0).shape().numel()}, Shape{})};
}

std::vector<Value> expand_(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const std::vector<std::int64_t> dims = ctx.constant_ints(1);
  Shape target;
  if (!broadcast_shapes(x.shape(), Shape(dims), target))
    ctx.invalid(fmt::format("{} does not broadcast with [{}]", x.shape().to_string(), fmt::join(dims, ",")));
  return {broadcast_to(x, target)};
}

std::vector<Value> tile_(NodeContext& ctx) {
  Value x = ctx.input(0);
  const std::vector<std::int64_t> repeats = ctx.constant_ints(1);
  if (static_cast<int>(repeats.size()) != x.rank()) ctx.invalid("repeats and the input differ in rank");
  for (std::size_t axis = 0; axis < repeats.size(); ++axis) {
    if (repeats[axis] < 0) ctx.invalid("a repeat is negative");
    if (repeats[axis] == 1) continue;
    if (repeats[axis] == 0) {
      x = slice(x, static_cast<std::int64_t>(axis), 0, 0);
      continue;
    }
    x = concat(std::vector<Value>(static_cast<std::size_t>(repeats[axis]), x), static_cast<std::int64_t>(axis));
  }
  return {x};
}

std::vector<Value> constant_of_shape(NodeContext& ctx) {
  const std::vector<std::int64_t> dims = ctx.constant_ints(0);
  Tensor value = ctx.has_attribute("value") ? ctx.attribute_tensor("value") : Tensor::scalar<float>(0.0f);
  if (value.numel() != 1) ctx.invalid("its value holds more than one element");
  return {fill(ctx.graph(), Shape(dims), value.item(), value.dtype())};
}

std::vector<Value> constant_(NodeContext& ctx) {
  Graph& g = ctx.graph();
  if (ctx.has_attribute("value")) return {g.constant(ctx.attribute_tensor("value"))};
  if (ctx.has_attribute("value_float"))
    return {g.constant(Tensor::scalar<float>(static_cast<float>(ctx.attribute_float("value_float"))))};
  if (ctx.has_attribute("value_int")) return {int64_constant(g, {ctx.attribute_int("value_int")}, Shape{})};
  if (ctx.has_attribute("value_ints")) return {int64_constant(g, ctx.attribute_ints("value_ints"))};
  if (ctx.has_attribute("value_floats")) {
    std::vector<float> values;
    for (double v : ctx.attribute_floats("value_floats")) values.push_back(static_cast<float>(v));
    return {g.constant(Tensor::from<float>(values, Shape{static_cast<std::int64_t>(values.size())}))};
  }
  ctx.unsupported("only tensor, float and int constants are supported (not strings or sparse tensors)");
}

// Range: start, limit and delta are scalars known at import; the values are made now, in the
// dtype of the inputs, by ONNX's formula n = max(ceil((limit - start) / delta), 0).
std::vector<Value> range_(NodeContext& ctx) {
  const Tensor start = ctx.constant(0), limit = ctx.constant(1), delta = ctx.constant(2);
  const double a = start.item(), b = limit.item(), step = delta.item();
  if (step == 0) ctx.invalid("delta is 0");
  const auto n = static_cast<std::int64_t>(std::max(std::ceil((b - a) / step), 0.0));
  Tensor out = Tensor::empty(start.dtype(), Shape{n});
  for (std::int64_t i = 0; i < n; ++i) {
    switch (start.dtype()) {
      case DType::f32:
        out.data<float>()[i] =
            static_cast<float>(start.data<float>()[0] + static_cast<float>(i) * delta.data<float>()[0]);
        break;
      case DType::f64:
        out.data<double>()[i] = a + static_cast<double>(i) * step;
        break;
      case DType::i32:
        out.data<std::int32_t>()[i] =
            static_cast<std::int32_t>(start.data<std::int32_t>()[0] + i * delta.data<std::int32_t>()[0]);
        break;
      case DType::i64:
        out.data<std::int64_t>()[i] = start.data<std::int64_t>()[0] + i * delta.data<std::int64_t>()[0];
        break;
      default:
        ctx.unsupported(fmt::format("Range of {}", dtype_name(start.dtype())));
    }
  }
  return {ctx.graph().constant(out)};
}

std::vector<Value> one_hot(NodeContext& ctx) {
  Value indices = ctx.input(0);
  const auto depth = static_cast<std::int64_t>(ctx.constant_number(1));
  const Value values = ctx.input(2);
  const std::int64_t axis = normalize_axis(ctx, ctx.attribute_int("axis", -1), indices.rank() + 1);
  if (indices.dtype() != DType::i64) indices = cast(indices, DType::i64);
  indices = wrap_negative_indices(indices, depth);
  std::vector<std::int64_t> dims(static_cast<std::size_t>(indices.rank() + 1), 1);
  dims[static_cast<std::size_t>(axis)] = depth;
  const Value classes = iota(ctx.graph(), Shape(dims), axis, DType::i64);
  const Value hot = equal(unsqueeze(indices, axis), classes);
  const Value off = reshape(slice(values, 0, 0, 1), Shape{});
  const Value on = reshape(slice(values, 0, 1, 2), Shape{});
  return {where(hot, on, off)};
}

// A mask over the last two dims: true where column - row >= k (upper) or <= k (lower).
std::vector<Value> trilu(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const std::int64_t k = ctx.has_input(1) ? static_cast<std::int64_t>(ctx.constant_number(1)) : 0;
  const bool upper = ctx.attribute_int("upper", 1) != 0;
  if (x.rank() < 2) ctx.invalid("its input has rank below 2");
  const std::int64_t rows = x.shape()[x.rank() - 2], cols = x.shape()[x.rank() - 1];
  Tensor mask = Tensor::empty(DType::boolean, Shape{rows, cols});
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      mask.data<std::uint8_t>()[r * cols + c] = (upper ? c - r >= k : c - r <= k) ? 1 : 0;
  return {where(ctx.graph().constant(mask), x, zeros_like(x))};
}

std::vector<Value> eye_like(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const DType dtype =
      ctx.has_attribute("dtype")
          ? dtype_from_element_type(static_cast<std::int32_t>(ctx.attribute_int("dtype")), "EyeLike's dtype")
          : x.dtype();
  const std::int64_t k = ctx.attribute_int("k", 0);
  if (x.rank() != 2) ctx.invalid("its input is not 2-D");
  const Value row = iota(ctx.graph(), x.shape(), 0), col = iota(ctx.graph(), x.shape(), 1);
  return {cast(equal(col - row, scalar_like(row, static_cast<double>(k))), dtype)};
}

// DepthToSpace / SpaceToDepth as a reshape, a permutation and a reshape.
std::vector<Value> depth_to_space(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const std::int64_t b = ctx.attribute_int("blocksize");
  const std::string mode = ctx.attribute_string("mode", "DCR");
  if (x.rank() != 4) ctx.invalid("its input is not 4-D");
  const std::int64_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
  if (c % (b * b) != 0) ctx.invalid("channels are not a multiple of blocksize²");
  const std::int64_t oc = c / (b * b);
  Value t;
  if (mode == "DCR") {
    t = permute(reshape(x, Shape{n, b, b, oc, h, w}), {0, 3, 4, 1, 5, 2});
  } else if (mode == "CRD") {
    t = permute(reshape(x, Shape{n, oc, b, b, h, w}), {0, 1, 4, 2, 5, 3});
  } else {
    ctx.invalid(fmt::format("mode '{}'", mode));
  }
  return {reshape(t, Shape{n, oc, h * b, w * b})};
}

std::vector<Value> space_to_depth(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const std::int64_t b = ctx.attribute_int("blocksize");
  if (x.rank() != 4) ctx.invalid("its input is not 4-D");
  const std::int64_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
  if (h % b != 0 || w % b != 0) ctx.invalid("height or width is not a multiple of blocksize");
  const Value t = permute(reshape(x, Shape{n, c, h / b, b, w / b, b}), {0, 3, 5, 1, 2, 4});
  return {reshape(t, Shape{n, c * b * b, h / b, w / b})};
}

}  // namespace

void add_shape_converters(ConverterTable& table) {
  const ConverterEntry rows[] = {
      {"Reshape", 5, reshape_},
      {"Flatten", 1, flatten_},
      {"Squeeze", 1, squeeze_},
      {"Unsqueeze", 1, unsqueeze_},
      {"Transpose", 1, transpose_},
      {"Concat", 4, concat_},
      {"Split", 2, split_},
      {"Slice", 1, slice_},
      {"Gather", 1, gather_},
      {"GatherElements", 11, gather_elements},
      {"ScatterElements", 11, scatter_elements},
      {"Scatter", 9, scatter_elements},
      {"GatherND", 11, gather_nd},
      {"ScatterND", 11, scatter_nd},
      {"Shape", 1, shape_},
      {"Size", 1, size_},
      {"Expand", 8, expand_},
      {"Tile", 6, tile_},
      {"ConstantOfShape", 9, constant_of_shape},
      {"Constant", 1, constant_},
      {"Range", 11, range_},
      {"OneHot", 11, one_hot},
      {"Trilu", 14, trilu},
      {"EyeLike", 9, eye_like},
      {"DepthToSpace", 11, depth_to_space},
      {"SpaceToDepth", 1, space_to_depth},
  };
  for (const ConverterEntry& row : rows) table.emplace(row.op_type, row);
}

}  // namespace fovea::onnx
