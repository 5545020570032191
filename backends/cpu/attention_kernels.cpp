// CPU kernels for fused_attention and fused_attention_backward (ops/attention.h), in the
// manner of FlashAttention (Dao et al. 2022) and FlashAttention-2 (Dao 2023).
//
// Notation, for one batch item (one batch·head): q [Tq,D], k [Tk,D], v [Tk,Dv],
//
//   s[i, j] = scale·q[i]·k[j] + mask[i, j]   (-∞ where causality forbids j > i + Tk - Tq)
//   P[i, j] = exp(s[i, j] - lse[i]),   lse[i] = log Σ_j exp(s[i, j]),   o = P·v
//
// Neither kernel ever holds s or P for more than one tile of kRowBlock x kColumnBlock.
//
// Dropout (when the node has it) multiplies P[i, j] by Z[i, j] = keep[i, j]·c before it meets
// v, with keep drawn as nn::dropout draws it (ops/attention.h): for batch item b,
//
//   e = (b·Tq + i)·Tk + j,   u = T(philox::uniform(seed, stream + step, e)),   keep = u >= T(p)
//
// The bits are drawn per tile, a run of consecutive keys of one query at a time, with the
// eight-blocks-at-once Philox of philox_lanes.h (the random_uniform kernel's own code, so the
// same u to the bit), and never stored: the backward draws them again. With dropout the
// forward's o = Σ_j Z[i, j]·P[i, j]·v[j] (l still sums the un-dropped e^(s - m)), and the
// backward (FlashAttention-2 with dropout) becomes
//
//   dv[j] = Σ_i Z[i, j]·P[i, j]·dO[i],   dP[i, j] = Z[i, j]·(dO[i]·v[j]),   dS = P ⊙ (dP - Δ)
//
// with Δ[i] = dO[i]·o[i] as before (o already holds the dropout).
//
// Forward (online softmax; Milakov & Gimelshein 2018). A task owns a block of query rows and
// streams k and v past it in column blocks, keeping per row a running max m, a running sum
// l = Σ exp(s - m) and an accumulator a = Σ exp(s - m)·v. When a block raises the max from m
// to m', the old terms are rescaled by exp(m - m'):
//
//   m' = max(m, max_j s[i, j]),   l' = e^(m-m')·l + Σ_j e^(s[i,j]-m'),
//   a' = e^(m-m')·a + Σ_j e^(s[i,j]-m')·v[j]
//
// and at the end o[i] = a / l, lse[i] = m + log l. A row that saw no finite score keeps
// m = -∞ and l = 0: its o is 0 and its lse is -∞ (the op's definition of a fully masked row).
//
// Backward, with Δ[i] = Σ_d dO[i, d]·o[i, d] computed first:
//
//   dv[j] = Σ_i P[i, j]·dO[i],   dP[i, j] = dO[i]·v[j],   dS = P ⊙ (dP - Δ),
//   dq[i] = scale·Σ_j dS[i, j]·k[j],   dk[j] = scale·Σ_i dS[i, j]·q[i]
//
// recomputing P tile by tile from lse. dk and dv of a key block are sums over query blocks,
// dq of a query block a sum over key blocks, so no single split of the tiles gives every task
// sole ownership of its outputs. Two schedules are used, without any racy accumulation:
//
//  - one pass per batch item, when there are enough items to keep every thread busy
//    (batch >= 2·threads, or one thread): the task owns the item's dq, dk and dv, walks key
//    blocks and, inside, query blocks, and adds every dS tile both ways (dk += dSᵀ·q,
//    dq += dS·k). Each tile is computed once.
//  - two passes otherwise: pass 1 gives each task a block of keys and has it walk every query
//    block, accumulating its rows of dk and dv; pass 2 gives each task a block of queries and
//    accumulates its rows of dq, recomputing s and dP (about 1/3 more work, for parallelism
//    over blocks rather than items).
//
// Either way every output element is summed in one fixed order: over key blocks in order for
// dq, over query blocks in order for dk and dv, each tile's products by multiply_add. Both
// schedules produce bitwise the same tiles (every dot product is the same chain of fmas, in
// either tile layout, see multiply_add), so the results are bitwise the same for any number of
// threads, whichever schedule the thread count selects.
//
// Tiles are laid out so that no task transposes anything per tile: a task transposes the
// block it owns once (q's rows for the forward and pass 2, k's and v's for pass 1 and the
// one-pass schedule) and streams the other operand's rows as they are stored. So the forward
// and pass 2 hold score tiles by key, st[c, r] (one row per key c, queries r contiguous), and
// pass 1 and the one-pass schedule hold them by query, s[r, c]. By-key tiles also make the
// forward's row statistics (max and sum over keys) elementwise loops over r, which vectorise,
// where a per-row max would be a reduction GCC does not vectorise without -ffast-math.
//
// Tasks (batch items, or batch item x block pairs) go to the pool one at a time (grain 1);
// causal masking skips the blocks a task cannot see, so tasks are uneven in cost and the
// pool's small chunks balance them. The tile products are register-blocked: a block of the
// result sized to the instruction set's registers stays in them (see multiply_add); exp in
// f32 is a polynomial the compiler vectorises (see exp_f32). Both were measured: see
// bench/attention.cpp.
#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "fovea/backends/cpu/kernels.h"
#include "fovea/backends/cpu/philox_lanes.h"
#include "fovea/backends/cpu/simd.h"
#include "fovea/ops/attention.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

