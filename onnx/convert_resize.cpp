// ONNX's Resize (and Upsample, its predecessor): nearest, linear and cubic interpolation, one
// axis at a time. Nearest is a gather of the picked indices; linear and cubic multiply the axis
// by an interpolation matrix W [out, in] computed at import, row o holding the weights output
// position o gives the input positions. Both follow ONNX's reference: an output position o maps
// to x = transform(o) in the input; its neighbours are the n input positions nearest to x
// (2 for nearest and linear, 4 for cubic; ties to the lower index), positions outside the input
// read its edge, and the weights are the mode's coefficients of the fraction r = x - floor(x)
// (r = 1 when x is whole, so that the left neighbour is preferred).
#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "fovea/onnx/converter.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/indexing.h"
#include "fovea/ops/matmul.h"
#include "fovea/ops/shape_ops.h"

namespace fovea::onnx {

namespace {

struct Interpolation {
  std::string mode = "nearest";          // nearest, linear, cubic
  std::string transform = "half_pixel";  // coordinate_transformation_mode
  std::string nearest_mode = "round_prefer_floor";
  double cubic_a = -0.75;
  bool exclude_outside = false;
};

// `length` is the resized length ONNX's formulas use: the output size when sizes are given,
// input size × scale (not rounded) when scales are.
double source_position(const NodeContext& ctx, const Interpolation& how, std::int64_t o, std::int64_t in, double length,
                       double scale) {
  const auto x = static_cast<double>(o);
  const std::string& t = how.transform;
  if (t == "half_pixel") return (x + 0.5) / scale - 0.5;
  if (t == "pytorch_half_pixel") return length > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
  if (t == "align_corners") return length == 1 ? 0.0 : x * static_cast<double>(in - 1) / (length - 1);
  if (t == "asymmetric") return x / scale;
  if (t == "tf_half_pixel_for_nn") return (x + 0.5) / scale;
  ctx.unsupported(fmt::format("coordinate_transformation_mode '{}'", t));
}

std::vector<double> coefficients(const NodeContext& ctx, const Interpolation& how, double r, bool whole) {
  if (how.mode == "linear") return {1 - r, r};
  if (how.mode == "cubic") {
    const double a = how.cubic_a, s = 1 - r;
    return {((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a, ((a + 2) * r - (a + 3)) * r * r + 1,
            ((a + 2) * s - (a + 3)) * s * s + 1, ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a};
  }
  if (whole) return {0, 1};
  const std::string& m = how.nearest_mode;
  if (m == "round_prefer_floor") return {r <= 0.5 ? 1.0 : 0.0, r > 0.5 ? 1.0 : 0.0};
  if (m == "round_prefer_ceil") return {r < 0.5 ? 1.0 : 0.0, r >= 0.5 ? 1.0 : 0.0};
  if (m == "floor") return {1, 0};
  if (m == "ceil") return {0, 1};
  ctx.invalid(fmt::format("nearest_mode '{}'", m));
}

// The interpolation matrix of one axis, row-major [out, in].
std::vector<double> axis_weights(const NodeContext& ctx, const Interpolation& how, std::int64_t in, std::int64_t out,
                                 double length, double scale) {
  std::vector<double> w(static_cast<std::size_t>(out * in), 0.0);
  for (std::int64_t o = 0; o < out; ++o) {
    const double x = source_position(ctx, how, o, in, length, scale);
    const double base = std::floor(x);
    const bool whole = x == base;
    const std::vector<double> c = coefficients(ctx, how, whole ? 1.0 : x - base, whole);
    const auto n = static_cast<std::int64_t>(c.size());
    std::vector<std::int64_t> near;
    for (std::int64_t i = static_cast<std::int64_t>(base) - n; i <= static_cast<std::int64_t>(base) + n; ++i)
      near.push_back(i);
    std::stable_sort(near.begin(), near.end(), [&](std::int64_t a, std::int64_t b) {
      return std::abs(x - static_cast<double>(a)) < std::abs(x - static_cast<double>(b));
    });
    near.resize(static_cast<std::size_t>(n));
    std::sort(near.begin(), near.end());
    double total = 0;
    for (std::int64_t k = 0; k < n; ++k) {
      const bool inside = near[k] >= 0 && near[k] < in;
      const double weight = how.exclude_outside && !inside ? 0.0 : c[static_cast<std::size_t>(k)];
      w[static_cast<std::size_t>(o * in + std::clamp<std::int64_t>(near[k], 0, in - 1))] += weight;
      total += weight;
    }
    if (how.exclude_outside && total != 0)
      for (std::int64_t i = 0; i < in; ++i) w[static_cast<std::size_t>(o * in + i)] /= total;
  }
  return w;
}

// Resizes axis `axis` of x from `in` to `out` positions.
Value resize_axis(const NodeContext& ctx, const Interpolation& how, Value x, std::int64_t axis, std::int64_t out,
                  double length, double scale) {
  const std::int64_t in = x.shape()[static_cast<int>(axis)];
  const std::vector<double> w = axis_weights(ctx, how, in, out, length, scale);
  if (how.mode == "nearest") {
    std::vector<std::int64_t> picks(static_cast<std::size_t>(out));
    for (std::int64_t o = 0; o < out; ++o)
      for (std::int64_t i = 0; i < in; ++i)
        if (w[static_cast<std::size_t>(o * in + i)] != 0) picks[static_cast<std::size_t>(o)] = i;
    return gather(x, int64_constant(x.graph(), picks), axis);
  }
  if (x.dtype() != DType::f32 && x.dtype() != DType::f64)
    ctx.unsupported(fmt::format("{} interpolation of {}", how.mode, dtype_name(x.dtype())));
  Tensor weights = Tensor::empty(x.dtype(), Shape{out, in});
  for (std::size_t i = 0; i < w.size(); ++i) {
    if (x.dtype() == DType::f32)
      weights.data<float>()[i] = static_cast<float>(w[i]);
    else
      weights.data<double>()[i] = w[i];
  }
  // Move the axis last, multiply by Wᵀ, move it back.
  std::vector<std::int64_t> order(static_cast<std::size_t>(x.rank()));
  std::iota(order.begin(), order.end(), 0);
  std::rotate(order.begin() + axis, order.begin() + axis + 1, order.end());
  Value moved = x.rank() == 1 ? unsqueeze(x, 0) : permute(x, order);
  Value y = matmul(moved, x.graph().constant(weights), false, true);
  if (x.rank() == 1) return squeeze(y, {0});
  std::vector<std::int64_t> back(order.size());
  for (std::size_t i = 0; i < order.size(); ++i)
    back[static_cast<std::size_t>(order[i])] = static_cast<std::int64_t>(i);
  return permute(y, back);
}

std::vector<Value> resize(NodeContext& ctx) {
  Value x = ctx.input(0);
  Interpolation how;
  how.mode = ctx.attribute_string("mode", "nearest");
  if (how.mode != "nearest" && how.mode != "linear" && how.mode != "cubic")
    ctx.invalid(fmt::format("mode '{}'", how.mode));
  how.transform = ctx.attribute_string("coordinate_transformation_mode", "half_pixel");
  how.nearest_mode = ctx.attribute_string("nearest_mode", "round_prefer_floor");
  how.cubic_a = ctx.attribute_float("cubic_coeff_a", -0.75);
  how.exclude_outside = ctx.attribute_int("exclude_outside", 0) != 0;
  ctx.attribute_float("extrapolation_value", 0.0);  // used by tf_crop_and_resize only, refused below
  if (how.transform == "tf_crop_and_resize") ctx.unsupported("coordinate_transformation_mode 'tf_crop_and_resize'");
  if (ctx.has_input(1)) ctx.constant(1);  // roi: read by tf_crop_and_resize only
  std::vector<double> scales;
  std::vector<std::int64_t> sizes;
  if (ctx.has_input(2)) {
    const Tensor s = ctx.constant(2);
    for (std::int64_t i = 0; i < s.numel(); ++i) scales.push_back(s.at(i));
  }
  if (ctx.has_input(3)) sizes = ctx.constant_ints(3);
  if (scales.empty() == sizes.empty()) ctx.invalid("it needs exactly one of scales and sizes");
  const auto rank = static_cast<std::size_t>(x.rank());
  if ((!scales.empty() && scales.size() != rank) || (!sizes.empty() && sizes.size() != rank))
    ctx.invalid("scales or sizes differ from the input in rank");
  for (std::size_t a = 0; a < rank; ++a) {
    const std::int64_t in = x.shape()[static_cast<int>(a)];
    const std::int64_t out =
        sizes.empty() ? static_cast<std::int64_t>(std::floor(static_cast<double>(in) * scales[a])) : sizes[a];
    const double scale = sizes.empty() ? scales[a] : static_cast<double>(out) / static_cast<double>(in);
    if (out == in && scale == 1.0) continue;
    if (in == 0 || out <= 0) ctx.unsupported("resizing an empty axis or to no positions");
    const double length = sizes.empty() ? static_cast<double>(in) * scales[a] : static_cast<double>(out);
    x = resize_axis(ctx, how, x, static_cast<std::int64_t>(a), out, length, scale);
  }
  return {x};
}

}  // namespace

void add_resize_converters(ConverterTable& table) { table.emplace("Resize", ConverterEntry{"Resize", 11, resize}); }

}  // namespace fovea::onnx
