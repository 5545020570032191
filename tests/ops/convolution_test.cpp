// The CPU kernels of the convolutions, pools and padding (ops/convolution.h) against plain
// references written here: loops over every output and every tap in double, on random inputs, in
// f32 and f64. The backward ops are checked against the adjoints of the forward references
// (each term dy·∂y/∂x added where the forward read it), and once through autodiff, so that the
// gradient rules and the kernels agree.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <fovea/ops/convolution.h>
#include <fovea/ops/reduce.h>

#include "ops/convolution_reference.h"
#include "testing.h"

namespace {

using namespace fovea;
using fovea::testing::random_tensor;

using Index = std::int64_t;

std::vector<double> values_of(const Tensor& t) {
  std::vector<double> v(static_cast<std::size_t>(t.numel()));
  for (Index i = 0; i < t.numel(); ++i) v[static_cast<std::size_t>(i)] = t.at(i);
  return v;
}

Tensor tensor_of(DType dtype, const Shape& shape, const std::vector<double>& values) {
  Tensor t = Tensor::empty(dtype, shape);
  visit_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    auto data = t.data<T>();
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<T>(values[i]);
  });
  return t;
}

double atol_for(DType t) { return t == f64 ? 1e-10 : 2e-5; }
double rtol_of(DType t) { return t == f64 ? 1e-10 : 1e-4; }

void check_matches(const Tensor& actual, DType t, const Shape& shape, const std::vector<double>& expected) {
  testing::check_close(actual, tensor_of(t, shape, expected), rtol_of(t), atol_for(t));
}

// --- The convolution reference -----------------------------------------------------------------

// One convolution's sizes, as the reference loops read them.
struct Geometry {
  Index n, c, h, w, k, r, s, oh, ow;
  ConvAttributes a;
  Index group_in() const { return c / a.groups; }
  Index group_out() const { return k / a.groups; }
};

Geometry geometry_of(const Shape& x, const Shape& w, const ConvAttributes& a) {
  Geometry g{x[0], x[1], x[2], x[3], w[0], w[2], w[3], 0, 0, a};
  const Index span_h = a.dilation[0] * (g.r - 1) + 1, span_w = a.dilation[1] * (g.s - 1) + 1;
  g.oh = (g.h + a.padding[0] + a.padding[2] - span_h) / a.stride[0] + 1;
  g.ow = (g.w + a.padding[1] + a.padding[3] - span_w) / a.stride[1] + 1;
  return g;
}

struct ConvReference {
  std::vector<double> y, dx, dw;
};

// y = conv(x, w), and for the output gradient dy: dx and dw, the adjoints (the shared references
// of tests/ops/convolution_reference.h).
ConvReference reference_conv(const Geometry& g, const std::vector<double>& x, const std::vector<double>& w,
                             const std::vector<double>& dy) {
  const Tensor tx = tensor_of(f64, {g.n, g.c, g.h, g.w}, x), tw = tensor_of(f64, {g.k, g.group_in(), g.r, g.s}, w);
  const Tensor tdy = tensor_of(f64, {g.n, g.k, g.oh, g.ow}, dy);
  return {values_of(testing::conv2d_reference(tx, tw, g.a)),
          values_of(testing::conv2d_backward_data_reference(tdy, tw, {g.h, g.w}, g.a)),
          values_of(testing::conv2d_backward_filter_reference(tx, tdy, {g.r, g.s}, g.a))};
}

struct ConvCase {
  Shape x, w;
  Conv2dOptions options;
};

// Padding resolved as the builder resolves it.
ConvAttributes attributes_of(const ConvCase& c) {
  const Conv2dOptions& o = c.options;
  const std::array<Index, 2> window{o.dilation[0] * (c.w[2] - 1) + 1, o.dilation[1] * (c.w[3] - 1) + 1};
  return {o.stride, o.padding.resolve({c.x[2], c.x[3]}, window, o.stride), o.dilation, o.groups};
}

std::string describe(const ConvCase& c) {
  const ConvAttributes a = attributes_of(c);
  return c.x.to_string() + " * " + c.w.to_string() + " stride " + std::to_string(a.stride[0]) + "," +
         std::to_string(a.stride[1]) + " pad " + std::to_string(a.padding[0]) + "," + std::to_string(a.padding[1]) +
         "," + std::to_string(a.padding[2]) + "," + std::to_string(a.padding[3]) + " dilation " +
         std::to_string(a.dilation[0]) + "," + std::to_string(a.dilation[1]) + " groups " + std::to_string(a.groups);
}

Conv2dOptions options(std::array<Index, 2> stride, Padding padding, std::array<Index, 2> dilation = {1, 1},
                      Index groups = 1) {
  return {stride, padding, dilation, groups};
}

