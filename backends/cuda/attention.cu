// CUDA kernels for fused_attention and fused_attention_backward (ops/attention.h): a first,
// straightforward version, one warp per row, with the math of the CPU kernels.
//
// Notation, for one batch item: q [Tq,D], k [Tk,D], v [Tk,Dv],
//
//   s[i, j] = scale·q[i]·k[j] + mask[i, j]   (-∞ where causality forbids j > i + Tk - Tq)
//   P[i, j] = exp(s[i, j] - lse[i]),   lse[i] = log Σ_j exp(s[i, j]),   o = P·v
//
// Forward: a warp owns query row i and streams the keys past it 32 at a time, lane t scoring
// key j0 + t (a dot product over D, summed in order as a chain of fmas, as on the CPU). It
// keeps the online softmax's running max m, sum l and accumulator a (Milakov & Gimelshein
// 2018): with m' = max(m, max_j s[i, j]),
//
//   l' = e^(m-m')·l + Σ_j e^(s[i,j]-m'),   a' = e^(m-m')·a + Σ_j e^(s[i,j]-m')·v[j]
//
// where lane t owns the output dims t, t + 32, ... of a (kept in shared memory) and gets each
// key's weight from its lane by a shuffle. At the end o[i] = a / l and lse[i] = m + log l; a
// row with no finite score gets o = 0 and lse = -∞.
//
// Backward, with Δ[i] = Σ_d dO[i, d]·o[i, d] computed first (in f64, one warp per row):
//
//   dP[i, j] = dO[i]·v[j],   dS = P ⊙ (dP - Δ),
//   dq[i] = scale·Σ_j dS[i, j]·k[j]                  (a warp per query row, keys streamed)
//   dv[j] = Σ_i P[i, j]·dO[i],  dk[j] = scale·Σ_i dS[i, j]·q[i]   (a warp per key row, queries streamed)
//
// recomputing s and P from lse in both.
//
// Dropout (a.dropout.p > 0) multiplies P[i, j] by Z[i, j] = keep[i, j]·c where P meets v, with
// keep drawn as the CPU draws it (ops/attention.h): for batch item b,
//
//   e = (b·Tq + i)·Tk + j,   u = T(philox::to_unit(lane e % 4 of philox::words(seed, stream + step, e / 4)))
//   keep = u >= T(p)
//
// the same bits as random_uniform's, drawn again in the backward rather than stored. Then
// o[i] = Σ_j Z·P·v[j] (l still sums the un-dropped weights), dP = Z ⊙ (dO·vᵀ) and
// dv[j] = Σ_i Z[i, j]·P[i, j]·dO[i]; Δ and dS = P ⊙ (dP - Δ) keep their form.
//
// Every output row is written by one warp, summing in a
// fixed order: no atomics, the same result at every run. It differs from the CPU's by the
// order of the online softmax's blocks (32 keys here against 128) and by the last bits of
// expf, so results agree to rounding, not bit for bit.
//
// This is the plain version: k, v, q and dO rows are read from global memory through the
// caches, not staged in shared memory tiles, and there are no tensor cores. FlashAttention-2's
// tiling is the next step; the tests comparing it with the CPU will not change.
#include <limits>

#include "fovea/backends/cuda/attention.cuh"
#include "fovea/backends/cuda/device.cuh"
#include "fovea/core/philox.h"

namespace fovea::cuda_backend {

namespace {

using namespace attention_device;

constexpr int kWarp = 32;
constexpr unsigned kAllLanes = 0xffffffffu;
// Warps per block when their shared memory fits (it does up to D + Dv = 1536 in f64).
constexpr int kWarpsPerBlock = 4;
constexpr std::int64_t kSharedLimit = 48 * 1024;

// The max and the sum over the warp's 32 lanes, returned to every lane.
template <typename T>
__device__ inline T warp_max(T v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const T other = __shfl_xor_sync(kAllLanes, v, offset);
    v = v < other ? other : v;
  }
  return v;
}

template <typename T>
__device__ inline T warp_sum(T v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kAllLanes, v, offset);
  return v;
}

// Σ_c a[c]·b[c] for c < n, as one chain of fmas from 0.
template <typename T>
__device__ inline T dot(const T* a, const T* b, std::int64_t n) {
  T sum = 0;
  for (std::int64_t c = 0; c < n; ++c) sum = fma_of(a[c], b[c], sum);
  return sum;
}

