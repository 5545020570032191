// CUDA kernels for fused_attention_backward (ops/attention.h) on tensor cores: the FlashAttention-2
// backward (Dao, 2023) for bf16 and f16 inputs with f32 scores, probabilities and accumulation,
// written with warp-level mma.sync (sm_80 and later). The math is attention_tiled.cu's backward;
// the tiles, fragments and copies are the forward's (attention_mma.cu, helpers in mma.cuh).
//
// Contract (launch.h): q, o, d_o [batch,Tq,D], k, v [batch,Tk,D] in the 16-bit type, contiguous;
// lse [batch,Tq] and the optional additive mask in f32 (the mask through AttentionShape's
// strides); dq, dk, dv in the 16-bit type. D = Dv = 64 or 128. For one batch item b, with Z the
// dropout factors (1 without dropout):
//
//   P[i, j] = exp(scale·q[i]·k[j] + mask[i, j] - lse[i])   (0 where causality forbids j, or lse = -∞)
//   Δ[i]    = Σ_c d_o[i, c]·o[i, c]
//   dv = (Z ⊙ P)ᵀ·d_o,   dP = Z ⊙ (d_o·vᵀ),   dS = P ⊙ (dP - Δ),   dq = scale·dS·k,   dk = scale·dSᵀ·q
//
// --- Three kernels ------------------------------------------------------------------------------
//
// 1. prepare_kernel, one warp per query row: Δ[i] in f32, shift[i] = lse[i]·log2(e) (+∞ where
//    lse = -∞), and zeros in the row of an f32 dq accumulator. Δ and shift are stored per item
//    padded to a whole number of query tiles (padding rows: Δ = 0, shift = +∞), so the main
//    kernel copies them 16 bytes at a time with no bounds checks.
// 2. mma_backward_kernel, below: dk and dv, and every key tile's part of dq added into the
//    accumulator with f32 atomics.
// 3. finish_dq_kernel: dq = scale·accumulator, rounded to the 16-bit type.
//
// dq is the one output several blocks write (every key tile adds its part). The choice, as in
// attention_tiled.cu and FlashAttention-2, is atomicAdd over a second pass over the queries
// (which would recompute P and dP): one kernel, P once. The price is that dq's sums come in no
// fixed order, so dq may differ between runs in its last bits; dk and dv do not.
//
// --- The schedule -------------------------------------------------------------------------------
//
// A block of 8 warps owns Bc = 64 keys of one batch item and keeps their dK and dV in f32 mma
// accumulators for the whole block. It streams the query tiles that see its keys past them (with
// causality, from the tile holding the first query that sees key j0), Br = 64 queries at a time,
// in two phases per query tile with a different split of the work among the warps, as
// FlashAttention-2 does: P and dS pass through shared memory in between.
//
// Phase 1, warp w: keys j = 16·(w % 4).. (16 of them) × queries i = 32·(w / 4).. (32):
//
//   Sᵀ = K·Qᵀ                          mma: A = k rows, B = q rows (both from shared memory)
//   Pᵀ = 2^(Sᵀ·scale·log2 e + mask·log2 e - shift)      u = -∞ for forbidden (i, j): P = 0
//   dPᵀ = V·dOᵀ                        mma: A = v rows, B = d_o rows
//   (Z ⊙ P)ᵀ, dSᵀ = Pᵀ ⊙ (Z ⊙ dPᵀ - Δ) → the Pᵀ and dSᵀ tiles [Bc, Br], 16-bit
//
// Phase 2, after a barrier, warp w: keys 16·(w % 4).. and dims (w / 4)·D/2.. of dK and dV, and
// queries 16·(w % 4).. and the same dims of the tile's dQ:
//
//   dV += (Z ⊙ P)ᵀ·dO                  mma: A = the Pᵀ tile, B = d_o (.trans)
//   dK += dSᵀ·Q                        mma: A = the dSᵀ tile, B = q (.trans)
//   dQ  = dS·K  → dq_sum (atomicAdd)    mma: A = the dSᵀ tile (.trans), B = k (.trans)
//
// and dk = scale·dK, dv = dV are written when the block's query tiles are done. Computing Sᵀ
// rather than S makes the tiles' rows keys: the A operands of dV and dK (which sum over queries)
// are then plain row reads, and only dQ reads dSᵀ transposed. No reduction runs along a row of
// P, since lse is known: P is elementwise, so phase 1 splits queries among warps freely.
//
// Registers. Keeping a warp's 16 keys × all D dims of dK and dV (D = 128: 128 registers) with
// Sᵀ and dPᵀ beside them spilled; split by dims in phase 2 they are D/2 per lane (64 at
// D = 128), Sᵀ and dPᵀ 16 each, dQ D/4. ptxas -v, sm_80 / sm_90, no spills: 241 / 252 registers at
// D = 128 (it hoists shared loads into whatever is left), 171 / 170 at D = 64. One block of 8
// warps per SM either way; FlashAttention-2's D = 128 backward also runs 8 warps per SM.
//
// Shared memory: the k and v tiles [Bc, D] for the whole block; two stages, each a q tile and a
// d_o tile [Br, D] and the tile's 64 shift and Δ values; the Pᵀ and dSᵀ tiles [Bc, Br]. 113 KB at
// D = 128, 65 KB at D = 64 (the launcher raises the kernel's 48 KB limit). Rows of D or Br 16-bit
// elements, swizzled as in mma.cuh.
//
//   commit {k, v tiles; query tile 0 → stage 0}
//   query tile t: wait for tile t, barrier, commit {query tile t+1 → stage (t+1) % 2},
//                 phase 1 on stage t % 2, barrier, phase 2
//
// The first barrier of tile t publishes tile t's bytes, and tells everyone is done reading stage
// (t+1) % 2 (tile t-1) and the Pᵀ and dSᵀ tiles (tile t-1's phase 2) before they are overwritten;
// the second publishes Pᵀ and dSᵀ. Rows past Tq or Tk are zero-filled by the copies (src-size 0),
// so padding contributes 0·finite, never 0·NaN, and padding queries have shift = +∞.
//
// Masking: (i, j) is allowed when first_query(j) <= i < Tq and j < Tk (attention.cuh). Each lane
// holds two keys in phase 1, so it keeps the first query of each, and in "edge" tiles (some
// element forbidden: the tile's first query does not see its last key, or the query tile is the
// item's last and partial) compares per element; with a mask it reads the mask at allowed
// elements only. Elsewhere P = 2^(u - shift) as it is: a fully masked row has lse = -∞, shift =
// +∞, so P = 0 and dS = 0: zero gradients, never NaN.
//
// Dropout: Z[i, j] = c where float(u) >= float(p), u the uniform of e = (b·Tq + i)·Tk + j, the
// forward's draw (mma.cuh's kept()). In the transposed layout a lane's two adjacent elements are
// two queries of one key, e apart by Tk, so each element costs one philox block (the forward gets
// two adjacent keys from one); a lane's 16 keep bits are drawn in a loop the compiler does not
// unroll.
//
// The fragments (mma.cuh's two ldmatrix orders, "columns last" and "rows last"), for keys j0..,
// depth d0 = 16·step, queries i0.., dims c0.., each block 16 wide:
//
//   Sᵀ = K·Qᵀ   A[j][d] = K[j][d]: k tile rows j0.., columns last, no .trans (the forward's Q).
//               B[d][i] = Q[i][d], a B column is a q ROW: q tile rows i0.., rows last, no .trans
//               (the forward's K); r0, r1 = B0, B1 of query tile i0, r2, r3 of query tile i0+8.
//   dPᵀ = V·dOᵀ as Sᵀ with (v, d_o) for (k, q).
//   dV += PᵀdO  A[j][i] = Pᵀ[j][i]: Pᵀ tile rows j0.., columns last, no .trans.
//               B[i][c] = dO[i][c], a B column is a d_o COLUMN: d_o tile rows i0.., columns last,
//               .trans (the forward's V); r0, r1 = B0, B1 of dim tile c0, r2, r3 of dim tile c0+8.
//   dK += dSᵀQ  as dV with (dSᵀ, q) for (Pᵀ, d_o).
//   dQ = dS·K   A[i][j] = dS[i][j] = dSᵀ[j][i]: dSᵀ tile rows (keys) j0.., chunk of queries i0/8,
//               rows last, .trans: matrix 0 = dSᵀ[keys 0-7][queries 0-7], whose transpose is A0;
//               matrix 1 = keys 0-7, queries 8-15 → A1 (A rows g+8); matrix 2 = keys 8-15,
//               queries 0-7 → A2; matrix 3 → A3.
//               B[j][c] = K[j][c]: k tile rows j0.., columns last, .trans (the forward's V).
//
// Worked example, lane 5 (g = 1, t = 1) of warp 0 (keys 0..15, queries 0..31), step 0:
//   Sᵀ: it points at k row 5, chunk 0 (matrix 0, row 5) and receives K[1][2,3], K[9][2,3],
//      K[1][10,11], K[9][10,11] (A0..A3); for pair 0 it points at q row 5, chunk 0 and receives
//      Q[1][2,3], Q[1][10,11], Q[9][2,3], Q[9][10,11]; so it holds Sᵀ[1][2,3] and Sᵀ[9][2,3] of
//      each query tile n: keys 1 and 9 (g and g+8), queries 8n+2, 8n+3, which it writes as
//      32-bit words to rows 1 and 9 of the Pᵀ and dSᵀ tiles, chunk n, bytes 4..7.
//   dV (dims 0..D/2): it points at Pᵀ row 5, chunk 0 and receives Pᵀ[1][2,3], Pᵀ[9][2,3],
//      Pᵀ[1][10,11], Pᵀ[9][10,11] (A0..A3); it points at d_o row 5, chunk 0 and with .trans
//      receives dO[2,3][1], dO[10,11][1] (B0, B1 of dim 1: the queries its A registers hold), and
//      dO[2,3][9], dO[10,11][9] for dim tile 1.
//   dQ (queries 0..15, dims 0..D/2): it points at dSᵀ row 5, query chunk 0, and with .trans
//      receives dSᵀ[2,3][1] = dS[1][2,3] (A0), dSᵀ[2,3][9] = dS[9][2,3] (A1), dS[1][10,11],
//      dS[9][10,11]; it holds dQ[1][2,3], dQ[9][2,3] of each dim tile and adds them to dq rows
//      i0 + 1, i0 + 9.
//
// Not done: the dQ atomics could be red.global.add.v2.f32 (sm_90) or staged through shared memory
// for wider ones; phase 1 of the next query tile could overlap this tile's phase 2; a lane's
// dropout bits cost a philox block per element; there is no Hopper wgmma/TMA path.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <atomic>
#include <cstdint>
#include <limits>

#include "fovea/backends/cuda/attention.cuh"
#include "fovea/backends/cuda/device.cuh"
#include "fovea/backends/cuda/kernel_launch.cuh"
#include "fovea/backends/cuda/mma.cuh"
#include "fovea/core/philox.h"

namespace fovea::cuda_backend {

namespace {

using namespace attention_device;
using namespace mma_device;

constexpr int kWarp = 32;
constexpr unsigned kAllLanes = 0xffffffffu;
constexpr double kLog2e = 1.4426950408889634;

// Tile sizes and the shared memory layout for head dim kHead (see "The schedule").
template <int kHead>
struct BackwardTiles {
  static constexpr int warps = 8;
  static constexpr int threads = warps * kWarp;
  static constexpr int keys = 64;                        // Bc
  static constexpr int rows = 64;                        // Br: queries per tile
  static constexpr int score_queries = 32;               // phase 1: a warp's queries (and 16 keys)
  static constexpr int score_tiles = score_queries / 8;  // n8 tiles of a warp's Sᵀ and dPᵀ
  static constexpr int depth_steps = kHead / 16;         // k16 steps of Sᵀ and dPᵀ
  static constexpr int dims = kHead / 2;                 // phase 2: a warp's dims of dK, dV, dQ
  static constexpr int dim_tiles = dims / 8;             // n8 tiles of them
  static constexpr int query_steps = rows / 16;          // k16 steps of dV and dK
  static constexpr int key_steps = keys / 16;            // k16 steps of dQ
  static constexpr int key_tile_bytes = keys * kHead * 2;
  static constexpr int row_tile_bytes = rows * kHead * 2;
  static constexpr int row_values_bytes = rows * 4;  // 64 f32 values, one per query of the tile
  static constexpr int score_tile_bytes = keys * rows * 2;
  // Byte offsets: the k tile, the v tile, stage 0, stage 1, the Pᵀ tile, the dSᵀ tile; within a
  // stage the q tile, the d_o tile, shift, Δ.
  static constexpr int v_offset = key_tile_bytes;
  static constexpr int stage_offset = 2 * key_tile_bytes;
  static constexpr int d_o_in_stage = row_tile_bytes;
  static constexpr int shift_in_stage = 2 * row_tile_bytes;
  static constexpr int delta_in_stage = shift_in_stage + row_values_bytes;
  static constexpr int stage_bytes = delta_in_stage + row_values_bytes;
  static constexpr int p_offset = stage_offset + 2 * stage_bytes;
  static constexpr int ds_offset = p_offset + score_tile_bytes;
  static constexpr std::size_t shared_bytes = ds_offset + score_tile_bytes;
  static_assert(warps == 8 && keys == 4 * 16 && rows == 4 * 16 && rows == 2 * score_queries,
                "warp w: keys or queries 16·(w % 4).., and queries 32·(w / 4).. or dims (w / 4)·D/2..");
};

// --- The scratch ------------------------------------------------------------------------------

// Where shift, Δ and the dq accumulator lie in the launcher's scratch (256-byte aligned pieces):
// shift and Δ [batch, padded_rows], the accumulator [batch, Tq, D].
struct Scratch {
  std::int64_t padded_rows = 0;                  // Tq rounded up to a whole number of query tiles
  std::size_t delta = 0, dq_sum = 0, bytes = 0;  // byte offsets (shift at 0) and the total
};

Scratch scratch_layout(const AttentionShape& a) {
  auto piece = [](std::int64_t floats) { return (static_cast<std::size_t>(floats) * sizeof(float) + 255) / 256 * 256; };
  constexpr std::int64_t rows = BackwardTiles<64>::rows;
  static_assert(BackwardTiles<128>::rows == rows, "one padding for both head dims");
  Scratch s;
  s.padded_rows = (a.tq + rows - 1) / rows * rows;
  s.delta = piece(a.batch * s.padded_rows);
  s.dq_sum = s.delta + piece(a.batch * s.padded_rows);
  s.bytes = s.dq_sum + piece(a.batch * a.tq * a.d);
  return s;
}

// --- Prepare and finish ----------------------------------------------------------------------

// For every query row i of every item, padded to `padded_rows` rows per item, one warp per row:
//   Δ[i] = Σ_c d_o[i, c]·o[i, c]       (f32; 0 for padding rows)
//   shift[i] = lse[i]·log2(e)          (+∞ where lse = -∞, and for padding rows)
//   dq_sum[i, :] = 0
template <typename Half, int kHead>
__global__ void prepare_kernel(const __grid_constant__ AttentionShape a, std::int64_t padded_rows, const Half* o,
                               const Half* d_o, const float* lse, float* shift, float* delta, float* dq_sum) {
  constexpr float kInfinity = std::numeric_limits<float>::infinity();
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / kWarp);
  for (std::int64_t row = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
       row < a.batch * padded_rows; row += warps) {
    const std::int64_t b = row / padded_rows, i = row % padded_rows;
    if (i >= a.tq) {  // padding: P = 0 and dS = 0 whatever the scores
      if (lane == 0) {
        delta[row] = 0.0f;
        shift[row] = kInfinity;
      }
      continue;
    }
    const std::int64_t element = (b * a.tq + i) * kHead;
    float sum = 0.0f;
#pragma unroll
    for (int part = 0; part < kHead / kWarp; ++part) {
      const int c = lane + part * kWarp;  // consecutive lanes, consecutive elements
      sum = fmaf(to_float(d_o[element + c]), to_float(o[element + c]), sum);
      dq_sum[element + c] = 0.0f;
    }
#pragma unroll
    for (int offset = kWarp / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(kAllLanes, sum, offset);
    if (lane == 0) {
      const float row_lse = lse[b * a.tq + i];
      delta[row] = sum;
      shift[row] = row_lse == -kInfinity ? kInfinity : row_lse * static_cast<float>(kLog2e);
    }
  }
}

// dq[e] = scale·dq_sum[e], rounded to the 16-bit type.
template <typename Half>
__global__ void finish_dq_kernel(std::int64_t n, float scale, const float* dq_sum, Half* dq) {
  for (std::int64_t e = first_element(); e < n; e += grid_stride()) dq[e] = to_half<Half>(scale * dq_sum[e]);
}

// --- The main kernel ---------------------------------------------------------------------------

// One block per (key tile, batch item), looping over such work items when the grid is smaller;
// key tile 0 of every item first (with causality it sees the most queries). See the top of the
// file for the schedule and the layouts. dq_sum must be zero on entry (prepare_kernel).
template <typename Half, int kHead>
__global__ void __launch_bounds__(BackwardTiles<kHead>::threads)
    mma_backward_kernel(const __grid_constant__ AttentionShape a, std::int64_t padded_rows, const Half* q,
                        const Half* k, const Half* v, const float* mask, const Half* d_o, const float* shift,
                        const float* delta, float* dq_sum, Half* dk, Half* dv) {
  using Tile = BackwardTiles<kHead>;
  constexpr float kInfinity = std::numeric_limits<float>::infinity();
  extern __shared__ __align__(128) unsigned char shared[];
  const std::uint32_t base = shared_address(shared);
  const std::uint32_t k_tile = base, v_tile = base + Tile::v_offset;
  const std::uint32_t p_tile = base + Tile::p_offset, ds_tile = base + Tile::ds_offset;

  const int lane = static_cast<int>(threadIdx.x) % kWarp, warp = static_cast<int>(threadIdx.x) / kWarp;
  const int g = lane / 4, t = lane % 4;  // groupID and threadID_in_group
  // Phase 1: the warp's keys key0.. and queries score0.. of the tiles. Phase 2: its keys key0..
  // (dK, dV) or queries 16·(warp % 4).. (dQ), and dims dim0...
  const int key0 = 16 * (warp % 4), score0 = Tile::score_queries * (warp / 4), dim0 = Tile::dims * (warp / 4);
  // The ldmatrix row and chunk this lane names in mma.cuh's two orders.
  const int columns_last_row = lane % 8 + 8 * ((lane / 8) % 2), columns_last_chunk = lane / 16;
  const int rows_last_row = lane % 8 + 8 * (lane / 16), rows_last_chunk = (lane / 8) % 2;

  const std::int64_t key_tiles = (a.tk + Tile::keys - 1) / Tile::keys;
  const float scale_log2 = static_cast<float>(a.scale * kLog2e);
  const float mask_log2 = static_cast<float>(kLog2e);
  const bool dropout = a.dropout.p > 0;
  const float dropout_p = static_cast<float>(a.dropout.p);
  const float kept_scale = dropout ? static_cast<float>(a.dropout.scale) : 1.0f;  // Z = kept_scale or 0
  const std::uint64_t stream = dropout_stream(a);

  for (std::int64_t work = blockIdx.x; work < a.batch * key_tiles; work += gridDim.x) {
    const std::int64_t b = work % a.batch, j0 = work / a.batch * Tile::keys;
    const int key_count = static_cast<int>(a.tk - j0 < Tile::keys ? a.tk - j0 : Tile::keys);
    const float* mask_item = mask ? mask + mask_offset(a, b) : nullptr;
    // The first query that sees each of this lane's phase-1 keys (h = 0, 1: accumulator rows g
    // and g + 8), Tq for a padding key; and the first query tile any query of which sees key j0.
    std::int64_t first_row[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const std::int64_t j = j0 + key0 + g + 8 * h;
      first_row[h] = j < a.tk ? first_query(a, j) : a.tq;
    }
    const std::int64_t first_tile_row = first_query(a, j0) / Tile::rows * Tile::rows;

    // Copies query tile i0's q, d_o, shift and Δ into the stage at byte offset `stage` (uncommitted).
    auto load_query_tile = [&](std::int64_t i0, int stage) {
      const int count = static_cast<int>(a.tq - i0 < Tile::rows ? a.tq - i0 : Tile::rows);
      const std::int64_t first = b * a.tq + i0;
      load_tile<Tile::rows, kHead, Tile::threads>(base + stage, q + first * kHead, count);
      load_tile<Tile::rows, kHead, Tile::threads>(base + stage + Tile::d_o_in_stage, d_o + first * kHead, count);
      constexpr int chunks = Tile::row_values_bytes / 16;  // of shift, then of Δ
      const int x = static_cast<int>(threadIdx.x);
      if (x < 2 * chunks) {
        const std::int64_t row = b * padded_rows + i0 + 4 * (x % chunks);
        copy_async(base + stage + Tile::shift_in_stage + 16 * x, x < chunks ? shift + row : delta + row, 16);
      }
    };

    __syncthreads();  // the previous work item is done with shared memory
    load_tile<Tile::keys, kHead, Tile::threads>(k_tile, k + (b * a.tk + j0) * kHead, key_count);
    load_tile<Tile::keys, kHead, Tile::threads>(v_tile, v + (b * a.tk + j0) * kHead, key_count);
    if (first_tile_row < a.tq) load_query_tile(first_tile_row, Tile::stage_offset);
    commit_copies();

    float dk_acc[Tile::dim_tiles][4], dv_acc[Tile::dim_tiles][4];
#pragma unroll
    for (int n = 0; n < Tile::dim_tiles; ++n)
#pragma unroll
      for (int x = 0; x < 4; ++x) dk_acc[n][x] = dv_acc[n][x] = 0.0f;

    int stage = Tile::stage_offset;  // byte offset of the current query tile's stage
    for (std::int64_t i0 = first_tile_row; i0 < a.tq; i0 += Tile::rows) {
      wait_copies<0>();  // this thread's part of query tile i0 (and of the k, v tiles) has landed
      __syncthreads();   // everyone's has; and everyone is done with the other stage, Pᵀ and dSᵀ
      const int next_stage = stage == Tile::stage_offset ? Tile::stage_offset + Tile::stage_bytes : Tile::stage_offset;
      if (i0 + Tile::rows < a.tq) load_query_tile(i0 + Tile::rows, next_stage);
      commit_copies();
      const std::uint32_t q_tile = base + stage, d_o_tile = q_tile + Tile::d_o_in_stage;
      const float* shift_tile = reinterpret_cast<const float*>(shared + stage + Tile::shift_in_stage);
      const float* delta_tile = reinterpret_cast<const float*>(shared + stage + Tile::delta_in_stage);

      // --- Phase 1: this warp's 16 keys × 32 queries of Pᵀ and dSᵀ, into their tiles.

      // Sᵀ = K·Qᵀ: per depth step, the warp's k fragment and one ldmatrix per two query tiles.
      float s[Tile::score_tiles][4];
#pragma unroll
      for (int n = 0; n < Tile::score_tiles; ++n)
#pragma unroll
        for (int x = 0; x < 4; ++x) s[n][x] = 0.0f;
#pragma unroll
      for (int step = 0; step < Tile::depth_steps; ++step) {
        std::uint32_t ka[4];
        load_matrices(ka, k_tile + chunk_offset<kHead>(key0 + columns_last_row, 2 * step + columns_last_chunk));
#pragma unroll
        for (int pair = 0; pair < Tile::score_tiles / 2; ++pair) {
          std::uint32_t qb[4];
          load_matrices(qb,
                        q_tile + chunk_offset<kHead>(score0 + 16 * pair + rows_last_row, 2 * step + rows_last_chunk));
          mma<Half>(s[2 * pair], ka, qb[0], qb[1]);
          mma<Half>(s[2 * pair + 1], ka, qb[2], qb[3]);
        }
      }

      // Pᵀ = 2^(u - shift), u = scale·log2(e)·Sᵀ + log2(e)·mask. Element x of query tile n is key
      // j0 + key0 + g + 8·(x / 2), query i0 + score0 + 8n + 2t + x % 2. Away from the edges and
      // without a mask (most tiles) u is one multiply.
      const bool edge = i0 + Tile::rows > a.tq || j0 + Tile::keys > key_end(a, i0);
      if (edge || mask_item) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          // The key's queries in this tile are columns [low, high).
          const std::int64_t first = first_row[h] - i0, end = a.tq - i0;
          const int low = first <= 0 ? 0 : (first >= Tile::rows ? Tile::rows : static_cast<int>(first));
          const int high = end >= Tile::rows ? Tile::rows : static_cast<int>(end);
          const std::int64_t j = j0 + key0 + g + 8 * h;
#pragma unroll
          for (int n = 0; n < Tile::score_tiles; ++n)
#pragma unroll
            for (int x = 2 * h; x < 2 * h + 2; ++x) {
              const int column = score0 + 8 * n + 2 * t + x % 2;
              float u = s[n][x] * scale_log2;
              if (column < low || column >= high)  // past Tq or Tk, or left of the key's diagonal
                u = -kInfinity;
              else if (mask_item)
                u = fmaf(mask_item[(i0 + column) * a.mask_row_stride + j * a.mask_column_stride], mask_log2, u);
              s[n][x] = exp2_approx(u - shift_tile[column]);
            }
        }
      } else {
#pragma unroll
        for (int n = 0; n < Tile::score_tiles; ++n) {
          const float2 row_shift = *reinterpret_cast<const float2*>(shift_tile + score0 + 8 * n + 2 * t);
#pragma unroll
          for (int x = 0; x < 4; ++x)
            s[n][x] = exp2_approx(fmaf(s[n][x], scale_log2, -(x % 2 ? row_shift.y : row_shift.x)));
        }
      }

      // dPᵀ = V·dOᵀ, as Sᵀ with (v, d_o) for (k, q).
      float dp[Tile::score_tiles][4];
#pragma unroll
      for (int n = 0; n < Tile::score_tiles; ++n)
#pragma unroll
        for (int x = 0; x < 4; ++x) dp[n][x] = 0.0f;
#pragma unroll
      for (int step = 0; step < Tile::depth_steps; ++step) {
        std::uint32_t va[4];
        load_matrices(va, v_tile + chunk_offset<kHead>(key0 + columns_last_row, 2 * step + columns_last_chunk));
#pragma unroll
        for (int pair = 0; pair < Tile::score_tiles / 2; ++pair) {
          std::uint32_t ob[4];
          load_matrices(ob,
                        d_o_tile + chunk_offset<kHead>(score0 + 16 * pair + rows_last_row, 2 * step + rows_last_chunk));
          mma<Half>(dp[2 * pair], va, ob[0], ob[1]);
          mma<Half>(dp[2 * pair + 1], va, ob[2], ob[3]);
        }
      }

      // The keep bits, bit 4n + x for element x of query tile n: one philox block per element.
      std::uint32_t keep = ~0u;
      if (dropout) {
        keep = 0;
#pragma unroll 1
        for (int bit = 0; bit < Tile::score_tiles * 4; ++bit) {
          const int n = bit / 4, x = bit % 4;
          const std::int64_t i = i0 + score0 + 8 * n + 2 * t + x % 2, j = j0 + key0 + g + 8 * (x / 2);
          const auto e = static_cast<std::uint64_t>((b * a.tq + i) * a.tk + j);
          const philox::Block w = philox::words(a.dropout.seed, stream, e / 4);
          keep |= (kept(word(w, static_cast<unsigned>(e % 4)), dropout_p) ? 1u : 0u) << bit;
        }
      }

      // Z ⊙ Pᵀ and dSᵀ = Pᵀ ⊙ (Z ⊙ dPᵀ - Δ) (Δ of the element's query), rounded in pairs into
      // their tiles: elements 2h, 2h + 1 of query tile n are one 32-bit word of row (key)
      // key0 + g + 8h, at queries score0 + 8n + 2t, +1.
#pragma unroll
      for (int n = 0; n < Tile::score_tiles; ++n) {
        const float2 row_delta = *reinterpret_cast<const float2*>(delta_tile + score0 + 8 * n + 2 * t);
        float kept_p[4], ds[4];
#pragma unroll
        for (int x = 0; x < 4; ++x) {
          const float z = (keep >> (4 * n + x)) & 1u ? kept_scale : 0.0f;
          kept_p[x] = z * s[n][x];
          ds[x] = s[n][x] * (z * dp[n][x] - (x % 2 ? row_delta.y : row_delta.x));
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const std::uint32_t offset = chunk_offset<Tile::rows>(key0 + g + 8 * h, (score0 + 8 * n) / 8) + 4 * t;
          *reinterpret_cast<std::uint32_t*>(shared + Tile::p_offset + offset) =
              pack<Half>(kept_p[2 * h], kept_p[2 * h + 1]);
          *reinterpret_cast<std::uint32_t*>(shared + Tile::ds_offset + offset) = pack<Half>(ds[2 * h], ds[2 * h + 1]);
        }
      }
      __syncthreads();  // the Pᵀ and dSᵀ tiles are complete

      // --- Phase 2: dV += (Z ⊙ P)ᵀ·dO and dK += dSᵀ·Q for keys key0.., dims dim0.., over the
      // tile's 64 queries: A from the Pᵀ and dSᵀ tiles, B = d_o and q transposed.
#pragma unroll
      for (int step = 0; step < Tile::query_steps; ++step) {
        std::uint32_t pa[4], da[4];
        const std::uint32_t offset = chunk_offset<Tile::rows>(key0 + columns_last_row, 2 * step + columns_last_chunk);
        load_matrices(pa, p_tile + offset);
        load_matrices(da, ds_tile + offset);
#pragma unroll
        for (int pair = 0; pair < Tile::dim_tiles / 2; ++pair) {
          const std::uint32_t row_offset =
              chunk_offset<kHead>(16 * step + columns_last_row, dim0 / 8 + 2 * pair + columns_last_chunk);
          std::uint32_t ob[4], qb[4];
          load_matrices_transposed(ob, d_o_tile + row_offset);
          load_matrices_transposed(qb, q_tile + row_offset);
          mma<Half>(dv_acc[2 * pair], pa, ob[0], ob[1]);
          mma<Half>(dv_acc[2 * pair + 1], pa, ob[2], ob[3]);
          mma<Half>(dk_acc[2 * pair], da, qb[0], qb[1]);
          mma<Half>(dk_acc[2 * pair + 1], da, qb[2], qb[3]);
        }
      }

      // dQ[queries 16·(warp % 4).., dims dim0..] = dS·K over the tile's keys, added into dq_sum:
      // A = dS from the dSᵀ tile transposed, B = k transposed.
      float dq_acc[Tile::dim_tiles][4];
#pragma unroll
      for (int n = 0; n < Tile::dim_tiles; ++n)
#pragma unroll
        for (int x = 0; x < 4; ++x) dq_acc[n][x] = 0.0f;
#pragma unroll
      for (int step = 0; step < Tile::key_steps; ++step) {
        std::uint32_t da[4];
        load_matrices_transposed(
            da, ds_tile + chunk_offset<Tile::rows>(16 * step + rows_last_row, 2 * (warp % 4) + rows_last_chunk));
#pragma unroll
        for (int pair = 0; pair < Tile::dim_tiles / 2; ++pair) {
          std::uint32_t kb[4];
          load_matrices_transposed(
              kb, k_tile + chunk_offset<kHead>(16 * step + columns_last_row, dim0 / 8 + 2 * pair + columns_last_chunk));
          mma<Half>(dq_acc[2 * pair], da, kb[0], kb[1]);
          mma<Half>(dq_acc[2 * pair + 1], da, kb[2], kb[3]);
        }
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const std::int64_t i = i0 + 16 * (warp % 4) + g + 8 * h;
        if (i >= a.tq) continue;
        float* row = dq_sum + (b * a.tq + i) * kHead + dim0 + 2 * t;
#pragma unroll
        for (int n = 0; n < Tile::dim_tiles; ++n) {
          atomicAdd(row + 8 * n, dq_acc[n][2 * h]);
          atomicAdd(row + 8 * n + 1, dq_acc[n][2 * h + 1]);
        }
      }
      stage = next_stage;
    }