namespace {

using i64 = std::int64_t;

// Query rows per task (Br) and keys per streamed block (Bc). For D = Dv = 64 in f32 the
// blocks a task touches at once are its own q block (16 KiB) and transposed copy, one k and
// one v block (32 KiB each) and two score tiles (32 KiB each): about 160 KiB, inside any
// current core's L2, with the k block reused by all 64 rows while it sits in L1.
constexpr i64 kRowBlock = 64;
constexpr i64 kColumnBlock = 128;

template <typename T>
constexpr T infinity = std::numeric_limits<T>::infinity();

// --- Tile products ---------------------------------------------------------------------------

// c[i, j] += Σ_p a[i, p]·b[p, j] for i < m, j < n, p < k. a[i, p] is read at
// a[i·a_row + p·a_col], so a may be a transposed view (a_row = 1); b and c are row-major with
// leading dims ldb and ldc. The simple version, for the edges of the blocked one below.
//
// Both versions sum each c[i, j] as the same chain of fmas over p = 0, 1, ..., so which
// version computes an element, and whether a product is taken as a·b or bᵀ·aᵀ, never changes
// a bit of the result: the backward's schedules rely on that (see the top of the file).
template <typename T>
void multiply_add_plain(i64 m, i64 n, i64 k, const T* a, i64 a_row, i64 a_col, const T* b, i64 ldb, T* c, i64 ldc) {
  for (i64 i = 0; i < m; ++i)
    for (i64 p = 0; p < k; ++p) {
      const T aip = a[i * a_row + p * a_col];
      for (i64 j = 0; j < n; ++j) c[i * ldc + j] = std::fma(aip, b[p * ldb + j], c[i * ldc + j]);
    }
}

// The same for one Rows x Cols block of c, whose partial sums stay in vector registers across
// the whole loop over p: per p, one row of b (Cols values, two vectors) is loaded once and used
// by Rows rows. The block is sized to the register file: 8 x 32 floats (16 of AVX-512's 32
// registers; 12 x 32, the gemm's tile, measured 2% slower here, where k is only 64 or 128), 6 x 16
// with AVX2 (12 of 16; 8 x 32 spilled to the stack). Written with the instructions themselves:
// left to GCC, plain loops kept the block in registers for AVX-512 only, and 16-column blocks
// were vectorised along the rows, 5x slower. Measured with bench/attention (N = 4096, 8 heads of
// 64, forward + backward, 2 threads, Zen 4): the AVX2 copy took 1999 ms with GCC's blocks, 1517 ms
// with these and 849 ms once exp was vectorised too (exp_f32x8); the AVX-512 copy 790 ms before,
// 723 ms after. Writing the score tiles in one pass (Overwrite) and aligning the scratch tiles
// to cache lines then took the AVX-512 copy from 671-709 ms to 647-671 ms (five runs of each,
// alternating); the AVX2 copy did not change beyond the noise.
// Without a fused multiply-add (the portable copy) the block is plain loops of std::fma, so that
// every element is the same chain of single-rounding fmas as multiply_add_plain's.
//
// With Overwrite the block starts its sums from zero instead of from c and stores factor·sum:
// c = factor·(a·b) in one pass over c, the same bits as zeroing c, accumulating, then scaling
// (the score tiles: s = scale·q·kᵀ).
#if defined(__AVX512F__)
constexpr int kBlockRows = 8;
#else
constexpr int kBlockRows = 6;
#endif

template <typename T, int Rows, bool Overwrite>
void multiply_add_block(i64 k, const T* a, i64 a_row, i64 a_col, const T* b, i64 ldb, T* c, i64 ldc, T factor) {
  using V = Vec<T>;
  constexpr int width = V::width, cols = 2 * width;
  if constexpr (!kHasFma) {
    T sum[Rows][cols];
    for (int r = 0; r < Rows; ++r)
      for (int j = 0; j < cols; ++j) sum[r][j] = Overwrite ? T(0) : c[r * ldc + j];
    for (i64 p = 0; p < k; ++p)
      for (int r = 0; r < Rows; ++r)
        for (int j = 0; j < cols; ++j) sum[r][j] = std::fma(a[r * a_row + p * a_col], b[p * ldb + j], sum[r][j]);
    for (int r = 0; r < Rows; ++r)
      for (int j = 0; j < cols; ++j) c[r * ldc + j] = Overwrite ? factor * sum[r][j] : sum[r][j];
  } else {
    typename V::R sum[Rows][2];
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r) {
      sum[r][0] = Overwrite ? V::zero() : V::loadu(c + r * ldc);
      sum[r][1] = Overwrite ? V::zero() : V::loadu(c + r * ldc + width);
    }
    for (i64 p = 0; p < k; ++p) {
      const typename V::R b0 = V::loadu(b + p * ldb), b1 = V::loadu(b + p * ldb + width);
#pragma GCC unroll 16
      for (int r = 0; r < Rows; ++r) {
        const typename V::R x = V::broadcast(a + r * a_row + p * a_col);
        sum[r][0] = V::fma(x, b0, sum[r][0]);
        sum[r][1] = V::fma(x, b1, sum[r][1]);
      }
    }
    const typename V::R f = V::broadcast(&factor);
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r) {
      V::store(c + r * ldc, Overwrite ? V::mul(f, sum[r][0]) : sum[r][0]);
      V::store(c + r * ldc + width, Overwrite ? V::mul(f, sum[r][1]) : sum[r][1]);
    }
  }
}

// Rows [i, m) of the product by blocks of Rows, then by blocks of 2; returns the first row left
// for the plain loops.
template <typename T, int Rows, bool Overwrite>
i64 multiply_add_rows(i64 i, i64 m, i64 n_blocked, i64 k, const T* a, i64 a_row, i64 a_col, const T* b, i64 ldb, T* c,
                      i64 ldc, T factor) {
  constexpr int Cols = 2 * Vec<T>::width;
  for (; i + Rows <= m; i += Rows)
    for (i64 j = 0; j < n_blocked; j += Cols)
      multiply_add_block<T, Rows, Overwrite>(k, a + i * a_row, a_row, a_col, b + j, ldb, c + i * ldc + j, ldc, factor);
  if constexpr (Rows > 2)
    return multiply_add_rows<T, 2, Overwrite>(i, m, n_blocked, k, a, a_row, a_col, b, ldb, c, ldc, factor);
  else
    return i;
}

