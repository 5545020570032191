// CUDA kernel for fused_attention (ops/attention.h) on tensor cores: the FlashAttention-2
// forward (Dao, 2023) for bf16 and f16 inputs with f32 scores, softmax and accumulation, written
// with warp-level mma.sync (sm_80 and later). The math is attention.cu's; the schedule is
// attention_tiled.cu's with the two products moved onto tensor cores.
//
// Contract (launch.h): q [batch,Tq,D], k [batch,Tk,D], v [batch,Tk,D] in the 16-bit type,
// contiguous; the optional additive mask in f32, read through AttentionShape's strides; o
// [batch,Tq,D] in the 16-bit type; lse [batch,Tq] in f32. D = Dv = 64 or 128. For one batch item b,
//
//   s[i, j] = scale·q[i]·k[j] + mask[i, j]     (-∞ where causality forbids j >= i + 1 + Tk - Tq)
//   lse[i]  = log Σ_j exp(s[i, j]),   P[i, j] = exp(s[i, j] - lse[i]),   o = (Z ⊙ P)·v
//
// with Z the dropout factors (1 without dropout). A row with no finite score gets o = 0, lse = -∞.
//
// --- The schedule ------------------------------------------------------------------------------
//
// A block of 4 warps owns Br query rows of one batch item; each warp owns 16·G of them (G "row
// groups" of 16, the M of one mma). The block streams k and v past its rows in tiles of Bc keys,
// and each warp keeps everything of its rows in registers:
//
//   Q fragments   [16G, D] as mma A operands, loaded once                 (G·D/4 registers)
//   S = Q·Kᵀ      [16G, Bc] as f32 mma accumulators, one tile at a time   (G·Bc/2 registers)
//   O             [16G, D] as f32 mma accumulators, for the whole loop    (G·D/2 registers)
//
// and per row its running max m and partial sum l. Per k/v tile:
//
//   S = Q·Kᵀ                                 mma, B operand = k rows straight from shared memory
//   u = S·scale·log2(e) + mask·log2(e)       -∞ beyond the row's last key (only in edge tiles)
//   m' = max(m, rowmax u)                    the 4 lanes of a quad share a row: two shuffles
//   P̃ = 2^(u - m'),  l' = 2^(m-m')·l + Σ P̃   (l per lane; the quad adds its parts at the end)
//   O' = 2^(m-m')·O + (Z ⊙ P̃)·V             mma, A operand = P̃ repacked from S's registers
//
// and at the end o = O / l (0 when l = 0), lse = (m + log2 l)·ln 2 = m·ln 2 + log l: working in
// base 2 makes each exponential one ex2 instruction, and the natural-log lse comes back exactly
// because u is the score times log2(e) (FlashAttention-2 folds log2(e) into the scale likewise).
//
// Tile sizes: D = 128: G = 1, Br = 64, Bc = 64;  D = 64: G = 2, Br = 128, Bc = 32.
// The register file decides. G = 2 at D = 128 would need 64 (Q) + 128 (O) + 64 (S) registers
// before any address or temporary; G = 1 needs 32 + 64 + 32, and ptxas schedules it in ~250 of
// the 255 (it hoists shared loads as far as registers allow). At D = 64, G = 2 costs the same
// 32 + 64 + (32 or 64): with Bc = 64 it spilled, with Bc = 32 it does not. G = 2 is worth it:
// every warp reads every k/v tile from shared memory, and every block reads it from L2, so
// twice the rows per tile halve both per flop. Per tile and block, 4·Br·Bc·D flops meet
// 2·Bc·D·2 bytes from L2, i.e. Br flops per byte: 128 (D = 64) or 64 (D = 128), so 250 TFLOP/s
// needs at most 2 or 4 TB/s of L2 bandwidth; and each ldmatrix.x4 feeds 2·G mma. A smaller Bc
// costs a barrier and a softmax round (and a rescale of O) per 32 keys instead of per 64.
//
// Shared memory holds two stages, each one k tile and one v tile [Bc, D] of 16-bit elements, and
// the q tile [Br, D], which is needed only until Q is in registers. At D = 128 the q tile is the
// size of half a stage and borrows stage 1 (64 KB in all, above the default 48 KB: the launcher
// raises the kernel's limit); at D = 64 it is twice a stage and has its own region (32 KB):
//
//   commit {q → its tile}, commit {k, v tile 0 → stage 0}, wait for q, barrier, Q → registers
//   tile t: wait for tile t, barrier, commit {k, v tile t+1 → stage (t+1) % 2}, compute on stage t % 2
//
// The barrier of tile t both publishes tile t's bytes (every thread copied part of it) and tells
// everyone is done reading stage (t+1) % 2 (tile t-1, or Q at t = 0) before it is overwritten.
// Copies are cp.async.cg of 16 bytes, global → shared without registers; rows past Tq or Tk are
// zero-filled (src-size 0), so a padding key contributes 0·0 to O, never 0·NaN.
//
// Causality: the block stops after the tile holding its last row's last key (tiles right of
// the diagonal are never loaded), and checks keys per element only in "edge" tiles, those
// reaching past the FIRST row's last key (the diagonal crosses them, or Tk ends in them), and in
// the last query tile of an item (its padding rows must see no key and read no mask). The
// blocks of a causal item run in reverse (the longest rows first) to even out the tail.
//
// Dropout: as attention.cuh's dropout_factor<float>: element (i, j) of item b is kept, times c,
// when float(u) >= float(p), u the uniform of e = (b·Tq + i)·Tk + j (philox lane e % 4 of block
// e / 4). A lane's two adjacent columns j, j + 1 share one philox block unless e % 4 = 3. The sums
// l, hence lse, are of the un-dropped P̃.
//
// Not done: Q·Kᵀ for one tile could overlap the softmax of the previous one (FlashAttention-3's
// ping-pong); o is written with 2-byte stores straight from the accumulators rather than staged
// through shared memory for 16-byte ones (o is D values per row against Tk·D flops per row);
// there is no Hopper wgmma/TMA path.
//
// --- The fragment layouts ---------------------------------------------------------------------
//
// mma.cuh has the PTX ISA's tables (which elements of A, B, C a lane holds for mma.m16n8k16, and
// what ldmatrix gives it), the swizzled layout of a tile in shared memory (chunk c of row r at
// chunk position c ^ (r % 8), so that ldmatrix and cp.async meet no bank conflicts), and the
// wrappers this kernel shares with the backward (attention_mma_backward.cu). Lane l has g = l / 4,
// t = l % 4.
//
// How the kernel uses them (each a check of mma.cuh's tables):
//
//   Q (A of S = Q·Kᵀ), the 16 rows i0.. of a row group, depth d0 = 16·step: matrices (rows
//     i0+0..7, cols d0+0..7), (i0+8..15, d0+0..7), (i0+0..7, d0+8..15), (i0+8..15, d0+8..15), so
//     lane l points at row i0 + l%8 + 8·((l/8)%2), column d0 + 8·(l/16), and r0..r3 are exactly
//     A0..A3.
//   K (B of S; B[d][j] = K[j][d], so a B column is a k ROW: no transpose), keys j0 = 16·pair,
//     depth d0: matrices (keys j0+0..7, d0+0..7), (j0+0..7, d0+8..15), (j0+8..15, d0+0..7),
//     (j0+8..15, d0+8..15): lane l points at key j0 + l%8 + 8·(l/16), column d0 + 8·((l/8)%2);
//     r0 = K[j0+g][d0+2t, +1] = B0 and r1 = B1 of key tile j0, r2, r3 those of key tile j0+8.
//   P (A of O += P·V) is S's accumulators repacked, since C's layout is A's split in two: for
//     keys 16·step.., A0 = (c0, c1) and A1 = (c2, c3) of key tile 2·step, A2 and A3 the same of
//     key tile 2·step+1, each pair rounded to 16 bits. No shared memory, no shuffle.
//   V (B of O; B[j][c] = V[j][c], a B column is a v COLUMN: .trans), keys j0 = 16·step, dims
//     c0 = 16·pair: matrices (keys j0+0..7, c0+0..7), (j0+8..15, c0+0..7), (j0+0..7, c0+8..15),
//     (j0+8..15, c0+8..15): lane l points at key j0 + l%8 + 8·((l/8)%2), column c0 + 8·(l/16);
//     with .trans r0 = V[j0+2t, +1][c0+g] = B0, r1 = B1 of dim tile c0, r2, r3 of dim tile c0+8.
//
// Worked example, lane 5 (g = 1, t = 1), the row group of rows 0..15, depth step 0, D = 64:
//   Q: it points at row 5, chunk 0 (matrix 0, row 5) and receives Q[1][2,3], Q[9][2,3], Q[1][10,11],
//      Q[9][10,11] (the rows/columns of A0..A3 for g = 1, t = 1).
//   K, pair 0: it points at key 5, columns 0..7, and receives K[1][2,3], K[1][10,11] (B0, B1 for
//      key column 1 of tile 0), K[9][2,3], K[9][10,11] (key column 1 of tile 1).
//   S: it holds S[1][2,3] and S[9][2,3] of each key tile n (keys 8n+2, 8n+3), i.e. query rows
//      1 and 9 of the group, which it shares with lanes 4, 6, 7 (the quad's max and sum).
//   V, step 0, pair 0: it points at key 5, dims 0..7, and receives V[2,3][1], V[10,11][1] (B0, B1 of
//      dim column 1, keys 2, 3 and 10, 11: the keys its P registers hold, 2t.. and 2t+8..), and
//      V[2,3][9], V[10,11][9] for dim tile 1.
//   O: it holds O[1][2,3] and O[9][2,3] of each dim tile n, written to o rows i0 + 1, i0 + 9,
//      columns 8n + 2, 8n + 3.
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
constexpr int kWarps = 4;
constexpr int kThreadsPerBlock = kWarps * kWarp;
constexpr double kLog2e = 1.4426950408889634;
constexpr float kLn2 = 0.6931471805599453f;

