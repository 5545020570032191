// CPU kernels for the fused normalizations (ops/normalization.h): softmax, log-softmax, layer
// norm and softmax cross-entropy, forward and backward, in f32 and f64.
//
// Every op works along the last axis: x [..., n] is `rows` rows of n contiguous elements. Rows
// are independent, so they are the unit of parallelism (chunks of rows go to the pool), and each
// row is read at most twice by a forward kernel: once to gather its statistics (max and Σ exp,
// or Σ x and Σ x²), once to write the result.
//
// Row reductions keep independent partial results in lanes, lane l taking elements l, l + lanes,
// ...: the loop over lanes is elementwise, so GCC vectorises it without -ffast-math (a single
// running sum would be a dependency chain it must keep in order). Sums whose terms may cancel are
// accumulated in double, as reduce_sum does for f32; sums of exponentials in the element type
// within a block of kBlock elements, then in double. Lanes and blocks are combined in a fixed
// order, so every result depends on the shape only, never on the thread count.
//
// Softmax's statistics come from an online pass (Milakov & Gimelshein 2018) taken one block of
// kBlock elements at a time: the block's max m_b is found, the running sum rescaled by
// exp(m - m') when the max rises to m' = max(m, m_b), and the block's exp(x - m') added, while the
// block still sits in L1. So the row is streamed from memory once for its statistics, with one
// exp per element. exp in f32 is a polynomial the compiler vectorises (see exp_f32); f64 uses
// std::exp.
//
// Measured on this project's 2-core AVX-512 build machine (one thread, 4096 rows of 1024 f32,
// against the unfused chains on the same backend): softmax 2.1 ms (unfused 4.1), log-softmax 1.9
// (4.8), layer norm 0.8 (4.5), cross-entropy with its mean 1.5 (14.5). See docs/optimizer.md.
#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "fovea/backends/cpu/kernels.h"
#include "fovea/ops/batch_norm.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