// multiply_add_plain's result, computed by register blocks with plain loops at the edges; with
// Overwrite, c = factor·(a·b) instead (c's old values are never read).
template <typename T, bool Overwrite = false>
void multiply_add(i64 m, i64 n, i64 k, const T* a, i64 a_row, i64 a_col, const T* b, i64 ldb, T* c, i64 ldc,
                  T factor = T(1)) {
  constexpr int Cols = 2 * Vec<T>::width;
  const i64 n_blocked = n / Cols * Cols;
  const i64 i =
      multiply_add_rows<T, kBlockRows, Overwrite>(0, m, n_blocked, k, a, a_row, a_col, b, ldb, c, ldc, factor);
  // The edges: the last n - n_blocked columns of rows [0, i), then rows [i, m) whole.
  auto plain = [&](i64 rows, i64 columns, const T* a_edge, const T* b_edge, T* c_edge) {
    if (Overwrite)
      for (i64 r = 0; r < rows; ++r) std::fill(c_edge + r * ldc, c_edge + r * ldc + columns, T(0));
    multiply_add_plain(rows, columns, k, a_edge, a_row, a_col, b_edge, ldb, c_edge, ldc);
    if (Overwrite)
      for (i64 r = 0; r < rows; ++r)
        for (i64 j = 0; j < columns; ++j) c_edge[r * ldc + j] *= factor;
  };
  plain(i, n - n_blocked, a, b + n_blocked, c + n_blocked);
  plain(m - i, n, a + i * a_row, b, c + i * ldc);
}

// c = factor·(a·b): multiply_add overwriting c.
template <typename T>
void multiply_scaled(i64 m, i64 n, i64 k, const T* a, i64 a_row, i64 a_col, const T* b, i64 ldb, T* c, i64 ldc,
                     T factor) {
  multiply_add<T, true>(m, n, k, a, a_row, a_col, b, ldb, c, ldc, factor);
}

// dst[w, c] = src[c, w] for c < count, w < width: a block of rows stored as columns (leading
// dim ld), so that products against it run along contiguous memory.
template <typename T>
void transpose_block(const T* src, i64 count, i64 width, T* dst, i64 ld) {
  transpose(src, width, count, width, dst, ld);
}

// --- exp --------------------------------------------------------------------------------------

// e^x in f32, in straight-line code that vectorises (the library's std::exp does not):
//
//   x = n·ln 2 + r,  n = round(x / ln 2),  |r| <= ln 2 / 2,   e^x = 2^n · e^r
//
// with ln 2 split in two parts (Cody & Waite) so that r is exact to f32 precision, e^r from
// its Taylor series to r⁷/7! (truncation < 5e-9 on |r| <= 0.35), and 2^n built directly in
// the exponent bits. Measured relative error < 8e-8 (under one f32 ulp) on [-87, 88];
// x < -87 gives 0 (e^-87 is within 2^-125 of the smallest normal float), -∞ included;
// x > 88.72 gives +∞; NaN gives NaN. (Attention only takes e^x of x <= 0.)
inline float exp_f32(float x) {
  // NaN must not reach the float-to-int cast below (undefined behaviour): every comparison
  // with NaN is false, so these selects send it to -87; the last line gives it back.
  float clamped = x > -87.0f ? x : -87.0f;
  clamped = clamped < 88.0f ? clamped : 88.0f;
  const float n = std::nearbyint(clamped * 1.44269504f);
  const float r = std::fma(n, -1.428606765330187e-06f, std::fma(n, -0.693145751953125f, clamped));
  float e = 1.0f / 5040;
  e = std::fma(e, r, 1.0f / 720);
  e = std::fma(e, r, 1.0f / 120);
  e = std::fma(e, r, 1.0f / 24);
  e = std::fma(e, r, 1.0f / 6);
  e = std::fma(e, r, 0.5f);
  e = std::fma(e, r, 1.0f);
  e = std::fma(e, r, 1.0f);
  const float two_to_n = std::bit_cast<float>((static_cast<std::int32_t>(n) + 127) << 23);
  const float finite = x > 88.7228391f ? std::numeric_limits<float>::infinity() : e * two_to_n;
  return x < -87.0f ? 0.0f : (x == x ? finite : x);
}

inline float exp_of(float x) { return exp_f32(x); }
inline double exp_of(double x) { return std::exp(x); }

#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
// exp_f32 of 8 floats at once, the same operations in the same order, so the same bits: GCC 12
// vectorises exp_f32's loops for AVX-512 but left them scalar for AVX2, where they took 40% of
// the attention kernels' time. max/min give the second operand when the first is NaN, as the
// scalar selects do; the comparisons are ordered (false for NaN).
inline __m256 exp_f32x8(__m256 x) {
  const __m256 clamped = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(clamped, _mm256_set1_ps(1.44269504f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-1.428606765330187e-06f),
                                   _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693145751953125f), clamped));
  __m256 e = _mm256_set1_ps(1.0f / 5040);
  for (const float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f})
    e = _mm256_fmadd_ps(e, r, _mm256_set1_ps(c));
  const __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 finite = _mm256_blendv_ps(_mm256_mul_ps(e, _mm256_castsi256_ps(exponent)),
                                         _mm256_set1_ps(std::numeric_limits<float>::infinity()),
                                         _mm256_cmp_ps(x, _mm256_set1_ps(88.7228391f), _CMP_GT_OQ));
  const __m256 number = _mm256_blendv_ps(x, finite, _mm256_cmp_ps(x, x, _CMP_EQ_OQ));
  return _mm256_blendv_ps(number, _mm256_setzero_ps(), _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ));
}
#endif