// Tile sizes for head dim kHead (see "The schedule").
template <int kHead>
struct MmaTiles {
  static constexpr int row_groups = kHead == 64 ? 2 : 1;  // G: 16-row groups per warp
  static constexpr int rows = kWarps * 16 * row_groups;   // Br: 128 or 64
  static constexpr int keys = kHead == 64 ? 32 : 64;      // Bc
  static constexpr int key_tiles = keys / 8;              // n8 tiles of S
  static constexpr int dim_tiles = kHead / 8;             // n8 tiles of O
  static constexpr int depth_steps = kHead / 16;          // k16 steps of Q·Kᵀ
  static constexpr int key_steps = keys / 16;             // k16 steps of P·V
  static constexpr int tile_bytes = keys * kHead * 2;     // one k or v tile
  static constexpr int stage_bytes = 2 * tile_bytes;      // a k tile, then a v tile
  static constexpr int q_bytes = rows * kHead * 2;
  static constexpr bool q_in_stage = q_bytes <= stage_bytes;  // else q has its own region after the stages
  static constexpr std::size_t shared_bytes = 2 * std::size_t{stage_bytes} + (q_in_stage ? 0 : q_bytes);
  static_assert(row_groups * key_tiles * 4 <= 32, "a lane's dropout bits of one tile fit in 32 bits");
};

