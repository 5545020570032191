// The tensor-core FlashAttention-2 forward of backends/cuda/attention_mma.cu and backward of
// backends/cuda/attention_mma_backward.cu, called through their launchers
// (launch_attention_forward_mma, launch_attention_backward_mma) on bf16 and f16 inputs in
// cudaMalloc'd buffers, against a plain f64 CPU reference on the same rounded inputs: head dims 64
// and 128, Tq and Tk in {1, 17, 64, 130, 1000} (forward, batch 3) or {1, 17, 64, 130, 300}
// (backward, batch 2): inside one tile, across tiles, not multiples of any tile; with and
// without causality, with an f32 mask holding -inf entries and a fully masked row, and with
// dropout drawn from a step on the device.
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
#include <cstring>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "fovea/backends/cuda/launch.h"
#include "fovea/core/philox.h"

namespace {

using fovea::cuda_backend::AttentionShape;
using fovea::cuda_backend::Element;
using fovea::cuda_backend::launch_attention_backward_mma;
using fovea::cuda_backend::launch_attention_forward_mma;
using fovea::cuda_backend::mma_attention_backward_scratch_bytes;
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
  fovea::testing::skip_test_case("the GPU cannot run the mma.sync attention kernel (it needs compute capability 8.0)");
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

constexpr std::int64_t kBatch = 3;

struct Case {
  std::int64_t d, tq, tk;
  bool causal = false, mask = false;
  double p = 0;  // dropout probability; 0: none
  std::int64_t batch = kBatch;
};
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

// Keys [0, key_end) are the ones query i sees (bottom-right causality).
std::int64_t key_end(const Case& c, std::int64_t i) {
  return c.causal ? std::clamp<std::int64_t>(i + c.tk - c.tq + 1, 0, c.tk) : c.tk;
}

// Z[i, j] of item b: 1/(1-p) where float(u) >= float(p), as the kernels test it, else 0; 1 without dropout.
double dropout_factor(const Case& c, std::int64_t b, std::int64_t i, std::int64_t j) {
  if (c.p <= 0) return 1;
  const auto e = static_cast<std::uint64_t>((b * c.tq + i) * c.tk + j);
  const float u = static_cast<float>(fovea::philox::uniform(kSeed, kStream + kStep, e));
  return u >= static_cast<float>(c.p) ? 1.0 / (1.0 - c.p) : 0.0;
}

// ops/attention.h's definition in f64 on the rounded inputs: o [batch, Tq, D], lse [batch, Tq].
void reference(const Case& c, double scale, const std::vector<float>& q, const std::vector<float>& k,
               const std::vector<float>& v, const std::vector<float>& mask, std::vector<double>& o,
               std::vector<double>& lse) {
  const std::int64_t d = c.d, tq = c.tq, tk = c.tk;
  o.assign(static_cast<std::size_t>(c.batch * tq * d), 0.0);
  lse.assign(static_cast<std::size_t>(c.batch * tq), -inf);
  std::vector<double> s(static_cast<std::size_t>(tk));
  for (std::int64_t b = 0; b < c.batch; ++b)
    for (std::int64_t i = 0; i < tq; ++i) {
      const std::int64_t end = key_end(c, i);
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
        const double weight = std::exp(s[j] - row_lse) * dropout_factor(c, b, i, j);
        if (weight == 0) continue;
        for (std::int64_t x = 0; x < d; ++x) o[(b * tq + i) * d + x] += weight * v[(b * tk + j) * d + x];
      }
    }
}

// A tensor of random values in [-1, 1) rounded to the 16-bit type: the values for the GPU, and
// the rounded values as floats for the reference.
template <typename Half>
struct Rounded {
  std::vector<Half> half;
  std::vector<float> value;

  Rounded(std::int64_t count, std::mt19937_64& rng) {
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (std::int64_t e = 0; e < count; ++e) {
      half.push_back(from_float<Half>(uniform(rng)));
      value.push_back(to_float(half.back()));
    }
  }
};

// The launchers' description of `c`: q [batch, Tq, D], k and v [batch, Tk, D], the mask [Tq, Tk]
// broadcast over the batch, and dropout with the step at `step` (a device pointer).
AttentionShape shape_of(const Case& c, const std::int64_t* step) {
  AttentionShape shape;
  shape.batch = c.batch;
  shape.tq = c.tq;
  shape.tk = c.tk;
  shape.d = shape.dv = c.d;
  shape.scale = 1.0 / std::sqrt(static_cast<double>(c.d));
  shape.causal = c.causal;
  shape.batch_rank = 1;
  shape.batch_dims[0] = c.batch;
  if (c.mask) {
    shape.mask_batch_strides[0] = 0;
    shape.mask_row_stride = c.tk;
    shape.mask_column_stride = 1;
  }
  if (c.p > 0) {
    shape.dropout.p = c.p;
    shape.dropout.scale = 1.0 / (1.0 - c.p);
    shape.dropout.seed = kSeed;
    shape.dropout.stream = kStream;
    shape.dropout.step = step;
  }
  return shape;
}

// The first element e where |got[e] - expected[e]| > rtol·max|expected| + atol (NaN included), or -1.
template <typename Half>
std::int64_t first_mismatch(const std::vector<Half>& got, const std::vector<double>& expected, double rtol, double atol,
                            double& largest) {
  largest = 0;
  for (double x : expected) largest = std::max(largest, std::abs(x));
  for (std::size_t e = 0; e < got.size(); ++e)
    if (!(std::abs(to_float(got[e]) - expected[e]) <= rtol * largest + atol)) return static_cast<std::int64_t>(e);
  return -1;
}

// Runs the kernel for `c` on random inputs and compares o and lse with the reference:
// |Δo| <= o_rtol·max|o| + o_atol, |Δlse| <= 1e-3·max(1, |lse|), infinities equal.
template <typename Half>
void check_case(const Case& c, std::uint64_t seed) {
  const bool bf16 = std::is_same_v<Half, __nv_bfloat16>;
  INFO((bf16 ? "bf16" : "f16") << " D " << c.d << " Tq " << c.tq << " Tk " << c.tk << " causal " << c.causal << " mask "
                               << c.mask << " p " << c.p);
  const std::int64_t d = c.d, tq = c.tq, tk = c.tk;
  std::mt19937_64 rng(seed);
  const Rounded<Half> q(c.batch * tq * d, rng), k(c.batch * tk * d, rng), v(c.batch * tk * d, rng);
  const std::vector<float> mask = c.mask ? make_mask(tq, tk, rng) : std::vector<float>{};

  DeviceBuffer q_device(q.half.size() * sizeof(Half)), k_device(k.half.size() * sizeof(Half)),
      v_device(v.half.size() * sizeof(Half)), mask_device(mask.size() * sizeof(float)),
      o_device(static_cast<std::size_t>(c.batch * tq * d) * sizeof(Half)),
      lse_device(static_cast<std::size_t>(c.batch * tq) * sizeof(float)), step_device(sizeof(std::int64_t));
  q_device.upload(q.half);
  k_device.upload(k.half);
  v_device.upload(v.half);
  if (c.mask) mask_device.upload(mask);
  step_device.upload(std::vector<std::int64_t>{kStep});

  const AttentionShape shape = shape_of(c, static_cast<const std::int64_t*>(step_device.get()));
  REQUIRE(launch_attention_forward_mma(element_of<Half>(), shape, q_device.get(), k_device.get(), v_device.get(),
                                       c.mask ? static_cast<const float*>(mask_device.get()) : nullptr, o_device.get(),
                                       static_cast<float*>(lse_device.get()), nullptr));
  REQUIRE(cudaGetLastError() == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const std::vector<Half> o_half = o_device.download<Half>(static_cast<std::size_t>(c.batch * tq * d));
  const std::vector<float> lse = lse_device.download<float>(static_cast<std::size_t>(c.batch * tq));

  std::vector<double> o_expected, lse_expected;
  reference(c, shape.scale, q.value, k.value, v.value, mask, o_expected, lse_expected);

  double o_max = 0;
  const std::int64_t bad = first_mismatch(o_half, o_expected, bf16 ? 1e-2 : 2e-3, bf16 ? 8e-3 : 1e-3, o_max);
  if (bad >= 0)
    FAIL_CHECK("o element " << bad << " (item " << bad / (tq * d) << ", row " << bad / d % tq << ", dim " << bad % d
                            << "): GPU " << to_float(o_half[static_cast<std::size_t>(bad)]) << ", f64 reference "
                            << o_expected[static_cast<std::size_t>(bad)] << ", max|o| " << o_max);
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
    for (std::int64_t b = 0; b < c.batch; ++b) {
      CHECK(lse[b * tq + 1] == -inf);
      for (std::int64_t x = 0; x < d; ++x) CHECK(to_float(o_half[(b * tq + 1) * d + x]) == 0.0f);
    }
}

// ops/attention.h's backward in f64, from the forward's lse and the o the kernel is given (o
// rounded to the 16-bit type): dq, dk, dv.
void backward_reference(const Case& c, double scale, const std::vector<float>& q, const std::vector<float>& k,
                        const std::vector<float>& v, const std::vector<float>& mask, const std::vector<float>& o,
                        const std::vector<double>& lse, const std::vector<float>& d_o, std::vector<double>& dq,
                        std::vector<double>& dk, std::vector<double>& dv) {
  const std::int64_t d = c.d, tq = c.tq, tk = c.tk;
  dq.assign(static_cast<std::size_t>(c.batch * tq * d), 0.0);
  dk.assign(static_cast<std::size_t>(c.batch * tk * d), 0.0);
  dv.assign(static_cast<std::size_t>(c.batch * tk * d), 0.0);
  auto dot = [d](const float* x, const float* y) {
    double sum = 0;
    for (std::int64_t e = 0; e < d; ++e) sum += static_cast<double>(x[e]) * static_cast<double>(y[e]);
    return sum;
  };
  for (std::int64_t b = 0; b < c.batch; ++b)
    for (std::int64_t i = 0; i < tq; ++i) {
      const std::int64_t row = b * tq + i;
      if (lse[row] == -inf) continue;  // a fully masked row: P = 0, no gradient
      const double delta = dot(&d_o[row * d], &o[row * d]);
      for (std::int64_t j = 0; j < key_end(c, i); ++j) {
        const std::int64_t key = b * tk + j;
        const double s = scale * dot(&q[row * d], &k[key * d]) + (c.mask ? mask[i * tk + j] : 0.0);
        const double p = std::exp(s - lse[row]);
        if (p == 0) continue;
        const double z = dropout_factor(c, b, i, j);
        const double ds = p * (z * dot(&d_o[row * d], &v[key * d]) - delta);
        for (std::int64_t x = 0; x < d; ++x) {
          dv[key * d + x] += z * p * d_o[row * d + x];
          dk[key * d + x] += scale * ds * q[row * d + x];
          dq[row * d + x] += scale * ds * k[key * d + x];
        }
      }
    }
}

// Runs the backward for `c` on random q, k, v, d_o, with o and lse from the f64 forward (o rounded
// to the 16-bit type, lse to f32), and compares dq, dk, dv with backward_reference():
// |Δ| <= rtol·max|reference| + atol. Returns dk and dv as the GPU gave them.
template <typename Half>
std::vector<Half> check_backward_case(const Case& c, std::uint64_t seed) {
  const bool bf16 = std::is_same_v<Half, __nv_bfloat16>;
  INFO("backward " << (bf16 ? "bf16" : "f16") << " D " << c.d << " Tq " << c.tq << " Tk " << c.tk << " causal "
                   << c.causal << " mask " << c.mask << " p " << c.p);
  const std::int64_t d = c.d, tq = c.tq, tk = c.tk;
  std::mt19937_64 rng(seed);
  const Rounded<Half> q(c.batch * tq * d, rng), k(c.batch * tk * d, rng), v(c.batch * tk * d, rng);
  const std::vector<float> mask = c.mask ? make_mask(tq, tk, rng) : std::vector<float>{};
  const Rounded<Half> d_o(c.batch * tq * d, rng);

  const AttentionShape shape = shape_of(c, nullptr);
  std::vector<double> o_expected, lse_expected;
  reference(c, shape.scale, q.value, k.value, v.value, mask, o_expected, lse_expected);
  std::vector<Half> o_half;
  std::vector<float> o, lse;
  for (double x : o_expected) {
    o_half.push_back(from_float<Half>(static_cast<float>(x)));
    o.push_back(to_float(o_half.back()));
  }
  for (double x : lse_expected) lse.push_back(static_cast<float>(x));
  std::vector<double> dq_expected, dk_expected, dv_expected;
  backward_reference(c, shape.scale, q.value, k.value, v.value, mask, o, lse_expected, d_o.value, dq_expected,
                     dk_expected, dv_expected);

  const std::size_t q_bytes = q.half.size() * sizeof(Half), k_bytes = k.half.size() * sizeof(Half);
  DeviceBuffer q_device(q_bytes), k_device(k_bytes), v_device(k_bytes), mask_device(mask.size() * sizeof(float)),
      o_device(q_bytes), lse_device(lse.size() * sizeof(float)), d_o_device(q_bytes), dq_device(q_bytes),
      dk_device(k_bytes), dv_device(k_bytes), step_device(sizeof(std::int64_t));
  q_device.upload(q.half);
  k_device.upload(k.half);
  v_device.upload(v.half);
  if (c.mask) mask_device.upload(mask);
  o_device.upload(o_half);
  lse_device.upload(lse);
  d_o_device.upload(d_o.half);
  step_device.upload(std::vector<std::int64_t>{kStep});
  const AttentionShape device_shape = shape_of(c, static_cast<const std::int64_t*>(step_device.get()));
  // Scratch and outputs start as NaN (0xFF bytes): whatever the kernels do not write shows.
  const std::size_t scratch_bytes = mma_attention_backward_scratch_bytes(device_shape);
  DeviceBuffer scratch(scratch_bytes);
  REQUIRE(cudaMemset(scratch.get(), 0xFF, scratch_bytes) == cudaSuccess);
  REQUIRE(cudaMemset(dq_device.get(), 0xFF, q_bytes) == cudaSuccess);
  REQUIRE(cudaMemset(dk_device.get(), 0xFF, k_bytes) == cudaSuccess);
  REQUIRE(cudaMemset(dv_device.get(), 0xFF, k_bytes) == cudaSuccess);
  REQUIRE(launch_attention_backward_mma(element_of<Half>(), device_shape, q_device.get(), k_device.get(),
                                        v_device.get(), c.mask ? static_cast<const float*>(mask_device.get()) : nullptr,
                                        o_device.get(), static_cast<const float*>(lse_device.get()), d_o_device.get(),
                                        scratch.get(), dq_device.get(), dk_device.get(), dv_device.get(), nullptr));
  REQUIRE(cudaGetLastError() == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const std::vector<Half> dq = dq_device.download<Half>(q.half.size());
  const std::vector<Half> dk = dk_device.download<Half>(k.half.size());
  const std::vector<Half> dv = dv_device.download<Half>(k.half.size());

  const double rtol = bf16 ? 2e-2 : 4e-3, atol = bf16 ? 1e-2 : 2e-3;
  auto compare = [&](const char* name, const std::vector<Half>& got, const std::vector<double>& expected,
                     std::int64_t rows) {
    double largest = 0;
    const std::int64_t bad = first_mismatch(got, expected, rtol, atol, largest);
    if (bad >= 0)
      FAIL_CHECK(name << " element " << bad << " (item " << bad / (rows * d) << ", row " << bad / d % rows << ", dim "
                      << bad % d << "): GPU " << to_float(got[static_cast<std::size_t>(bad)]) << ", f64 reference "
                      << expected[static_cast<std::size_t>(bad)] << ", max|" << name << "| " << largest);
  };
  compare("dq", dq, dq_expected, tq);
  compare("dk", dk, dk_expected, tk);
  compare("dv", dv, dv_expected, tk);
  // The fully masked row (row 1 of every item) gets dq = 0 exactly, never NaN.
  if (c.mask && tq > 1)
    for (std::int64_t b = 0; b < c.batch; ++b)
      for (std::int64_t x = 0; x < d; ++x) CHECK(to_float(dq[(b * tq + 1) * d + x]) == 0.0f);
  std::vector<Half> dk_dv = dk;
  dk_dv.insert(dk_dv.end(), dv.begin(), dv.end());
  return dk_dv;
}

const std::vector<std::int64_t> kLengths = {1, 17, 64, 130, 1000};
const std::vector<std::int64_t> kBackwardLengths = {1, 17, 64, 130, 300};
constexpr std::int64_t kBackwardBatch = 2;

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

// The same for the backward, over kBackwardLengths with batch 2.
template <typename MakeCase>
void check_all_backward_sizes(MakeCase&& variant, std::uint64_t seed) {
  int index = 0;
  for (std::int64_t d : {64, 128})
    for (std::int64_t tq : kBackwardLengths)
      for (std::int64_t tk : kBackwardLengths) {
        Case c = variant(d, tq, tk, index++);
        c.batch = kBackwardBatch;
        check_backward_case<__nv_bfloat16>(c, seed++);
        check_backward_case<__half>(c, seed++);
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

TEST_CASE("mma attention matches an f64 reference on every size without mask or causality" *
          doctest::test_suite("gpu")) {
  if (!have_mma_gpu()) return;
  check_all_sizes([](std::int64_t d, std::int64_t tq, std::int64_t tk, int) { return Case{d, tq, tk}; }, 100);
}

TEST_CASE("mma attention matches an f64 reference with bottom-right causality on every size" *
          doctest::test_suite("gpu")) {
  if (!have_mma_gpu()) return;
  check_all_sizes(
      [](std::int64_t d, std::int64_t tq, std::int64_t tk, int) {
        return Case{d, tq, tk, /*causal=*/true};
      },
      200);
}

TEST_CASE("mma attention adds an f32 mask with -inf entries and gives a fully masked row o = 0, lse = -inf" *
          doctest::test_suite("gpu")) {
  if (!have_mma_gpu()) return;
  check_all_sizes(
      [](std::int64_t d, std::int64_t tq, std::int64_t tk, int index) {
        return Case{d, tq, tk, /*causal=*/index % 2 == 1, /*mask=*/true};
      },
      300);
}

TEST_CASE("mma attention with dropout p = 0.2 and a step draws the keep bits of the other kernels" *
          doctest::test_suite("gpu")) {
  if (!have_mma_gpu()) return;
  check_all_sizes(
      [](std::int64_t d, std::int64_t tq, std::int64_t tk, int index) {
        return Case{d, tq, tk, /*causal=*/index % 2 == 1, /*mask=*/index % 3 == 0, /*p=*/0.2};
      },
      400);
}

TEST_CASE("mma attention with no keys gives o = 0 and lse = -inf, and with no queries launches nothing" *
          doctest::test_suite("gpu")) {
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

// --- The backward -----------------------------------------------------------------------------

TEST_CASE("mma attention backward refuses the types, head dims and alignments it has no kernel for") {
  AttentionShape shape;
  shape.batch = 1;
  shape.tq = shape.tk = 8;
  shape.d = shape.dv = 64;
  alignas(16) static unsigned char bytes[64];
  auto launch = [&](Element type, const void* q, void* dk) {
    return launch_attention_backward_mma(type, shape, q, bytes, bytes, nullptr, bytes, nullptr, bytes, bytes, bytes, dk,
                                         bytes, nullptr);
  };
  CHECK_FALSE(launch(Element::f32, bytes, bytes));
  CHECK_FALSE(launch(Element::f64, bytes, bytes));
  CHECK_FALSE(launch(Element::bf16, bytes + 2, bytes));  // q not on a 16-byte boundary
  CHECK_FALSE(launch(Element::f16, bytes, bytes + 4));   // nor dk
  shape.dv = 32;
  CHECK_FALSE(launch(Element::bf16, bytes, bytes));
  shape.d = shape.dv = 96;
  CHECK_FALSE(launch(Element::f16, bytes, bytes));
}

TEST_CASE("mma attention backward asks for scratch for an f32 dq and two f32 values per query row") {
  AttentionShape shape;
  shape.batch = 2;
  shape.tq = 130;
  shape.tk = 7;
  shape.d = shape.dv = 64;
  const std::size_t floats = 2 * 130 * 64 + 2 * 2 * 130;
  CHECK(mma_attention_backward_scratch_bytes(shape) >= floats * sizeof(float));
  shape.tq = 0;
  CHECK(mma_attention_backward_scratch_bytes(shape) == 0);
}

TEST_CASE("mma attention backward matches an f64 reference on every size without mask or causality" *
          doctest::test_suite("gpu")) {
  if (!have_mma_gpu()) return;
  check_all_backward_sizes([](std::int64_t d, std::int64_t tq, std::int64_t tk, int) { return Case{d, tq, tk}; }, 600);
}

TEST_CASE("mma attention backward matches an f64 reference with bottom-right causality on every size" *
          doctest::test_suite("gpu")) {
  if (!have_mma_gpu()) return;
  check_all_backward_sizes(
      [](std::int64_t d, std::int64_t tq, std::int64_t tk, int) {
        return Case{d, tq, tk, /*causal=*/true};
      },
      700);
}

TEST_CASE("mma attention backward with an f32 mask with -inf entries gives a fully masked row dq = 0" *
          doctest::test_suite("gpu")) {
  if (!have_mma_gpu()) return;
  check_all_backward_sizes(
      [](std::int64_t d, std::int64_t tq, std::int64_t tk, int index) {
        return Case{d, tq, tk, /*causal=*/index % 2 == 1, /*mask=*/true};
      },
      800);
}

TEST_CASE("mma attention backward with dropout p = 0.2 and a step draws the forward's keep bits" *
          doctest::test_suite("gpu")) {
  if (!have_mma_gpu()) return;
  check_all_backward_sizes(
      [](std::int64_t d, std::int64_t tq, std::int64_t tk, int index) {
        return Case{d, tq, tk, /*causal=*/index % 2 == 1, /*mask=*/index % 3 == 0, /*p=*/0.2};
      },
      900);
}

TEST_CASE("mma attention backward with no keys gives dq = 0, and with no queries dk = dv = 0" *
          doctest::test_suite("gpu")) {
  if (!have_mma_gpu()) return;
  for (std::int64_t d : {64, 128}) {
    check_backward_case<__nv_bfloat16>(Case{d, 5, 0, false, false, 0, kBackwardBatch}, 1000);
    check_backward_case<__half>(Case{d, 130, 0, /*causal=*/true, false, 0, kBackwardBatch}, 1001);
    check_backward_case<__nv_bfloat16>(Case{d, 0, 7, false, false, 0, kBackwardBatch}, 1002);
    check_backward_case<__half>(Case{d, 0, 300, /*causal=*/true, false, 0, kBackwardBatch}, 1003);
  }
}

TEST_CASE("mma attention backward gives the same dk and dv bits on every run" * doctest::test_suite("gpu")) {
  if (!have_mma_gpu()) return;
  const Case c{128, 300, 130, /*causal=*/true, /*mask=*/true, /*p=*/0.2, kBackwardBatch};
  const std::vector<__nv_bfloat16> first = check_backward_case<__nv_bfloat16>(c, 1100);
  const std::vector<__nv_bfloat16> second = check_backward_case<__nv_bfloat16>(c, 1100);
  REQUIRE(first.size() == second.size());
  CHECK(std::memcmp(first.data(), second.data(), first.size() * sizeof(__nv_bfloat16)) == 0);
}

}  // namespace

#endif  // FOVEA_WITH_CUDA
