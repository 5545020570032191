// The CUDA convolution, pooling and padding kernels (backends/cuda/convolution.cu) against the
// CPU backend: each op, compiled for both on the same random inputs, forward and backward, in
// f32 and f64, over strides, padding, dilation, groups (depthwise included), batch 1 and odd
// sizes; pad also on integers; the gradients of a small convolutional network; and that the
// kernels, which use no atomics, give the same bits at every run, recorded in a CUDA Graph or not.
//
// Where no GPU is visible every test is skipped, saying why. Run just these with
//   ./fovea_tests -sf="*cuda_conv_test*"
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <fovea/ops/convolution.h>

#include "testing.h"

namespace {

using namespace fovea;
using fovea::testing::have_gpu;
using fovea::testing::random_tensor;

// Sums in another order than the CPU's: a few ulps of the terms' magnitude.
struct Tolerance {
  double rtol, atol;
};
Tolerance tolerance_for(DType dtype) { return dtype == f64 ? Tolerance{1e-10, 1e-12} : Tolerance{1e-4, 1e-5}; }

// |gpu - cpu| <= atol·max(1, max|cpu|) + rtol·|cpu| elementwise (equal values and two NaNs pass):
// the absolute part scaled to the tensor, since an element that sums terms of either sign to
// nearly 0 keeps the rounding error of its terms. Reports the first element that fails.
void expect_close(const Tensor& gpu, const Tensor& cpu) {
  REQUIRE(dtype_name(gpu.dtype()) == dtype_name(cpu.dtype()));
  REQUIRE(gpu.shape().to_string() == cpu.shape().to_string());
  const Tolerance t = is_floating(cpu.dtype()) ? tolerance_for(cpu.dtype()) : Tolerance{0, 0};
  double largest = 1;
  for (std::int64_t i = 0; i < cpu.numel(); ++i)
    if (std::isfinite(cpu.at(i))) largest = std::max(largest, std::abs(cpu.at(i)));
  for (std::int64_t i = 0; i < gpu.numel(); ++i) {
    const double a = gpu.at(i), e = cpu.at(i);
    if (a == e || (std::isnan(a) && std::isnan(e))) continue;
    if (!(std::abs(a - e) <= t.atol * largest + t.rtol * std::abs(e))) {
      FAIL_CHECK("element " << i << " of " << gpu.shape().to_string() << ": GPU " << a << ", CPU " << e);
      return;
    }
  }
}

// Compiles `outputs` for the CPU and the GPU, runs both on `feeds` and compares every output.
void check_backends_agree(Graph& g, const std::vector<Value>& outputs, const Feeds& feeds) {
  const CompileOptions options{.updates = {}, .check_finite_feeds = false};
  const std::vector<Tensor> expected = compile(g, outputs, cpu(), options).run(feeds);
  const std::vector<Tensor> got = compile(g, outputs, cuda(), options).run(feeds);
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("output " << i << ": " << outputs[i].name() << " " << outputs[i].type().to_string());
    expect_close(got[i], expected[i]);
  }
}

// Random multiples of 1/2 in [-2, 2), so that pooling windows hold ties, with a NaN in the
// first row and a -inf in the second.
Tensor coarse_with_nan_and_infinity(DType dtype, const Shape& shape, std::uint64_t seed) {
  Tensor t = random_tensor(dtype, shape, seed, -2, 2);
  auto edit = [&](auto data) {
    using T = std::remove_reference_t<decltype(data[0])>;
    for (T& v : data) v = std::floor(2 * v) / 2;
    data[3] = std::numeric_limits<T>::quiet_NaN();
    data[static_cast<std::size_t>(shape[3] + 5)] = -std::numeric_limits<T>::infinity();
  };
  if (dtype == f32)
    edit(t.data<float>());
  else
    edit(t.data<double>());
  return t;
}

struct ConvCase {
  Shape x, w;
  ConvAttributes attributes;
};

std::string describe(const ConvCase& c) {
  const ConvAttributes& a = c.attributes;
  return "x " + c.x.to_string() + " w " + c.w.to_string() + " stride " + std::to_string(a.stride[0]) + "," +
         std::to_string(a.stride[1]) + " padding " + std::to_string(a.padding[0]) + "," + std::to_string(a.padding[1]) +
         "," + std::to_string(a.padding[2]) + "," + std::to_string(a.padding[3]) + " dilation " +
         std::to_string(a.dilation[0]) + "," + std::to_string(a.dilation[1]) + " groups " + std::to_string(a.groups);
}

// Strides, uneven padding, dilation, groups, a channel multiplier, depthwise, batch 1, odd and
// one-row images, 1x1 kernels, more than one 64-wide tile of output channels, and a batch long
// enough for the backward filter to split its reduction.
const std::vector<ConvCase> kConvCases = {
    {{2, 3, 9, 7}, {5, 3, 3, 3}, {{1, 1}, {1, 1, 1, 1}, {1, 1}, 1}},
    {{1, 4, 11, 10}, {6, 4, 3, 2}, {{2, 1}, {1, 0, 2, 1}, {1, 2}, 1}},
    {{2, 6, 8, 9}, {4, 3, 3, 3}, {{1, 2}, {2, 1, 0, 2}, {2, 1}, 2}},
    {{2, 4, 7, 7}, {8, 1, 3, 3}, {{1, 1}, {1, 1, 1, 1}, {1, 1}, 4}},
    {{3, 5, 13, 12}, {5, 1, 3, 3}, {{2, 2}, {1, 1, 1, 1}, {1, 1}, 5}},
    {{1, 7, 9, 9}, {7, 1, 5, 3}, {{1, 2}, {2, 3, 1, 0}, {2, 1}, 7}},
    {{1, 3, 1, 17}, {70, 3, 1, 4}, {{1, 3}, {0, 2, 0, 1}, {1, 1}, 1}},
    {{3, 16, 5, 5}, {130, 16, 1, 1}, {{1, 1}, {0, 0, 0, 0}, {1, 1}, 1}},
    {{8, 3, 32, 30}, {4, 3, 3, 3}, {{1, 1}, {1, 1, 1, 1}, {1, 1}, 1}},
};

// Bitwise equality (NaNs equal).
void expect_identical(const Tensor& actual, const Tensor& expected) {
  REQUIRE(actual.shape().to_string() == expected.shape().to_string());
  for (std::int64_t i = 0; i < actual.numel(); ++i) {
    const double a = actual.at(i), e = expected.at(i);
    if (!(a == e || (std::isnan(a) && std::isnan(e)))) {
      FAIL_CHECK("element " << i << ": " << a << ", expected " << e);
      return;
    }
  }
}

// A small convolutional network over `batch` images of 3 x 32 x 30: reflect padding, a conv,
// max pooling, a depthwise conv, a 1x1 conv and average pooling; its outputs are the gradients
// of a sum of squares with respect to the input and the three filters, and the loss.
struct SmallCnn {
  Shape x_shape;
  Value x, w1, w2, w3;
  std::vector<Value> outputs;

  SmallCnn(Graph& g, DType dtype, std::int64_t batch) : x_shape{batch, 3, 32, 30} {
    x = g.placeholder("x", dtype, x_shape);
    w1 = g.placeholder("w1", dtype, {8, 3, 3, 3});
    w2 = g.placeholder("w2", dtype, {8, 1, 3, 3});
    w3 = g.placeholder("w3", dtype, {4, 8, 1, 1});
    Value h = relu(conv2d(pad(x, {0, 0, 1, 1}, {0, 0, 1, 1}, PadMode::reflect), w1));
    h = max_pool2d(h, {2, 2});
    h = relu(conv2d(h, w2, {.stride = {1, 1}, .padding = 1, .groups = 8}));
    h = avg_pool2d(conv2d(h, w3), {2, 2}, {.padding = 1, .count_include_pad = false});
    Value loss = reduce_sum(mul(h, h));
    outputs = grad(loss, {x, w1, w2, w3});
    outputs.push_back(loss);
  }

  Feeds feeds(std::uint64_t seed) const {
    const DType dtype = x.dtype();
    return {{x, random_tensor(dtype, x_shape, seed)},
            {w1, random_tensor(dtype, w1.shape(), seed + 1)},
            {w2, random_tensor(dtype, w2.shape(), seed + 2)},
            {w3, random_tensor(dtype, w3.shape(), seed + 3)}};
  }
};

}  // namespace

TEST_CASE("conv2d and its data and filter gradients agree with the CPU over strides, padding, dilation and groups" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  std::uint64_t seed = 1;
  for (DType dtype : {f32, f64})
    for (const ConvCase& c : kConvCases) {
      CAPTURE(dtype_name(dtype));
      INFO(describe(c));
      Graph g;
      Value x = g.placeholder("x", dtype, c.x), w = g.placeholder("w", dtype, c.w);
      Value y = conv2d_with(x, w, c.attributes);
      Value dy = g.placeholder("dy", dtype, y.shape());
      Value dx = conv2d_backward_data(dy, w, {c.x[2], c.x[3]}, c.attributes);
      Value dw = conv2d_backward_filter(x, dy, {c.w[2], c.w[3]}, c.attributes);
      check_backends_agree(g, {y, dx, dw},
                           {{x, random_tensor(dtype, c.x, seed++)},
                            {w, random_tensor(dtype, c.w, seed++)},
                            {dy, random_tensor(dtype, y.shape(), seed++)}});
    }
}

TEST_CASE("fused_conv2d with and without its ReLU agrees with the CPU over the same geometries" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  std::uint64_t seed = 100;
  for (DType dtype : {f32, f64})
    for (const ConvCase& c : kConvCases) {
      CAPTURE(dtype_name(dtype));
      INFO(describe(c));
      Graph g;
      Value x = g.placeholder("x", dtype, c.x), w = g.placeholder("w", dtype, c.w);
      Value bias = g.placeholder("bias", dtype, {c.w[0]});
      Value plain = fused_conv2d(x, w, bias, c.attributes, ConvActivation::none);
      Value rectified = fused_conv2d(x, w, bias, c.attributes, ConvActivation::relu);
      check_backends_agree(g, {plain, rectified},
                           {{x, random_tensor(dtype, c.x, seed++)},
                            {w, random_tensor(dtype, c.w, seed++)},
                            {bias, random_tensor(dtype, {c.w[0]}, seed++)}});
    }
}

TEST_CASE("conv1d and conv_transpose2d run on the conv kernels and agree with the CPU" * doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph g;
    Value x1 = g.placeholder("x1", dtype, {2, 4, 19}), w1 = g.placeholder("w1", dtype, {6, 2, 3});
    Value x2 = g.placeholder("x2", dtype, {2, 4, 5, 6}), w2 = g.placeholder("w2", dtype, {4, 3, 3, 3});
    Value y1 = conv1d(x1, w1, {.stride = 2, .padding = Padding::same(), .dilation = 1, .groups = 2});
    Value y2 = conv_transpose2d(x2, w2, {.stride = {3, 2}, .padding = {1, 1}, .output_padding = {1, 0}});
    check_backends_agree(g, {y1, y2},
                         {{x1, random_tensor(dtype, {2, 4, 19}, 1)},
                          {w1, random_tensor(dtype, {6, 2, 3}, 2)},
                          {x2, random_tensor(dtype, {2, 4, 5, 6}, 3)},
                          {w2, random_tensor(dtype, {4, 3, 3, 3}, 4)}});
  }
}