// --- Dropout -----------------------------------------------------------------------------------

// The keep bits of probabilities e (bit 0) and e + 1 (bit 1), two adjacent columns of a row
// (mma.cuh's kept(): the test of attention.cuh's dropout_factor<float>).
__device__ inline std::uint32_t keep_pair(const AttentionShape& a, std::uint64_t stream, std::uint64_t e) {
  const auto lane = static_cast<unsigned>(e % 4);
  const philox::Block w = philox::words(a.dropout.seed, stream, e / 4);
  const std::uint32_t next = lane == 3 ? philox::words(a.dropout.seed, stream, e / 4 + 1).v[0] : word(w, lane + 1);
  const float p = static_cast<float>(a.dropout.p);
  return (kept(word(w, lane), p) ? 1u : 0u) | (kept(next, p) ? 2u : 0u);
}

// --- The kernel --------------------------------------------------------------------------------

// One block per (batch item b, tile of Br query rows), looping over such work items when the
// grid is smaller. See the top of the file for the schedule and the layouts.
template <typename Half, int kHead>
__global__ void __launch_bounds__(kThreadsPerBlock)
    mma_forward_kernel(const __grid_constant__ AttentionShape a, const Half* q, const Half* k, const Half* v,
                       const float* mask, Half* o, float* lse) {
  using Tile = MmaTiles<kHead>;
  constexpr int G = Tile::row_groups;
  constexpr float kInfinity = std::numeric_limits<float>::infinity();
  extern __shared__ __align__(128) unsigned char shared[];
  const std::uint32_t stage0 = shared_address(shared), stage1 = stage0 + Tile::stage_bytes;
  const std::uint32_t q_tile = Tile::q_in_stage ? stage1 : stage0 + 2 * Tile::stage_bytes;

  const int lane = static_cast<int>(threadIdx.x) % kWarp, warp = static_cast<int>(threadIdx.x) / kWarp;
  const int g = lane / 4, t = lane % 4;  // groupID and threadID_in_group
  // Row of the block held in accumulator half h (c0, c1: h = 0; c2, c3: h = 1) of row group rg.
  auto row_of = [&](int rg, int h) { return (warp * G + rg) * 16 + g + 8 * h; };
  // The ldmatrix row and chunk this lane names (see "How the kernel uses them").
  const unsigned q_row = lane % 8 + 8 * ((lane / 8) % 2), q_chunk = lane / 16;
  const unsigned k_row = lane % 8 + 8 * (lane / 16), k_chunk = (lane / 8) % 2;
  const unsigned v_row = q_row, v_chunk = q_chunk;

  const std::int64_t tiles = (a.tq + Tile::rows - 1) / Tile::rows;
  const float scale_log2 = static_cast<float>(a.scale * kLog2e);
  const float mask_log2 = static_cast<float>(kLog2e);
  const bool dropout = a.dropout.p > 0;
  const std::uint64_t stream = dropout_stream(a);

  for (std::int64_t work = blockIdx.x; work < a.batch * tiles; work += gridDim.x) {
    const std::int64_t b = work / tiles;
    const std::int64_t tile = a.causal ? tiles - 1 - work % tiles : work % tiles;
    const std::int64_t i0 = tile * Tile::rows;
    const std::int64_t row_count = a.tq - i0 < Tile::rows ? a.tq - i0 : Tile::rows;
    const std::int64_t first_row_end = key_end(a, i0);              // the fewest keys a row sees
    const std::int64_t block_end = key_end(a, i0 + row_count - 1);  // the most
    const std::int64_t key_tile_count = (block_end + Tile::keys - 1) / Tile::keys;
    const float* mask_item = mask ? mask + mask_offset(a, b) : nullptr;
    const Half* k_item = k + b * a.tk * kHead;
    const Half* v_item = v + b * a.tk * kHead;
    std::int64_t row_end[G][2];  // keys [0, row_end) are this lane's rows' (0 for padding rows)
#pragma unroll
    for (int rg = 0; rg < G; ++rg)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const std::int64_t i = i0 + row_of(rg, h);
        row_end[rg][h] = i < a.tq ? key_end(a, i) : 0;
      }

    // Q → its tile and k, v tile 0 → stage 0; then Q → registers.
    __syncthreads();  // the previous work item is done with shared memory
    load_tile<Tile::rows, kHead, kThreadsPerBlock>(q_tile, q + (b * a.tq + i0) * kHead, static_cast<int>(row_count));
    commit_copies();
    if (key_tile_count > 0) {
      const int count = static_cast<int>(a.tk < Tile::keys ? a.tk : Tile::keys);
      load_tile<Tile::keys, kHead, kThreadsPerBlock>(stage0, k_item, count);
      load_tile<Tile::keys, kHead, kThreadsPerBlock>(stage0 + Tile::tile_bytes, v_item, count);
    }
    commit_copies();
    wait_copies<1>();  // the q group has landed; the k/v group may still be in flight
    __syncthreads();
    std::uint32_t q_frag[G][Tile::depth_steps][4];
#pragma unroll
    for (int rg = 0; rg < G; ++rg)
#pragma unroll
      for (int step = 0; step < Tile::depth_steps; ++step)
        load_matrices(q_frag[rg][step], q_tile + chunk_offset<kHead>((warp * G + rg) * 16 + q_row, 2 * step + q_chunk));

    float o_acc[G][Tile::dim_tiles][4];
    float m[G][2], l[G][2];  // running max (base-2 units) and this lane's part of the sum, per row
#pragma unroll
    for (int rg = 0; rg < G; ++rg) {
#pragma unroll
      for (int n = 0; n < Tile::dim_tiles; ++n)
#pragma unroll
        for (int x = 0; x < 4; ++x) o_acc[rg][n][x] = 0.0f;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        m[rg][h] = -kInfinity;
        l[rg][h] = 0.0f;
      }
    }

    for (std::int64_t key_tile = 0; key_tile < key_tile_count; ++key_tile) {
      const std::int64_t j0 = key_tile * Tile::keys;
      wait_copies<0>();  // this thread's part of tile key_tile has landed
      __syncthreads();   // everyone's has; and everyone is done with the other stage
      if (key_tile + 1 < key_tile_count) {
        const std::int64_t next = j0 + Tile::keys;
        const int count = static_cast<int>(a.tk - next < Tile::keys ? a.tk - next : Tile::keys);
        const std::uint32_t stage = (key_tile + 1) % 2 == 0 ? stage0 : stage1;
        load_tile<Tile::keys, kHead, kThreadsPerBlock>(stage, k_item + next * kHead, count);
        load_tile<Tile::keys, kHead, kThreadsPerBlock>(stage + Tile::tile_bytes, v_item + next * kHead, count);
      }
      commit_copies();
      const std::uint32_t k_tile = key_tile % 2 == 0 ? stage0 : stage1;
      const std::uint32_t v_tile = k_tile + Tile::tile_bytes;

      // S = Q·Kᵀ: per depth step, one ldmatrix serves two key tiles of every row group.
      float s[G][Tile::key_tiles][4];
#pragma unroll
      for (int rg = 0; rg < G; ++rg)
#pragma unroll
        for (int n = 0; n < Tile::key_tiles; ++n)
#pragma unroll
          for (int x = 0; x < 4; ++x) s[rg][n][x] = 0.0f;
#pragma unroll
      for (int step = 0; step < Tile::depth_steps; ++step)
#pragma unroll
        for (int pair = 0; pair < Tile::key_tiles / 2; ++pair) {
          std::uint32_t kb[4];
          load_matrices(kb, k_tile + chunk_offset<kHead>(16 * pair + k_row, 2 * step + k_chunk));
#pragma unroll
          for (int rg = 0; rg < G; ++rg) {
            mma<Half>(s[rg][2 * pair], q_frag[rg][step], kb[0], kb[1]);
            mma<Half>(s[rg][2 * pair + 1], q_frag[rg][step], kb[2], kb[3]);
          }
        }

      // u = scale·log2(e)·S + log2(e)·mask, -∞ past a row's keys. Element x of key tile n is
      // row row_of(rg, x / 2), key j0 + 8n + 2t + x % 2. Away from the edges and without a mask
      // (most tiles) that is one multiply.
      const bool edge = j0 + Tile::keys > first_row_end || row_count < Tile::rows;
      if (edge || mask_item) {
#pragma unroll
        for (int rg = 0; rg < G; ++rg)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            // The row's keys in this tile are columns [0, limit) (none for a padding row); its
            // mask entries in the tile start at mask_item[mask_base].
            const std::int64_t left = row_end[rg][h] - j0;
            const int limit = left <= 0 ? 0 : (left >= Tile::keys ? Tile::keys : static_cast<int>(left));
            const std::int64_t mask_base = (i0 + row_of(rg, h)) * a.mask_row_stride + j0 * a.mask_column_stride;
            const int column_stride = static_cast<int>(a.mask_column_stride);
#pragma unroll
            for (int n = 0; n < Tile::key_tiles; ++n)
#pragma unroll
              for (int x = 2 * h; x < 2 * h + 2; ++x) {
                const int column = 8 * n + 2 * t + x % 2;
                float u = s[rg][n][x] * scale_log2;
                if (column >= limit)  // past Tk, right of the diagonal, or a padding row
                  u = -kInfinity;
                else if (mask_item)
                  u = fmaf(mask_item[mask_base + column * column_stride], mask_log2, u);
                s[rg][n][x] = u;
              }
          }
      } else {
#pragma unroll
        for (int rg = 0; rg < G; ++rg)
#pragma unroll
          for (int n = 0; n < Tile::key_tiles; ++n)
#pragma unroll
            for (int x = 0; x < 4; ++x) s[rg][n][x] *= scale_log2;
      }

      // Online softmax per row: m' = max(m, tile max), O and l shrink by 2^(m - m'), P̃ = 2^(u - m').
      // A row with no finite score yet keeps m = -∞ and shifts by 0, so that every 2^(...) is 0.
#pragma unroll
      for (int rg = 0; rg < G; ++rg)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float tile_max = -kInfinity;
#pragma unroll
          for (int n = 0; n < Tile::key_tiles; ++n)
            tile_max = fmaxf(tile_max, fmaxf(s[rg][n][2 * h], s[rg][n][2 * h + 1]));
          tile_max = fmaxf(tile_max, __shfl_xor_sync(kAllLanes, tile_max, 1));
          tile_max = fmaxf(tile_max, __shfl_xor_sync(kAllLanes, tile_max, 2));
          const float new_m = fmaxf(m[rg][h], tile_max);
          const float shift = new_m == -kInfinity ? 0.0f : new_m;
          const float rescale = exp2_approx(m[rg][h] - shift);
          m[rg][h] = new_m;
          l[rg][h] *= rescale;
#pragma unroll
          for (int n = 0; n < Tile::dim_tiles; ++n) {
            o_acc[rg][n][2 * h] *= rescale;
            o_acc[rg][n][2 * h + 1] *= rescale;
          }
#pragma unroll
          for (int n = 0; n < Tile::key_tiles; ++n)
#pragma unroll
            for (int x = 2 * h; x < 2 * h + 2; ++x) {
              const float p = exp2_approx(s[rg][n][x] - shift);
              l[rg][h] += p;
              s[rg][n][x] = p;
            }
        }

      // Z ⊙ P̃ (l above has summed the un-dropped weights). The keep bits are drawn first, one
      // adjacent pair of columns per turn of a loop the compiler does not unroll: unrolled, it
      // interleaves a dozen philox evaluations and runs out of registers. Bit (rg·key_tiles +
      // n)·4 + x belongs to s[rg][n][x]; pair = (rg·key_tiles + n)·2 + h covers x = 2h, 2h + 1.
      if (dropout) {
        std::uint32_t keep = 0;
#pragma unroll 1
        for (int pair = 0; pair < G * Tile::key_tiles * 2; ++pair) {
          const int rg = pair / (2 * Tile::key_tiles), n = pair / 2 % Tile::key_tiles, h = pair % 2;
          const std::int64_t i = i0 + row_of(rg, h), j = j0 + 8 * n + 2 * t;
          keep |= keep_pair(a, stream, static_cast<std::uint64_t>((b * a.tq + i) * a.tk + j)) << (2 * pair);
        }
        const float c = static_cast<float>(a.dropout.scale);
#pragma unroll
        for (int rg = 0; rg < G; ++rg)
#pragma unroll
          for (int n = 0; n < Tile::key_tiles; ++n)
#pragma unroll
            for (int x = 0; x < 4; ++x) s[rg][n][x] *= (keep >> ((rg * Tile::key_tiles + n) * 4 + x)) & 1u ? c : 0.0f;
      }

      // O += P·V: P's A fragments come from S's registers (C layout = A layout, split in two).
#pragma unroll
      for (int step = 0; step < Tile::key_steps; ++step) {
        std::uint32_t p_frag[G][4];
#pragma unroll
        for (int rg = 0; rg < G; ++rg) {
          p_frag[rg][0] = pack<Half>(s[rg][2 * step][0], s[rg][2 * step][1]);
          p_frag[rg][1] = pack<Half>(s[rg][2 * step][2], s[rg][2 * step][3]);
          p_frag[rg][2] = pack<Half>(s[rg][2 * step + 1][0], s[rg][2 * step + 1][1]);
          p_frag[rg][3] = pack<Half>(s[rg][2 * step + 1][2], s[rg][2 * step + 1][3]);
        }
#pragma unroll
        for (int pair = 0; pair < Tile::dim_tiles / 2; ++pair) {
          std::uint32_t vb[4];
          load_matrices_transposed(vb, v_tile + chunk_offset<kHead>(16 * step + v_row, 2 * pair + v_chunk));
#pragma unroll
          for (int rg = 0; rg < G; ++rg) {
            mma<Half>(o_acc[rg][2 * pair], p_frag[rg], vb[0], vb[1]);
            mma<Half>(o_acc[rg][2 * pair + 1], p_frag[rg], vb[2], vb[3]);
          }
        }
      }
    }

    // o = O / l and lse = m·ln 2 + log l; a row with l = 0 saw no finite score: o = 0, lse = -∞.