// x[i] = exp_of(x[i] - shift[i·shift_step]) for i < count (shift_step 0: one shift for all).
template <typename T>
void exp_shifted(T* x, const T* shift, i64 shift_step, i64 count) {
  i64 i = 0;
#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    for (; i + 8 <= count; i += 8) {
      const __m256 s = shift_step == 0 ? _mm256_set1_ps(shift[0]) : _mm256_loadu_ps(shift + i);
      _mm256_storeu_ps(x + i, exp_f32x8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s)));
    }
  }
#endif
  for (; i < count; ++i) x[i] = exp_of(x[i] - shift[i * shift_step]);
}

// The value subtracted from a row's scores before exponentiating: its max or lse, or +∞ for
// a row with no finite score, so that exp(s - shift) is exactly 0 there instead of NaN.
template <typename T>
T exp_shift(T row_value) {
  return row_value == -infinity<T> ? infinity<T> : row_value;
}

// --- The problem --------------------------------------------------------------------------

// The inputs of one node, viewed as `batch` items of q [Tq,D], k [Tk,D], v [Tk,Dv], with the
// mask's strides along the scores [..., Tq, Tk] it broadcasts to (0 along broadcast dims),
// and the dropout's key and threshold.
template <typename T>
struct Attention {
  const T *q, *k, *v, *mask = nullptr;
  i64 batch = 1, tq, tk, d, dv;
  T scale;
  bool causal;
  std::vector<i64> batch_dims, mask_batch_strides;
  i64 mask_row_stride = 0, mask_column_stride = 0;
  FusedAttentionInputs inputs;
  bool dropout = false;
  T keep_from = 0, kept_scale = 1;  // keep when u >= keep_from; Z = kept_scale where kept
  std::uint64_t seed = 0, stream = 0;

  Attention(const KernelContext& ctx, const AttentionParams& params)
      : q(ctx.in(0).as<T>()),
        k(ctx.in(1).as<T>()),
        v(ctx.in(2).as<T>()),
        scale(static_cast<T>(params.scale)),
        causal(params.causal),
        inputs(params.inputs) {
    const Shape &sq = ctx.in(0).shape(), &sv = ctx.in(2).shape();
    const int rank = sq.rank();
    tq = sq[rank - 2];
    d = sq[rank - 1];
    tk = sv[rank - 2];
    dv = sv[rank - 1];
    batch_dims.assign(sq.begin(), sq.end() - 2);
    for (i64 extent : batch_dims) batch *= extent;
    const AttentionDropout& drop = params.dropout;
    if (drop.enabled()) {
      dropout = true;
      keep_from = static_cast<T>(drop.p);
      kept_scale = static_cast<T>(drop.scale);
      seed = static_cast<std::uint64_t>(drop.seed);
      stream = static_cast<std::uint64_t>(drop.stream);
      if (inputs.has_step) stream += static_cast<std::uint64_t>(*ctx.in(inputs.step).as<std::int64_t>());
    }
    if (!inputs.has_mask) return;
    mask = ctx.in(inputs.mask).as<T>();
    const Shape& sm = ctx.in(inputs.mask).shape();
    std::vector<i64> strides(static_cast<std::size_t>(rank), 0);
    i64 stride = 1;
    for (int i = sm.rank() - 1; i >= 0; --i) {
      strides[static_cast<std::size_t>(rank - sm.rank() + i)] = sm[i] == 1 ? 0 : stride;
      stride *= sm[i];
    }
    mask_row_stride = strides[static_cast<std::size_t>(rank - 2)];
    mask_column_stride = strides[static_cast<std::size_t>(rank - 1)];
    mask_batch_strides.assign(strides.begin(), strides.end() - 2);
  }

  // Query i attends to keys j < key_end(i); key j is seen by queries i >= first_query(j).
  i64 key_end(i64 i) const { return causal ? std::clamp<i64>(i + tk - tq + 1, 0, tk) : tk; }
  i64 first_query(i64 j) const { return causal ? std::clamp<i64>(j - (tk - tq), 0, tq) : 0; }

  // Batch item b's mask entry for query i0, key j0.
  const T* mask_at(i64 b, i64 i0, i64 j0) const {
    i64 offset = i0 * mask_row_stride + j0 * mask_column_stride;
    for (std::size_t dim = batch_dims.size(); dim-- > 0;) {
      offset += b % batch_dims[dim] * mask_batch_strides[dim];
      b /= batch_dims[dim];
    }
    return mask + offset;
  }

  // By query: s[r, c] = scale·q[i0 + r]·k[j0 + c] + mask[i0 + r, j0 + c], or -∞ where
  // causality forbids it, for r < rows, c < cols. kt is the key block transposed
  // ([D, kColumnBlock]); s has leading dim kColumnBlock.
  void scores_by_query(i64 b, i64 i0, i64 rows, i64 j0, i64 cols, const T* kt, T* s) const {
    multiply_scaled(rows, cols, d, q + (b * tq + i0) * d, d, 1, kt, kColumnBlock, s, kColumnBlock, scale);
    for (i64 r = 0; r < rows; ++r) {
      T* row = s + r * kColumnBlock;
      if (mask) {
        const T* m = mask_at(b, i0 + r, j0);
        if (mask_column_stride == 1)
          for (i64 c = 0; c < cols; ++c) row[c] += m[c];
        else
          for (i64 c = 0; c < cols; ++c) row[c] += m[0];
      }
      for (i64 c = std::max<i64>(key_end(i0 + r) - j0, 0); c < cols; ++c) row[c] = -infinity<T>;
    }
  }