TEST_CASE("max and average pooling and their gradients agree with the CPU, with NaN, -inf and ties" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  struct PoolCase {
    Shape x;
    std::array<std::int64_t, 2> kernel;
    Pool2dOptions options;
  };
  const std::vector<PoolCase> cases = {
      {{2, 3, 8, 8}, {2, 2}, {}},
      {{1, 2, 9, 7}, {3, 3}, {.stride = {2, 2}, .padding = 1, .count_include_pad = false}},
      {{2, 2, 7, 9}, {3, 2}, {.stride = {1, 2}, .padding = Padding(1, 1), .count_include_pad = true}},
      {{1, 3, 11, 10}, {2, 3}, {.stride = {2, 1}, .padding = Padding(1, 1), .dilation = {2, 2}}},
      {{2, 1, 5, 5}, {3, 3}, {.stride = {1, 1}, .padding = Padding::same(), .count_include_pad = false}},
  };
  std::uint64_t seed = 100;
  for (DType dtype : {f32, f64})
    for (const PoolCase& c : cases) {
      CAPTURE(dtype_name(dtype));
      INFO("x " << c.x.to_string() << " kernel " << c.kernel[0] << "x" << c.kernel[1]);
      Graph g;
      Value x = g.placeholder("x", dtype, c.x);
      Value ymax = max_pool2d(x, c.kernel, c.options);
      const bool dilated = c.options.dilation != std::array<std::int64_t, 2>{1, 1};
      std::vector<Value> outputs = {ymax};
      Value loss = reduce_sum(mul(ymax, ymax));
      if (!dilated) {
        Value yavg = avg_pool2d(x, c.kernel, c.options);
        outputs.push_back(yavg);
        loss = add(loss, reduce_sum(mul(yavg, yavg)));
      }
      for (Value d : grad(loss, {x})) outputs.push_back(d);
      check_backends_agree(g, outputs, {{x, coarse_with_nan_and_infinity(dtype, c.x, seed++)}});
    }
}

TEST_CASE("constant and reflect padding and their gradients agree with the CPU, and so does padding integers" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph g;
    Value x = g.placeholder("x", dtype, {2, 3, 5, 6});
    Value constant = pad(x, {0, 1, 2, 0}, {1, 0, 3, 2}, PadMode::constant, 0.5);
    Value reflect = pad(x, {0, 0, 4, 1}, {0, 2, 2, 5}, PadMode::reflect);
    Value loss = add(reduce_sum(mul(constant, constant)), reduce_sum(mul(reflect, reflect)));
    std::vector<Value> outputs = {constant, reflect};
    for (Value d : grad(loss, {x})) outputs.push_back(d);
    check_backends_agree(g, outputs, {{x, random_tensor(dtype, {2, 3, 5, 6}, 7)}});
  }
  for (DType dtype : {i32, i64}) {
    CAPTURE(dtype_name(dtype));
    Graph g;
    Value x = g.placeholder("x", dtype, {3, 4});
    check_backends_agree(g, {pad(x, {1, 2}, {2, 1}, PadMode::constant, -3), pad(x, {2, 3}, {1, 2}, PadMode::reflect)},
                         {{x, random_tensor(dtype, {3, 4}, 8, -50, 50)}});
  }
}

TEST_CASE("the gradients of a small convolutional network agree between the CPU and the GPU" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph g;
    const SmallCnn net(g, dtype, 2);
    check_backends_agree(g, net.outputs, net.feeds(1));
  }
}

TEST_CASE("the convolution kernels give the same bits at every run, eager or replayed from a CUDA Graph" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  // A batch of 8 makes the first conv's filter gradient long enough to be split into chunks,
  // whose partial sums go through the backend's workspace.
  Graph g;
  const SmallCnn net(g, f32, 8);
  Executable eager = compile(g, net.outputs, cuda());
  Executable recorded = compile(g, net.outputs, cuda(), {.capture_graph = true});
  for (std::uint64_t step = 0; step < 3; ++step) {
    CAPTURE(step);
    const std::vector<Tensor> first = eager.run(net.feeds(10 + step)), again = eager.run(net.feeds(10 + step));
    const std::vector<Tensor> replayed = recorded.run(net.feeds(10 + step));
    REQUIRE(first.size() == again.size());
    for (std::size_t i = 0; i < first.size(); ++i) {
      INFO("output " << i);
      expect_identical(again[i], first[i]);
      expect_identical(replayed[i], first[i]);
    }
  }
  CHECK(recorded.captured());
}
