// The convolution, pooling and padding kernels (backends/cuda/convolution.cu), run on the CPU by
// the SIMT emulator (simt.h) through their real launchers, against naive references written here
// in the scatter form (every y element adds its contributions where they go), which the kernels'
// gather forms must match. The shapes are small enough for every build and cover what the
// kernels branch on: several 64-wide tiles and partial ones, groups, depthwise, strides,
// padding and dilation, the backward filter's split of a long reduction into chunks, NaN, -inf
// and ties in max pooling, both divisors of average pooling, and reflect padding with pads that
// reach the far edge.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "fovea/backends/cuda/launch.h"
#include "fovea/tests/cuda_emulation/simt.h"

namespace {

using fovea::cuda_backend::ConvShape;
using fovea::cuda_backend::Element;
using fovea::cuda_backend::PadShape;
using fovea::cuda_backend::PoolShape;
using std::int64_t;

constexpr double kInf = std::numeric_limits<double>::infinity();

template <typename T>
constexpr Element element_of() {
  return sizeof(T) == 8 ? Element::f64 : Element::f32;
}

// Values on a grid of quarters in [-2, 2): exact in f32, with ties for max pooling.
template <typename T>
std::vector<T> random_values(int64_t n, std::uint64_t seed) {
  std::mt19937_64 random(seed);
  std::uniform_int_distribution<int> quarter(-8, 7);
  std::vector<T> v(static_cast<std::size_t>(n));
  for (T& x : v) x = static_cast<T>(quarter(random) / 4.0);
  return v;
}

// Every element within rtol of the largest expected magnitude (NaN only where NaN is expected).
template <typename T>
void expect_near(const std::vector<T>& got, const std::vector<double>& expected, const std::string& what) {
  REQUIRE(got.size() == expected.size());
  const double rtol = sizeof(T) == 8 ? 1e-12 : 1e-5;
  double largest = 1;
  for (double e : expected)
    if (std::isfinite(e)) largest = std::max(largest, std::abs(e));
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], e = expected[i];
    if (g == e || (std::isnan(g) && std::isnan(e))) continue;
    if (!(std::abs(g - e) <= rtol * largest)) {
      FAIL_CHECK(what << ": element " << i << " is " << g << ", expected " << e);
      return;
    }
  }
}

// --- Convolutions ---------------------------------------------------------------------------------

int64_t out_size(int64_t size, int64_t pad_before, int64_t pad_after, int64_t kernel, int64_t stride,
                 int64_t dilation) {
  return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) / stride + 1;
}

// A convolution with padding `pad` on every side.
ConvShape conv(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t r, int64_t s, int64_t stride_h,
               int64_t stride_w, int64_t pad, int64_t dilation_h, int64_t dilation_w, int64_t groups) {
  ConvShape a;
  a.batch = n, a.in_channels = c, a.height = h, a.width = w, a.out_channels = k, a.kernel_h = r, a.kernel_w = s;
  a.stride_h = stride_h, a.stride_w = stride_w, a.pad_top = pad, a.pad_left = pad;
  a.dilation_h = dilation_h, a.dilation_w = dilation_w, a.groups = groups;
  a.out_height = out_size(h, pad, pad, r, stride_h, dilation_h);
  a.out_width = out_size(w, pad, pad, s, stride_w, dilation_w);
  return a;
}

std::string describe(const ConvShape& a) {
  return "x [" + std::to_string(a.batch) + "," + std::to_string(a.in_channels) + "," + std::to_string(a.height) + "," +
         std::to_string(a.width) + "] w [" + std::to_string(a.out_channels) + ",*," + std::to_string(a.kernel_h) + "," +
         std::to_string(a.kernel_w) + "] stride " + std::to_string(a.stride_h) + "," + std::to_string(a.stride_w) +
         " pad " + std::to_string(a.pad_top) + " dilation " + std::to_string(a.dilation_h) + "," +
         std::to_string(a.dilation_w) + " groups " + std::to_string(a.groups);
}

