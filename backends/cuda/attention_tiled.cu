// CUDA kernels for fused_attention and fused_attention_backward (ops/attention.h), tiled as in
// FlashAttention-2 (Dao, 2023): blocks of queries and keys are staged in shared memory and the
// [Tq, Tk] scores are never stored. The math is attention.cu's; only the schedule differs.
//
// OPT-IN. The one-warp-per-row kernels of attention.cu stay the default. The host side
// (attention_kernels.cpp) reads the environment variable FOVEA_CUDA_ATTENTION at every launch:
//
//   unset, "" or "simple"   attention.cu's kernels
//   "tiled"                 these kernels, where tiled_attention_supports() says they fit (f32
//                           or f64, D, Dv <= 128, tiles within the device's shared memory);
//                           attention.cu's otherwise
//   anything else           a fovea::Error naming the node
//
// Notation, for one batch item b: q [Tq,D], k [Tk,D], v [Tk,Dv], rows of every tensor contiguous,
//
//   s[i, j] = scale·q[i]·k[j] + mask[i, j]   (-∞ where causality forbids j >= i + 1 + Tk - Tq)
//   P[i, j] = exp(s[i, j] - lse[i]),   lse[i] = log Σ_j exp(s[i, j]),   o = (Z ⊙ P)·v
//
// with Z the dropout factors (1 without dropout; see "Dropout" below).
//
// Forward (forward_kernel): a block of 4 warps owns Br = 64 query rows of one batch item; each
// warp owns 16 rows, two lanes per row, each lane half of the row's columns (key columns
// part, part + 2, ... of the score tile; output dims part, part + 2, ... of o). The block keeps
// its q tile [Br, D] in shared memory and streams k and v past it in tiles of Bc keys:
//
//   S = scale·Q·Kᵀ + mask              [Br, Bc], each lane its Bc/2 scores in registers
//   m' = max(m, rowmax S)              running max (the two lanes of a row agree by a shuffle)
//   P̃ = exp(S - m'),  l' = e^(m-m')·l + rowsum P̃
//   acc' = e^(m-m')·acc + (Z ⊙ P̃)·V   [Br, Dv] in registers, P̃ passed through shared memory
//
// and at the end o = acc / l, lse = m + log l; a row with no finite score (l = 0) gets o = 0 and
// lse = -∞. With causality a block skips the key tiles that lie wholly right of its last row's
// diagonal, and masks per element in the tile the diagonal crosses.
//
// Backward: Δ[i] = Σ_c dO[i, c]·o[i, c] first (delta_kernel, summed in f64). Then
// (backward_kernel) a block of 4 warps owns Bc = 32 keys of one batch item (8 per warp, four
// lanes per key), keeps its k and v tiles in shared memory and its dk, dv rows in registers,
// and streams the query tiles that can see its keys past them, recomputing P from lse:
//
//   S = scale·Q·Kᵀ + mask,  P = exp(S - lse)          (held transposed: a lane owns a key)
//   dV_j += (Z ⊙ P)ᵀ·dO_i
//   dP = Z ⊙ (dO_i·V_jᵀ),   dS = P ⊙ (dP - Δ_i)
//   dK_j += dSᵀ·Q_i                                    (times scale when written)
//   dQ_i += scale·dS·K_j                               atomicAdd into dq, zeroed beforehand
//
// dq is the one output several blocks write: every key tile adds its part with atomicAdd
// (f32 and f64 atomics, native from sm_60). The choice against a separate query pass: one
// kernel recomputes P once instead of twice, at the price that dq's sums come in no fixed
// order, so dq may differ between runs in its last bits (o, lse, dk and dv do not). A fully
// masked row has lse = -∞, hence P = 0 and dS = 0 everywhere: zero gradients, never NaN.
//
// Dropout (a.dropout.p > 0), exactly as attention.cu and the CPU draw it: for batch item b,
//
//   e = (b·Tq + i)·Tk + j,   u = T(philox::to_unit(lane e % 4 of philox::words(seed, stream + step, e / 4)))
//   Z[i, j] = u >= T(p) ? c : 0
//
// l and lse sum the un-dropped weights; the backward draws the same bits again.
//
// Precision: f32 is computed with plain f32 FMAs (no TF32: results stay within rounding of
// the CPU's); f64 with f64 FMAs. Results differ from the CPU's by summation order (the online
// softmax's blocks are Bc keys here, 128 there) and by the last bits of expf.
//
// Sizes. Kernels are templated on the element type T and a maximal head dim kHead (64 or
// 128); D and Dv may be anything up to kHead (tiles are zero-padded). Tiles live in dynamic
// shared memory, up to ~150 KB for f64 with kHead = 128 (above the 48 KB default: the launcher
// raises the kernel's limit; sm_80 allows 163 KB, sm_90 227 KB). The rows of a shared tile are
// padded to kHead + 1 elements so that lanes reading different rows hit different banks.
// Not done (yet): double-buffering the k/v tiles with cp.async, and tensor cores. An f16/bf16
// path would replace the two marked products (S = Q·Kᵀ and acc += P·V, and the backward's
// four) by WMMA fragments on 16×16 tiles; the online softmax and the tile loads stay as they are.
#include <limits>
#include <type_traits>

#include "fovea/backends/cuda/attention.cuh"
#include "fovea/backends/cuda/device.cuh"
#include "fovea/core/philox.h"

namespace fovea::cuda_backend {

namespace {

using namespace attention_device;

constexpr int kWarp = 32;
constexpr unsigned kAllLanes = 0xffffffffu;
constexpr int kWarpsPerBlock = 4;
constexpr int kThreadsPerBlock = kWarpsPerBlock * kWarp;

template <typename T>
__device__ inline T larger(T a, T b) {
  return a < b ? b : a;
}

// s = scale·dot + mask[i, j] (mask_item: the item's slice, or nullptr).
template <typename T>
__device__ inline T scaled_score(const AttentionShape& a, T dot, const T* mask_item, std::int64_t i, std::int64_t j) {
  T s = dot * static_cast<T>(a.scale);
  if (mask_item) s += mask_item[i * a.mask_row_stride + j * a.mask_column_stride];
  return s;
}

// tile[r·stride + c] = source[r·width + c] for r < count, c < width, and 0 elsewhere in the
// tile's `rows` × kHead: padding rows and columns hold zeros, never stale values (0·NaN
// would poison the sums). The whole block loads; consecutive threads read consecutive
// elements of the contiguous rows.
template <typename T, int kHead>
__device__ inline void load_tile(T* tile, int rows, int stride, const T* source, std::int64_t count,
                                 std::int64_t width) {
  for (int index = static_cast<int>(threadIdx.x); index < rows * kHead; index += kThreadsPerBlock) {
    const int r = index / kHead, c = index % kHead;
    tile[r * stride + c] = r < count && c < width ? source[r * width + c] : T(0);
  }
}

// --- Forward -------------------------------------------------------------------------------

// The forward's tile sizes: Br query rows per block, two lanes per row, Bc keys per k/v tile.
template <typename T, int kHead>
struct ForwardTiles {
  static constexpr int lanes = 2;                                        // lanes sharing a query row
  static constexpr int rows = kThreadsPerBlock / lanes;                  // Br = 64
  static constexpr int keys = sizeof(T) == 8 && kHead == 128 ? 32 : 64;  // Bc
  static constexpr int stride = kHead + 1;                               // a q, k or v row in shared memory
  static constexpr int p_stride = keys + 1;                              // a row of the P̃ tile
  static constexpr int columns = keys / lanes;                           // scores per lane
  static constexpr int dims = kHead / lanes;                             // output dims per lane
  static constexpr std::size_t shared_elements = (rows + 2 * keys) * stride + rows * p_stride;
};

// One block per (batch item b, tile of Br query rows), looping over such work items when the
// grid is smaller: o [batch, Tq, Dv], lse [batch, Tq].
template <typename T, int kHead>
__global__ void __launch_bounds__(kThreadsPerBlock)
    forward_kernel(const __grid_constant__ AttentionShape a, const T* q, const T* k, const T* v, const T* mask, T* o,
                   T* lse) {
  using Tile = ForwardTiles<T, kHead>;
  extern __shared__ __align__(16) unsigned char shared[];
  T* q_tile = reinterpret_cast<T*>(shared);
  T* k_tile = q_tile + Tile::rows * Tile::stride;
  T* v_tile = k_tile + Tile::keys * Tile::stride;
  T* p_tile = v_tile + Tile::keys * Tile::stride;
  // This thread's row of the tile, and its part: columns part, part + lanes, ...
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int row = static_cast<int>(threadIdx.x) / Tile::lanes;
  const int part = lane % Tile::lanes;
  const std::int64_t tiles = (a.tq + Tile::rows - 1) / Tile::rows;
  const std::uint64_t stream = dropout_stream(a);

  for (std::int64_t work = blockIdx.x; work < a.batch * tiles; work += gridDim.x) {
    const std::int64_t b = work / tiles, i0 = work % tiles * Tile::rows;
    const std::int64_t row_count = a.tq - i0 < Tile::rows ? a.tq - i0 : Tile::rows;
    const std::int64_t i = i0 + row;
    const T* mask_item = mask ? mask + mask_offset(a, b) : nullptr;
    // Keys this row sees (none for padding rows), and keys any row of the tile sees.
    const std::int64_t row_end = i < a.tq ? key_end(a, i) : 0;
    const std::int64_t tile_end = key_end(a, i0 + row_count - 1);

    __syncthreads();  // the previous work item has finished reading the tiles
    load_tile<T, kHead>(q_tile, Tile::rows, Tile::stride, q + (b * a.tq + i0) * a.d, row_count, a.d);

    T acc[Tile::dims];
#pragma unroll
    for (int u = 0; u < Tile::dims; ++u) acc[u] = 0;
    T m = -infinity<T>(), l = 0;  // l: this lane's part of the row sum; the two parts add at the end

    for (std::int64_t j0 = 0; j0 < tile_end; j0 += Tile::keys) {
      const std::int64_t key_count = a.tk - j0 < Tile::keys ? a.tk - j0 : Tile::keys;
      __syncthreads();  // everyone is done with the previous k, v and P̃ tiles
      load_tile<T, kHead>(k_tile, Tile::keys, Tile::stride, k + (b * a.tk + j0) * a.d, key_count, a.d);
      load_tile<T, kHead>(v_tile, Tile::keys, Tile::stride, v + (b * a.tk + j0) * a.dv, key_count, a.dv);
      __syncthreads();

      // S = Q·Kᵀ for this lane's columns, each a chain of fmas over d in order.
      // (f16/bf16: a WMMA product of the q tile and the k tile would replace this loop.)
      T s[Tile::columns];
#pragma unroll
      for (int t = 0; t < Tile::columns; ++t) s[t] = 0;
      for (std::int64_t c = 0; c < a.d; ++c) {
        const T qc = q_tile[row * Tile::stride + c];
#pragma unroll
        for (int t = 0; t < Tile::columns; ++t)
          s[t] = fma_of(qc, k_tile[(part + Tile::lanes * t) * Tile::stride + c], s[t]);
      }

      // Scale, mask, and the row's max over the tile (-∞ for the keys it may not see).
      T tile_max = -infinity<T>();
#pragma unroll
      for (int t = 0; t < Tile::columns; ++t) {
        const std::int64_t j = j0 + part + Tile::lanes * t;
        s[t] = j < row_end ? scaled_score(a, s[t], mask_item, i, j) : -infinity<T>();
        tile_max = larger(tile_max, s[t]);
      }
#pragma unroll
      for (int offset = Tile::lanes / 2; offset > 0; offset /= 2)
        tile_max = larger(tile_max, __shfl_xor_sync(kAllLanes, tile_max, offset));

      // m' = max(m, tile max); what was summed so far shrinks by e^(m - m').
      const T new_m = larger(m, tile_max);
      const T rescale = m == -infinity<T>() ? T(0) : exp_of(m - new_m);
      const T shift = exp_shift(new_m);
      l *= rescale;
#pragma unroll
      for (int u = 0; u < Tile::dims; ++u) acc[u] *= rescale;
      m = new_m;

      // P̃ = exp(S - m'); l sums it, and Z ⊙ P̃ goes to the shared tile for the product with V.
#pragma unroll
      for (int t = 0; t < Tile::columns; ++t) {
        const int column = part + Tile::lanes * t;
        const std::int64_t j = j0 + column;
        const T p = exp_of(s[t] - shift);
        l += p;
        p_tile[row * Tile::p_stride + column] = j < row_end ? p * dropout_factor<T>(a, stream, b, i, j) : T(0);
      }
      __syncwarp();  // a row's two lanes are in one warp: each now reads the other's weights

      // acc += (Z ⊙ P̃)·V for this lane's output dims.
      // (f16/bf16: a WMMA product of the P̃ tile and the v tile would replace this loop.)
      for (int jj = 0; jj < key_count; ++jj) {
        const T w = p_tile[row * Tile::p_stride + jj];
#pragma unroll
        for (int u = 0; u < Tile::dims; ++u)
          acc[u] = fma_of(w, v_tile[jj * Tile::stride + part + Tile::lanes * u], acc[u]);
      }
    }

#pragma unroll
    for (int offset = Tile::lanes / 2; offset > 0; offset /= 2) l += __shfl_xor_sync(kAllLanes, l, offset);
    if (i < a.tq) {
      const bool masked = l == T(0);
      const T inverse = masked ? T(0) : T(1) / l;
#pragma unroll
      for (int u = 0; u < Tile::dims; ++u) {
        const int c = part + Tile::lanes * u;
        if (c < a.dv) o[(b * a.tq + i) * a.dv + c] = acc[u] * inverse;
      }
      if (part == 0) lse[b * a.tq + i] = masked ? -infinity<T>() : m + log_of(l);
    }
  }
}

// --- Backward ------------------------------------------------------------------------------

// Δ[row] = Σ_c dO[row, c]·o[row, c], summed in f64: one warp per row.
template <typename T>
__global__ void delta_kernel(std::int64_t rows, std::int64_t dv, const T* o, const T* d_o, T* delta) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * kWarpsPerBlock;
  for (std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp; row < rows;
       row += warps) {
    double sum = 0;
    for (std::int64_t c = lane; c < dv; c += kWarp)
      sum += static_cast<double>(d_o[row * dv + c]) * static_cast<double>(o[row * dv + c]);
    for (int offset = kWarp / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(kAllLanes, sum, offset);
    if (lane == 0) delta[row] = static_cast<T>(sum);
  }
}

// The backward's tile sizes: Bc keys per block, four lanes per key, Br query rows per q/dO tile.
template <typename T, int kHead>
struct BackwardTiles {
  static constexpr int lanes = 4;                                        // lanes sharing a key
  static constexpr int keys = kThreadsPerBlock / lanes;                  // Bc = 32
  static constexpr int rows = sizeof(T) == 8 && kHead == 128 ? 32 : 64;  // Br
  static constexpr int stride = kHead + 1;                               // a k, v, q or dO row in shared memory
  static constexpr int key_stride = rows + 1;                            // a key's row of the Pᵀ and dSᵀ tiles
  static constexpr int columns = rows / lanes;                           // query rows per lane
  static constexpr int dims = kHead / lanes;                             // dk and dv dims per lane
  static constexpr std::size_t shared_elements = (2 * keys + 2 * rows) * stride + 2 * keys * key_stride + 2 * rows;
};

// One block per (batch item b, tile of Bc keys): dk and dv of those keys, and their share of
// dq added atomically. dq must be zero on entry.
template <typename T, int kHead>
__global__ void __launch_bounds__(kThreadsPerBlock)
    backward_kernel(const __grid_constant__ AttentionShape a, const T* q, const T* k, const T* v, const T* mask,
                    const T* lse, const T* d_o, const T* delta, T* dq, T* dk, T* dv) {
  using Tile = BackwardTiles<T, kHead>;
  extern __shared__ __align__(16) unsigned char shared[];
  T* k_tile = reinterpret_cast<T*>(shared);
  T* v_tile = k_tile + Tile::keys * Tile::stride;
  T* q_tile = v_tile + Tile::keys * Tile::stride;
  T* d_o_tile = q_tile + Tile::rows * Tile::stride;
  T* kept_tile = d_o_tile + Tile::rows * Tile::stride;      // (Z ⊙ P)ᵀ [Bc, Br]
  T* ds_tile = kept_tile + Tile::keys * Tile::key_stride;   // dSᵀ [Bc, Br]
  T* shift_tile = ds_tile + Tile::keys * Tile::key_stride;  // exp_shift(lse) of the tile's rows
  T* delta_tile = shift_tile + Tile::rows;
  // This thread's key of the tile, and its part: query rows part, part + lanes, ... and
  // dk, dv dims part, part + lanes, ...
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int key = static_cast<int>(threadIdx.x) / Tile::lanes;
  const int part = lane % Tile::lanes;
  const std::int64_t tiles = (a.tk + Tile::keys - 1) / Tile::keys;
  const std::uint64_t stream = dropout_stream(a);
  const T scale = static_cast<T>(a.scale);

  for (std::int64_t work = blockIdx.x; work < a.batch * tiles; work += gridDim.x) {
    const std::int64_t b = work / tiles, j0 = work % tiles * Tile::keys;
    const std::int64_t key_count = a.tk - j0 < Tile::keys ? a.tk - j0 : Tile::keys;
    const std::int64_t j = j0 + key;
    const T* mask_item = mask ? mask + mask_offset(a, b) : nullptr;

    __syncthreads();  // the previous work item has finished reading the tiles
    load_tile<T, kHead>(k_tile, Tile::keys, Tile::stride, k + (b * a.tk + j0) * a.d, key_count, a.d);
    load_tile<T, kHead>(v_tile, Tile::keys, Tile::stride, v + (b * a.tk + j0) * a.dv, key_count, a.dv);

    T dk_acc[Tile::dims], dv_acc[Tile::dims];
#pragma unroll
    for (int u = 0; u < Tile::dims; ++u) dk_acc[u] = dv_acc[u] = 0;

    // Query tiles from the one holding the first query that sees key j0 (causal), else all.
    for (std::int64_t i0 = first_query(a, j0) / Tile::rows * Tile::rows; i0 < a.tq; i0 += Tile::rows) {
      const std::int64_t row_count = a.tq - i0 < Tile::rows ? a.tq - i0 : Tile::rows;
      __syncthreads();  // everyone is done with the previous q, dO, Pᵀ and dSᵀ tiles
      load_tile<T, kHead>(q_tile, Tile::rows, Tile::stride, q + (b * a.tq + i0) * a.d, row_count, a.d);
      load_tile<T, kHead>(d_o_tile, Tile::rows, Tile::stride, d_o + (b * a.tq + i0) * a.dv, row_count, a.dv);
      for (int r = static_cast<int>(threadIdx.x); r < Tile::rows; r += kThreadsPerBlock) {
        shift_tile[r] = r < row_count ? exp_shift(lse[b * a.tq + i0 + r]) : infinity<T>();
        delta_tile[r] = r < row_count ? delta[b * a.tq + i0 + r] : T(0);
      }
      __syncthreads();

      // Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ for this lane's query rows, chains of fmas in order.
      // (f16/bf16: two WMMA products would replace these loops.)
      T s[Tile::columns], dp[Tile::columns];
#pragma unroll
      for (int t = 0; t < Tile::columns; ++t) s[t] = dp[t] = 0;
      for (std::int64_t c = 0; c < a.d; ++c) {
        const T kc = k_tile[key * Tile::stride + c];
#pragma unroll
        for (int t = 0; t < Tile::columns; ++t)
          s[t] = fma_of(q_tile[(part + Tile::lanes * t) * Tile::stride + c], kc, s[t]);
      }
      for (std::int64_t c = 0; c < a.dv; ++c) {
        const T vc = v_tile[key * Tile::stride + c];
#pragma unroll
        for (int t = 0; t < Tile::columns; ++t)
          dp[t] = fma_of(d_o_tile[(part + Tile::lanes * t) * Tile::stride + c], vc, dp[t]);
      }

      // P = exp(S - lse), Z ⊙ P and dS = P ⊙ (Z ⊙ dP - Δ); 0 where (i, j) is padding or
      // causality forbids it.
#pragma unroll
      for (int t = 0; t < Tile::columns; ++t) {
        const int r = part + Tile::lanes * t;
        const std::int64_t i = i0 + r;
        T kept = 0, ds = 0;
        if (r < row_count && j < key_end(a, i)) {
          const T p = exp_of(scaled_score(a, s[t], mask_item, i, j) - shift_tile[r]);
          const T z = dropout_factor<T>(a, stream, b, i, j);
          kept = z * p;
          ds = p * (z * dp[t] - delta_tile[r]);
        }
        kept_tile[key * Tile::key_stride + r] = kept;
        ds_tile[key * Tile::key_stride + r] = ds;
      }
      __syncwarp();  // a key's four lanes are in one warp: each now reads the others' values

      // dV_j += (Z ⊙ P)ᵀ·dO_i and dK_j += dSᵀ·Q_i for this lane's dims.
      // (f16/bf16: WMMA products again.)
      for (int r = 0; r < row_count; ++r) {
        const T kept = kept_tile[key * Tile::key_stride + r], ds = ds_tile[key * Tile::key_stride + r];
#pragma unroll
        for (int u = 0; u < Tile::dims; ++u) {
          const int c = part + Tile::lanes * u;
          dv_acc[u] = fma_of(kept, d_o_tile[r * Tile::stride + c], dv_acc[u]);
          dk_acc[u] = fma_of(ds, q_tile[r * Tile::stride + c], dk_acc[u]);
        }
      }
      __syncthreads();  // the whole dSᵀ tile is written

      // dQ_i += scale·dS·K_j: each thread a few (row, dim) pairs, summed over the tile's keys.
      for (std::int64_t index = threadIdx.x; index < row_count * a.d; index += kThreadsPerBlock) {
        const int r = static_cast<int>(index / a.d);
        const int c = static_cast<int>(index % a.d);
        T sum = 0;
        for (int kk = 0; kk < key_count; ++kk)
          sum = fma_of(ds_tile[kk * Tile::key_stride + r], k_tile[kk * Tile::stride + c], sum);
        atomicAdd(dq + (b * a.tq + i0 + r) * a.d + c, scale * sum);
      }
    }

    if (j < a.tk) {
#pragma unroll
      for (int u = 0; u < Tile::dims; ++u) {
        const int c = part + Tile::lanes * u;
        if (c < a.d) dk[(b * a.tk + j) * a.d + c] = scale * dk_acc[u];
        if (c < a.dv) dv[(b * a.tk + j) * a.dv + c] = dv_acc[u];
      }
    }
  }
}

// --- Launches ------------------------------------------------------------------------------

template <typename T, int kHead>
void forward(const AttentionShape& a, const T* q, const T* k, const T* v, const T* mask, T* o, T* lse,
             cudaStream_t stream) {
  using Tile = ForwardTiles<T, kHead>;
  const std::size_t shared = Tile::shared_elements * sizeof(T);
  cudaFuncSetAttribute(forward_kernel<T, kHead>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
  const std::int64_t tiles = (a.tq + Tile::rows - 1) / Tile::rows;
  forward_kernel<T, kHead><<<grid_for(a.batch * tiles), kThreadsPerBlock, shared, stream>>>(a, q, k, v, mask, o, lse);
}

template <typename T, int kHead>
void backward(const AttentionShape& a, const T* q, const T* k, const T* v, const T* mask, const T* o, const T* lse,
              const T* d_o, T* delta, T* dq, T* dk, T* dv, cudaStream_t stream) {
  using Tile = BackwardTiles<T, kHead>;
  const std::int64_t rows = a.batch * a.tq;
  if (rows > 0) {
    cudaMemsetAsync(dq, 0, static_cast<std::size_t>(rows * a.d) * sizeof(T), stream);
    delta_kernel<T><<<grid_for((rows + kWarpsPerBlock - 1) / kWarpsPerBlock), kThreadsPerBlock, 0, stream>>>(
        rows, a.dv, o, d_o, delta);
  }
  if (a.batch * a.tk == 0) return;
  if (rows == 0) {  // no query sees any key: dk = dv = 0
    cudaMemsetAsync(dk, 0, static_cast<std::size_t>(a.batch * a.tk * a.d) * sizeof(T), stream);
    cudaMemsetAsync(dv, 0, static_cast<std::size_t>(a.batch * a.tk * a.dv) * sizeof(T), stream);
    return;
  }
  const std::size_t shared = Tile::shared_elements * sizeof(T);
  cudaFuncSetAttribute(backward_kernel<T, kHead>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                       static_cast<int>(shared));
  const std::int64_t tiles = (a.tk + Tile::keys - 1) / Tile::keys;
  backward_kernel<T, kHead>
      <<<grid_for(a.batch * tiles), kThreadsPerBlock, shared, stream>>>(a, q, k, v, mask, lse, d_o, delta, dq, dk, dv);
}

// The kHead a shape runs with: 64 or 128, or 0 when D or Dv is larger (not supported here).
int head_for(std::int64_t d, std::int64_t dv) {
  const std::int64_t widest = d > dv ? d : dv;
  return widest <= 64 ? 64 : (widest <= 128 ? 128 : 0);
}

// Calls f(T{}, std::integral_constant<int, kHead>{}) for the type and shape; false when none fits.
template <typename F>
bool dispatch(Element type, const AttentionShape& a, F&& f) {
  const int head = head_for(a.d, a.dv);
  if (type == Element::f32 && head == 64)
    f(float{}, std::integral_constant<int, 64>{});
  else if (type == Element::f32 && head == 128)
    f(float{}, std::integral_constant<int, 128>{});
  else if (type == Element::f64 && head == 64)
    f(double{}, std::integral_constant<int, 64>{});
  else if (type == Element::f64 && head == 128)
    f(double{}, std::integral_constant<int, 128>{});
  else
    return false;
  return true;
}

}  // namespace

// Supported: f32 or f64, D and Dv at most 128, and tiles that fit in the shared memory the
// current device lets one block have (163 KB on sm_80, 227 KB on sm_90; less on some others).
bool tiled_attention_supports(Element type, std::int64_t d, std::int64_t dv) {
  if (type != Element::f32 && type != Element::f64) return false;
  AttentionShape shape;
  shape.d = d;
  shape.dv = dv;
  std::size_t needed = 0;
  const bool fits = dispatch(type, shape, [&](auto zero, auto head) {
    using T = decltype(zero);
    constexpr int kHead = decltype(head)::value;
    const std::size_t forward_bytes = ForwardTiles<T, kHead>::shared_elements * sizeof(T);
    const std::size_t backward_bytes = BackwardTiles<T, kHead>::shared_elements * sizeof(T);
    needed = forward_bytes > backward_bytes ? forward_bytes : backward_bytes;
  });
  int device = 0, limit = 0;
  if (!fits || cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess)
    return false;
  return needed <= static_cast<std::size_t>(limit);
}

bool launch_attention_forward_tiled(Element type, const AttentionShape& shape, const void* q, const void* k,
                                    const void* v, const void* mask, void* o, void* lse, void* stream) {
  if (shape.batch * shape.tq == 0) return true;
  return dispatch(type, shape, [&](auto zero, auto head) {
    using T = decltype(zero);
    forward<T, decltype(head)::value>(shape, static_cast<const T*>(q), static_cast<const T*>(k),
                                      static_cast<const T*>(v), static_cast<const T*>(mask), static_cast<T*>(o),
                                      static_cast<T*>(lse), as_stream(stream));
  });
}

bool launch_attention_backward_tiled(Element type, const AttentionShape& shape, const void* q, const void* k,
                                     const void* v, const void* mask, const void* o, const void* lse, const void* d_o,
                                     void* delta, void* dq, void* dk, void* dv, void* stream) {
  return dispatch(type, shape, [&](auto zero, auto head) {
    using T = decltype(zero);
    backward<T, decltype(head)::value>(
        shape, static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
        static_cast<const T*>(mask), static_cast<const T*>(o), static_cast<const T*>(lse), static_cast<const T*>(d_o),
        static_cast<T*>(delta), static_cast<T*>(dq), static_cast<T*>(dk), static_cast<T*>(dv), as_stream(stream));
  });
}

}  // namespace fovea::cuda_backend