    // dk = scale·dK and dv = dV for keys key0.., dims dim0.., two adjacent dims per 32-bit store.
    const float scale = static_cast<float>(a.scale);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const std::int64_t j = j0 + key0 + g + 8 * h;
      if (j >= a.tk) continue;
      const std::int64_t element = (b * a.tk + j) * kHead + dim0 + 2 * t;
#pragma unroll
      for (int n = 0; n < Tile::dim_tiles; ++n) {
        *reinterpret_cast<std::uint32_t*>(dk + element + 8 * n) =
            pack<Half>(scale * dk_acc[n][2 * h], scale * dk_acc[n][2 * h + 1]);
        *reinterpret_cast<std::uint32_t*>(dv + element + 8 * n) = pack<Half>(dv_acc[n][2 * h], dv_acc[n][2 * h + 1]);
      }
    }
  }
}

// --- Launch ------------------------------------------------------------------------------------

std::size_t shared_bytes_for(std::int64_t head) {
  return head == 64 ? BackwardTiles<64>::shared_bytes : BackwardTiles<128>::shared_bytes;
}

// The kernel needs more than the default 48 KiB of dynamic shared memory at both head dims.
template <typename Half, int kHead>
void allow_shared_memory(int device) {
  constexpr std::size_t bytes = BackwardTiles<kHead>::shared_bytes;
  static_assert(bytes > 48 * 1024, "the attribute is needed");
  static std::atomic<bool> done[kRememberedDevices];
  cuda_backend::allow_shared_memory(mma_backward_kernel<Half, kHead>, bytes, device, done);
}