// Calls f(x_offset, w_offset, y_offset) for every product of the convolution that reads an
// in-image element: y[y_offset] += x[x_offset]·w[w_offset].
template <typename F>
void for_each_product(const ConvShape& a, F f) {
  const int64_t cg = a.in_channels / a.groups, kg = a.out_channels / a.groups;
  for (int64_t n = 0; n < a.batch; ++n)
    for (int64_t k = 0; k < a.out_channels; ++k)
      for (int64_t i = 0; i < a.out_height; ++i)
        for (int64_t j = 0; j < a.out_width; ++j)
          for (int64_t c = 0; c < cg; ++c)
            for (int64_t r = 0; r < a.kernel_h; ++r)
              for (int64_t s = 0; s < a.kernel_w; ++s) {
                const int64_t h = i * a.stride_h - a.pad_top + r * a.dilation_h;
                const int64_t w = j * a.stride_w - a.pad_left + s * a.dilation_w;
                if (h < 0 || h >= a.height || w < 0 || w >= a.width) continue;
                const int64_t channel = k / kg * cg + c;
                f(((n * a.in_channels + channel) * a.height + h) * a.width + w,
                  ((k * cg + c) * a.kernel_h + r) * a.kernel_w + s,
                  ((n * a.out_channels + k) * a.out_height + i) * a.out_width + j);
              }
}

template <typename T>
void check_conv(const ConvShape& a, std::uint64_t seed) {
  INFO(describe(a));
  const int64_t cg = a.in_channels / a.groups;
  const int64_t x_size = a.batch * a.in_channels * a.height * a.width;
  const int64_t w_size = a.out_channels * cg * a.kernel_h * a.kernel_w;
  const int64_t y_size = a.batch * a.out_channels * a.out_height * a.out_width;
  const std::vector<T> x = random_values<T>(x_size, seed), w = random_values<T>(w_size, seed + 1);
  const std::vector<T> dy = random_values<T>(y_size, seed + 2);
  std::vector<double> y_ref(static_cast<std::size_t>(y_size)), dx_ref(static_cast<std::size_t>(x_size));
  std::vector<double> dw_ref(static_cast<std::size_t>(w_size));
  for_each_product(a, [&](int64_t xo, int64_t wo, int64_t yo) {
    y_ref[yo] += double(x[xo]) * w[wo];
    dx_ref[xo] += double(dy[yo]) * w[wo];
    dw_ref[wo] += double(dy[yo]) * x[xo];
  });
  const Element type = element_of<T>();
  std::vector<T> y(static_cast<std::size_t>(y_size), T(-7)), dx(static_cast<std::size_t>(x_size), T(-7));
  std::vector<T> dw(static_cast<std::size_t>(w_size), T(-7));
  REQUIRE(fovea::cuda_backend::conv_fits_kernels(a));
  REQUIRE(fovea::cuda_backend::launch_conv2d(type, a, x.data(), w.data(), y.data(), nullptr));
  expect_near(y, y_ref, "conv2d");
  // fused_conv2d's epilogue over that y: the bias added per channel, then the ReLU.
  const std::vector<T> bias = random_values<T>(a.out_channels, seed + 3);
  const int64_t plane = a.out_height * a.out_width;
  std::vector<T> fused = y;
  std::vector<double> fused_ref(y_ref.size());
  for (std::size_t e = 0; e < fused_ref.size(); ++e)
    fused_ref[e] = std::max(0.0, double(y[e]) + bias[e / static_cast<std::size_t>(plane) % a.out_channels]);
  REQUIRE(fovea::cuda_backend::launch_conv2d_epilogue(type, a, bias.data(), true, fused.data(), nullptr));
  expect_near(fused, fused_ref, "conv2d epilogue");
  REQUIRE(fovea::cuda_backend::launch_conv2d_backward_data(type, a, dy.data(), w.data(), dx.data(), nullptr));
  expect_near(dx, dx_ref, "conv2d_backward_data");
  const int64_t bytes = fovea::cuda_backend::conv2d_backward_filter_workspace_bytes(type, a);
  std::vector<unsigned char> workspace(static_cast<std::size_t>(bytes));
  REQUIRE(fovea::cuda_backend::launch_conv2d_backward_filter(type, a, x.data(), dy.data(), dw.data(),
                                                             bytes > 0 ? workspace.data() : nullptr, nullptr));
  expect_near(dw, dw_ref, "conv2d_backward_filter");
}

// --- Pools ---------------------------------------------------------------------------------------------

PoolShape pool(int64_t n, int64_t c, int64_t h, int64_t w, int64_t r, int64_t s, int64_t stride, int64_t pad,
               int64_t dilation, bool count_include_pad) {
  PoolShape p;
  p.batch = n, p.channels = c, p.height = h, p.width = w, p.kernel_h = r, p.kernel_w = s;
  p.stride_h = p.stride_w = stride, p.pad_top = p.pad_left = pad, p.dilation_h = p.dilation_w = dilation;
  p.count_include_pad = count_include_pad;
  p.out_height = out_size(h, pad, pad, r, stride, dilation);
  p.out_width = out_size(w, pad, pad, s, stride, dilation);
  return p;
}

// The in-image offsets (within one image) of window (i, j), in row-major order of the taps.
std::vector<int64_t> window_of(const PoolShape& p, int64_t i, int64_t j) {
  std::vector<int64_t> at;
  for (int64_t r = 0; r < p.kernel_h; ++r)
    for (int64_t s = 0; s < p.kernel_w; ++s) {
      const int64_t h = i * p.stride_h - p.pad_top + r * p.dilation_h;
      const int64_t w = j * p.stride_w - p.pad_left + s * p.dilation_w;
      if (h >= 0 && h < p.height && w >= 0 && w < p.width) at.push_back(h * p.width + w);
    }
  return at;
}

template <typename T>
void check_pools(const PoolShape& p, std::uint64_t seed) {
  const int64_t planes = p.batch * p.channels, plane = p.height * p.width, out_plane = p.out_height * p.out_width;
  std::vector<T> x = random_values<T>(planes * plane, seed);
  x[1] = std::numeric_limits<T>::quiet_NaN();
  x[static_cast<std::size_t>(plane + 2)] = -std::numeric_limits<T>::infinity();
  const std::vector<T> dy = random_values<T>(planes * out_plane, seed + 1);
  std::vector<double> max_ref(dy.size()), max_dx_ref(x.size()), avg_ref(dy.size()), avg_dx_ref(x.size());
  for (int64_t c = 0; c < planes; ++c)
    for (int64_t i = 0; i < p.out_height; ++i)
      for (int64_t j = 0; j < p.out_width; ++j) {
        const std::vector<int64_t> at = window_of(p, i, j);
        const int64_t o = (c * p.out_height + i) * p.out_width + j;
        int64_t first = -1;
        double best = -kInf, sum = 0;
        for (int64_t e : at) {
          const double v = x[c * plane + e];
          sum += v;
          if (first < 0 || v > best || (std::isnan(v) && !std::isnan(best))) first = e, best = v;
        }
        max_ref[o] = best;
        if (first >= 0) max_dx_ref[c * plane + first] += dy[o];
        const double divisor = p.count_include_pad ? double(p.kernel_h * p.kernel_w) : double(at.size());
        avg_ref[o] = sum / divisor;
        for (int64_t e : at) avg_dx_ref[c * plane + e] += dy[o] / divisor;
      }
  const Element type = element_of<T>();
  std::vector<T> y(dy.size(), T(-7)), dx(x.size(), T(-7));
  REQUIRE(fovea::cuda_backend::launch_max_pool2d(type, p, x.data(), y.data(), nullptr));
  expect_near(y, max_ref, "max_pool2d");
  REQUIRE(fovea::cuda_backend::launch_max_pool2d_backward(type, p, x.data(), dy.data(), dx.data(), nullptr));
  expect_near(dx, max_dx_ref, "max_pool2d_backward");
  REQUIRE(fovea::cuda_backend::launch_avg_pool2d(type, p, x.data(), y.data(), nullptr));
  expect_near(y, avg_ref, "avg_pool2d");
  REQUIRE(fovea::cuda_backend::launch_avg_pool2d_backward(type, p, dy.data(), dx.data(), nullptr));
  expect_near(dx, avg_dx_ref, "avg_pool2d_backward");
}