// s[i, j] = scale·q_row·k_row + mask[i, j], for a (b, i, j) causality allows.
template <typename T>
__device__ inline T score(const AttentionShape& a, const T* q_row, const T* k_row, const T* mask_item, std::int64_t i,
                          std::int64_t j) {
  T s = dot(q_row, k_row, a.d) * static_cast<T>(a.scale);
  if (mask_item) s += mask_item[i * a.mask_row_stride + j * a.mask_column_stride];
  return s;
}

// acc[c] = acc[c]·rescale + Σ_{t < count} w_t·rows[t·ld + c] for c < width, where lane t holds
// w_t: lane l updates c = l, l + 32, ... Every lane runs every shuffle (width may not be a
// multiple of 32).
template <typename T>
__device__ inline void accumulate_rows(T* acc, std::int64_t width, T rescale, T w, int count, const T* rows,
                                       std::int64_t ld, int lane) {
  for (std::int64_t c0 = 0; c0 < width; c0 += kWarp) {
    const std::int64_t c = c0 + lane;
    const bool live = c < width;
    T sum = live ? acc[c] * rescale : T(0);
    for (int t = 0; t < count; ++t) {
      const T wt = __shfl_sync(kAllLanes, w, t);
      if (live) sum = fma_of(wt, rows[t * ld + c], sum);
    }
    if (live) acc[c] = sum;
  }
}

// Warp w of this block and lane l; warps loop over rows [0, rows) so that any grid covers them.
struct WarpPosition {
  int lane, warp, warps;
  __device__ WarpPosition()
      : lane(static_cast<int>(threadIdx.x) % kWarp),
        warp(static_cast<int>(threadIdx.x) / kWarp),
        warps(static_cast<int>(blockDim.x) / kWarp) {}
  __device__ std::int64_t first_row() const { return static_cast<std::int64_t>(blockIdx.x) * warps + warp; }
  __device__ std::int64_t row_stride() const { return static_cast<std::int64_t>(gridDim.x) * warps; }
};

// One warp per query row (b, i): o [batch, Tq, Dv], lse [batch, Tq].
template <typename T>
__global__ void forward_kernel(const __grid_constant__ AttentionShape a, const T* q, const T* k, const T* v,
                               const T* mask, T* o, T* lse) {
  extern __shared__ __align__(16) unsigned char shared[];
  const WarpPosition at;
  T* acc = reinterpret_cast<T*>(shared) + at.warp * a.dv;
  const std::uint64_t stream = dropout_stream(a);
  for (std::int64_t row = at.first_row(); row < a.batch * a.tq; row += at.row_stride()) {
    const std::int64_t b = row / a.tq, i = row % a.tq;
    const T* q_row = q + row * a.d;
    const T* k_item = k + b * a.tk * a.d;
    const T* v_item = v + b * a.tk * a.dv;
    const T* mask_item = mask ? mask + mask_offset(a, b) : nullptr;
    const std::int64_t end = key_end(a, i);
    for (std::int64_t c = at.lane; c < a.dv; c += kWarp) acc[c] = 0;
    T m = -infinity<T>(), l = 0;
    for (std::int64_t j0 = 0; j0 < end; j0 += kWarp) {
      const std::int64_t j = j0 + at.lane;
      const T s = j < end ? score(a, q_row, k_item + j * a.d, mask_item, i, j) : -infinity<T>();
      // m' = max(m, max_j s), the factor e^(m - m') for what was summed so far, p = e^(s - m').
      const T block_max = warp_max(s);
      const T new_m = m < block_max ? block_max : m;
      const T rescale = m == -infinity<T>() ? T(0) : exp_of(m - new_m);
      const T p = exp_of(s - exp_shift(new_m));
      l = l * rescale + warp_sum(p);
      // Only the kept weights, times c, meet v (l keeps the un-dropped sum).
      const T weight = j < end ? p * dropout_factor<T>(a, stream, b, i, j) : T(0);
      const int count = static_cast<int>(end - j0 < kWarp ? end - j0 : kWarp);
      accumulate_rows(acc, a.dv, rescale, weight, count, v_item + j0 * a.dv, a.dv, at.lane);
      m = new_m;
    }
    const bool masked = l == T(0);
    const T inverse = masked ? T(0) : T(1) / l;
    for (std::int64_t c = at.lane; c < a.dv; c += kWarp) o[row * a.dv + c] = acc[c] * inverse;
    if (at.lane == 0) lse[row] = masked ? -infinity<T>() : m + log_of(l);
    __syncwarp();
  }
}