  // By key: st[c, r] = s[i0 + r, j0 + c], the same scores transposed. qt is the query block
  // transposed ([D, kRowBlock]); st has leading dim kRowBlock.
  void scores_by_key(i64 b, i64 i0, i64 rows, i64 j0, i64 cols, const T* qt, T* st) const {
    multiply_scaled(cols, rows, d, k + (b * tk + j0) * d, d, 1, qt, kRowBlock, st, kRowBlock, scale);
    for (i64 c = 0; c < cols; ++c) {
      T* column = st + c * kRowBlock;
      if (mask) {
        const T* m = mask_at(b, i0, j0 + c);
        for (i64 r = 0; r < rows; ++r) column[r] += m[r * mask_row_stride];
      }
      for (i64 r = 0; r < std::min(first_query(j0 + c) - i0, rows); ++r) column[r] = -infinity<T>;
    }
  }

  // By query: z[r, c] = Z[i0 + r, j0 + c] = (u >= p ? c : 0), u the uniform of element
  // e = (b·Tq + i0 + r)·Tk + j0 + c; z has leading dim kColumnBlock. Each row's run of
  // consecutive elements is drawn as the random_uniform kernel draws it, then thresholded.
  void dropout_by_query(i64 b, i64 i0, i64 rows, i64 j0, i64 cols, T* z) const {
    for (i64 r = 0; r < rows; ++r) {
      T* row = z + r * kColumnBlock;
      philox_uniform_run(seed, stream, 0.0, 1.0, (b * tq + i0 + r) * tk + j0, cols, row);
      for (i64 c = 0; c < cols; ++c) row[c] = row[c] >= keep_from ? kept_scale : T(0);
    }
  }

  // By key: zt[c, r] = Z[i0 + r, j0 + c], the same factors transposed (leading dim
  // kRowBlock): drawn by query into z (a tile like dropout_by_query's), then transposed by
  // blocks, where writing each row's factors down a column cost a scalar store each.
  void dropout_by_key(i64 b, i64 i0, i64 rows, i64 j0, i64 cols, T* zt, T* z) const {
    dropout_by_query(b, i0, rows, j0, cols, z);
    transpose(z, kColumnBlock, rows, cols, zt, kRowBlock);
  }
};

// Per-thread scratch, allocated once per chunk of tasks: the task's own blocks transposed (a
// query block [D, kRowBlock] or a key block [D, kColumnBlock], whichever the pass owns),
// two score-sized tiles (four with dropout: its factors Z, and Z by query, dropout_rows, to be
// transposed), the task's output accumulator, and per-row statistics, each aligned to a cache
// line (the tile products load whole lines).
template <typename T>
struct Scratch {
  AlignedVector<T> first_transposed, second_transposed, probabilities, score_gradients, accumulator, row_max, row_sum,
      shift, block_max, dropout, dropout_rows;
  Scratch(const Attention<T>& a, i64 accumulator_size)
      : first_transposed(static_cast<std::size_t>(std::max(a.d, a.dv) * std::max(kRowBlock, kColumnBlock))),
        second_transposed(static_cast<std::size_t>(std::max(a.d, a.dv) * std::max(kRowBlock, kColumnBlock))),
        probabilities(static_cast<std::size_t>(kRowBlock * kColumnBlock)),
        score_gradients(static_cast<std::size_t>(kRowBlock * kColumnBlock)),
        accumulator(static_cast<std::size_t>(accumulator_size)),
        row_max(kRowBlock),
        row_sum(kRowBlock),
        shift(kRowBlock),
        block_max(kRowBlock),
        dropout(static_cast<std::size_t>(a.dropout ? kRowBlock * kColumnBlock : 0)),
        dropout_rows(static_cast<std::size_t>(a.dropout ? kRowBlock * kColumnBlock : 0)) {}
};

i64 blocks(i64 n, i64 block) { return (n + block - 1) / block; }

// --- Forward ----------------------------------------------------------------------------------

// Rows [i0, i0 + rows) of batch item b: the online softmax described at the top, over tiles
// held by key (st[c, r]), so that every per-row statistic is an elementwise loop over r.
template <typename T>
void forward_rows(const Attention<T>& a, i64 b, i64 i0, i64 rows, T* o, T* lse, Scratch<T>& w) {
  T* qt = w.first_transposed.data();  // [D, kRowBlock]
  T* st = w.probabilities.data();
  T* acc = w.accumulator.data();  // [rows, Dv]
  T *m = w.row_max.data(), *l = w.row_sum.data(), *shift = w.shift.data(), *block_max = w.block_max.data();
  transpose_block(a.q + (b * a.tq + i0) * a.d, rows, a.d, qt, kRowBlock);
  std::fill(acc, acc + rows * a.dv, T(0));
  std::fill(m, m + rows, -infinity<T>);
  std::fill(l, l + rows, T(0));
  const i64 key_end = a.key_end(i0 + rows - 1);  // the last row sees the most keys
  for (i64 j0 = 0; j0 < key_end; j0 += kColumnBlock) {
    const i64 cols = std::min(kColumnBlock, key_end - j0);
    a.scores_by_key(b, i0, rows, j0, cols, qt, st);
    // m' = max(m, max_j s), and the factor e^(m - m') for what was summed so far.
    std::copy(m, m + rows, block_max);
    for (i64 c = 0; c < cols; ++c)
      for (i64 r = 0; r < rows; ++r) block_max[r] = std::max(block_max[r], st[c * kRowBlock + r]);
    for (i64 r = 0; r < rows; ++r) {
      shift[r] = exp_shift(block_max[r]);
      const T rescale = m[r] == -infinity<T> ? T(0) : exp_of(m[r] - block_max[r]);
      l[r] *= rescale;
      if (rescale != T(1))
        for (i64 c = 0; c < a.dv; ++c) acc[r * a.dv + c] *= rescale;
      m[r] = block_max[r];
    }
    // p = e^(s - m'), l' = e^(m-m')·l + Σ_j p, a' = e^(m-m')·a + pᵀ·v
    for (i64 c = 0; c < cols; ++c) {
      T* column = st + c * kRowBlock;
      exp_shifted(column, shift, 1, rows);
      for (i64 r = 0; r < rows; ++r) l[r] += column[r];
    }
    // With dropout, only the kept weights, times c, meet v: p ← Z ⊙ p (l keeps the full sum).
    if (a.dropout) {
      T* zt = w.dropout.data();
      a.dropout_by_key(b, i0, rows, j0, cols, zt, w.dropout_rows.data());
      for (i64 c = 0; c < cols; ++c)
        for (i64 r = 0; r < rows; ++r) st[c * kRowBlock + r] *= zt[c * kRowBlock + r];
    }
    multiply_add(rows, a.dv, cols, st, 1, kRowBlock, a.v + (b * a.tk + j0) * a.dv, a.dv, acc, a.dv);
  }
  for (i64 r = 0; r < rows; ++r) {
    T* out = o + (b * a.tq + i0 + r) * a.dv;
    const bool masked = l[r] == T(0);
    const T inverse = masked ? T(0) : T(1) / l[r];
    for (i64 c = 0; c < a.dv; ++c) out[c] = acc[r * a.dv + c] * inverse;
    lse[b * a.tq + i0 + r] = masked ? -infinity<T> : m[r] + std::log(l[r]);
  }
}