// --- Padding -------------------------------------------------------------------------------------------

// NumPy's pad of one position: the source index in the unpadded dim, or -1 (constant padding).
int64_t pad_source(int64_t at, int64_t before, int64_t size, bool reflect) {
  const int64_t t = at - before;
  if (t >= 0 && t < size) return t;
  if (!reflect) return -1;
  return t < 0 ? -t : 2 * (size - 1) - t;
}

template <typename T>
void check_pad(const std::vector<int64_t>& dims, const std::vector<int64_t>& before, const std::vector<int64_t>& after,
               bool reflect, std::uint64_t seed) {
  PadShape a;
  a.rank = static_cast<int>(dims.size());
  a.reflect = reflect;
  int64_t in_count = 1, out_count = 1;
  for (std::size_t d = 0; d < dims.size(); ++d) {
    a.in_dims[d] = dims[d], a.before[d] = before[d], a.out_dims[d] = dims[d] + before[d] + after[d];
    in_count *= dims[d], out_count *= a.out_dims[d];
  }
  const std::vector<T> x = random_values<T>(in_count, seed), dy = random_values<T>(out_count, seed + 1);
  std::vector<double> y_ref(static_cast<std::size_t>(out_count)), dx_ref(static_cast<std::size_t>(in_count));
  for (int64_t e = 0; e < out_count; ++e) {
    int64_t rest = e, source = 0, stride = 1;
    bool inside = true;
    for (int d = a.rank - 1; d >= 0; --d) {
      const int64_t t = pad_source(rest % a.out_dims[d], a.before[d], a.in_dims[d], reflect);
      rest /= a.out_dims[d];
      inside = inside && t >= 0;
      source += t * stride;
      stride *= a.in_dims[d];
    }
    y_ref[e] = inside ? double(x[source]) : 1.5;
    if (inside) dx_ref[source] += dy[e];
  }
  const Element type = element_of<T>();
  std::vector<T> y(static_cast<std::size_t>(out_count), T(-7)), dx(static_cast<std::size_t>(in_count), T(-7));
  REQUIRE(fovea::cuda_backend::launch_pad(type, a, 1.5, x.data(), y.data(), nullptr));
  expect_near(y, y_ref, reflect ? "pad (reflect)" : "pad (constant)");
  REQUIRE(fovea::cuda_backend::launch_pad_backward(type, a, dy.data(), dx.data(), nullptr));
  expect_near(dx, dx_ref, reflect ? "pad_backward (reflect)" : "pad_backward (constant)");
}

// The scheduling order's seed, and at most `max_blocks` blocks per launch (0: the whole grid),
// so that the grid-stride loops over tiles, weights and elements run more than once.
void schedule(std::uint64_t seed, unsigned max_blocks = 0) {
  fovea::cuda_emulation::Options o;
  o.seed = seed;
  o.max_blocks = max_blocks;
  fovea::cuda_emulation::configure(o);
}

}  // namespace

TEST_CASE("convolution kernels: the implicit GEMM over partial and multiple tiles, strides, padding, dilation") {
  schedule(1);
  // n, c, h, w, k, r, s, stride_h, stride_w, pad, dilation_h, dilation_w, groups
  check_conv<double>(conv(2, 4, 7, 6, 6, 3, 2, 2, 1, 1, 1, 2, 1), 10);
  check_conv<float>(conv(1, 3, 9, 8, 70, 3, 3, 1, 2, 2, 2, 1, 1), 20);
  check_conv<double>(conv(1, 5, 1, 11, 3, 1, 3, 1, 1, 0, 1, 1, 1), 30);  // conv1d-like, batch 1
  check_conv<double>(conv(3, 2, 5, 5, 4, 1, 1, 1, 1, 0, 1, 1, 1), 40);   // 1x1
  // Stride 3 with dilation 2: the taps of a phase are not consecutive.
  check_conv<double>(conv(2, 3, 11, 10, 4, 3, 5, 3, 2, 2, 2, 1, 1), 41);
  check_conv<float>(conv(1, 4, 9, 9, 6, 3, 3, 2, 2, 1, 1, 1, 2), 42);  // stride 2, groups
  // Strides longer than the image and the kernel: phases that no tap reaches.
  check_conv<double>(conv(1, 2, 2, 7, 3, 1, 2, 3, 4, 0, 1, 1, 1), 43);
}