namespace {

using i64 = std::int64_t;

// Partial results per row reduction: 16 f32 (two AVX2 registers) or 16 f64 accumulators.
constexpr int kLanes = 16;
// Elements per block of the online max-and-sum pass: 4 KiB of f32, well inside L1.
constexpr i64 kBlock = 1024;
// Elements of work per parallel chunk (rows are grouped up to about this many elements).
constexpr i64 kChunkElements = 1 << 13;

template <typename T>
constexpr T infinity = std::numeric_limits<T>::infinity();
constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();

// --- exp ------------------------------------------------------------------------------------------

// e^x in f32 as straight-line code that vectorises (glibc's expf is a call the compiler cannot
// vectorise without -ffast-math):
//
//   x = n·ln 2 + r,   n = round(x / ln 2),   |r| <= ln 2 / 2,   e^x = 2^n·e^r
//
// n is rounded by adding 1.5·2^23 (the float's low mantissa bits then hold n), ln 2 is split in
// a short high part and a correction (Cody & Waite) so that r is exact, e^r is its Taylor series
// to r⁷/7! (truncation below 6e-9 for |r| <= 0.35), and 2^n is built in the exponent bits, in
// two halves so that each stays a normal number over the whole range: x is clamped to
// [-104, 89], where e^x goes from below the smallest subnormal to past the largest float, so
// the product overflows to +∞ and underflows to 0 as expf does. -∞ gives 0, NaN gives NaN.
// Measured against std::exp in double on every f32 from -110 to 90: relative error below 8e-8
// (under one ulp) for normal results, within one subnormal step below them.
inline float exp_f32(float x) {
  constexpr float rounding_shift = 12582912.0f;  // 1.5·2^23
  constexpr float log2_e = 1.44269504f;
  constexpr float ln2_high = 0.693359375f, ln2_low = -2.12194440e-4f;
  float clamped = x > -104.0f ? x : -104.0f;  // NaN becomes -104 here and is restored at the end
  clamped = clamped < 89.0f ? clamped : 89.0f;
  const float shifted = clamped * log2_e + rounding_shift;
  const float n = shifted - rounding_shift;
  const float r = std::fma(n, -ln2_low, std::fma(n, -ln2_high, clamped));
  float e = 1.0f / 5040;
  e = std::fma(e, r, 1.0f / 720);
  e = std::fma(e, r, 1.0f / 120);
  e = std::fma(e, r, 1.0f / 24);
  e = std::fma(e, r, 1.0f / 6);
  e = std::fma(e, r, 0.5f);
  e = std::fma(e, r, 1.0f);
  e = std::fma(e, r, 1.0f);
  // n as an integer in [-150, 129], split as n = half + rest with both in [-75, 65].
  const std::int32_t whole = std::bit_cast<std::int32_t>(shifted) - std::bit_cast<std::int32_t>(rounding_shift);
  const std::int32_t half = whole / 2, rest = whole - half;
  const float scale_half = std::bit_cast<float>(static_cast<std::uint32_t>(half + 127) << 23);
  const float scale_rest = std::bit_cast<float>(static_cast<std::uint32_t>(rest + 127) << 23);
  const float result = e * scale_half * scale_rest;
  return x < -104.0f ? 0.0f : (x == x ? result : x);
}

inline float exp_of(float x) { return exp_f32(x); }
inline double exp_of(double x) { return std::exp(x); }

// --- Row reductions ---------------------------------------------------------------------------------

// max_i x[i] over n >= 0 elements; -∞ for none. NaNs are skipped here: they reach the result
// through the sums that follow. kMaxLanes partial maxima: with 16, GCC 12 unrolls the lane loop
// completely and then leaves the compare-and-select scalar; with 64 it vectorises it into vmaxps
// (x > m ? x : m is exactly what maxps computes, NaN and signed zeros included).
template <typename T>
T row_max(const T* x, i64 n) {
  constexpr int kMaxLanes = 64;
  T lane[kMaxLanes];
  std::fill(lane, lane + kMaxLanes, -infinity<T>);
  i64 i = 0;
  for (; i + kMaxLanes <= n; i += kMaxLanes)
    for (int l = 0; l < kMaxLanes; ++l) lane[l] = x[i + l] > lane[l] ? x[i + l] : lane[l];
  for (; i < n; ++i) lane[0] = x[i] > lane[0] ? x[i] : lane[0];
  T m = lane[0];
  for (int l = 1; l < kMaxLanes; ++l) m = lane[l] > m ? lane[l] : m;
  return m;
}

// Σ_{i < n} term(i) over a row, accumulated in Acc. Each block of kBlock elements is summed in
// kLanes partial sums, and the blocks' sums are added in double; the order depends on n alone.
// Softmax's sums of exponentials (positive terms) accumulate in T, since lanes of T vectorise
// with the exp; every sum whose terms may cancel (means, variances, dot products of gradients)
// accumulates in double, as the unfused reduce_sum does, so that fused and unfused f32 graphs
// agree to 1e-5.
template <typename Acc, typename F>
double row_sum(i64 n, F&& term) {
  double total = 0;
  for (i64 begin = 0; begin < n; begin += kBlock) {
    const i64 end = std::min(n, begin + kBlock);
    Acc lane[kLanes] = {};
    i64 i = begin;
    for (; i + kLanes <= end; i += kLanes)
      for (int l = 0; l < kLanes; ++l) lane[l] += static_cast<Acc>(term(i + l));
    for (; i < end; ++i) lane[0] += static_cast<Acc>(term(i));
    for (int l = 0; l < kLanes; ++l) total += static_cast<double>(lane[l]);
  }
  return total;
}

// Two sums over a row, (Σ a(i), Σ b(i)) in double, block by block: each block is summed once for
// a and then, still in L1, once for b. Two simple sums vectorise cleanly where one loop updating
// two sets of lanes did not (GCC interleaved it into shuffles; layer norm ran 2x slower).
template <typename A, typename B>
std::pair<double, double> row_sums(i64 n, A&& a, B&& b) {
  double total_a = 0, total_b = 0;
  for (i64 begin = 0; begin < n; begin += kBlock) {
    const i64 length = std::min(kBlock, n - begin);
    total_a += row_sum<double>(length, [&](i64 i) { return a(begin + i); });
    total_b += row_sum<double>(length, [&](i64 i) { return b(begin + i); });
  }
  return {total_a, total_b};
}

// A row's softmax statistics: its max m and s = Σ_i exp(x[i] - m).
template <typename T>
struct SoftmaxStats {
  T max = -infinity<T>;
  double sum = 0;
  // log Σ_i exp(x[i]) = m + log s, in double.
  double lse() const { return static_cast<double>(max) + std::log(sum); }
};

// The online pass, block by block (see the top of the file):
//
//   m' = max(m, max_{i in block} x[i]),   s' = e^(m-m')·s + Σ_{i in block} e^(x[i]-m')
//
// While every element seen is -∞ (m = -∞), a block adds nothing unless it holds a NaN, which
// makes s NaN (-∞ - -∞ would give NaN for the -∞s too). A row of -∞ only ends with m = -∞ and
// s = 0: its softmax is defined as 0 (nn::softmax guards for it), its log-softmax is NaN.
//
// When `exps` is given, the pass also stores exps[i] = e^(x[i] - m_b) for every element, with
// m_b the running max its block was exponentiated with, recorded in block_max[b] (-∞ and exps 0
// for a block that added nothing): softmax rescales these instead of exponentiating again.
template <typename T>
SoftmaxStats<T> softmax_stats(const T* x, i64 n, T* exps = nullptr, T* block_max = nullptr) {
  SoftmaxStats<T> stats;
  for (i64 begin = 0, b = 0; begin < n; begin += kBlock, ++b) {
    const T* block = x + begin;
    const i64 length = std::min(kBlock, n - begin);
    const T max = row_max(block, length);
    if (max > stats.max) {
      stats.sum *= std::exp(static_cast<double>(stats.max) - static_cast<double>(max));
      stats.max = max;
    }
    if (exps) block_max[b] = stats.max;
    if (stats.max == -infinity<T>) {
      for (i64 i = 0; i < length; ++i)
        if (block[i] != block[i]) stats.sum = not_a_number;
      if (exps) std::fill(exps + begin, exps + begin + length, T(0));
      continue;
    }
    const T m = stats.max;
    if (exps) {
      T* out = exps + begin;
      stats.sum += row_sum<T>(length, [&](i64 i) { return out[i] = exp_of(block[i] - m); });
    } else {
      stats.sum += row_sum<T>(length, [&](i64 i) { return exp_of(block[i] - m); });
    }
  }
  return stats;
}

// --- The shape of a node ----------------------------------------------------------------------------

// x [..., n]: `rows` rows of n elements.
struct Rows {
  i64 rows = 0, n = 0;
  explicit Rows(const Shape& s) : n(s[s.rank() - 1]) {
    rows = 1;
    for (int i = 0; i + 1 < s.rank(); ++i) rows *= s[i];
  }
  // Rows per parallel chunk: about kChunkElements elements, at least one row.
  i64 grain() const { return std::max<i64>(1, kChunkElements / std::max<i64>(n, 1)); }
};

// Calls body(row) for every row, chunks of rows in parallel.
template <typename F>
void for_each_row(const KernelContext& ctx, const Rows& shape, F&& body) {
  ctx.pool->parallel_for(shape.rows, shape.grain(), [&](i64 begin, i64 end) {
    for (i64 r = begin; r < end; ++r) body(r);
  });
}

// --- Softmax and log-softmax --------------------------------------------------------------------------

// y[i] = exp(x[i] - m) / s,   m = max_j x[j],   s = Σ_j exp(x[j] - m)   (0 for a row of only -∞)
//
// The statistics pass leaves e^(x[i] - m_b) in y, m_b the running max of i's block; the second
// pass scales each block by e^(m_b - m) / s. One exp per element, where exponentiating again in
// the second pass would take two (4096 rows of 1024 f32, one thread: 2.1 ms against 3.1 ms).
template <typename T>
void softmax_kernel(const KernelContext& ctx) {
  const Rows shape(ctx.in(0).shape());
  if (shape.n == 0) return;  // no element to write
  const T* x = ctx.in(0).as<T>();
  T* y = ctx.out().as<T>();
  const i64 blocks = (shape.n + kBlock - 1) / kBlock;
  ctx.pool->parallel_for(shape.rows, shape.grain(), [&](i64 begin, i64 end) {
    std::vector<T> block_max(static_cast<std::size_t>(blocks));
    for (i64 r = begin; r < end; ++r) {
      T* yr = y + r * shape.n;
      const SoftmaxStats<T> stats = softmax_stats(x + r * shape.n, shape.n, yr, block_max.data());
      if (stats.sum == 0) continue;  // a row of only -∞: y is the 0 the statistics pass wrote
      for (i64 b = 0; b < blocks; ++b) {
        const double shift = static_cast<double>(block_max[static_cast<std::size_t>(b)]) - stats.max;
        const T scale = static_cast<T>(std::exp(shift) / stats.sum);
        T* out = yr + b * kBlock;
        const i64 length = std::min(kBlock, shape.n - b * kBlock);
        for (i64 i = 0; i < length; ++i) out[i] *= scale;
      }
    }
  });
}

// y[i] = (x[i] - m) - log s,   m = max_j x[j],   s = Σ_j exp(x[j] - m)
template <typename T>
void log_softmax_kernel(const KernelContext& ctx) {
  const Rows shape(ctx.in(0).shape());
  if (shape.n == 0) return;  // no element to write
  const T* x = ctx.in(0).as<T>();
  T* y = ctx.out().as<T>();
  for_each_row(ctx, shape, [&](i64 r) {
    const T* xr = x + r * shape.n;
    T* yr = y + r * shape.n;
    const SoftmaxStats<T> stats = softmax_stats(xr, shape.n);
    const T m = stats.max, log_sum = static_cast<T>(std::log(stats.sum));
    for (i64 i = 0; i < shape.n; ++i) yr[i] = (xr[i] - m) - log_sum;
  });
}

// dx[i] = y[i]·(dy[i] - Σ_j dy[j]·y[j])
template <typename T>
void softmax_backward_kernel(const KernelContext& ctx) {
  const Rows shape(ctx.in(0).shape());
  if (shape.n == 0) return;  // no element to write
  const T *y = ctx.in(0).as<T>(), *dy = ctx.in(1).as<T>();
  T* dx = ctx.out().as<T>();
  for_each_row(ctx, shape, [&](i64 r) {
    const i64 offset = r * shape.n;
    const T *yr = y + offset, *dyr = dy + offset;
    T* dxr = dx + offset;
    const T dot = static_cast<T>(row_sum<double>(shape.n, [&](i64 i) { return dyr[i] * yr[i]; }));
    for (i64 i = 0; i < shape.n; ++i) dxr[i] = yr[i] * (dyr[i] - dot);
  });
}

// dx[i] = dy[i] - exp(y[i])·Σ_j dy[j]
template <typename T>
void log_softmax_backward_kernel(const KernelContext& ctx) {
  const Rows shape(ctx.in(0).shape());
  if (shape.n == 0) return;  // no element to write
  const T *y = ctx.in(0).as<T>(), *dy = ctx.in(1).as<T>();
  T* dx = ctx.out().as<T>();
  for_each_row(ctx, shape, [&](i64 r) {
    const i64 offset = r * shape.n;
    const T *yr = y + offset, *dyr = dy + offset;
    T* dxr = dx + offset;
    const T total = static_cast<T>(row_sum<double>(shape.n, [&](i64 i) { return dyr[i]; }));
    for (i64 i = 0; i < shape.n; ++i) dxr[i] = dyr[i] - exp_of(yr[i]) * total;
  });
}

// --- Layer norm -----------------------------------------------------------------------------------

// A row's mean μ and 1/√(σ² + eps), from one pass over x shifted by its first element k:
//
//   a = Σ (x[i] - k),   b = Σ (x[i] - k)²,   μ = k + a/n,   σ² = b/n - (a/n)²
//
// The shift keeps the subtraction in σ² benign: a/n is the distance from x[0] to the mean, of the
// order of σ, where Σ x² - (Σ x)²/n would cancel catastrophically for rows far from zero. A row of
// no elements has μ = σ = NaN, as the chain's mean of nothing.
template <typename T>
std::pair<double, double> layer_norm_stats(const T* x, i64 n, double eps) {
  if (n == 0) return {not_a_number, not_a_number};
  // In double: the differences and squares of f32 inputs are then exact, or nearly.
  const double k = static_cast<double>(x[0]);
  auto difference = [&](i64 i) { return static_cast<double>(x[i]) - k; };
  const auto [a, b] = row_sums(n, difference, [&](i64 i) { return difference(i) * difference(i); });
  const double count = static_cast<double>(n);
  const double shift = a / count;
  const double variance = std::max(b / count - shift * shift, 0.0);
  return {k + shift, 1.0 / std::sqrt(variance + eps)};
}

// y[i] = (x[i] - μ)·r·γ[i] + β[i],   r = 1/√(σ² + eps);   outputs y, μ, r
template <typename T>
void layer_norm_kernel(const KernelContext& ctx) {
  const Rows shape(ctx.in(0).shape());
  const T *x = ctx.in(0).as<T>(), *gamma = ctx.in(1).as<T>(), *beta = ctx.in(2).as<T>();
  T *y = ctx.out(0).as<T>(), *mean = ctx.out(1).as<T>(), *rstd = ctx.out(2).as<T>();
  const double eps = ctx.params<LayerNormParams>().eps;
  for_each_row(ctx, shape, [&](i64 r) {
    const T* xr = x + r * shape.n;
    T* yr = y + r * shape.n;
    const auto [mu, inverse_std] = layer_norm_stats(xr, shape.n, eps);
    const T m = static_cast<T>(mu), s = static_cast<T>(inverse_std);
    mean[r] = m;
    rstd[r] = s;
    for (i64 i = 0; i < shape.n; ++i) yr[i] = (xr[i] - m) * s * gamma[i] + beta[i];
  });
}

// A chunk's rows' share of dγ and dβ: pg[j] = Σ_r dy[r, j]·x̂[r, j], pb[j] = Σ_r dy[r, j] over rows
// [row_begin, row_end) in order, in double. Column block by column block, with the block's sums
// in registers across the rows. Accumulated into pg and pb in memory row by row, their stores
// interleaved with the loads of dy and x, the kernel took 5.1 ms instead of 0.65 for the GPT
// step's five nodes in some processes and not others (heap addresses differ between processes:
// loads waiting on stores to the same offset within a 4 KB page would do that); this way it took
// 0.57 ms in every run measured.
template <typename T>
void layer_norm_partials(const T* dy, const T* x, const T* mean, const T* rstd, i64 n, i64 row_begin, i64 row_end,
                         double* pg, double* pb) {
  constexpr i64 kColumns = 32;
  for (i64 j0 = 0; j0 < n; j0 += kColumns) {
    const i64 width = std::min(kColumns, n - j0);
    double sum_gamma[kColumns] = {}, sum_beta[kColumns] = {};
    auto add_rows = [&](auto columns) {
      for (i64 r = row_begin; r < row_end; ++r) {
        const T *dyr = dy + r * n + j0, *xr = x + r * n + j0;
        const T m = mean[r], s = rstd[r];
        for (i64 j = 0; j < columns; ++j) {
          sum_gamma[j] += static_cast<double>(dyr[j] * ((xr[j] - m) * s));
          sum_beta[j] += static_cast<double>(dyr[j]);
        }
      }
    };
    // A whole block with a constant trip count, so that the sums stay in vector registers.
    if (width == kColumns)
      add_rows(std::integral_constant<i64, kColumns>{});
    else
      add_rows(width);
    std::copy(sum_gamma, sum_gamma + width, pg + j0);
    std::copy(sum_beta, sum_beta + width, pb + j0);
  }
}

// With x̂[i] = (x[i] - μ)·r and g[i] = dy[i]·γ[i], per row:
//
//   dx[i] = r·(g[i] - (1/n) Σ_j g[j] - x̂[i]·(1/n) Σ_j g[j]·x̂[j])
//
// and over all rows dγ[i] = Σ_rows dy[i]·x̂[i], dβ[i] = Σ_rows dy[i]. Those two sums run over
// rows, which tasks share: the rows are cut into `chunks` consecutive groups (a number fixed by
// the shape, not by the thread count), each group sums its rows into its own row of partial
// results, and the partials are added in group order. So dγ and dβ are the same on any number of
// threads.
template <typename T>
void layer_norm_backward_kernel(const KernelContext& ctx) {
  const Rows shape(ctx.in(0).shape());
  const i64 n = shape.n;
  if (n == 0) return;  // dx, dγ and dβ have no element
  const T *dy = ctx.in(0).as<T>(), *x = ctx.in(1).as<T>(), *gamma = ctx.in(2).as<T>();
  const T *mean = ctx.in(3).as<T>(), *rstd = ctx.in(4).as<T>();
  T *dx = ctx.out(0).as<T>(), *dgamma = ctx.out(1).as<T>(), *dbeta = ctx.out(2).as<T>();

  constexpr i64 kMaxChunks = 32;
  const i64 chunks = std::clamp<i64>(shape.rows * n / kChunkElements, 1, kMaxChunks);
  const i64 rows_per_chunk = (shape.rows + chunks - 1) / std::max<i64>(chunks, 1);
  std::vector<double> partial_gamma(static_cast<std::size_t>(chunks * n), 0.0);
  std::vector<double> partial_beta(static_cast<std::size_t>(chunks * n), 0.0);
  const double count = static_cast<double>(n);

  ctx.pool->parallel_for(chunks, 1, [&](i64 first_chunk, i64 end_chunk) {
    for (i64 c = first_chunk; c < end_chunk; ++c) {
      const i64 row_begin = c * rows_per_chunk, row_end = std::min(shape.rows, (c + 1) * rows_per_chunk);
      for (i64 r = row_begin; r < row_end; ++r) {
        const i64 offset = r * n;
        const T *dyr = dy + offset, *xr = x + offset;
        T* dxr = dx + offset;
        const T m = mean[r], s = rstd[r];
        const auto [sum_g, sum_gx] = row_sums(
            n, [&](i64 i) { return dyr[i] * gamma[i]; }, [&](i64 i) { return dyr[i] * gamma[i] * ((xr[i] - m) * s); });
        const T mean_g = static_cast<T>(sum_g / count);
        const T mean_gx = static_cast<T>(sum_gx / count);
        for (i64 j = 0; j < n; ++j) {
          const T xhat = (xr[j] - m) * s;
          dxr[j] = s * (dyr[j] * gamma[j] - mean_g - xhat * mean_gx);
        }
      }
      layer_norm_partials(dy, x, mean, rstd, n, row_begin, row_end, partial_gamma.data() + c * n,
                          partial_beta.data() + c * n);
    }
  });
  // dγ and dβ: the partials of each column, added in chunk order.
  ctx.pool->parallel_for(n, kChunkElements / std::max<i64>(chunks, 1) + 1, [&](i64 begin, i64 end) {
    for (i64 j = begin; j < end; ++j) {
      double sum_gamma = 0, sum_beta = 0;
      for (i64 c = 0; c < chunks; ++c) {
        sum_gamma += partial_gamma[static_cast<std::size_t>(c * n + j)];
        sum_beta += partial_beta[static_cast<std::size_t>(c * n + j)];
      }
      dgamma[j] = static_cast<T>(sum_gamma);
      dbeta[j] = static_cast<T>(sum_beta);
    }
  });
}

// --- Softmax cross-entropy ------------------------------------------------------------------------

// The class a row's target names, or -1 when it names none (outside [0, C)).
template <typename Index>
i64 target_class(const Index* targets, i64 r, i64 classes) {
  const i64 t = static_cast<i64>(targets[r]);
  return t >= 0 && t < classes ? t : -1;
}

// lse = log Σ_c exp(x[c]),  mean = (1/C) Σ_c x[c]
// loss = (1-ε)·(lse - x[t]) + ε·(lse - mean)   for 0 <= t < C;   ε·(lse - mean) otherwise
template <typename T, typename Index>
void cross_entropy_rows(const KernelContext& ctx) {
  const Rows shape(ctx.in(0).shape());
  const i64 classes = shape.n;
  const T* x = ctx.in(0).as<T>();
  const Index* targets = ctx.in(1).as<Index>();
  T *loss = ctx.out(0).as<T>(), *lse = ctx.out(1).as<T>();
  const double smoothing = ctx.params<CrossEntropyParams>().label_smoothing;
  for_each_row(ctx, shape, [&](i64 r) {
    const T* xr = x + r * classes;
    const double row_lse = softmax_stats(xr, classes).lse();
    const i64 t = target_class(targets, r, classes);
    double value = t >= 0 ? (1.0 - smoothing) * (row_lse - static_cast<double>(xr[t])) : 0.0;
    if (smoothing > 0) {
      const double mean = row_sum<double>(classes, [&](i64 c) { return xr[c]; }) / static_cast<double>(classes);
      value += smoothing * (row_lse - mean);
    }
    loss[r] = static_cast<T>(value);
    lse[r] = static_cast<T>(row_lse);
  });
}

// p[c] = exp(x[c] - lse),  dx[c] = ḡ·(k·p[c] - (1-ε)·[c = t] - ε/C),  k = 1 when 0 <= t < C, else ε
template <typename T, typename Index>
void cross_entropy_backward_rows(const KernelContext& ctx) {
  const Rows shape(ctx.in(0).shape());
  const i64 classes = shape.n;
  const T* x = ctx.in(0).as<T>();
  const Index* targets = ctx.in(1).as<Index>();
  const T *lse = ctx.in(2).as<T>(), *dloss = ctx.in(3).as<T>();
  T* dx = ctx.out().as<T>();
  const double smoothing = ctx.params<CrossEntropyParams>().label_smoothing;
  const T uniform = static_cast<T>(smoothing / static_cast<double>(classes));
  for_each_row(ctx, shape, [&](i64 r) {
    const T* xr = x + r * classes;
    T* dxr = dx + r * classes;
    const i64 t = target_class(targets, r, classes);
    const T g = dloss[r], shift = lse[r];
    const T weight = t >= 0 ? T(1) : static_cast<T>(smoothing);
    for (i64 c = 0; c < classes; ++c) dxr[c] = g * (weight * exp_of(xr[c] - shift) - uniform);
    if (t >= 0) dxr[t] -= g * static_cast<T>(1.0 - smoothing);
  });
}

// The kernels are keyed by the logits' dtype; the targets' (i32 or i64) is chosen here.
template <typename T>
void cross_entropy_kernel(const KernelContext& ctx) {
  if (ctx.in(1).type.dtype == DType::i32)
    cross_entropy_rows<T, std::int32_t>(ctx);
  else
    cross_entropy_rows<T, std::int64_t>(ctx);
}

template <typename T>
void cross_entropy_backward_kernel(const KernelContext& ctx) {
  if (ctx.in(1).type.dtype == DType::i32)
    cross_entropy_backward_rows<T, std::int32_t>(ctx);
  else
    cross_entropy_backward_rows<T, std::int64_t>(ctx);
}

// --- Batch norm (ops/batch_norm.h) ------------------------------------------------------------
// x as [N, C, inner]: channel c is N runs of `inner` contiguous values. One task per channel;
// sums in double, the variance from the centred values (two passes, as the composition does).

// Σ_{i < count} term(i): eight partial sums in T (lanes the compiler keeps in one vector
// register), added up in double at the end of the run. A run is one image's plane of a channel,
// short enough (at most a few thousand values) for T's partial sums.
template <typename T, typename F>
double run_sum(i64 count, F&& term) {
  constexpr int kLanes = 8;
  T lanes[kLanes] = {};
  i64 i = 0;
  for (; i + kLanes <= count; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += term(i + l);
  double sum = 0;
  for (int l = 0; l < kLanes; ++l) sum += lanes[l];
  for (; i < count; ++i) sum += term(i);
  return sum;
}

// Calls f(run) with a pointer to each of channel c's N runs of `inner` values in `base`.
template <typename T, typename F>
void for_each_run(T* base, const BatchNormParams& p, i64 c, F&& f) {
  for (i64 n = 0; n < p.batch; ++n) f(base + (n * p.channels + c) * p.inner);
}

template <typename T>
void batch_norm_kernel(const KernelContext& ctx) {
  const BatchNormParams& p = ctx.params<BatchNormParams>();
  const T *x = ctx.in(0).as<T>(), *gamma = ctx.in(1).as<T>(), *beta = ctx.in(2).as<T>();
  T *y = ctx.out(0).as<T>(), *mean = ctx.out(1).as<T>(), *variance = ctx.out(2).as<T>();
  const double count = static_cast<double>(p.batch * p.inner);
  ctx.pool->parallel_for(p.channels, 1, [&](i64 c0, i64 c1) {
    for (i64 c = c0; c < c1; ++c) {
      double sum = 0;
      for_each_run(x, p, c, [&](const T* run) { sum += run_sum<T>(p.inner, [&](i64 i) { return run[i]; }); });
      const double mu = sum / count;
      const T t_mu = static_cast<T>(mu);
      double squares = 0;
      for_each_run(x, p, c, [&](const T* run) {
        squares += run_sum<T>(p.inner, [&](i64 i) { return (run[i] - t_mu) * (run[i] - t_mu); });
      });
      const double var = squares / count;
      mean[c] = static_cast<T>(mu);
      variance[c] = static_cast<T>(var);
      const T scale = static_cast<T>(static_cast<double>(gamma[c]) / std::sqrt(var + p.eps));
      const T shift = static_cast<T>(static_cast<double>(beta[c]) - mu * static_cast<double>(scale));
      for (i64 n = 0; n < p.batch; ++n) {
        const T* xr = x + (n * p.channels + c) * p.inner;
        T* yr = y + (n * p.channels + c) * p.inner;
        for (i64 i = 0; i < p.inner; ++i) yr[i] = xr[i] * scale + shift;
      }
    }
  });
}

template <typename T>
void batch_norm_backward_kernel(const KernelContext& ctx) {
  const BatchNormParams& p = ctx.params<BatchNormParams>();
  const T *dy = ctx.in(0).as<T>(), *x = ctx.in(1).as<T>(), *gamma = ctx.in(2).as<T>();
  const T *mean = ctx.in(3).as<T>(), *variance = ctx.in(4).as<T>();
  T *dx = ctx.out(0).as<T>(), *dgamma = ctx.out(1).as<T>(), *dbeta = ctx.out(2).as<T>();
  const double count = static_cast<double>(p.batch * p.inner);
  ctx.pool->parallel_for(p.channels, 1, [&](i64 c0, i64 c1) {
    for (i64 c = c0; c < c1; ++c) {
      const double mu = mean[c], r = 1.0 / std::sqrt(static_cast<double>(variance[c]) + p.eps);
      const T t_mu = static_cast<T>(mu);
      double sum_dy = 0, sum_dy_centred = 0;
      for (i64 n = 0; n < p.batch; ++n) {
        const T *g = dy + (n * p.channels + c) * p.inner, *xr = x + (n * p.channels + c) * p.inner;
        sum_dy += run_sum<T>(p.inner, [&](i64 i) { return g[i]; });
        sum_dy_centred += run_sum<T>(p.inner, [&](i64 i) { return g[i] * (xr[i] - t_mu); });
      }
      const double sum_dy_xhat = sum_dy_centred * r;
      dbeta[c] = static_cast<T>(sum_dy);
      dgamma[c] = static_cast<T>(sum_dy_xhat);
      // dx = γ·r·(ḡ - Σḡ/n - x̂·Σḡx̂/n) = a·ḡ + b·x + k, per channel
      const double a = static_cast<double>(gamma[c]) * r;
      const double b = -a * r * sum_dy_xhat / count;
      const double k = -a * sum_dy / count - b * mu;
      const T ta = static_cast<T>(a), tb = static_cast<T>(b), tk = static_cast<T>(k);
      for (i64 n = 0; n < p.batch; ++n) {
        const i64 at = (n * p.channels + c) * p.inner;
        for (i64 i = 0; i < p.inner; ++i) dx[at + i] = ta * dy[at + i] + tb * x[at + i] + tk;
      }
    }
  });
}

template <typename T>
void add_kernels(KernelRegistry& r) {
  const DType t = dtype_of<T>;
  r.add(ops::fused_softmax, t, &softmax_kernel<T>);
  r.add(ops::fused_softmax_backward, t, &softmax_backward_kernel<T>);
  r.add(ops::fused_log_softmax, t, &log_softmax_kernel<T>);
  r.add(ops::fused_log_softmax_backward, t, &log_softmax_backward_kernel<T>);
  r.add(ops::fused_layer_norm, t, &layer_norm_kernel<T>);
  r.add(ops::fused_layer_norm_backward, t, &layer_norm_backward_kernel<T>);
  r.add(ops::fused_softmax_cross_entropy, t, &cross_entropy_kernel<T>);
  r.add(ops::fused_softmax_cross_entropy_backward, t, &cross_entropy_backward_kernel<T>);
  r.add(ops::batch_norm, t, &batch_norm_kernel<T>);
  r.add(ops::batch_norm_backward, t, &batch_norm_backward_kernel<T>);
}

}  // namespace

void register_normalization_kernels(KernelRegistry& r) {
  add_kernels<float>(r);
  add_kernels<double>(r);
}

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE
