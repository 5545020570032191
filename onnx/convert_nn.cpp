// ONNX's neural-network ops: MatMul and Gemm, Softmax and LogSoftmax, the normalizations,
// convolutions, pooling, padding and the losses.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numeric>

#include <fmt/format.h>

#include "fovea/nn/losses.h"
#include "fovea/onnx/converter.h"
#include "fovea/ops/convolution.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/indexing.h"
#include "fovea/ops/matmul.h"
#include "fovea/ops/reduce.h"
#include "fovea/ops/shape_ops.h"

namespace fovea::onnx {

namespace {

std::vector<std::int64_t> axes_from(std::int64_t first, std::int64_t rank) {
  std::vector<std::int64_t> axes;
  for (std::int64_t a = first; a < rank; ++a) axes.push_back(a);
  return axes;
}

// A per-channel vector [C] shaped to broadcast along axis 1 of a rank-`rank` tensor.
Value per_channel(Value v, int rank) {
  std::vector<std::int64_t> dims(static_cast<std::size_t>(rank - 1), 1);
  dims[0] = v.shape().numel();
  return reshape(v, Shape(std::move(dims)));
}

// --- Matrix products ----------------------------------------------------------------------------

// NumPy's matmul: a 1-D operand is a row (first) or a column (second) that the result drops.
std::vector<Value> matmul_(NodeContext& ctx) {
  Value a = ctx.input(0), b = ctx.input(1);
  const bool row = a.rank() == 1, column = b.rank() == 1;
  if (row) a = unsqueeze(a, 0);
  if (column) b = unsqueeze(b, 1);
  Value y = matmul(a, b);
  if (row) y = squeeze(y, {y.rank() - 2});
  if (column) y = squeeze(y, {y.rank() - 1});
  return {y};
}

std::vector<Value> gemm(NodeContext& ctx) {
  const Value a = ctx.input(0), b = ctx.input(1);
  const double alpha = ctx.attribute_float("alpha", 1.0), beta = ctx.attribute_float("beta", 1.0);
  const bool ta = ctx.attribute_int("transA", 0) != 0, tb = ctx.attribute_int("transB", 0) != 0;
  if (a.rank() != 2 || b.rank() != 2) ctx.invalid("A and B must be 2-D");
  Value y = matmul(a, b, ta, tb);
  if (alpha != 1.0) y = y * alpha;
  if (ctx.version() < 7) ctx.attribute_int("broadcast", 0);  // NumPy broadcasting covers both settings
  if (auto c = ctx.optional_input(2)) y = y + (beta == 1.0 ? *c : *c * beta);
  return {y};
}

// --- Softmax family -----------------------------------------------------------------------------

// Softmax, LogSoftmax and Hardmax along one axis since version 13; before, over the input
// coerced to 2-D at `axis` (every dim from `axis` on is one row).
template <Value (*along)(Value, std::int64_t, std::source_location)>
std::vector<Value> softmax_like(NodeContext& ctx) {
  const Value x = ctx.input(0);
  if (ctx.version() >= 13) {
    const std::int64_t axis = normalize_axis(ctx, ctx.attribute_int("axis", -1), x.rank());
    return {along(x, axis, std::source_location::current())};
  }
  const std::int64_t axis = normalize_axis(ctx, ctx.attribute_int("axis", 1), x.rank());
  std::int64_t outer = 1, inner = 1;
  for (int d = 0; d < x.rank(); ++d) (d < axis ? outer : inner) *= x.shape()[d];
  return {reshape(along(reshape(x, Shape{outer, inner}), 1, std::source_location::current()), x.shape())};
}

// --- Normalizations -----------------------------------------------------------------------------

std::vector<Value> layer_normalization(NodeContext& ctx) {
  const Value x = ctx.input(0), scale = ctx.input(1);
  const std::int64_t axis = normalize_axis(ctx, ctx.attribute_int("axis", -1), x.rank());
  const double eps = ctx.attribute_float("epsilon", 1e-5);
  ctx.attribute_int("stash_type", 1);  // the precision of the statistics: ours is the input's
  const std::vector<std::int64_t> axes = axes_from(axis, x.rank());
  const Value mean = reduce_mean(x, axes, true);
  const Value centred = x - mean;
  const Value inv_std = rsqrt(reduce_mean(centred * centred, axes, true) + eps);
  Value y = centred * inv_std * scale;
  if (auto bias = ctx.optional_input(2)) y = y + *bias;
  return {y, mean, inv_std};
}

std::vector<Value> batch_normalization(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const double eps = ctx.attribute_float("epsilon", 1e-5);
  ctx.attribute_float("momentum", 0.9);  // used only by training
  if (ctx.version() < 9 && ctx.attribute_int("spatial", 1) == 0) ctx.unsupported("spatial = 0");
  if (ctx.version() < 7 && ctx.attribute_int("is_test", 0) == 0)
    ctx.unsupported("is_test = 0: an imported BatchNormalization runs with its running statistics");
  if (ctx.version() >= 14 && ctx.attribute_int("training_mode", 0) != 0)
    ctx.unsupported("training_mode = 1: an imported BatchNormalization runs with its running statistics");
  const int rank = x.rank();
  const Value scale = per_channel(ctx.input(1), rank), bias = per_channel(ctx.input(2), rank);
  const Value mean = per_channel(ctx.input(3), rank), var = per_channel(ctx.input(4), rank);
  return {(x - mean) * rsqrt(var + eps) * scale + bias};
}

std::vector<Value> instance_normalization(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const double eps = ctx.attribute_float("epsilon", 1e-5);
  const std::vector<std::int64_t> axes = axes_from(2, x.rank());
  const Value centred = x - reduce_mean(x, axes, true);
  const Value normed = centred * rsqrt(reduce_mean(centred * centred, axes, true) + eps);
  return {normed * per_channel(ctx.input(1), x.rank()) + per_channel(ctx.input(2), x.rank())};
}

std::vector<Value> mean_variance_normalization(NodeContext& ctx) {
  const Value x = ctx.input(0);
  std::vector<std::int64_t> axes = ctx.attribute_ints("axes", std::vector<std::int64_t>{0, 2, 3});
  for (auto& a : axes) a = normalize_axis(ctx, a, x.rank());
  const Value centred = x - reduce_mean(x, axes, true);
  return {centred / (sqrt(reduce_mean(centred * centred, axes, true)) + 1e-9)};
}

// LRN across channels: y = x / (bias + α/size · Σ x²)^β over a window of `size` channels.
std::vector<Value> lrn(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const double alpha = ctx.attribute_float("alpha", 1e-4), beta = ctx.attribute_float("beta", 0.75);
  const double bias = ctx.attribute_float("bias", 1.0);
  const std::int64_t size = ctx.attribute_int("size");
  const std::int64_t channels = x.shape()[1];
  std::vector<std::int64_t> before(static_cast<std::size_t>(x.rank()), 0), after = before;
  before[1] = (size - 1) / 2;
  after[1] = size - 1 - before[1];
  const Value padded = pad(x * x, before, after);
  Value sum;
  for (std::int64_t i = 0; i < size; ++i) {
    const Value window = slice(padded, 1, i, i + channels);
    sum = sum.defined() ? sum + window : window;
  }
  return {x / pow(sum * (alpha / static_cast<double>(size)) + bias, scalar_like(x, beta))};
}

// --- Convolutions and pooling -------------------------------------------------------------------

// The spatial attributes of Conv, ConvTranspose and the pools, for 1-D and 2-D windows. A 1-D
// op runs as the 2-D one on a height of 1.
struct Window {
  int dims = 2;
  std::array<std::int64_t, 2> kernel{1, 1}, stride{1, 1}, dilation{1, 1};
  std::array<std::int64_t, 4> pads{0, 0, 0, 0};  // top, left, bottom, right
  std::string auto_pad = "NOTSET";
};

std::array<std::int64_t, 2> pair_of(const NodeContext& ctx, const std::vector<std::int64_t>& v, int dims,
                                    std::int64_t fallback, const char* what) {
  if (v.empty()) return {fallback, fallback};
  if (static_cast<int>(v.size()) != dims)
    ctx.invalid(fmt::format("{} has {} values for {} spatial dims", what, v.size(), dims));
  return dims == 1 ? std::array<std::int64_t, 2>{1, v[0]} : std::array<std::int64_t, 2>{v[0], v[1]};
}

Window window_of(NodeContext& ctx, int dims, std::vector<std::int64_t> kernel, bool dilations) {
  if (dims != 1 && dims != 2) ctx.unsupported(fmt::format("{}-D windows (Fovea has 1-D and 2-D)", dims));
  Window w;
  w.dims = dims;
  if (ctx.has_attribute("kernel_shape")) kernel = ctx.attribute_ints("kernel_shape");
  w.kernel = pair_of(ctx, kernel, dims, 1, "kernel_shape");
  w.stride = pair_of(ctx, ctx.attribute_ints("strides", std::vector<std::int64_t>{}), dims, 1, "strides");
  if (dilations)
    w.dilation = pair_of(ctx, ctx.attribute_ints("dilations", std::vector<std::int64_t>{}), dims, 1, "dilations");
  w.auto_pad = ctx.attribute_string("auto_pad", "NOTSET");
  const std::vector<std::int64_t> pads = ctx.attribute_ints("pads", std::vector<std::int64_t>{});
  if (!pads.empty()) {
    if (static_cast<int>(pads.size()) != 2 * dims) ctx.invalid("pads has the wrong length");
    w.pads = dims == 1 ? std::array<std::int64_t, 4>{0, pads[0], 0, pads[1]}
                       : std::array<std::int64_t, 4>{pads[0], pads[1], pads[2], pads[3]};
  }
  return w;
}

// The padding of a forward window (Conv, the pools), auto_pad resolved for input size `size`.
Padding padding_of(const NodeContext& ctx, const Window& w, std::array<std::int64_t, 2> size) {
  if (w.auto_pad == "NOTSET") return Padding::sides(w.pads[0], w.pads[1], w.pads[2], w.pads[3]);
  if (w.auto_pad == "VALID") return Padding::valid();
  if (w.auto_pad != "SAME_UPPER" && w.auto_pad != "SAME_LOWER") ctx.invalid(fmt::format("auto_pad '{}'", w.auto_pad));
  std::array<std::int64_t, 4> sides{};
  for (int i = 0; i < 2; ++i) {
    const std::int64_t window = w.dilation[i] * (w.kernel[i] - 1) + 1;
    const std::int64_t out = (size[i] + w.stride[i] - 1) / w.stride[i];
    const std::int64_t total = std::max<std::int64_t>((out - 1) * w.stride[i] + window - size[i], 0);
    const std::int64_t small = total / 2, large = total - small;
    sides[i] = w.auto_pad == "SAME_UPPER" ? small : large;
    sides[i + 2] = w.auto_pad == "SAME_UPPER" ? large : small;
  }
  return Padding::sides(sides[0], sides[1], sides[2], sides[3]);
}

Value as_2d(Value x, int dims) {
  if (dims == 2) return x;
  return unsqueeze(x, 2);
}

Value from_2d(Value y, int dims) { return dims == 2 ? y : squeeze(y, {2}); }

std::array<std::int64_t, 2> spatial(const Value& x2d) { return {x2d.shape()[2], x2d.shape()[3]}; }

std::vector<Value> conv(NodeContext& ctx) {
  const Value x = ctx.input(0), w = ctx.input(1);
  const int dims = x.rank() - 2;
  std::vector<std::int64_t> kernel(w.shape().dims().begin() + 2, w.shape().dims().end());
  const Window win = window_of(ctx, dims, kernel, true);
  if (pair_of(ctx, kernel, dims, 1, "the weight's kernel") != win.kernel)
    ctx.invalid("kernel_shape differs from the weight's");
  const Value x2 = as_2d(x, dims), w2 = as_2d(w, dims);
  Conv2dOptions options{.stride = win.stride,
                        .padding = padding_of(ctx, win, spatial(x2)),
                        .dilation = win.dilation,
                        .groups = ctx.attribute_int("group", 1)};
  Value y = conv2d(x2, w2, options);
  if (auto bias = ctx.optional_input(2)) y = y + per_channel(*bias, 4);
  return {from_2d(y, dims)};
}

std::vector<Value> conv_transpose(NodeContext& ctx) {
  const Value x = ctx.input(0), w = ctx.input(1);
  const int dims = x.rank() - 2;
  std::vector<std::int64_t> kernel(w.shape().dims().begin() + 2, w.shape().dims().end());
  Window win = window_of(ctx, dims, kernel, true);
  const auto out_pad =
      pair_of(ctx, ctx.attribute_ints("output_padding", std::vector<std::int64_t>{}), dims, 0, "output_padding");
  const auto out_shape = ctx.attribute_ints("output_shape", std::vector<std::int64_t>{});
  const Value x2 = as_2d(x, dims), w2 = as_2d(w, dims);
  const auto in = spatial(x2);
  std::array<std::int64_t, 2> full{};
  for (int i = 0; i < 2; ++i)
    full[i] = win.stride[i] * (in[i] - 1) + out_pad[i] + (win.kernel[i] - 1) * win.dilation[i] + 1;
  if (!out_shape.empty() || win.auto_pad == "SAME_UPPER" || win.auto_pad == "SAME_LOWER") {
    const auto target = out_shape.empty() ? std::array<std::int64_t, 2>{in[0] * win.stride[0], in[1] * win.stride[1]}
                                          : pair_of(ctx, out_shape, dims, 1, "output_shape");
    for (int i = 0; i < 2; ++i) {
      // ONNX's rule, with Python's floor division: a negative total (an output_shape larger than
      // the full result) extends the output with zeros.
      const std::int64_t total = full[i] - target[i];
      const std::int64_t half = total >= 0 ? total / 2 : -((-total + 1) / 2);
      const bool upper = win.auto_pad == "SAME_UPPER";
      win.pads[i] = upper ? half : total - half;
      win.pads[i + 2] = total - win.pads[i];
    }
  } else if (win.auto_pad != "NOTSET" && win.auto_pad != "VALID") {
    ctx.invalid(fmt::format("auto_pad '{}'", win.auto_pad));
  }
  ConvTranspose2dOptions options{.stride = win.stride,
                                 .padding = {0, 0},
                                 .output_padding = {0, 0},
                                 .dilation = win.dilation,
                                 .groups = ctx.attribute_int("group", 1)};
  Value y = conv_transpose2d(x2, w2, options);
  // Fovea's op gives the full output; ONNX's pads and output_padding cut and extend it.
  // Negative pads (from output_shape) extend it with zeros.
  for (int i = 0; i < 2; ++i) {
    const std::int64_t begin = win.pads[i], end = win.pads[i + 2];
    std::vector<std::int64_t> before(4, 0), after(4, 0);
    before[static_cast<std::size_t>(2 + i)] = std::max<std::int64_t>(-begin, 0);
    after[static_cast<std::size_t>(2 + i)] = out_pad[i] + std::max<std::int64_t>(-end, 0);
    if (before[2 + i] > 0 || after[2 + i] > 0) y = pad(y, before, after);
    const std::int64_t size = y.shape()[2 + i];
    y = slice(y, 2 + i, std::max<std::int64_t>(begin, 0), size - std::max<std::int64_t>(end, 0));
  }
  if (auto bias = ctx.optional_input(2)) y = y + per_channel(*bias, 4);
  return {from_2d(y, dims)};
}

// MaxPool and AveragePool. Where Fovea's pools take the padding themselves (at most half the
// window on a side, no ceil_mode), they do; otherwise the input is padded explicitly (-∞ for the
// max, 0 for the average) and the average divided by how many real (or, with
// count_include_pad, real and padded) elements each window covers: the same pool of a padded
// tensor of ones.
struct PoolPlan {
  Window win;
  std::array<std::int64_t, 4> sides{};     // top, left, bottom, right
  std::array<std::int64_t, 2> overhang{};  // ceil_mode's extra rows and columns past the padding
  bool include_pad = false;
};

PoolPlan pool_plan(NodeContext& ctx, const Value& x2, int dims, bool max) {
  PoolPlan plan;
  plan.win = window_of(ctx, dims, {}, max ? ctx.version() >= 10 : ctx.version() >= 19);
  if (max) {
    if (ctx.version() >= 8 && ctx.attribute_int("storage_order", 0) != 0) ctx.unsupported("storage_order = 1");
    if (ctx.wants_output(1)) ctx.unsupported("the Indices output");
  }
  plan.include_pad = !max && ctx.version() >= 7 && ctx.attribute_int("count_include_pad", 0) != 0;
  const bool ceil_mode = ctx.version() >= 10 && ctx.attribute_int("ceil_mode", 0) != 0;
  const auto size = spatial(x2);
  const Window& w = plan.win;
  const std::array<std::int64_t, 2> span{w.dilation[0] * (w.kernel[0] - 1) + 1, w.dilation[1] * (w.kernel[1] - 1) + 1};
  plan.sides = padding_of(ctx, w, size).resolve(size, span, w.stride);
  for (int i = 0; ceil_mode && i < 2; ++i) {
    const std::int64_t room = size[i] + plan.sides[i] + plan.sides[i + 2] - span[i];
    const std::int64_t out = (room + w.stride[i] - 1) / w.stride[i] + 1;
    plan.overhang[i] = (out - 1) * w.stride[i] + span[i] - (size[i] + plan.sides[i] + plan.sides[i + 2]);
  }
  return plan;
}

bool native_padding(const PoolPlan& p) {
  for (int i = 0; i < 2; ++i)
    if (p.overhang[i] > 0 || p.sides[i] * 2 > p.win.kernel[i] || p.sides[i + 2] * 2 > p.win.kernel[i]) return false;
  return true;
}

Value padded(Value x, const PoolPlan& p, double value, bool with_overhang) {
  const std::vector<std::int64_t> before{0, 0, p.sides[0], p.sides[1]};
  const std::vector<std::int64_t> after{0, 0, p.sides[2] + (with_overhang ? p.overhang[0] : 0),
                                        p.sides[3] + (with_overhang ? p.overhang[1] : 0)};
  return pad(x, before, after, PadMode::constant, value);
}

template <bool max>
std::vector<Value> pool(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const int dims = x.rank() - 2;
  const Value x2 = as_2d(x, dims);
  const PoolPlan p = pool_plan(ctx, x2, dims, max);
  Pool2dOptions options{.stride = p.win.stride,
                        .padding = Padding::sides(p.sides[0], p.sides[1], p.sides[2], p.sides[3]),
                        .dilation = p.win.dilation,
                        .count_include_pad = p.include_pad};
  if (native_padding(p))
    return {from_2d(max ? max_pool2d(x2, p.win.kernel, options) : avg_pool2d(x2, p.win.kernel, options), dims)};
  options.padding = Padding::valid();
  if (max)
    return {from_2d(max_pool2d(padded(x2, p, -std::numeric_limits<double>::infinity(), true), p.win.kernel, options),
                    dims)};
  options.count_include_pad = true;
  const Value sums = avg_pool2d(padded(x2, p, 0.0, true), p.win.kernel, options);
  const Value ones = fill(ctx.graph(), Shape{1, 1, x2.shape()[2], x2.shape()[3]}, 1.0, x.dtype());
  const Value counted =
      pad(padded(ones, p, p.include_pad ? 1.0 : 0.0, false), {0, 0, 0, 0}, {0, 0, p.overhang[0], p.overhang[1]});
  return {from_2d(sums / avg_pool2d(counted, p.win.kernel, options), dims)};
}

template <bool max>
std::vector<Value> global_pool(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const std::vector<std::int64_t> axes = axes_from(2, x.rank());
  return {max ? reduce_max(x, axes, true) : reduce_mean(x, axes, true)};
}

// Pad: constant and reflect by Fovea's pad; edge, and negative pads (a crop), by gathers and slices.
std::vector<Value> pad_(NodeContext& ctx) {
  Value x = ctx.input(0);
  const bool attributes = ctx.version() < 11;  // pads and value were attributes before version 11
  const std::vector<std::int64_t> pads = attributes ? ctx.attribute_ints("pads") : ctx.constant_ints(1);
  const double value = attributes ? ctx.attribute_float("value", 0.0) : ctx.has_input(2) ? ctx.constant_number(2) : 0.0;
  const std::string mode = ctx.attribute_string("mode", "constant");
  const auto rank = static_cast<std::size_t>(x.rank());
  if (pads.size() != 2 * rank) ctx.invalid("pads has the wrong length");
  std::vector<std::int64_t> before(rank), after(rank);
  for (std::size_t a = 0; a < rank; ++a) {
    const std::int64_t dim = x.shape()[static_cast<int>(a)];
    const std::int64_t crop_begin = std::max<std::int64_t>(-pads[a], 0),
                       crop_end = std::max<std::int64_t>(-pads[a + rank], 0);
    if (crop_begin > 0 || crop_end > 0) x = slice(x, static_cast<std::int64_t>(a), crop_begin, dim - crop_end);
    before[a] = std::max<std::int64_t>(pads[a], 0);
    after[a] = std::max<std::int64_t>(pads[a + rank], 0);
  }
  if (mode == "constant") return {pad(x, before, after, PadMode::constant, value)};
  if (mode == "reflect") return {pad(x, before, after, PadMode::reflect)};
  if (mode != "edge") ctx.invalid(fmt::format("mode '{}'", mode));
  for (std::size_t a = 0; a < rank; ++a) {
    if (before[a] == 0 && after[a] == 0) continue;
    const std::int64_t dim = x.shape()[static_cast<int>(a)];
    if (dim == 0) ctx.unsupported("edge padding of an empty axis");
    std::vector<std::int64_t> picks;
    for (std::int64_t i = -before[a]; i < dim + after[a]; ++i) picks.push_back(std::clamp<std::int64_t>(i, 0, dim - 1));
    x = gather(x, int64_constant(ctx.graph(), picks), static_cast<std::int64_t>(a));
  }
  return {x};
}

// --- Losses -------------------------------------------------------------------------------------

// NegativeLogLikelihoodLoss on log-probabilities [N, C, d...] and targets [N, d...]; shared by
// SoftmaxCrossEntropyLoss.
Value negative_log_likelihood(NodeContext& ctx, const Value& log_probs, const Value& target,
                              std::optional<Value> weight) {
  const std::string reduction = ctx.attribute_string("reduction", "mean");
  const std::optional<std::int64_t> ignore =
      ctx.has_attribute("ignore_index") ? std::optional(ctx.attribute_int("ignore_index")) : std::nullopt;
  Value t = target.dtype() == DType::i64 ? target : cast(target, DType::i64);
  Value keep = ones_like(t);
  if (ignore) {
    const Value kept = not_equal(t, scalar_like(t, static_cast<double>(*ignore)));
    t = where(kept, t, zeros_like(t));
    keep = cast(kept, DType::i64);
  }
  const Value picked = squeeze(gather(reshape(log_probs, Shape{log_probs.shape().numel()}),
                                      flat_positions(unsqueeze(t, 1), log_probs.shape(), 1), 0),
                               {1});
  Value w = cast(keep, log_probs.dtype());
  if (weight) w = w * gather(*weight, t, 0);
  const Value loss = neg(picked) * w;
  if (reduction == "none") return loss;
  if (reduction == "sum") return reduce_sum(loss);
  if (reduction != "mean") ctx.invalid(fmt::format("reduction '{}'", reduction));
  return reduce_sum(loss) / reduce_sum(w);
}

std::vector<Value> nll_loss(NodeContext& ctx) {
  const Value input = ctx.input(0), target = ctx.input(1);
  return {negative_log_likelihood(ctx, input, target, ctx.optional_input(2))};
}

std::vector<Value> softmax_cross_entropy(NodeContext& ctx) {
  const Value scores = ctx.input(0), labels = ctx.input(1);
  const Value log_probs = nn::log_softmax(scores, 1);
  return {negative_log_likelihood(ctx, log_probs, labels, ctx.optional_input(2)), log_probs};
}

Value softmax_along(Value x, std::int64_t axis, std::source_location where) { return nn::softmax(x, axis, where); }
// Hardmax: 1 at the first maximum along the axis, 0 elsewhere.
Value hardmax_along(Value x, std::int64_t axis, std::source_location where) {
  const Value first = argmax(x, axis, true, false, where);
  return cast(equal(iota(x.graph(), x.shape(), axis, DType::i64, where), first, where), x.dtype(), where);
}
Value log_softmax_along(Value x, std::int64_t axis, std::source_location where) {
  return nn::log_softmax(x, axis, where);
}

}  // namespace

void add_nn_converters(ConverterTable& table) {
  const ConverterEntry rows[] = {
      {"MatMul", 1, matmul_},
      {"Gemm", 6, gemm},
      {"Softmax", 1, softmax_like<softmax_along>},
      {"LogSoftmax", 1, softmax_like<log_softmax_along>},
      {"Hardmax", 1, softmax_like<hardmax_along>},
      {"LayerNormalization", 17, layer_normalization},
      {"BatchNormalization", 6, batch_normalization},
      {"InstanceNormalization", 6, instance_normalization},
      {"MeanVarianceNormalization", 9, mean_variance_normalization},
      {"LRN", 1, lrn},
      {"Conv", 1, conv},
      {"ConvTranspose", 1, conv_transpose},
      {"MaxPool", 1, pool<true>},
      {"AveragePool", 1, pool<false>},
      {"GlobalAveragePool", 1, global_pool<false>},
      {"GlobalMaxPool", 1, global_pool<true>},
      {"Pad", 2, pad_},
      {"NegativeLogLikelihoodLoss", 12, nll_loss},
      {"SoftmaxCrossEntropyLoss", 12, softmax_cross_entropy},
  };
  for (const ConverterEntry& row : rows) table.emplace(row.op_type, row);
}

}  // namespace fovea::onnx