// Inputs (q, k, v, [mask], [step]); outputs (o, lse).
template <typename T>
void fused_attention_kernel(const KernelContext& ctx) {
  const Attention<T> a(ctx, ctx.params<AttentionParams>());
  T* o = ctx.out(0).as<T>();
  T* lse = ctx.out(1).as<T>();
  const i64 row_blocks = blocks(a.tq, kRowBlock);
  ctx.pool->parallel_for(a.batch * row_blocks, 1, [&](i64 begin, i64 end) {
    Scratch<T> scratch(a, kRowBlock * a.dv);
    for (i64 task = begin; task < end; ++task) {
      const i64 b = task / row_blocks, i0 = task % row_blocks * kRowBlock;
      forward_rows(a, b, i0, std::min(kRowBlock, a.tq - i0), o, lse, scratch);
    }
  });
}

// --- Backward ---------------------------------------------------------------------------------

// The backward's extra inputs: o, lse, d_o, and Δ[i] = Σ_d dO[i, d]·o[i, d].
template <typename T>
struct Backward {
  const T *o, *lse, *d_o;
  std::vector<T> delta;  // [batch·Tq]
};

// Pass 1: keys [j0, j0 + cols) of batch item b, over every query block that sees them, with
// tiles held by query (s[r, c]) against the task's own k and v blocks, transposed once:
//
//   P = e^(s - lse),  dP = Z ⊙ (dO·vᵀ),  dS = P ⊙ (dP - Δ),  dv[j] += Σ_i Z[i, j]·P[i, j]·dO[i],
//   dk[j] += Σ_i dS[i, j]·q[i]                                    (dk scaled at the end)
//
// (Z = 1 without dropout: those multiplications are skipped.)
//
// In the one-pass schedule `dq_sum` (the item's unscaled dq, [Tq, D]) also gets
// dq[i] += Σ_j dS[i, j]·k[j]; in pass 1 it is null.
template <typename T>
void key_gradients(const Attention<T>& a, const Backward<T>& g, i64 b, i64 j0, i64 cols, T* dk, T* dv, T* dq_sum,
                   Scratch<T>& w) {
  T* kt = w.first_transposed.data();   // [D, kColumnBlock]
  T* vt = w.second_transposed.data();  // [Dv, kColumnBlock]
  T* p = w.probabilities.data();
  T* ds = w.score_gradients.data();
  transpose_block(a.k + (b * a.tk + j0) * a.d, cols, a.d, kt, kColumnBlock);
  transpose_block(a.v + (b * a.tk + j0) * a.dv, cols, a.dv, vt, kColumnBlock);
  T* dk_sum = w.accumulator.data();         // [cols, D]
  T* dv_sum = dk_sum + kColumnBlock * a.d;  // [cols, Dv]
  std::fill(dk_sum, dk_sum + cols * a.d, T(0));
  std::fill(dv_sum, dv_sum + cols * a.dv, T(0));
  for (i64 i0 = a.first_query(j0) / kRowBlock * kRowBlock; i0 < a.tq; i0 += kRowBlock) {
    const i64 rows = std::min(kRowBlock, a.tq - i0);
    const T* d_o = g.d_o + (b * a.tq + i0) * a.dv;
    const T* q = a.q + (b * a.tq + i0) * a.d;
    a.scores_by_query(b, i0, rows, j0, cols, kt, p);
    for (i64 r = 0; r < rows; ++r) {
      const T shift = exp_shift(g.lse[b * a.tq + i0 + r]);
      exp_shifted(p + r * kColumnBlock, &shift, 0, cols);
    }
    multiply_scaled(rows, cols, a.dv, d_o, a.dv, 1, vt, kColumnBlock, ds, kColumnBlock, T(1));
    const T* z = w.dropout.data();
    if (a.dropout) {
      a.dropout_by_query(b, i0, rows, j0, cols, w.dropout.data());
      for (i64 r = 0; r < rows; ++r)
        for (i64 c = 0; c < cols; ++c) ds[r * kColumnBlock + c] *= z[r * kColumnBlock + c];
    }
    for (i64 r = 0; r < rows; ++r) {
      const T delta = g.delta[static_cast<std::size_t>(b * a.tq + i0 + r)];
      for (i64 c = 0; c < cols; ++c)
        ds[r * kColumnBlock + c] = p[r * kColumnBlock + c] * (ds[r * kColumnBlock + c] - delta);
    }
    if (a.dropout)
      for (i64 r = 0; r < rows; ++r)
        for (i64 c = 0; c < cols; ++c) p[r * kColumnBlock + c] *= z[r * kColumnBlock + c];
    // (Z ⊙ P)ᵀ·dO: the tile is read transposed (a_row = 1, a_col = kColumnBlock).
    multiply_add(cols, a.dv, rows, p, 1, kColumnBlock, d_o, a.dv, dv_sum, a.dv);
    multiply_add(cols, a.d, rows, ds, 1, kColumnBlock, q, a.d, dk_sum, a.d);
    if (dq_sum)
      multiply_add(rows, a.d, cols, ds, kColumnBlock, 1, a.k + (b * a.tk + j0) * a.d, a.d, dq_sum + i0 * a.d, a.d);
  }
  T* dk_out = dk + (b * a.tk + j0) * a.d;
  for (i64 i = 0; i < cols * a.d; ++i) dk_out[i] = a.scale * dk_sum[i];
  std::copy(dv_sum, dv_sum + cols * a.dv, dv + (b * a.tk + j0) * a.dv);
}