template <typename Half, int kHead>
void backward(const AttentionShape& a, const void* q, const void* k, const void* v, const float* mask, const void* o,
              const float* lse, const void* d_o, void* scratch, void* dq, void* dk, void* dv, int device,
              cudaStream_t stream) {
  using Tile = BackwardTiles<kHead>;
  const Scratch layout = scratch_layout(a);
  auto* bytes = static_cast<unsigned char*>(scratch);
  auto* shift = reinterpret_cast<float*>(bytes);
  auto* delta = reinterpret_cast<float*>(bytes + layout.delta);
  auto* dq_sum = reinterpret_cast<float*>(bytes + layout.dq_sum);
  const std::int64_t rows = a.batch * layout.padded_rows;
  constexpr int kPrepareWarps = 8;
  if (rows > 0) {
    FOVEA_LAUNCH((prepare_kernel<Half, kHead>), grid_for((rows + kPrepareWarps - 1) / kPrepareWarps),
                 kPrepareWarps * kWarp, 0, stream)
    (a, layout.padded_rows, static_cast<const Half*>(o), static_cast<const Half*>(d_o), lse, shift, delta, dq_sum);
  }
  if (a.tk > 0) {
    allow_shared_memory<Half, kHead>(device);
    const std::int64_t key_tiles = (a.tk + Tile::keys - 1) / Tile::keys;
    FOVEA_LAUNCH((mma_backward_kernel<Half, kHead>), grid_for(a.batch * key_tiles), Tile::threads, Tile::shared_bytes,
                 stream)
    (a, layout.padded_rows, static_cast<const Half*>(q), static_cast<const Half*>(k), static_cast<const Half*>(v), mask,
     static_cast<const Half*>(d_o), shift, delta, dq_sum, static_cast<Half*>(dk), static_cast<Half*>(dv));
  }
  const std::int64_t dq_count = a.batch * a.tq * kHead;
  if (dq_count > 0) {
    FOVEA_LAUNCH(finish_dq_kernel<Half>, blocks_for(dq_count), kThreads, 0, stream)
    (dq_count, static_cast<float>(a.scale), dq_sum, static_cast<Half*>(dq));
  }
}