#pragma unroll
    for (int rg = 0; rg < G; ++rg)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float sum = l[rg][h];
        sum += __shfl_xor_sync(kAllLanes, sum, 1);
        sum += __shfl_xor_sync(kAllLanes, sum, 2);
        const std::int64_t i = i0 + row_of(rg, h);
        if (i >= a.tq) continue;
        const bool masked = sum == 0.0f;
        const float inverse = masked ? 0.0f : 1.0f / sum;
        Half* o_row = o + (b * a.tq + i) * kHead;
#pragma unroll
        for (int n = 0; n < Tile::dim_tiles; ++n) {
          o_row[8 * n + 2 * t] = to_half<Half>(o_acc[rg][n][2 * h] * inverse);
          o_row[8 * n + 2 * t + 1] = to_half<Half>(o_acc[rg][n][2 * h + 1] * inverse);
        }
        if (t == 0) lse[b * a.tq + i] = masked ? -kInfinity : m[rg][h] * kLn2 + logf(sum);
      }
  }
}

// --- Launch ------------------------------------------------------------------------------------

std::size_t shared_bytes_for(std::int64_t head) {
  return head == 64 ? MmaTiles<64>::shared_bytes : MmaTiles<128>::shared_bytes;
}

// At D = 128 the kernel needs more than the default 48 KiB of dynamic shared memory.
template <typename Half, int kHead>
void allow_shared_memory(int device) {
  constexpr std::size_t bytes = MmaTiles<kHead>::shared_bytes;
  if constexpr (bytes > 48 * 1024) {
    static std::atomic<bool> done[kRememberedDevices];
    cuda_backend::allow_shared_memory(mma_forward_kernel<Half, kHead>, bytes, device, done);
  }
}

