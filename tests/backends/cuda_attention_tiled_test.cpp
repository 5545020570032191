// The tiled FlashAttention-2 kernels of backends/cuda/attention_tiled.cu, chosen with
// FOVEA_CUDA_ATTENTION=tiled, against the CPU backend: forward outputs and every gradient, on
// sizes that are not multiples of the tiles, every head-dim template, masks, causality, dropout
// with a step, and fully masked rows.
//
// Where no GPU is visible every test prints why and passes. Run just these with
//   ./fovea_tests -sf="*cuda_attention_tiled_test*"
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "passes/optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::have_gpu;
using fovea::testing::random_tensor;
using fovea::testing::ScopedEnv;

constexpr double inf = std::numeric_limits<double>::infinity();

// |gpu - cpu| <= atol + rtol·|cpu| elementwise, equal values (infinities included) always
// passing: the GPU sums in another order than the CPU (tolerances of cuda_test's kSummation).
void expect_agree(const Tensor& gpu, const Tensor& cpu) {
  const bool f64_values = cpu.dtype() == DType::f64;
  const double rtol = f64_values ? 1e-10 : 1e-4, atol = f64_values ? 1e-12 : 1e-5;
  REQUIRE(dtype_name(gpu.dtype()) == dtype_name(cpu.dtype()));
  REQUIRE(gpu.shape().to_string() == cpu.shape().to_string());
  for (std::int64_t i = 0; i < gpu.numel(); ++i) {
    const double a = gpu.at(i), e = cpu.at(i);
    if (a == e) continue;
    if (!(std::abs(a - e) <= atol + rtol * std::abs(e))) {
      FAIL_CHECK("element " << i << " of " << gpu.shape().to_string() << ": GPU " << a << ", CPU " << e);
      return;
    }
  }
}

// Runs `outputs` on the CPU and on the GPU with the same feeds, checks they agree, and returns
// the GPU's. The caller sets FOVEA_CUDA_ATTENTION.
std::vector<Tensor> check_backends_agree(Graph& g, const std::vector<Value>& outputs, const Feeds& feeds) {
  Executable on_cpu = compile(g, outputs, cpu(), {.check_finite_feeds = false});
  Executable on_gpu = compile(g, outputs, cuda(0), {.check_finite_feeds = false});
  const std::vector<Tensor> expected = on_cpu.run(feeds), actual = on_gpu.run(feeds);
  REQUIRE(actual.size() == expected.size());
  for (std::size_t i = 0; i < actual.size(); ++i) {
    CAPTURE(i);
    expect_agree(actual[i], expected[i]);
  }
  return actual;
}

struct Case {
  std::vector<std::int64_t> batch;
  std::int64_t tq, tk, d, dv;
  bool causal;
  std::vector<std::int64_t> mask;  // empty: no mask
  double p = 0;                    // dropout probability; 0: none
};

Shape with(std::vector<std::int64_t> dims, std::int64_t rows, std::int64_t cols) {
  dims.push_back(rows);
  dims.push_back(cols);
  return Shape(dims);
}

// A random additive mask in [-2, 0) of `shape`, -∞ over all of query row 1 (a fully masked row,
// where the mask has rows) and over every 11th entry.
Tensor random_mask(DType dtype, const std::vector<std::int64_t>& shape, std::uint64_t seed) {
  Tensor m = random_tensor(dtype, Shape(shape), seed, -2.0, 0.0);
  visit_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    if constexpr (std::is_floating_point_v<T>) {
      auto data = m.data<T>();
      const std::int64_t cols = shape.back(), rows = shape[shape.size() - 2];
      for (std::size_t i = 0; i < data.size(); ++i) {
        const auto row = static_cast<std::int64_t>(i) / cols % rows;
        if ((rows > 1 && row == 1) || i % 11 == 3) data[i] = -std::numeric_limits<T>::infinity();
      }
    }
  });
  return m;
}

// Builds fused_attention and its backward for `c` in `dtype` on random inputs, and checks
// o, lse, dq, dk and dv against the CPU; returns the GPU's five tensors.
std::vector<Tensor> check_case(DType dtype, const Case& c, std::uint64_t& seed) {
  CAPTURE(dtype_name(dtype));
  INFO("batch rank " << c.batch.size() << " Tq " << c.tq << " Tk " << c.tk << " D " << c.d << " Dv " << c.dv
                     << " causal " << c.causal << " mask rank " << c.mask.size() << " p " << c.p);
  Graph g;
  Value q = g.placeholder("q", dtype, with(c.batch, c.tq, c.d));
  Value k = g.placeholder("k", dtype, with(c.batch, c.tk, c.d));
  Value v = g.placeholder("v", dtype, with(c.batch, c.tk, c.dv));
  Value d_o = g.placeholder("d_o", dtype, with(c.batch, c.tq, c.dv));
  Feeds feeds = {{q, random_tensor(dtype, q.shape(), seed++)},
                 {k, random_tensor(dtype, k.shape(), seed++)},
                 {v, random_tensor(dtype, v.shape(), seed++)},
                 {d_o, random_tensor(dtype, d_o.shape(), seed++)}};
  Value mask;
  if (!c.mask.empty()) {
    mask = g.placeholder("mask", dtype, Shape(c.mask));
    feeds.push_back({mask, random_mask(dtype, c.mask, seed++)});
  }
  AttentionDropout dropout;
  if (c.p > 0) {
    dropout = {.p = c.p, .scale = 1.0 / (1.0 - c.p), .seed = 31, .stream = -77};
    dropout.step = g.placeholder("step", i64, {});
    feeds.push_back({dropout.step, Tensor::scalar<std::int64_t>(123456789)});
  }
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
  const FusedAttentionOutputs forward = fused_attention(q, k, v, mask, scale, c.causal, dropout);
  const FusedAttentionGradients backward =
      fused_attention_backward(q, k, v, mask, forward.output, forward.lse, d_o, scale, c.causal, dropout);
  return check_backends_agree(g, {forward.output, forward.lse, backward.dq, backward.dk, backward.dv}, feeds);
}

TEST_CASE("tiled fused attention agrees with the CPU on untiled sizes, every head dim, masks and causality" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  const ScopedEnv tiled("FOVEA_CUDA_ATTENTION", "tiled");
  const std::vector<Case> cases = {
      {{2, 3}, 37, 130, 32, 32, false, {}},
      {{2}, 130, 37, 64, 64, true, {}},  // Tq > Tk: the first 93 rows see no key
      {{}, 1, 37, 100, 100, false, {1, 37}},
      {{2, 2}, 65, 130, 128, 128, true, {2, 1, 1, 130}},
      {{3}, 37, 37, 128, 64, false, {3, 37, 37}},  // row 1 fully masked
      {{1}, 130, 130, 64, 100, true, {130, 130}},
      {{2}, 1, 1, 32, 32, false, {}},
      {{2}, 5, 0, 32, 32, false, {}},    // no keys: o = 0, lse = -∞, zero gradients
      {{1}, 4, 6, 160, 160, false, {}},  // too wide for the tiles: the simple kernels run
  };
  std::uint64_t seed = 1200;
  for (DType dtype : {f32, f64})
    for (const Case& c : cases) check_case(dtype, c, seed);
}

TEST_CASE("tiled fused attention with dropout and a step draws the CPU's keep bits, forward and backward" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  const ScopedEnv tiled("FOVEA_CUDA_ATTENTION", "tiled");
  const std::vector<Case> cases = {
      {{2, 3}, 65, 130, 32, 32, false, {}, 0.1},
      {{2}, 70, 130, 64, 64, true, {}, 0.5},
      {{2}, 37, 47, 100, 128, true, {2, 1, 1, 47}, 0.2},
  };
  std::uint64_t seed = 1300;
  for (DType dtype : {f32, f64})
    for (const Case& c : cases) check_case(dtype, c, seed);
}

TEST_CASE("a fully masked row gets o = 0, lse = -inf and zero, finite gradients from the tiled kernels" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  const ScopedEnv tiled("FOVEA_CUDA_ATTENTION", "tiled");
  std::uint64_t seed = 1400;
  for (DType dtype : {f32, f64}) {
    // Row 1 of every item is -∞ in the mask (random_mask); rows are 37 long, Dv = D = 64.
    const Case c{{2}, 37, 70, 64, 64, false, {2, 37, 70}};
    const std::vector<Tensor> got = check_case(dtype, c, seed);
    const Tensor &o = got[0], &lse = got[1], &dq = got[2], &dk = got[3], &dv = got[4];
    for (std::int64_t b = 0; b < 2; ++b) {
      CHECK(lse.at(b * 37 + 1) == -inf);
      for (std::int64_t x = 0; x < 64; ++x) {
        CHECK(o.at((b * 37 + 1) * 64 + x) == 0.0);
        CHECK(dq.at((b * 37 + 1) * 64 + x) == 0.0);
      }
    }
    for (const Tensor* t : {&dk, &dv})
      for (std::int64_t i = 0; i < t->numel(); ++i) REQUIRE(std::isfinite(t->at(i)));
  }
}

TEST_CASE("an unknown FOVEA_CUDA_ATTENTION value is a fovea::Error naming the variable and the node" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  const ScopedEnv fast("FOVEA_CUDA_ATTENTION", "fast");
  Graph g;
  Value q = g.placeholder("q", f32, {2, 5, 8});
  Value o = fused_attention(q, q, q, {}, 0.5, false).output;
  Executable on_gpu = compile(g, {o}, cuda(0));
  CHECK_THROWS_AS(on_gpu.run({{q, random_tensor(f32, {2, 5, 8}, 1)}}), Error);
  try {
    on_gpu.run({{q, random_tensor(f32, {2, 5, 8}, 1)}});
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK(message.find("FOVEA_CUDA_ATTENTION") != std::string::npos);
    CHECK(message.find("fused_attention") != std::string::npos);
    CHECK(message.find("cuda_attention_tiled_test") != std::string::npos);
  }
}

}  // namespace