// The current device, when it can run the kernel for `head` (compute capability 8.0 or newer,
// enough shared memory per block); -1 otherwise.
int capable_device(std::int64_t head) {
  int device = 0, major = 0, limit = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess)
    return -1;
  return major >= 8 && shared_bytes_for(head) <= static_cast<std::size_t>(limit) ? device : -1;
}

// cp.async moves 16 bytes at a time (q, k, v, d_o rows), and dk, dv are written 4 bytes at a time.
bool aligned(const void* pointer) { return reinterpret_cast<std::uintptr_t>(pointer) % 16 == 0; }

}  // namespace

std::size_t mma_attention_backward_scratch_bytes(const AttentionShape& shape) { return scratch_layout(shape).bytes; }

bool launch_attention_backward_mma(Element type, const AttentionShape& shape, const void* q, const void* k,
                                   const void* v, const float* mask, const void* o, const float* lse, const void* d_o,
                                   void* scratch, void* dq, void* dk, void* dv, void* stream) {
  if ((type != Element::bf16 && type != Element::f16) || shape.d != shape.dv || (shape.d != 64 && shape.d != 128))
    return false;
  const void* const pointers[] = {q, k, v, o, d_o, scratch, dq, dk, dv};
  for (const void* pointer : pointers)
    if (!aligned(pointer)) return false;
  const int device = capable_device(shape.d);
  if (device < 0) return false;
  if (shape.batch == 0 || shape.tq + shape.tk == 0) return true;
  const bool bf16 = type == Element::bf16;
  if (bf16 && shape.d == 64)
    backward<__nv_bfloat16, 64>(shape, q, k, v, mask, o, lse, d_o, scratch, dq, dk, dv, device, as_stream(stream));
  else if (bf16)
    backward<__nv_bfloat16, 128>(shape, q, k, v, mask, o, lse, d_o, scratch, dq, dk, dv, device, as_stream(stream));
  else if (shape.d == 64)
    backward<__half, 64>(shape, q, k, v, mask, o, lse, d_o, scratch, dq, dk, dv, device, as_stream(stream));
  else
    backward<__half, 128>(shape, q, k, v, mask, o, lse, d_o, scratch, dq, dk, dv, device, as_stream(stream));
  return true;
}

}  // namespace fovea::cuda_backend