const std::vector<ConvCase>& conv_cases() {
  static const std::vector<ConvCase> cases{
      {{2, 3, 7, 6}, {4, 3, 3, 3}, options({1, 1}, 1)},
      {{2, 3, 9, 8}, {5, 3, 3, 3}, options({2, 2}, 1)},
      {{1, 2, 10, 11}, {3, 2, 2, 2}, options({3, 3}, 0)},
      {{2, 4, 7, 9}, {6, 4, 3, 2}, options({2, 1}, Padding::sides(0, 2, 1, 0))},
      {{2, 3, 6, 7}, {4, 3, 4, 3}, options({1, 1}, Padding::same())},
      {{1, 3, 7, 8}, {2, 3, 3, 3}, options({2, 2}, Padding::same())},
      {{2, 3, 9, 9}, {4, 3, 3, 3}, options({1, 1}, 2, {2, 2})},
      {{2, 2, 11, 8}, {3, 2, 3, 2}, options({2, 3}, Padding(1, 2), {2, 1})},
      {{2, 4, 7, 7}, {6, 2, 3, 3}, options({1, 1}, 1, {1, 1}, 2)},
      {{2, 6, 8, 9}, {4, 3, 3, 3}, options({2, 2}, Padding::sides(2, 0, 0, 1), {1, 2}, 2)},
      {{2, 5, 8, 7}, {5, 1, 3, 3}, options({1, 1}, 1, {1, 1}, 5)},                            // depthwise
      {{2, 4, 9, 9}, {4, 1, 3, 3}, options({2, 2}, 1, {1, 1}, 4)},                            // depthwise, strided
      {{1, 3, 10, 9}, {3, 1, 2, 3}, options({3, 2}, Padding::sides(1, 0, 1, 2), {2, 2}, 3)},  // depthwise, dilated
      {{2, 4, 6, 9}, {4, 1, 3, 3}, options({2, 1}, Padding::sides(0, 3, 2, 1), {1, 2}, 4)},
      {{1, 2, 4, 2}, {2, 1, 3, 3}, options({1, 1}, 2, {1, 2}, 2)},   // no column that all three taps reach
      {{2, 3, 9, 10}, {3, 1, 3, 3}, options({1, 1}, 2, {2, 2}, 3)},  // depthwise, dilated 'same'
      {{1, 4, 7, 8}, {4, 1, 3, 3}, options({1, 1}, Padding::sides(0, 1, 2, 1), {1, 1}, 4)},
      {{1, 4, 7, 20}, {4, 1, 3, 3}, options({1, 1}, Padding::sides(2, 1, 0, 1), {1, 1}, 4)},
      {{1, 2, 5, 2}, {2, 1, 3, 3}, options({1, 1}, 1, {1, 1}, 2)},  // rows too short for an interior
      {{2, 2, 4, 1}, {2, 1, 3, 3}, options({1, 1}, 1, {1, 1}, 2)},
      {{2, 2, 1, 5}, {2, 1, 3, 3}, options({1, 1}, 1, {1, 1}, 2)},
      {{2, 3, 6, 6}, {6, 1, 3, 3}, options({1, 1}, 1, {1, 1}, 3)},                // channel multiplier 2
      {{1, 2, 7, 5}, {6, 1, 3, 3}, options({2, 1}, Padding::same(), {1, 1}, 2)},  // multiplier 3
      {{3, 8, 5, 6}, {4, 8, 1, 1}, options({1, 1}, 0)},                           // pointwise
      {{1, 16, 9, 10}, {12, 16, 1, 1}, options({1, 1}, 0)},                       // pointwise, one image
      {{2, 8, 5, 6}, {6, 4, 1, 1}, options({1, 1}, 0, {1, 1}, 2)},                // pointwise, groups
      {{2, 4, 7, 7}, {3, 4, 1, 1}, options({2, 2}, 0)},                           // 1x1, strided
      {{2, 3, 5, 5}, {2, 3, 1, 1}, options({1, 1}, 1)},
      {{3, 1, 9, 8}, {5, 1, 3, 3}, options({1, 1}, 1)},                        // one input channel, one group: the gemm
      {{2, 1, 9, 8}, {4, 1, 3, 2}, options({2, 1}, Padding::same(), {2, 1})},  // 1x1, padded
      {{2, 3, 1, 1}, {4, 3, 3, 3}, options({1, 1}, 1)},                        // 1x1 images
      {{2, 3, 1, 1}, {4, 3, 1, 1}, options({1, 1}, 0)},
      {{1, 3, 13, 11}, {2, 3, 5, 3}, options({1, 1}, Padding(2, 1))},
      {{2, 2, 4, 5}, {3, 2, 4, 5}, options({1, 1}, 0)},  // the window is the image
      {{0, 3, 5, 5}, {4, 3, 3, 3}, options({1, 1}, 1)},  // an empty batch
      {{0, 4, 5, 5}, {4, 1, 3, 3}, options({1, 1}, 1, {1, 1}, 4)},
      {{2, 16, 40, 37}, {8, 16, 3, 3}, options({1, 1}, 1)},  // several blocks of output rows
      {{1, 24, 30, 30}, {6, 24, 3, 3}, options({1, 1}, 1)},  // one image: its rows and channels split
      {{1, 6, 30, 30}, {6, 1, 3, 3}, options({1, 1}, 1, {1, 1}, 6)},
  };
  return cases;
}

TEST_CASE("conv2d and its data and filter gradients match the reference loops, f32 and f64") {
  for (DType t : {f32, f64})
    for (const ConvCase& c : conv_cases()) {
      CAPTURE(dtype_name(t));
      CAPTURE(describe(c));
      const ConvAttributes a = attributes_of(c);
      const Geometry geo = geometry_of(c.x, c.w, a);
      const Shape y_shape{geo.n, geo.k, geo.oh, geo.ow};
      Graph g;
      Value x = g.placeholder("x", t, c.x), w = g.placeholder("w", t, c.w), dy = g.placeholder("dy", t, y_shape);
      Value y = conv2d(x, w, c.options);
      REQUIRE(y.shape() == y_shape);
      const Tensor xv = random_tensor(t, c.x, 1), wv = random_tensor(t, c.w, 2), dyv = random_tensor(t, y_shape, 3);
      const std::vector<Tensor> out = testing::run(
          g, {y, conv2d_backward_data(dy, w, {geo.h, geo.w}, a), conv2d_backward_filter(x, dy, {geo.r, geo.s}, a)},
          {{x, xv}, {w, wv}, {dy, dyv}});
      const ConvReference ref = reference_conv(geo, values_of(xv), values_of(wv), values_of(dyv));
      check_matches(out[0], t, y_shape, ref.y);
      check_matches(out[1], t, c.x, ref.dx);
      check_matches(out[2], t, c.w, ref.dw);
    }
}

TEST_CASE("a depthwise filter gradient reads no pixel outside a tap's reach, with an infinity in x") {
  // x's first column holds +inf on one row: taps s = 0 and 1 read it (their sums are +inf, dy
  // being positive) and tap s = 2 never does, so its sums stay finite.
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    const ConvCase c{{2, 2, 6, 7}, {2, 1, 3, 3}, options({1, 1}, 1, {1, 1}, 2)};
    const ConvAttributes a = attributes_of(c);
    const Geometry geo = geometry_of(c.x, c.w, a);
    const Shape y_shape{geo.n, geo.k, geo.oh, geo.ow};
    std::vector<double> xs = values_of(random_tensor(f64, c.x, 30));
    xs[2 * 7] = std::numeric_limits<double>::infinity();
    const std::vector<double> dys = values_of(random_tensor(f64, y_shape, 31, 0.1, 1.0));
    Graph g;
    Value x = g.placeholder("x", t, c.x), dy = g.placeholder("dy", t, y_shape);
    const Tensor out = testing::run1(g, conv2d_backward_filter(x, dy, {3, 3}, a),
                                     {{x, tensor_of(t, c.x, xs)}, {dy, tensor_of(t, y_shape, dys)}});
    const std::vector<double> expected = reference_conv(geo, xs, std::vector<double>(18), dys).dw;
    for (Index i = 0; i < 18; ++i) {
      CAPTURE(i);
      const double e = expected[static_cast<std::size_t>(i)];
      if (std::isinf(e))
        CHECK(out.at(i) == e);
      else
        CHECK(std::abs(out.at(i) - e) <= 1e-4 * (1 + std::abs(e)));
    }
    CHECK(std::isfinite(out.at(2)));  // filter 0, tap (0, 2)
    CHECK(std::isinf(out.at(3)));     // filter 0, tap (1, 0)
  }
}

TEST_CASE("gradients of conv2d through autodiff are the reference adjoints") {
  for (const ConvCase& c : {conv_cases()[1], conv_cases()[9], conv_cases()[13], conv_cases()[17]}) {
    CAPTURE(describe(c));
    const ConvAttributes a = attributes_of(c);
    const Geometry geo = geometry_of(c.x, c.w, a);
    const Shape y_shape{geo.n, geo.k, geo.oh, geo.ow};
    Graph g;
    Value x = g.placeholder("x", f64, c.x), w = g.placeholder("w", f64, c.w), r = g.placeholder("r", f64, y_shape);
    const std::vector<Value> grads = grad(reduce_sum(conv2d(x, w, c.options) * r), {x, w});
    const Tensor xv = random_tensor(f64, c.x, 4), wv = random_tensor(f64, c.w, 5), rv = random_tensor(f64, y_shape, 6);
    const std::vector<Tensor> out = testing::run(g, grads, {{x, xv}, {w, wv}, {r, rv}});
    const ConvReference ref = reference_conv(geo, values_of(xv), values_of(wv), values_of(rv));
    check_matches(out[0], f64, c.x, ref.dx);
    check_matches(out[1], f64, c.w, ref.dw);
  }
}

TEST_CASE("second derivatives of conv2d run: the gradient of the data gradient is a convolution again") {
  // d/dw Σ (conv2d_backward_data(r, w) · q) = conv2d_backward_filter(q, r): the adjoint of the
  // adjoint, checked against the reference filter gradient of x = q, dy = r.
  const ConvCase& c = conv_cases()[3];
  const ConvAttributes a = attributes_of(c);
  const Geometry geo = geometry_of(c.x, c.w, a);
  const Shape y_shape{geo.n, geo.k, geo.oh, geo.ow};
  Graph g;
  Value w = g.placeholder("w", f64, c.w), r = g.placeholder("r", f64, y_shape), q = g.placeholder("q", f64, c.x);
  Value dx = conv2d_backward_data(r, w, {geo.h, geo.w}, a);
  const std::vector<Value> grads = grad(reduce_sum(dx * q), {r, w});
  const Tensor wv = random_tensor(f64, c.w, 7), rv = random_tensor(f64, y_shape, 8), qv = random_tensor(f64, c.x, 9);
  const std::vector<Tensor> out = testing::run(g, grads, {{w, wv}, {r, rv}, {q, qv}});
  const ConvReference ref = reference_conv(geo, values_of(qv), values_of(wv), values_of(rv));
  check_matches(out[0], f64, y_shape, ref.y);  // d/dr = conv2d(q, w)
  check_matches(out[1], f64, c.w, ref.dw);
}

TEST_CASE("conv1d is conv2d on one-row images") {
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    Graph g;
    Value x = g.placeholder("x", t, {2, 4, 11}), w = g.placeholder("w", t, {6, 2, 3});
    Value y = conv1d(x, w, {.stride = 2, .padding = Padding::same(), .dilation = 2, .groups = 2});
    const Tensor xv = random_tensor(t, {2, 4, 11}, 10), wv = random_tensor(t, {6, 2, 3}, 11);
    const Tensor out = testing::run1(g, y, {{x, xv}, {w, wv}});
    const ConvCase as_2d{{2, 4, 1, 11}, {6, 2, 1, 3}, options({1, 2}, Padding::same(), {1, 2}, 2)};
    ConvAttributes a = attributes_of(as_2d);
    a.padding[0] = a.padding[2] = 0;
    const Geometry geo = geometry_of(as_2d.x, as_2d.w, a);
    REQUIRE(out.shape() == Shape{2, 6, geo.ow});
    const std::vector<double> dy(static_cast<std::size_t>(2 * 6 * geo.ow));
    check_matches(out, t, out.shape(), reference_conv(geo, values_of(xv), values_of(wv), dy).y);
  }
}

TEST_CASE("conv_transpose2d is the data gradient of the conv it inverts, output_padding included") {
  // PyTorch's ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2) on 5x4,
  // and one with output_padding past the stride (allowed below the dilation) on 5x6.
  struct TransposeCase {
    ConvTranspose2dOptions options;
    Shape y;
    std::array<Index, 4> conv_padding;  // of the conv whose data gradient it is
  };
  const std::vector<TransposeCase> cases{
      {{.stride = {2, 2}, .padding = {1, 1}, .output_padding = {1, 1}, .groups = 2}, {2, 6, 10, 8}, {1, 1, 1, 1}},
      {{.stride = {1, 2}, .padding = {1, 0}, .output_padding = {1, 0}, .dilation = {2, 1}, .groups = 2},
       {2, 6, 8, 13},
       {1, 0, 0, 0}},
  };
  for (DType t : {f32, f64})
    for (const TransposeCase& c : cases) {
      CAPTURE(dtype_name(t));
      CAPTURE(c.y.to_string());
      const Shape x_shape{2, 4, 5, c.y[3] == 8 ? 4 : 6};
      Graph g;
      Value x = g.placeholder("x", t, x_shape), w = g.placeholder("w", t, {4, 3, 3, 3});
      Value y = conv_transpose2d(x, w, c.options);
      REQUIRE(y.shape() == c.y);
      const Tensor xv = random_tensor(t, x_shape, 12), wv = random_tensor(t, {4, 3, 3, 3}, 13);
      const Tensor out = testing::run1(g, y, {{x, xv}, {w, wv}});
      // The conv from y's size with 6 channels down to x's: its dx for dy = x.
      const Geometry geo =
          geometry_of(c.y, {4, 3, 3, 3}, {c.options.stride, c.conv_padding, c.options.dilation, c.options.groups});
      REQUIRE(geo.oh == x_shape[2]);
      REQUIRE(geo.ow == x_shape[3]);
      const std::vector<double> y_zero(static_cast<std::size_t>(c.y.numel()));
      check_matches(out, t, c.y, reference_conv(geo, y_zero, values_of(wv), values_of(xv)).dx);
    }
}

// --- Pools ---------------------------------------------------------------------------------------

struct PoolCase {
  Shape x;
  std::array<Index, 2> kernel;
  Pool2dOptions options;
};

struct PoolGeometry {
  Index planes, h, w, oh, ow;
  testing::PoolWindow window;  // kernel, stride, dilation, padding (count_include_pad set per check)
  bool valid;                  // whether the builder accepts it: the window fits, the padding is at most half of it
};

PoolGeometry pool_geometry(const PoolCase& c, bool average) {
  const Pool2dOptions& o = c.options;
  const std::array<Index, 2> stride{o.stride[0] ? o.stride[0] : c.kernel[0], o.stride[1] ? o.stride[1] : c.kernel[1]};
  const std::array<Index, 2> dilation = average ? std::array<Index, 2>{1, 1} : o.dilation;
  const std::array<Index, 2> window{dilation[0] * (c.kernel[0] - 1) + 1, dilation[1] * (c.kernel[1] - 1) + 1};
  const std::array<Index, 4> pad = o.padding.resolve({c.x[2], c.x[3]}, window, stride);
  return {c.x[0] * c.x[1],
          c.x[2],
          c.x[3],
          (c.x[2] + pad[0] + pad[2] - window[0]) / stride[0] + 1,
          (c.x[3] + pad[1] + pad[3] - window[1]) / stride[1] + 1,
          {.kernel = c.kernel, .stride = stride, .dilation = dilation, .padding = pad},
          c.x[2] + pad[0] + pad[2] >= window[0] && c.x[3] + pad[1] + pad[3] >= window[1] &&
              2 * std::max(pad[0], pad[2]) <= c.kernel[0] && 2 * std::max(pad[1], pad[3]) <= c.kernel[1]};
}

struct PoolReference {
  std::vector<double> y, dx;
};

// Max pooling (the first largest tap of each window, a NaN beating everything) and dy routed to
// it; average pooling over the whole window or its in-image taps, and its adjoint. The shared
// references of tests/ops/convolution_reference.h, on the planes as [N·C, 1, H, W].
PoolReference reference_max_pool(const PoolGeometry& g, const std::vector<double>& x, const std::vector<double>& dy) {
  const Tensor tx = tensor_of(f64, {g.planes, 1, g.h, g.w}, x), tdy = tensor_of(f64, {g.planes, 1, g.oh, g.ow}, dy);
  return {values_of(testing::max_pool2d_reference(tx, g.window)),
          values_of(testing::max_pool2d_backward_reference(tx, tdy, g.window))};
}

PoolReference reference_avg_pool(const PoolGeometry& g, bool count_include_pad, const std::vector<double>& x,
                                 const std::vector<double>& dy) {
  testing::PoolWindow window = g.window;
  window.count_include_pad = count_include_pad;
  const Tensor tx = tensor_of(f64, {g.planes, 1, g.h, g.w}, x), tdy = tensor_of(f64, {g.planes, 1, g.oh, g.ow}, dy);
  return {values_of(testing::avg_pool2d_reference(tx, window)),
          values_of(testing::avg_pool2d_backward_reference(tdy, {g.h, g.w}, window))};
}

Pool2dOptions pool_options(std::array<Index, 2> stride, Padding padding, std::array<Index, 2> dilation = {1, 1}) {
  return {stride, padding, dilation, true};
}

const std::vector<PoolCase>& pool_cases() {
  static const std::vector<PoolCase> cases{
      {{2, 3, 8, 8}, {2, 2}, pool_options({0, 0}, 0)},
      {{2, 3, 7, 9}, {2, 2}, pool_options({0, 0}, 0)},  // odd sizes: the last row and column dropped
      {{1, 2, 7, 6}, {3, 3}, pool_options({1, 1}, 1)},
      {{2, 2, 9, 8}, {3, 3}, pool_options({2, 2}, 1)},
      {{1, 3, 9, 10}, {3, 2}, pool_options({2, 1}, Padding::sides(1, 0, 0, 1))},
      {{2, 2, 7, 8}, {3, 3}, pool_options({2, 2}, Padding::same())},
      {{1, 2, 10, 9}, {3, 3}, pool_options({3, 2}, Padding::sides(0, 1, 1, 1))},
      {{2, 1, 1, 1}, {1, 1}, pool_options({1, 1}, 0)},
      // Rows wide enough for the kernels' vector loops to run whole vectors, not just their tails.
      {{1, 2, 9, 70}, {2, 2}, pool_options({0, 0}, 0)},
      {{1, 2, 9, 71}, {3, 3}, pool_options({2, 2}, 1)},
      // Windows that tile the image over its padding: the backward ops write dx directly.
      {{2, 2, 8, 11}, {3, 3}, pool_options({3, 3}, 1)},
      {{1, 2, 11, 37}, {3, 3}, pool_options({3, 3}, Padding::sides(1, 0, 0, 1))},
      {{0, 3, 6, 6}, {2, 2}, pool_options({0, 0}, 0)},
  };
  return cases;
}