// Δ[row] = Σ_c dO[row, c]·o[row, c], summed in f64: one warp per row.
template <typename T>
__global__ void delta_kernel(const AttentionShape a, const T* o, const T* d_o, T* delta) {
  const WarpPosition at;
  for (std::int64_t row = at.first_row(); row < a.batch * a.tq; row += at.row_stride()) {
    double sum = 0;
    for (std::int64_t c = at.lane; c < a.dv; c += kWarp)
      sum += static_cast<double>(d_o[row * a.dv + c]) * static_cast<double>(o[row * a.dv + c]);
    sum = warp_sum(sum);
    if (at.lane == 0) delta[row] = static_cast<T>(sum);
  }
}

// One warp per query row (b, i): dq[i] = scale·Σ_j dS[i, j]·k[j], dS = P ⊙ (Z ⊙ dO·vᵀ - Δ).
template <typename T>
__global__ void query_gradients_kernel(const __grid_constant__ AttentionShape a, const T* q, const T* k, const T* v,
                                       const T* mask, const T* lse, const T* d_o, const T* delta, T* dq) {
  extern __shared__ __align__(16) unsigned char shared[];
  const WarpPosition at;
  T* acc = reinterpret_cast<T*>(shared) + at.warp * a.d;
  const std::uint64_t stream = dropout_stream(a);
  for (std::int64_t row = at.first_row(); row < a.batch * a.tq; row += at.row_stride()) {
    const std::int64_t b = row / a.tq, i = row % a.tq;
    const T* q_row = q + row * a.d;
    const T* d_o_row = d_o + row * a.dv;
    const T* k_item = k + b * a.tk * a.d;
    const T* v_item = v + b * a.tk * a.dv;
    const T* mask_item = mask ? mask + mask_offset(a, b) : nullptr;
    const T shift = exp_shift(lse[row]), delta_i = delta[row];
    const std::int64_t end = key_end(a, i);
    for (std::int64_t c = at.lane; c < a.d; c += kWarp) acc[c] = 0;
    for (std::int64_t j0 = 0; j0 < end; j0 += kWarp) {
      const std::int64_t j = j0 + at.lane;
      T ds = 0;
      if (j < end) {
        const T p = exp_of(score(a, q_row, k_item + j * a.d, mask_item, i, j) - shift);
        ds = p * (dropout_factor<T>(a, stream, b, i, j) * dot(d_o_row, v_item + j * a.dv, a.dv) - delta_i);
      }
      const int count = static_cast<int>(end - j0 < kWarp ? end - j0 : kWarp);
      accumulate_rows(acc, a.d, T(1), ds, count, k_item + j0 * a.d, a.d, at.lane);
    }
    const T scale = static_cast<T>(a.scale);
    for (std::int64_t c = at.lane; c < a.d; c += kWarp) dq[row * a.d + c] = scale * acc[c];
    __syncwarp();
  }
}

// One warp per key row (b, j): dv[j] = Σ_i Z[i, j]·P[i, j]·dO[i], dk[j] = scale·Σ_i dS[i, j]·q[i].
template <typename T>
__global__ void key_gradients_kernel(const __grid_constant__ AttentionShape a, const T* q, const T* k, const T* v,
                                     const T* mask, const T* lse, const T* d_o, const T* delta, T* dk, T* dv) {
  extern __shared__ __align__(16) unsigned char shared[];
  const WarpPosition at;
  T* dk_acc = reinterpret_cast<T*>(shared) + at.warp * (a.d + a.dv);
  T* dv_acc = dk_acc + a.d;
  const std::uint64_t stream = dropout_stream(a);
  for (std::int64_t row = at.first_row(); row < a.batch * a.tk; row += at.row_stride()) {
    const std::int64_t b = row / a.tk, j = row % a.tk;
    const T* k_row = k + row * a.d;
    const T* v_row = v + row * a.dv;
    const T* q_item = q + b * a.tq * a.d;
    const T* d_o_item = d_o + b * a.tq * a.dv;
    const T* mask_item = mask ? mask + mask_offset(a, b) : nullptr;
    for (std::int64_t c = at.lane; c < a.d; c += kWarp) dk_acc[c] = 0;
    for (std::int64_t c = at.lane; c < a.dv; c += kWarp) dv_acc[c] = 0;
    for (std::int64_t i0 = first_query(a, j); i0 < a.tq; i0 += kWarp) {
      const std::int64_t i = i0 + at.lane;
      T kept = 0, ds = 0;  // Z·P and dS
      if (i < a.tq) {
        const std::int64_t query = b * a.tq + i;
        const T p = exp_of(score(a, q_item + i * a.d, k_row, mask_item, i, j) - exp_shift(lse[query]));
        const T z = dropout_factor<T>(a, stream, b, i, j);
        kept = z * p;
        ds = p * (z * dot(d_o_item + i * a.dv, v_row, a.dv) - delta[query]);
      }
      const int count = static_cast<int>(a.tq - i0 < kWarp ? a.tq - i0 : kWarp);
      accumulate_rows(dv_acc, a.dv, T(1), kept, count, d_o_item + i0 * a.dv, a.dv, at.lane);
      accumulate_rows(dk_acc, a.d, T(1), ds, count, q_item + i0 * a.d, a.d, at.lane);
    }
    const T scale = static_cast<T>(a.scale);
    for (std::int64_t c = at.lane; c < a.d; c += kWarp) dk[row * a.d + c] = scale * dk_acc[c];
    for (std::int64_t c = at.lane; c < a.dv; c += kWarp) dv[row * a.dv + c] = dv_acc[c];
    __syncwarp();
  }
}