// Pass 2: queries [i0, i0 + rows) of batch item b, over every key block they see, with tiles
// held by key (st[c, r]) against the task's own q and dO blocks, transposed once:
//
//   Pᵀ = e^(sᵀ - lse),  dPᵀ = Zᵀ ⊙ (v·dOᵀ),  dSᵀ = Pᵀ ⊙ (dPᵀ - Δ),  dq[i] += Σ_j dS[i, j]·k[j]
template <typename T>
void query_gradients(const Attention<T>& a, const Backward<T>& g, i64 b, i64 i0, i64 rows, T* dq, Scratch<T>& w) {
  T* qt = w.first_transposed.data();     // [D, kRowBlock]
  T* d_ot = w.second_transposed.data();  // [Dv, kRowBlock]
  T* pt = w.probabilities.data();
  T* dst = w.score_gradients.data();
  T* shift = w.shift.data();
  const T* delta = g.delta.data() + b * a.tq + i0;
  transpose_block(a.q + (b * a.tq + i0) * a.d, rows, a.d, qt, kRowBlock);
  transpose_block(g.d_o + (b * a.tq + i0) * a.dv, rows, a.dv, d_ot, kRowBlock);
  for (i64 r = 0; r < rows; ++r) shift[r] = exp_shift(g.lse[b * a.tq + i0 + r]);
  T* dq_sum = w.accumulator.data();  // [rows, D]
  std::fill(dq_sum, dq_sum + rows * a.d, T(0));
  const i64 key_end = a.key_end(i0 + rows - 1);
  for (i64 j0 = 0; j0 < key_end; j0 += kColumnBlock) {
    const i64 cols = std::min(kColumnBlock, key_end - j0);
    a.scores_by_key(b, i0, rows, j0, cols, qt, pt);
    for (i64 c = 0; c < cols; ++c) exp_shifted(pt + c * kRowBlock, shift, 1, rows);
    multiply_scaled(cols, rows, a.dv, a.v + (b * a.tk + j0) * a.dv, a.dv, 1, d_ot, kRowBlock, dst, kRowBlock, T(1));
    if (a.dropout) {
      T* zt = w.dropout.data();
      a.dropout_by_key(b, i0, rows, j0, cols, zt, w.dropout_rows.data());
      for (i64 c = 0; c < cols; ++c)
        for (i64 r = 0; r < rows; ++r) dst[c * kRowBlock + r] *= zt[c * kRowBlock + r];
    }
    for (i64 c = 0; c < cols; ++c)
      for (i64 r = 0; r < rows; ++r)
        dst[c * kRowBlock + r] = pt[c * kRowBlock + r] * (dst[c * kRowBlock + r] - delta[r]);
    // dS·k: the by-key tile is read transposed (a_row = 1, a_col = kRowBlock).
    multiply_add(rows, a.d, cols, dst, 1, kRowBlock, a.k + (b * a.tk + j0) * a.d, a.d, dq_sum, a.d);
  }
  T* dq_out = dq + (b * a.tq + i0) * a.d;
  for (i64 i = 0; i < rows * a.d; ++i) dq_out[i] = a.scale * dq_sum[i];
}

