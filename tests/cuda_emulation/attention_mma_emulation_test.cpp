// The tensor-core attention kernels (backends/cuda/attention_mma.cu, the forward, and
// attention_mma_backward.cu), run on the CPU by the SIMT emulator (simt.h) through their real
// launchers, against an f64 reference (attention_reference.h) with the tolerances of the GPU
// test (tests/backends/cuda_attention_mma_test.cpp). The matrix is small enough for every build:
// bf16 and f16, D = 64 and 128, Tq and Tk among 1, 17 and 130 (one tile, a partial tile, several
// tiles plus a partial one), causal, a mask with -∞ entries and a fully masked row, a padding
// mask, dropout, and both ways cp.async may land (at issue and at wait_group).
#include <doctest/doctest.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "fovea/backends/cuda/launch.h"
#include "fovea/tests/cuda_emulation/attention_reference.h"
#include "fovea/tests/cuda_emulation/simt.h"

namespace {

using fovea::cuda_backend::AttentionShape;
using fovea::cuda_backend::Element;
using namespace fovea::cuda_emulation;

template <typename Half>
Half to_half(float x) {
  if constexpr (std::is_same_v<Half, __nv_bfloat16>)
    return __float2bfloat16_rn(x);
  else
    return __float2half_rn(x);
}
float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
float to_float(__half x) { return __half2float(x); }

template <typename Half>
constexpr const char* type_name() {
  return std::is_same_v<Half, __nv_bfloat16> ? "bf16" : "f16";
}

std::string describe(const AttentionProblem& p) {
  return "D " + std::to_string(p.d) + " batch " + std::to_string(p.batch) + " Tq " + std::to_string(p.tq) + " Tk " +
         std::to_string(p.tk) + (p.causal ? " causal" : "") +
         (p.mask ? (p.padding_mask ? " padding-mask" : " mask") : "") + (p.dropout > 0 ? " dropout" : "");
}

// The largest |got - expected| over rtol·max|expected| + atol: at most 1 passes; NaN fails.
template <typename Half>
double error_ratio(const std::vector<Half>& got, const std::vector<double>& expected, double rtol, double atol) {
  double largest = 0, worst = 0;
  for (double x : expected) largest = std::max(largest, std::abs(x));
  for (std::size_t e = 0; e < got.size(); ++e) {
    const double error = std::abs(to_float(got[e]) - expected[e]);
    if (std::isnan(error)) return kInfinity;
    worst = std::max(worst, error);
  }
  return worst / (rtol * largest + atol);
}

// One problem's inputs: uniform in [-1, 1) rounded to Half; the [Tq, Tk] mask has -∞ on row 1
// (a fully masked row) and in every 7th column position, the padding mask in every 5th key.
template <typename Half>
struct Inputs {
  std::vector<Half> q, k, v, d_o;
  AttentionInputs exact;  // the same values in f32, for the reference
};

template <typename Half>
Inputs<Half> make_inputs(const AttentionProblem& p, std::uint64_t seed) {
  std::mt19937_64 random(seed);
  std::uniform_real_distribution<float> uniform(-1, 1), mask_value(-2, 0);
  Inputs<Half> in;
  auto fill = [&](std::int64_t n, std::vector<Half>& half, std::vector<float>& exact) {
    for (std::int64_t e = 0; e < n; ++e) {
      half.push_back(to_half<Half>(uniform(random)));
      exact.push_back(to_float(half.back()));
    }
  };
  fill(p.batch * p.tq * p.d, in.q, in.exact.q);
  fill(p.batch * p.tk * p.d, in.k, in.exact.k);
  fill(p.batch * p.tk * p.d, in.v, in.exact.v);
  fill(p.batch * p.tq * p.d, in.d_o, in.exact.d_o);
  if (p.mask && !p.padding_mask)
    for (std::int64_t e = 0; e < p.tq * p.tk; ++e)
      in.exact.mask.push_back(e / p.tk == 1 || e % 7 == 3 ? -INFINITY : mask_value(random));
  if (p.mask && p.padding_mask)
    for (std::int64_t e = 0; e < p.batch * p.tk; ++e)
      in.exact.mask.push_back(e % 5 == 2 ? -INFINITY : mask_value(random));
  return in;
}

AttentionShape shape_of(const AttentionProblem& p) {
  AttentionShape a;
  a.batch = p.batch;
  a.tq = p.tq;
  a.tk = p.tk;
  a.d = a.dv = p.d;
  a.scale = 1.0 / std::sqrt(double(p.d));
  a.causal = p.causal;
  a.batch_rank = 1;
  a.batch_dims[0] = p.batch;
  if (p.mask) {
    a.mask_batch_strides[0] = p.padding_mask ? p.tk : 0;
    a.mask_row_stride = p.padding_mask ? 0 : p.tk;
    a.mask_column_stride = 1;
  }
  if (p.dropout > 0) {
    a.dropout.p = p.dropout;
    a.dropout.scale = 1.0 / (1.0 - p.dropout);
    a.dropout.seed = p.seed;
    a.dropout.stream = p.stream;
    a.dropout.step = &p.step;
  }
  return a;
}

// The forward on the emulator against the reference: o within the GPU test's tolerance, lse
// within 1e-3·max(1, |lse|) or equal (-∞).
template <typename Half>
void check_forward(const AttentionProblem& p, std::uint64_t seed) {
  INFO(type_name<Half>(), " ", describe(p));
  constexpr bool bf16 = std::is_same_v<Half, __nv_bfloat16>;
  const Inputs<Half> in = make_inputs<Half>(p, seed);
  const AttentionShape a = shape_of(p);
  AttentionReference r;
  reference_forward(p, in.exact, a.scale, r);
  std::vector<Half> o(in.q.size(), to_half<Half>(12345.f));  // garbage the kernel must overwrite
  std::vector<float> lse(p.batch * p.tq, 777.f);
  REQUIRE(fovea::cuda_backend::launch_attention_forward_mma(
      bf16 ? Element::bf16 : Element::f16, a, in.q.data(), in.k.data(), in.v.data(),
      p.mask ? in.exact.mask.data() : nullptr, o.data(), lse.data(), nullptr));
  CHECK(error_ratio(o, r.o, bf16 ? 1e-2 : 2e-3, bf16 ? 8e-3 : 1e-3) <= 1.0);
  for (std::size_t e = 0; e < lse.size(); ++e) {
    const double expected = r.lse[e];
    INFO("lse[", e, "] = ", lse[e], ", expected ", expected);
    CHECK((lse[e] == expected || std::abs(lse[e] - expected) <= 1e-3 * std::max(1.0, std::abs(expected))));
  }
}

// The backward on the emulator, from the reference's o (rounded to Half) and lse (rounded to
// f32), against the reference: dq, dk, dv within the GPU test's tolerance; a fully masked row
// has dq = 0 exactly.
template <typename Half>
void check_backward(const AttentionProblem& p, std::uint64_t seed) {
  INFO(type_name<Half>(), " ", describe(p));
  constexpr bool bf16 = std::is_same_v<Half, __nv_bfloat16>;
  const Inputs<Half> in = make_inputs<Half>(p, seed);
  const AttentionShape a = shape_of(p);
  AttentionReference r;
  reference_forward(p, in.exact, a.scale, r);
  std::vector<Half> o;
  std::vector<float> o_exact, lse;
  for (double x : r.o) {
    o.push_back(to_half<Half>(static_cast<float>(x)));
    o_exact.push_back(to_float(o.back()));
  }
  for (double x : r.lse) lse.push_back(static_cast<float>(x));
  reference_backward(p, in.exact, a.scale, o_exact, r);

  // Scratch starts as garbage (the launcher must initialise what it reads), 256-byte aligned.
  const std::size_t scratch_bytes = fovea::cuda_backend::mma_attention_backward_scratch_bytes(a);
  std::vector<float> scratch_storage(scratch_bytes / 4 + 64, 4242.0f);
  void* scratch = reinterpret_cast<void*>((reinterpret_cast<std::uintptr_t>(scratch_storage.data()) + 255) / 256 * 256);
  std::vector<Half> dq(in.q.size(), to_half<Half>(999.f)), dk(in.k.size(), to_half<Half>(999.f)),
      dv(in.v.size(), to_half<Half>(999.f));
  REQUIRE(fovea::cuda_backend::launch_attention_backward_mma(
      bf16 ? Element::bf16 : Element::f16, a, in.q.data(), in.k.data(), in.v.data(),
      p.mask ? in.exact.mask.data() : nullptr, o.data(), lse.data(), in.d_o.data(), scratch, dq.data(), dk.data(),
      dv.data(), nullptr));
  const double rtol = bf16 ? 2e-2 : 4e-3, atol = bf16 ? 1e-2 : 2e-3;
  CHECK(error_ratio(dq, r.dq, rtol, atol) <= 1.0);
  CHECK(error_ratio(dk, r.dk, rtol, atol) <= 1.0);
  CHECK(error_ratio(dv, r.dv, rtol, atol) <= 1.0);
  if (p.mask && !p.padding_mask && p.tq > 1)
    for (std::int64_t b = 0; b < p.batch; ++b)
      for (std::int64_t x = 0; x < p.d; ++x) CHECK(to_float(dq[(b * p.tq + 1) * p.d + x]) == 0.0f);
}

// Both directions, both 16-bit types.
void check_both(const AttentionProblem& p, std::uint64_t seed) {
  check_forward<__nv_bfloat16>(p, seed);
  check_forward<__half>(p, seed + 1);
  check_backward<__nv_bfloat16>(p, seed + 2);
  check_backward<__half>(p, seed + 3);
}

Options late_copies(std::uint64_t seed) {
  Options o;
  o.seed = seed;
  return o;
}

Options early_copies(std::uint64_t seed) {
  Options o;
  o.early_copies = true;
  o.seed = seed;
  return o;
}

AttentionProblem problem(std::int64_t d, std::int64_t tq, std::int64_t tk) {
  AttentionProblem p;
  p.batch = 2;
  p.d = d;
  p.tq = tq;
  p.tk = tk;
  return p;
}

}  // namespace