// Threads and shared bytes of a block whose warps each need `per_warp` bytes.
struct Blocks {
  unsigned grid;
  int threads;
  std::size_t shared;
  Blocks(std::int64_t rows, std::int64_t per_warp) {
    int warps = kWarpsPerBlock;
    while (warps > 1 && warps * per_warp > kSharedLimit) warps /= 2;
    const std::int64_t blocks = (rows + warps - 1) / warps;
    grid = grid_for(blocks);
    threads = warps * kWarp;
    shared = static_cast<std::size_t>(warps * per_warp);
  }
};

template <typename T>
void forward(const AttentionShape& a, const T* q, const T* k, const T* v, const T* mask, T* o, T* lse,
             cudaStream_t stream) {
  const Blocks blocks(a.batch * a.tq, a.dv * static_cast<std::int64_t>(sizeof(T)));
  forward_kernel<T><<<blocks.grid, blocks.threads, blocks.shared, stream>>>(a, q, k, v, mask, o, lse);
}

template <typename T>
void backward(const AttentionShape& a, const T* q, const T* k, const T* v, const T* mask, const T* o, const T* lse,
              const T* d_o, T* delta, T* dq, T* dk, T* dv, cudaStream_t stream) {
  const std::int64_t size = sizeof(T);
  if (a.batch * a.tq > 0) {
    const Blocks rows(a.batch * a.tq, 0);
    delta_kernel<T><<<rows.grid, rows.threads, 0, stream>>>(a, o, d_o, delta);
    const Blocks queries(a.batch * a.tq, a.d * size);
    query_gradients_kernel<T>
        <<<queries.grid, queries.threads, queries.shared, stream>>>(a, q, k, v, mask, lse, d_o, delta, dq);
  }
  if (a.batch * a.tk > 0) {
    const Blocks keys(a.batch * a.tk, (a.d + a.dv) * size);
    key_gradients_kernel<T>
        <<<keys.grid, keys.threads, keys.shared, stream>>>(a, q, k, v, mask, lse, d_o, delta, dk, dv);
  }
}

}  // namespace

std::int64_t attention_shared_bytes_per_warp(Element type, std::int64_t d, std::int64_t dv) {
  return (d + dv) * (type == Element::f64 ? 8 : 4);
}

bool launch_attention_forward(Element type, const AttentionShape& shape, const void* q, const void* k, const void* v,
                              const void* mask, void* o, void* lse, void* stream) {
  if (shape.batch * shape.tq == 0) return true;
  switch (type) {
    case Element::f32:
      forward(shape, static_cast<const float*>(q), static_cast<const float*>(k), static_cast<const float*>(v),
              static_cast<const float*>(mask), static_cast<float*>(o), static_cast<float*>(lse), as_stream(stream));
      return true;
    case Element::f64:
      forward(shape, static_cast<const double*>(q), static_cast<const double*>(k), static_cast<const double*>(v),
              static_cast<const double*>(mask), static_cast<double*>(o), static_cast<double*>(lse), as_stream(stream));
      return true;
    default:
      return false;
  }
}

bool launch_attention_backward(Element type, const AttentionShape& shape, const void* q, const void* k, const void* v,
                               const void* mask, const void* o, const void* lse, const void* d_o, void* delta, void* dq,
                               void* dk, void* dv, void* stream) {
  auto run = [&](auto zero) {
    using T = decltype(zero);
    backward(shape, static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
             static_cast<const T*>(mask), static_cast<const T*>(o), static_cast<const T*>(lse),
             static_cast<const T*>(d_o), static_cast<T*>(delta), static_cast<T*>(dq), static_cast<T*>(dk),
             static_cast<T*>(dv), as_stream(stream));
  };
  switch (type) {
    case Element::f32:
      run(float{});
      return true;
    case Element::f64:
      run(double{});
      return true;
    default:
      return false;
  }
}

}  // namespace fovea::cuda_backend