TEST_CASE("max_pool2d and its gradient match the reference, dilation and ties included, f32 and f64") {
  for (DType t : {f32, f64})
    for (PoolCase c : pool_cases())
      for (Index dilation : {1, 2})
        for (bool ties : {false, true}) {
          c.options.dilation = {dilation, dilation};
          const PoolGeometry geo = pool_geometry(c, false);
          if (!geo.valid) continue;
          CAPTURE(dtype_name(t));
          CAPTURE(c.x.to_string());
          CAPTURE(dilation);
          CAPTURE(ties);
          const Shape y_shape{c.x[0], c.x[1], geo.oh, geo.ow};
          Graph g;
          Value x = g.placeholder("x", t, c.x), r = g.placeholder("r", t, y_shape);
          Value y = max_pool2d(x, c.kernel, c.options);
          REQUIRE(y.shape() == y_shape);
          const std::vector<Value> dx = grad(reduce_sum(y * r), {x});
          // Integers in [-2, 2): most windows hold their maximum more than once.
          const Tensor xv = ties ? random_tensor(t, c.x, 14, -2, 2) : random_tensor(t, c.x, 14);
          const Tensor rv = random_tensor(t, y_shape, 15);
          const std::vector<Tensor> out = testing::run(g, {y, dx[0]}, {{x, xv}, {r, rv}});
          const PoolReference ref = reference_max_pool(geo, values_of(xv), values_of(rv));
          check_matches(out[0], t, y_shape, ref.y);
          check_matches(out[1], t, c.x, ref.dx);
        }
}

TEST_CASE("max_pool2d's gradient goes to the first of equal maxima, row-major, and never to padding") {
  // All equal: every window's first in-image element wins. 3x3 windows, stride 1, padding 1.
  Graph g;
  Value x = g.placeholder("x", f32, {1, 1, 3, 3});
  Value y = max_pool2d(x, {3, 3}, {.stride = {1, 1}, .padding = 1});
  Value dx = grad(reduce_sum(y), {x})[0];
  const std::vector<Tensor> out = testing::run(g, {y, dx}, {{x, Tensor::full(f32, {1, 1, 3, 3}, -5.0)}});
  for (Index i = 0; i < 9; ++i) CHECK(out[0].at(i) == -5.0);
  // Window (i, j)'s first in-image element is (max(i-1, 0), max(j-1, 0)): (0,0) wins four
  // windows, (0,1) and (1,0) two each, (1,1) one.
  const std::vector<double> expected{4, 2, 0, 2, 1, 0, 0, 0, 0};
  for (Index i = 0; i < 9; ++i) CHECK(out[1].at(i) == expected[static_cast<std::size_t>(i)]);
}

TEST_CASE("a NaN in a max_pool2d window is its maximum and takes its gradient, the first NaN first") {
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    const double nan = std::numeric_limits<double>::quiet_NaN();
    Graph g;
    Value x = g.placeholder("x", t, {1, 1, 4, 4});
    Value y = max_pool2d(x, {2, 2});
    Value dx = grad(reduce_sum(y * 3.0), {x})[0];
    // Window (0,0) holds a NaN after a larger number; window (1,1) two NaNs and an infinity.
    std::vector<double> xs{5, 1, 0, 0, nan, 2, 0, 1, 0, 0, std::numeric_limits<double>::infinity(), nan, 0, 0, nan, 7};
    const std::vector<Tensor> out = testing::run(g, {y, dx}, {{x, tensor_of(t, {1, 1, 4, 4}, xs)}});
    CHECK(std::isnan(out[0].at(0)));
    CHECK(out[0].at(1) == 1.0);
    CHECK(out[0].at(2) == 0.0);
    CHECK(std::isnan(out[0].at(3)));
    const std::vector<double> expected{0, 0, 0, 0, 3, 0, 0, 3, 3, 0, 0, 3, 0, 0, 0, 0};
    for (Index i = 0; i < 16; ++i) CHECK(out[1].at(i) == expected[static_cast<std::size_t>(i)]);
  }
}

TEST_CASE("max_pool2d keeps the first NaN and the first of equal maxima on wide and odd-sized images") {
  // Small integers (many ties), with NaNs and -infs sprinkled in: windows of NaNs, windows of
  // -infs only, and windows holding both, in the vectorised columns and at the edges.
  const std::vector<PoolCase> cases{
      {{1, 2, 5, 37}, {2, 2}, pool_options({0, 0}, 0)},
      {{1, 2, 7, 37}, {3, 3}, pool_options({2, 2}, 1)},
      {{1, 2, 8, 35}, {3, 3}, pool_options({3, 3}, 1)},
  };
  for (DType t : {f32, f64})
    for (const PoolCase& c : cases) {
      CAPTURE(dtype_name(t));
      CAPTURE(c.x.to_string());
      const PoolGeometry geo = pool_geometry(c, false);
      const Shape y_shape{c.x[0], c.x[1], geo.oh, geo.ow};
      std::vector<double> xs = values_of(random_tensor(f64, c.x, 22, -2, 2));
      for (double& v : xs) v = std::floor(v);
      for (std::size_t i = 0; i < xs.size(); ++i) {
        if (i % 7 == 3 || i % 11 == 5) xs[i] = std::numeric_limits<double>::quiet_NaN();
        if (i % 5 == 1 || (i / 37) % 4 == 2) xs[i] = -std::numeric_limits<double>::infinity();
      }
      Graph g;
      Value x = g.placeholder("x", t, c.x), r = g.placeholder("r", t, y_shape);
      Value y = max_pool2d(x, c.kernel, c.options);
      const Value dx = grad(reduce_sum(y * r), {x})[0];
      const Tensor rv = random_tensor(t, y_shape, 23);
      const std::vector<Tensor> out = testing::run(g, {y, dx}, {{x, tensor_of(t, c.x, xs)}, {r, rv}});
      const PoolReference ref = reference_max_pool(geo, xs, values_of(rv));
      for (Index i = 0; i < out[0].numel(); ++i) {
        CAPTURE(i);
        const double expected = ref.y[static_cast<std::size_t>(i)];
        if (std::isnan(expected))
          CHECK(std::isnan(out[0].at(i)));
        else
          CHECK(out[0].at(i) == expected);
      }
      check_matches(out[1], t, c.x, ref.dx);
    }
}

TEST_CASE("avg_pool2d and its gradient match the reference, with and without the padding counted") {
  for (DType t : {f32, f64})
    for (PoolCase c : pool_cases())
      for (bool include : {true, false}) {
        c.options.count_include_pad = include;
        CAPTURE(dtype_name(t));
        CAPTURE(c.x.to_string());
        CAPTURE(include);
        const PoolGeometry geo = pool_geometry(c, true);
        const Shape y_shape{c.x[0], c.x[1], geo.oh, geo.ow};
        Graph g;
        Value x = g.placeholder("x", t, c.x), r = g.placeholder("r", t, y_shape);
        Value y = avg_pool2d(x, c.kernel, c.options);
        REQUIRE(y.shape() == y_shape);
        const std::vector<Value> dx = grad(reduce_sum(y * r), {x});
        const Tensor xv = random_tensor(t, c.x, 16), rv = random_tensor(t, y_shape, 17);
        const std::vector<Tensor> out = testing::run(g, {y, dx[0]}, {{x, xv}, {r, rv}});
        const PoolReference ref = reference_avg_pool(geo, include, values_of(xv), values_of(rv));
        check_matches(out[0], t, y_shape, ref.y);
        check_matches(out[1], t, c.x, ref.dx);
      }
}

TEST_CASE("avg_pool2d divides a corner window by 9 or by its 4 in-image elements") {
  Graph g;
  Value x = g.placeholder("x", f64, {1, 1, 2, 2});
  Value with = avg_pool2d(x, {3, 3}, {.stride = {1, 1}, .padding = 1});
  Value without = avg_pool2d(x, {3, 3}, {.stride = {1, 1}, .padding = 1, .count_include_pad = false});
  const std::vector<Tensor> out =
      testing::run(g, {with, without}, {{x, Tensor::from<double>({1, 2, 3, 6}, {1, 1, 2, 2})}});
  CHECK(out[0].at(0) == doctest::Approx(12.0 / 9));
  CHECK(out[1].at(0) == doctest::Approx(3.0));
}

TEST_CASE("the gradient of avg_pool2d's gradient is the pool again") {
  const PoolCase c{{2, 2, 7, 8}, {3, 3}, pool_options({2, 2}, 1)};
  const PoolGeometry geo = pool_geometry(c, true);
  const Shape y_shape{2, 2, geo.oh, geo.ow};
  Graph g;
  Value x = g.placeholder("x", f64, c.x), r = g.placeholder("r", f64, y_shape), q = g.placeholder("q", f64, c.x);
  Value dx = grad(reduce_sum(avg_pool2d(x, c.kernel, c.options) * r), {x})[0];
  Value second = grad(reduce_sum(dx * q), {r})[0];
  const Tensor xv = random_tensor(f64, c.x, 18), rv = random_tensor(f64, y_shape, 19), qv = random_tensor(f64, c.x, 20);
  const Tensor out = testing::run1(g, second, {{x, xv}, {r, rv}, {q, qv}});
  check_matches(out, f64, y_shape, reference_avg_pool(geo, true, values_of(qv), values_of(rv)).y);
}

TEST_CASE("global_avg_pool2d is each channel's mean") {
  Graph g;
  Value x = g.placeholder("x", f32, {2, 3, 4, 5});
  const Tensor xv = random_tensor(f32, {2, 3, 4, 5}, 21);
  const Tensor out = testing::run1(g, global_avg_pool2d(x), {{x, xv}});
  REQUIRE(out.shape() == Shape{2, 3, 1, 1});
  std::vector<double> means(6);
  for (Index i = 0; i < xv.numel(); ++i) means[static_cast<std::size_t>(i / 20)] += xv.at(i) / 20;
  check_matches(out, f32, out.shape(), means);
}