TEST_CASE("tensor-core attention: one query and one key at D 64 and 128") {
  configure(late_copies(1));
  check_both(problem(64, 1, 1), 100);
  check_both(problem(128, 1, 1), 110);
}

TEST_CASE("tensor-core attention: partial and multiple tiles with copies landing at wait_group") {
  configure(late_copies(2));
  check_both(problem(64, 17, 130), 200);
  check_both(problem(128, 130, 17), 210);
}

TEST_CASE("tensor-core attention: causal with Tq > Tk and Tq < Tk and copies landing at issue") {
  configure(early_copies(3));
  AttentionProblem more_queries = problem(64, 130, 17), more_keys = problem(128, 17, 130);
  more_queries.causal = more_keys.causal = true;
  check_both(more_queries, 300);
  check_both(more_keys, 310);
}

TEST_CASE("tensor-core attention: a mask with -inf entries and a fully masked row") {
  configure(early_copies(4));
  AttentionProblem masked = problem(128, 17, 130);
  masked.mask = true;
  check_both(masked, 400);
  configure(late_copies(5));
  AttentionProblem masked_causal = problem(64, 17, 17);
  masked_causal.mask = masked_causal.causal = true;
  check_both(masked_causal, 410);
}

TEST_CASE("tensor-core attention: dropout with a padding mask") {
  configure(late_copies(6));
  AttentionProblem p = problem(64, 17, 130);
  p.mask = p.padding_mask = true;
  p.dropout = 0.2;
  check_both(p, 500);
  p.d = 128;
  p.causal = true;
  p.mask = false;
  check_both(p, 510);
}

TEST_CASE("tensor-core attention: two blocks walk every tile (grid-stride loops) with warps in greedy order") {
  Options o = late_copies(7);
  o.greedy = true;
  o.max_blocks = 2;
  configure(o);
  AttentionProblem p = problem(128, 130, 130);
  p.causal = true;
  check_both(p, 600);
}

TEST_CASE("tensor-core attention: no keys gives o = 0 and dq = 0") {
  configure(late_copies(8));
  check_both(problem(64, 5, 0), 700);
}

TEST_CASE("tensor-core attention: no queries gives dk = dv = 0") {
  configure(late_copies(8));
  check_both(problem(128, 0, 7), 710);
}

TEST_CASE("tensor-core attention: the launchers refuse a device older than sm_80") {
  Options o = late_copies(9);
  o.compute_major = 7;
  configure(o);
  const AttentionProblem p = problem(64, 1, 1);
  const Inputs<__half> in = make_inputs<__half>(p, 800);
  std::vector<__half> out(in.q.size());
  std::vector<float> lse(2);
  CHECK_FALSE(fovea::cuda_backend::launch_attention_forward_mma(Element::f16, shape_of(p), in.q.data(), in.k.data(),
                                                                in.v.data(), nullptr, out.data(), lse.data(), nullptr));
  configure(late_copies(1));
}