TEST_CASE("convolution kernels: groups, depthwise, and the backward filter's split reduction") {
  schedule(2);
  check_conv<double>(conv(2, 6, 6, 5, 4, 3, 3, 1, 2, 1, 1, 1, 2), 50);    // groups 2
  check_conv<double>(conv(2, 4, 5, 5, 8, 2, 2, 1, 1, 0, 1, 1, 4), 60);    // channel multiplier 2
  check_conv<double>(conv(1, 3, 6, 5, 48, 3, 3, 2, 1, 1, 1, 2, 3), 61);   // channel multiplier 16
  check_conv<double>(conv(1, 2, 5, 6, 36, 2, 3, 1, 1, 1, 1, 1, 2), 62);   // channel multiplier 18: the GEMM
  check_conv<double>(conv(2, 3, 7, 6, 3, 3, 3, 2, 2, 1, 1, 1, 3), 70);    // depthwise
  check_conv<float>(conv(1, 5, 6, 7, 5, 3, 2, 1, 1, 2, 2, 1, 5), 80);     // depthwise, dilated
  check_conv<double>(conv(2, 2, 20, 20, 3, 3, 3, 1, 1, 0, 1, 1, 1), 90);  // N·OH·OW = 648: two chunks
  ConvShape chunks = conv(2, 2, 20, 20, 3, 3, 3, 1, 1, 0, 1, 1, 1);
  CHECK(fovea::cuda_backend::conv2d_backward_filter_workspace_bytes(Element::f64, chunks) > 0);
}

TEST_CASE("pooling kernels: max with NaN, -inf and ties, both average divisors, strides, padding, dilation") {
  schedule(3);
  // n, c, h, w, r, s, stride, pad, dilation, count_include_pad
  check_pools<double>(pool(2, 3, 7, 6, 3, 3, 2, 1, 1, true), 100);
  check_pools<double>(pool(1, 2, 7, 7, 3, 2, 1, 1, 1, false), 110);
  check_pools<float>(pool(2, 2, 9, 8, 2, 3, 2, 1, 2, false), 120);
  check_pools<float>(pool(1, 2, 5, 5, 2, 2, 2, 0, 1, true), 130);
}

TEST_CASE("padding kernels: constant and reflect, forward and backward, merged and padded dims") {
  schedule(4);
  check_pad<double>({2, 3, 4, 5}, {0, 0, 2, 1}, {0, 0, 3, 4}, false, 200);
  check_pad<double>({2, 3, 4, 5}, {0, 1, 3, 4}, {1, 0, 3, 2}, true, 210);
  check_pad<float>({7}, {6}, {6}, true, 220);
  check_pad<float>({3, 1, 4}, {2, 0, 0}, {0, 0, 3}, true, 230);
}

TEST_CASE("convolution, pooling and padding kernels: grids smaller than the work loop over it") {
  schedule(5, 2);
  check_conv<double>(conv(1, 3, 9, 8, 70, 3, 3, 1, 2, 2, 2, 1, 1), 300);
  check_conv<double>(conv(2, 6, 6, 5, 4, 3, 3, 1, 2, 1, 1, 1, 2), 310);
  check_conv<double>(conv(2, 3, 7, 6, 3, 3, 3, 2, 2, 1, 1, 1, 3), 320);
  check_conv<float>(conv(2, 2, 20, 20, 3, 3, 3, 1, 1, 0, 1, 1, 1), 330);
  check_pools<double>(pool(2, 3, 7, 6, 3, 3, 2, 1, 1, false), 340);
  check_pad<double>({2, 3, 4, 5}, {0, 1, 3, 4}, {1, 0, 3, 2}, true, 350);
  fovea::cuda_emulation::configure({});
}