template <typename Half, int kHead>
void forward(const AttentionShape& a, const void* q, const void* k, const void* v, const float* mask, void* o,
             float* lse, int device, cudaStream_t stream) {
  using Tile = MmaTiles<kHead>;
  allow_shared_memory<Half, kHead>(device);
  const std::int64_t tiles = (a.tq + Tile::rows - 1) / Tile::rows;
  FOVEA_LAUNCH((mma_forward_kernel<Half, kHead>), grid_for(a.batch * tiles), kThreadsPerBlock, Tile::shared_bytes,
               stream)
  (a, static_cast<const Half*>(q), static_cast<const Half*>(k), static_cast<const Half*>(v), mask,
   static_cast<Half*>(o), lse);
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

bool sizes_supported(Element type, std::int64_t d, std::int64_t dv) {
  return (type == Element::bf16 || type == Element::f16) && d == dv && (d == 64 || d == 128);
}

// cp.async moves 16 bytes at a time: every row of q, k and v must start on a 16-byte boundary,
// which rows of 64 or 128 two-byte elements do when the tensor does. (o is written 2 bytes at a time.)
bool aligned(const void* pointer) { return reinterpret_cast<std::uintptr_t>(pointer) % 16 == 0; }

}  // namespace

bool mma_attention_supports(Element type, std::int64_t d, std::int64_t dv) {
  return sizes_supported(type, d, dv) && capable_device(d) >= 0;
}

bool launch_attention_forward_mma(Element type, const AttentionShape& shape, const void* q, const void* k,
                                  const void* v, const float* mask, void* o, float* lse, void* stream) {
  if (!sizes_supported(type, shape.d, shape.dv) || !aligned(q) || !aligned(k) || !aligned(v)) return false;
  // The kernel steps along a mask row in 32-bit offsets (column · stride, column < Bc).
  if (mask && (shape.mask_column_stride < 0 || shape.mask_column_stride > (1 << 24))) return false;
  const int device = capable_device(shape.d);
  if (device < 0) return false;
  if (shape.batch * shape.tq == 0) return true;
  const bool bf16 = type == Element::bf16;
  if (bf16 && shape.d == 64)
    forward<__nv_bfloat16, 64>(shape, q, k, v, mask, o, lse, device, as_stream(stream));
  else if (bf16)
    forward<__nv_bfloat16, 128>(shape, q, k, v, mask, o, lse, device, as_stream(stream));
  else if (shape.d == 64)
    forward<__half, 64>(shape, q, k, v, mask, o, lse, device, as_stream(stream));
  else
    forward<__half, 128>(shape, q, k, v, mask, o, lse, device, as_stream(stream));
  return true;
}

}  // namespace fovea::cuda_backend