// Inputs (q, k, v, [mask], o, lse, d_o, [step]); outputs (dq, dk, dv).
template <typename T>
void fused_attention_backward_kernel(const KernelContext& ctx) {
  const Attention<T> a(ctx, ctx.params<AttentionParams>());
  const std::size_t first = a.inputs.saved;
  Backward<T> g{ctx.in(first).as<T>(), ctx.in(first + 1).as<T>(), ctx.in(first + 2).as<T>(),
                std::vector<T>(static_cast<std::size_t>(a.batch * a.tq))};
  T* dq = ctx.out(0).as<T>();
  T* dk = ctx.out(1).as<T>();
  T* dv = ctx.out(2).as<T>();

  // Δ[i] = Σ_d dO[i, d]·o[i, d], summed in f64.
  const i64 grain = std::max<i64>(1, kElementwiseGrain / std::max<i64>(a.dv, 1));
  ctx.pool->parallel_for(a.batch * a.tq, grain, [&](i64 begin, i64 end) {
    for (i64 i = begin; i < end; ++i) {
      double sum = 0;
      for (i64 c = 0; c < a.dv; ++c) sum += static_cast<double>(g.d_o[i * a.dv + c]) * g.o[i * a.dv + c];
      g.delta[static_cast<std::size_t>(i)] = static_cast<T>(sum);
    }
  });

  const i64 column_blocks = blocks(a.tk, kColumnBlock);
  const int threads = ctx.pool->size();
  if (threads == 1 || a.batch >= 2 * threads) {
    // One pass: a task per batch item, owning all of its dq, dk and dv.
    ctx.pool->parallel_for(a.batch, 1, [&](i64 begin, i64 end) {
      Scratch<T> scratch(a, kColumnBlock * (a.d + a.dv));
      for (i64 b = begin; b < end; ++b) {
        T* dq_item = dq + b * a.tq * a.d;
        std::fill(dq_item, dq_item + a.tq * a.d, T(0));
        for (i64 j = 0; j < column_blocks; ++j)
          key_gradients(a, g, b, j * kColumnBlock, std::min(kColumnBlock, a.tk - j * kColumnBlock), dk, dv, dq_item,
                        scratch);
        for (i64 i = 0; i < a.tq * a.d; ++i) dq_item[i] = a.scale * dq_item[i];
      }
    });
    return;
  }

  ctx.pool->parallel_for(a.batch * column_blocks, 1, [&](i64 begin, i64 end) {
    Scratch<T> scratch(a, kColumnBlock * (a.d + a.dv));
    for (i64 task = begin; task < end; ++task) {
      const i64 b = task / column_blocks, j0 = task % column_blocks * kColumnBlock;
      key_gradients(a, g, b, j0, std::min(kColumnBlock, a.tk - j0), dk, dv, static_cast<T*>(nullptr), scratch);
    }
  });

  const i64 row_blocks = blocks(a.tq, kRowBlock);
  ctx.pool->parallel_for(a.batch * row_blocks, 1, [&](i64 begin, i64 end) {
    Scratch<T> scratch(a, kRowBlock * a.d);
    for (i64 task = begin; task < end; ++task) {
      const i64 b = task / row_blocks, i0 = task % row_blocks * kRowBlock;
      query_gradients(a, g, b, i0, std::min(kRowBlock, a.tq - i0), dq, scratch);
    }
  });
}

// --- Half inputs (mixed precision) ------------------------------------------------------------

// The CPU has no half arithmetic worth the name, so a node with bf16 or f16 q, k, v widens its
// half inputs (q, k, v, and the backward's o and d_o) to f32, runs the f32 kernel, and rounds
// its half outputs back to nearest-even. The mask, lse and the step are not half, and pass
// through. This gives the numbers a GPU computing in f32 from the same half inputs gives, up to
// summation order: the reference the tensor-core kernels are checked against.
template <typename H>
void half_attention_kernel(const KernelContext& ctx, Kernel f32_kernel) {
  std::vector<std::vector<float>> wide;
  wide.reserve(ctx.inputs.size() + ctx.outputs.size());  // no reallocation: args point into it
  auto widened = [&](const TensorArg& arg, bool copy_in) {
    if (!is_half(arg.type.dtype)) return arg;
    std::vector<float>& w = wide.emplace_back(static_cast<std::size_t>(arg.numel()));
    if (copy_in) {
      const H* x = arg.as<H>();
      ctx.pool->parallel_for(arg.numel(), kElementwiseGrain, [&](i64 begin, i64 end) {
        for (i64 i = begin; i < end; ++i) w[static_cast<std::size_t>(i)] = to_float(x[i]);
      });
    }
    return TensorArg{reinterpret_cast<std::byte*>(w.data()), TensorType{DType::f32, arg.type.shape}};
  };
  std::vector<TensorArg> inputs, outputs;
  for (const TensorArg& arg : ctx.inputs) inputs.push_back(widened(arg, true));
  for (const TensorArg& arg : ctx.outputs) outputs.push_back(widened(arg, false));
  f32_kernel(KernelContext{ctx.node, inputs, outputs, ctx.pool, ctx.verdict, ctx.decoded});
  for (std::size_t k = 0; k < outputs.size(); ++k) {
    if (!is_half(ctx.out(k).type.dtype)) continue;
    const float* w = outputs[k].as<float>();
    H* y = ctx.out(k).as<H>();
    ctx.pool->parallel_for(ctx.out(k).numel(), kElementwiseGrain, [&](i64 begin, i64 end) {
      for (i64 i = begin; i < end; ++i) y[i] = from_double<H>(w[i]);
    });
  }
}

template <typename H>
void half_fused_attention_kernel(const KernelContext& ctx) {
  half_attention_kernel<H>(ctx, &fused_attention_kernel<float>);
}
template <typename H>
void half_fused_attention_backward_kernel(const KernelContext& ctx) {
  half_attention_kernel<H>(ctx, &fused_attention_backward_kernel<float>);
}

}  // namespace

void register_attention_kernels(KernelRegistry& r) {
  r.add(ops::fused_attention, DType::f32, &fused_attention_kernel<float>);
  r.add(ops::fused_attention, DType::f64, &fused_attention_kernel<double>);
  r.add(ops::fused_attention, DType::bf16, &half_fused_attention_kernel<bfloat16>);
  r.add(ops::fused_attention, DType::f16, &half_fused_attention_kernel<float16>);
  r.add(ops::fused_attention_backward, DType::f32, &fused_attention_backward_kernel<float>);
  r.add(ops::fused_attention_backward, DType::f64, &fused_attention_backward_kernel<double>);
  r.add(ops::fused_attention_backward, DType::bf16, &half_fused_attention_backward_kernel<bfloat16>);
  r.add(ops::fused_attention_backward, DType::f16, &half_fused_attention_backward_kernel<float16>);
}

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE
