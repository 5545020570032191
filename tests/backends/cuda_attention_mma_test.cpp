// The tensor-core FlashAttention-2 forward of backends/cuda/attention_mma.cu, called through its
// launcher (launch_attention_forward_mma) on bf16 and f16 inputs in cudaMalloc'd buffers, against
// a plain f64 CPU reference on the same rounded inputs: head dims 64 and 128, Tq and Tk in
// {1, 17, 64, 130, 1000} (inside one tile, across tiles, not multiples of any tile), batch 3,
// with and without causality, with an f32 mask holding -inf entries and a fully masked row, and
// with dropout drawn from a step on the device.
//
// Where no GPU is visible (or one older than sm_80) every test that needs one prints why and
// passes. Run just these with
//   ./fovea_tests -sf="*cuda_attention_mma_test*"
#include "testing.h"

#if defined(FOVEA_WITH_CUDA)

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "fovea/backends/cuda/launch.h"
#include "fovea/core/philox.h"

namespace {

using fovea::cuda_backend::AttentionShape;
using fovea::cuda_backend::Element;
using fovea::cuda_backend::launch_attention_forward_mma;
using fovea::cuda_backend::mma_attention_supports;

constexpr double inf = std::numeric_limits<double>::infinity();

// The 16-bit types on the host: rounding from f32 and reading back, with the CUDA headers' own
// conversions (the ones the kernel's results are rounded with).
float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
float to_float(__half x) { return __half2float(x); }
template <typename Half>
Half from_float(float x) {
  if constexpr (std::is_same_v<Half, __nv_bfloat16>)
    return __float2bfloat16_rn(x);
  else
    return __float2half_rn(x);
}
template <typename Half>
Element element_of() {
  return std::is_same_v<Half, __nv_bfloat16> ? Element::bf16 : Element::f16;
}

// Whether the tests can run the kernel here; if not, says why.
bool have_mma_gpu() {
  if (!fovea::testing::have_gpu()) return false;
  if (mma_attention_supports(Element::bf16, 64, 64)) return true;
  MESSAGE("skipped: the GPU cannot run the mma.sync attention kernel (it needs compute capability 8.0)");
  return false;
}

// A device buffer of `bytes` (at least 1), freed on scope exit.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t bytes) {
    REQUIRE(cudaMalloc(&data_, std::max<std::size_t>(bytes, 1)) == cudaSuccess);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { cudaFree(data_); }
  void* get() const { return data_; }

  template <typename T>
  void upload(const std::vector<T>& host) {
    REQUIRE(cudaMemcpy(data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  template <typename T>
  std::vector<T> download(std::size_t count) const {
    std::vector<T> host(count);
    REQUIRE(cudaMemcpy(host.data(), data_, count * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
    return host;
  }

 private:
  void* data_ = nullptr;
};

struct Case {
  std::int64_t d, tq, tk;
  bool causal = false, mask = false;
  double p = 0;  // dropout probability; 0: none
};

constexpr std::int64_t kBatch = 3;
constexpr std::uint64_t kSeed = 31, kStream = 977;
constexpr std::int64_t kStep = 123456789;

// The mask [Tq, Tk] shared by every batch item: uniform in [-2, 0), -inf at every 7th entry and
// over all of row 1 (when there is a row 1: that row is fully masked).
std::vector<float> make_mask(std::int64_t tq, std::int64_t tk, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> uniform(-2.0f, 0.0f);
  std::vector<float> mask(static_cast<std::size_t>(tq * tk));
  for (std::size_t e = 0; e < mask.size(); ++e) {
    const auto row = static_cast<std::int64_t>(e) / tk;
    mask[e] = row == 1 || e % 7 == 3 ? -std::numeric_limits<float>::infinity() : uniform(rng);
  }
  return mask;
}

// ops/attention.h's definition in f64 on the rounded inputs: o [batch, Tq, D], lse [batch, Tq].
// Dropout keeps (i, j) of item b when float(u) >= float(p), as the kernels test it.
void reference(const Case& c, double scale, const std::vector<float>& q, const std::vector<float>& k,
               const std::vector<float>& v, const std::vector<float>& mask, std::vector<double>& o,
               std::vector<double>& lse) {
  const std::int64_t d = c.d, tq = c.tq, tk = c.tk;
  o.assign(static_cast<std::size_t>(kBatch * tq * d), 0.0);
  lse.assign(static_cast<std::size_t>(kBatch * tq), -inf);
  std::vector<double> s(static_cast<std::size_t>(tk));
  for (std::int64_t b = 0; b < kBatch; ++b)
    for (std::int64_t i = 0; i < tq; ++i) {
      const std::int64_t end = c.causal ? std::clamp<std::int64_t>(i + tk - tq + 1, 0, tk) : tk;
      double m = -inf;
      for (std::int64_t j = 0; j < tk; ++j) {
        s[j] = -inf;
        if (j >= end) continue;
        double dot = 0;
        for (std::int64_t x = 0; x < d; ++x)
          dot += static_cast<double>(q[(b * tq + i) * d + x]) * static_cast<double>(k[(b * tk + j) * d + x]);
        s[j] = scale * dot + (c.mask ? mask[i * tk + j] : 0.0);
        m = std::max(m, s[j]);
      }
      if (m == -inf) continue;  // no finite score: o = 0, lse = -inf
      double sum = 0;
      for (std::int64_t j = 0; j < tk; ++j) sum += std::exp(s[j] - m);
      const double row_lse = m + std::log(sum);
      lse[b * tq + i] = row_lse;
      for (std::int64_t j = 0; j < tk; ++j) {
        double weight = std::exp(s[j] - row_lse);
        if (c.p > 0) {
          const auto e = static_cast<std::uint64_t>((b * tq + i) * tk + j);
          const float u = static_cast<float>(fovea::philox::uniform(kSeed, kStream + kStep, e));
          weight *= u >= static_cast<float>(c.p) ? 1.0 / (1.0 - c.p) : 0.0;
        }
        if (weight == 0) continue;
        for (std::int64_t x = 0; x < d; ++x) o[(b * tq + i) * d + x] += weight * v[(b * tk + j) * d + x];
      }
    }
}

// Runs the kernel for `c` on random inputs and compares o and lse with the reference:
// |Δo| <= o_rtol·max|o| + o_atol, |Δlse| <= 1e-3·max(1, |lse|), infinities equal.
template <typename Half>
void check_case(const Case& c, std::uint64_t seed) {
  const bool bf16 = std::is_same_v<Half, __nv_bfloat16>;
  INFO((bf16 ? "bf16" : "f16") << " D " << c.d << " Tq " << c.tq << " Tk " << c.tk << " causal " << c.causal << " mask "
                               << c.mask << " p " << c.p);
  const std::int64_t d = c.d, tq = c.tq, tk = c.tk;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);

  // Inputs rounded to the 16-bit type; the reference reads the rounded values.
  auto make = [&](std::int64_t count, std::vector<Half>& half, std::vector<float>& rounded) {
    half.resize(static_cast<std::size_t>(count));
    rounded.resize(static_cast<std::size_t>(count));
    for (std::size_t e = 0; e < half.size(); ++e) {
      half[e] = from_float<Half>(uniform(rng));
      rounded[e] = to_float(half[e]);
    }
  };
  std::vector<Half> q_half, k_half, v_half;
  std::vector<float> q, k, v;
  make(kBatch * tq * d, q_half, q);
  make(kBatch * tk * d, k_half, k);
  make(kBatch * tk * d, v_half, v);
  const std::vector<float> mask = c.mask ? make_mask(tq, tk, rng) : std::vector<float>{};

  DeviceBuffer q_device(q_half.size() * sizeof(Half)), k_device(k_half.size() * sizeof(Half)),
      v_device(v_half.size() * sizeof(Half)), mask_device(mask.size() * sizeof(float)),
      o_device(static_cast<std::size_t>(kBatch * tq * d) * sizeof(Half)),
      lse_device(static_cast<std::size_t>(kBatch * tq) * sizeof(float)), step_device(sizeof(std::int64_t));
  q_device.upload(q_half);
  k_device.upload(k_half);
  v_device.upload(v_half);
  if (c.mask) mask_device.upload(mask);
  step_device.upload(std::vector<std::int64_t>{kStep});

  AttentionShape shape;
  shape.batch = kBatch;
  shape.tq = tq;
  shape.tk = tk;
  shape.d = shape.dv = d;
  shape.scale = scale;
  shape.causal = c.causal;
  shape.batch_rank = 1;
  shape.batch_dims[0] = kBatch;
  if (c.mask) {  // [Tq, Tk] broadcast over the batch
    shape.mask_batch_strides[0] = 0;
    shape.mask_row_stride = tk;
    shape.mask_column_stride = 1;
  }
  if (c.p > 0) {
    shape.dropout.p = c.p;
    shape.dropout.scale = 1.0 / (1.0 - c.p);
    shape.dropout.seed = kSeed;
    shape.dropout.stream = kStream;
    shape.dropout.step = static_cast<const std::int64_t*>(step_device.get());
  }
  REQUIRE(launch_attention_forward_mma(element_of<Half>(), shape, q_device.get(), k_device.get(), v_device.get(),
                                       c.mask ? static_cast<const float*>(mask_device.get()) : nullptr, o_device.get(),
                                       static_cast<float*>(lse_device.get()), nullptr));
  REQUIRE(cudaGetLastError() == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const std::vector<Half> o_half = o_device.download<Half>(static_cast<std::size_t>(kBatch * tq * d));
  const std::vector<float> lse = lse_device.download<float>(static_cast<std::size_t>(kBatch * tq));

  std::vector<double> o_expected, lse_expected;
  reference(c, scale, q, k, v, mask, o_expected, lse_expected);

  double o_max = 0;
  for (double x : o_expected) o_max = std::max(o_max, std::abs(x));
  const double o_rtol = bf16 ? 1e-2 : 2e-3, o_atol = bf16 ? 8e-3 : 1e-3;
  for (std::size_t e = 0; e < o_half.size(); ++e) {
    const double got = to_float(o_half[e]), expected = o_expected[e];
    if (!(std::abs(got - expected) <= o_rtol * o_max + o_atol)) {
      FAIL_CHECK("o element " << e << " (item " << e / (tq * d) << ", row " << e / d % tq << ", dim " << e % d
                              << "): GPU " << got << ", f64 reference " << expected << ", max|o| " << o_max);
      break;
    }
  }
  for (std::size_t e = 0; e < lse.size(); ++e) {
    const double got = lse[e], expected = lse_expected[e];
    if (got == expected) continue;  // -inf for rows with no finite score
    if (!(std::abs(got - expected) <= 1e-3 * std::max(1.0, std::abs(expected)))) {
      FAIL_CHECK("lse element " << e << " (item " << e / tq << ", row " << e % tq << "): GPU " << got
                                << ", f64 reference " << expected);
      break;
    }
  }
  // The fully masked row (row 1 of every item) is exactly o = 0 and lse = -inf, never NaN.
  if (c.mask && tq > 1)
    for (std::int64_t b = 0; b < kBatch; ++b) {
      CHECK(lse[b * tq + 1] == -inf);
      for (std::int64_t x = 0; x < d; ++x) CHECK(to_float(o_half[(b * tq + 1) * d + x]) == 0.0f);
    }
}

const std::vector<std::int64_t> kLengths = {1, 17, 64, 130, 1000};

// Every (type, D, Tq, Tk) with `variant(index)` choosing the rest.
template <typename MakeCase>
void check_all_sizes(MakeCase&& variant, std::uint64_t seed) {
  int index = 0;
  for (std::int64_t d : {64, 128})
    for (std::int64_t tq : kLengths)
      for (std::int64_t tk : kLengths) {
        const Case c = variant(d, tq, tk, index++);
        check_case<__nv_bfloat16>(c, seed++);
        check_case<__half>(c, seed++);
      }
}

TEST_CASE("mma attention refuses the types, head dims and alignments it has no kernel for") {
  CHECK_FALSE(mma_attention_supports(Element::f32, 64, 64));
  CHECK_FALSE(mma_attention_supports(Element::f64, 128, 128));
  CHECK_FALSE(mma_attention_supports(Element::bf16, 64, 128));
  CHECK_FALSE(mma_attention_supports(Element::f16, 96, 96));
  CHECK_FALSE(mma_attention_supports(Element::bf16, 32, 32));
  AttentionShape shape;
  shape.batch = 1;
  shape.tq = shape.tk = 8;
  shape.d = shape.dv = 64;
  alignas(16) static unsigned char bytes[64];
  CHECK_FALSE(launch_attention_forward_mma(Element::f32, shape, bytes, bytes, bytes, nullptr, bytes, nullptr, nullptr));
  CHECK_FALSE(launch_attention_forward_mma(Element::bf16, shape, bytes + 2, bytes, bytes, nullptr, bytes, nullptr,
                                           nullptr));  // q not on a 16-byte boundary
  shape.dv = 32;
  CHECK_FALSE(
      launch_attention_forward_mma(Element::bf16, shape, bytes, bytes, bytes, nullptr, bytes, nullptr, nullptr));
}

TEST_CASE("mma attention matches an f64 reference on every size without mask or causality") {
  if (!have_mma_gpu()) return;
  check_all_sizes([](std::int64_t d, std::int64_t tq, std::int64_t tk, int) { return Case{d, tq, tk}; }, 100);
}

TEST_CASE("mma attention matches an f64 reference with bottom-right causality on every size") {
  if (!have_mma_gpu()) return;
  check_all_sizes(
      [](std::int64_t d, std::int64_t tq, std::int64_t tk, int) {
        return Case{d, tq, tk, /*causal=*/true};
      },
      200);
}

TEST_CASE("mma attention adds an f32 mask with -inf entries and gives a fully masked row o = 0, lse = -inf") {
  if (!have_mma_gpu()) return;
  check_all_sizes(
      [](std::int64_t d, std::int64_t tq, std::int64_t tk, int index) {
        return Case{d, tq, tk, /*causal=*/index % 2 == 1, /*mask=*/true};
      },
      300);
}

TEST_CASE("mma attention with dropout p = 0.2 and a step draws the keep bits of the other kernels") {
  if (!have_mma_gpu()) return;
  check_all_sizes(
      [](std::int64_t d, std::int64_t tq, std::int64_t tk, int index) {
        return Case{d, tq, tk, /*causal=*/index % 2 == 1, /*mask=*/index % 3 == 0, /*p=*/0.2};
      },
      400);
}

TEST_CASE("mma attention with no keys gives o = 0 and lse = -inf, and with no queries launches nothing") {
  if (!have_mma_gpu()) return;
  for (std::int64_t d : {64, 128}) {
    check_case<__nv_bfloat16>(Case{d, 5, 0}, 500);
    check_case<__half>(Case{d, 130, 0, /*causal=*/true}, 501);
    AttentionShape shape;
    shape.batch = 2;
    shape.tq = 0;
    shape.tk = 7;
    shape.d = shape.dv = d;
    CHECK(launch_attention_forward_mma(Element::bf16, shape, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                       nullptr));
  }
}

}  // namespace

#endif  // FOVEA_WITH_CUDA