// --- Padding -------------------------------------------------------------------------------------

struct PadCase {
  Shape x;
  std::vector<Index> before, after;
};

const std::vector<PadCase>& pad_cases() {
  static const std::vector<PadCase> cases{
      {{7}, {2}, {3}},
      {{5, 6}, {1, 0}, {2, 3}},
      {{2, 3, 4}, {0, 2, 1}, {1, 1, 3}},
      {{2, 3, 5, 4}, {0, 0, 2, 1}, {0, 0, 1, 3}},
      {{2, 3, 5, 4}, {1, 2, 4, 3}, {1, 1, 3, 2}},
      {{3, 1}, {0, 0}, {0, 0}},
      {Shape{}, {}, {}},
  };
  return cases;
}

// y = pad(x), and dx = pad_backward(dy): every dy element added onto the element it copies (the
// shared references of tests/ops/convolution_reference.h).
PoolReference reference_pad(const PadCase& c, const Shape& y_shape, bool reflect, double value,
                            const std::vector<double>& x, const std::vector<double>& dy) {
  const PadMode mode = reflect ? PadMode::reflect : PadMode::constant;
  return {values_of(testing::pad_reference(tensor_of(f64, c.x, x), c.before, c.after, mode, value)),
          values_of(testing::pad_backward_reference(tensor_of(f64, y_shape, dy), c.before, c.after, mode))};
}

TEST_CASE("pad and its gradient match the reference, constant and reflect, f32 and f64") {
  for (DType t : {f32, f64})
    for (const PadCase& c : pad_cases())
      for (PadMode mode : {PadMode::constant, PadMode::reflect}) {
        CAPTURE(dtype_name(t));
        CAPTURE(c.x.to_string());
        CAPTURE(mode == PadMode::reflect);
        Graph g;
        Value x = g.placeholder("x", t, c.x);
        Value y = pad(x, c.before, c.after, mode, 2.5);
        Value r = g.placeholder("r", t, y.shape());
        const std::vector<Value> dx = grad(reduce_sum(y * r), {x});
        const Tensor xv = random_tensor(t, c.x, 22), rv = random_tensor(t, y.shape(), 23);
        const std::vector<Tensor> out = testing::run(g, {y, dx[0]}, {{x, xv}, {r, rv}});
        const PoolReference ref =
            reference_pad(c, y.shape(), mode == PadMode::reflect, 2.5, values_of(xv), values_of(rv));
        check_matches(out[0], t, y.shape(), ref.y);
        check_matches(out[1], t, c.x, ref.dx);
      }
}

TEST_CASE("reflect pad mirrors without repeating the edge, and its gradient adds the mirrored parts back") {
  Graph g;
  Value x = g.placeholder("x", f64, {4});
  Value y = pad(x, {2}, {3}, PadMode::reflect);
  Value dx = grad(reduce_sum(y), {x})[0];
  const std::vector<Tensor> out = testing::run(g, {y, dx}, {{x, Tensor::from<double>({1, 2, 3, 4}, {4})}});
  const std::vector<double> expected{3, 2, 1, 2, 3, 4, 3, 2, 1};
  for (Index i = 0; i < 9; ++i) CHECK(out[0].at(i) == expected[static_cast<std::size_t>(i)]);
  // Element 0 is copied once, 1 and 2 three times each, 3 once.
  const std::vector<double> counts{2, 3, 3, 1};
  for (Index i = 0; i < 4; ++i) CHECK(out[1].at(i) == counts[static_cast<std::size_t>(i)]);
}

TEST_CASE("pad pads integers, with a constant or by reflection") {
  for (DType t : {i32, i64}) {
    CAPTURE(dtype_name(t));
    Graph g;
    Value x = g.placeholder("x", t, {2, 3});
    Value constant = pad(x, {1, 0}, {0, 2}, PadMode::constant, -7);
    Value mirrored = pad(x, {1, 1}, {0, 2}, PadMode::reflect);
    const Tensor xv = tensor_of(t, {2, 3}, {1, 2, 3, 4, 5, 6});
    const std::vector<Tensor> out = testing::run(g, {constant, mirrored}, {{x, xv}});
    const std::vector<double> c{-7, -7, -7, -7, -7, 1, 2, 3, -7, -7, 4, 5, 6, -7, -7};
    const std::vector<double> m{5, 4, 5, 6, 5, 4, 2, 1, 2, 3, 2, 1, 5, 4, 5, 6, 5, 4};
    check_matches(out[0], t, {3, 5}, c);
    check_matches(out[1], t, {3, 6}, m);
  }
}

}  // namespace
