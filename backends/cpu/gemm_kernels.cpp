// The engine's gemm (gemm.h): packed operands, a register-blocked micro-kernel, the shared
// operand packed once per block by all threads together.
//
// The loops, outermost first (the names are BLIS's):
//
//   jc  over N in blocks of NC columns: one parallel loop each, whose tasks split the tiles of C
//       into row ranges (and column ranges when M is short)
//   pc  over K in blocks of KC          (in each task)
//   ic  over the task's rows in blocks of MC   pack A's MC × KC block into Ã, per thread
//   jr  over the task's NR-wide panels of B̃   packed on first use, by whichever task needs it
//                                              first (SharedPanels): each panel once, shared
//   ir  over Ã's MR-tall panels                micro-kernel: C[MR × NR] (+)= Ã panel · B̃ panel
//
// B̃ (all of K × NC, a few MB) is shared and read from the last-level cache; Ã (MC × KC) stays in
// the thread's L2 while every panel of B̃ passes it; one B̃ panel (KC × NR) is reused from L1 and
// L2 while the ir loop walks Ã. Packing lays each panel out in the order the micro-kernel reads
// it, contiguous, aligned and zero-padded to whole tiles, so the micro-kernel has no edge cases:
// a partial tile of C is written through a small buffer instead.
//
// The micro-kernel holds MR × NR elements of C in vector registers: per step along K it loads one
// row of the B̃ panel (NR/width vectors), broadcasts MR elements of the Ã panel and issues MR·NR/width
// fused multiply-adds. MR is sized to the register file: 12 × (2 vectors) = 24 accumulators of 32
// registers with AVX-512, 6 × 2 = 12 of 16 with AVX2 and SSE2. The portable copy has no FMA
// instruction and multiplies then adds.
#include "fovea/backends/cpu/gemm.h"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <new>
#include <vector>

#include "fovea/backends/cpu/simd.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

namespace {

// The tile and the cache blocks. KC · NR · sizeof(T) is one B̃ panel (64 KB for f32 with
// AVX-512, 32 KB with AVX2), MC · KC · sizeof(T) is Ã (384 KB with AVX-512, 288 KB with AVX2:
// inside a 1 MB L2, leaving room for B̃ panels streaming through), NC · KC is B̃, shared by the
// threads through L3. KC = 512 rather than an L1-sized 256: the panel then streams from L2
// while the micro-kernel loads C half as often, and the large-K shapes gained 3-5% on Zen 4
// with 2 threads (square 2048: 0.96 -> 1.03 of OpenBLAS with AVX-512, 0.94 -> 0.97 with AVX2;
// square 512: 0.96-0.98 -> 0.99-1.01), with no loss on the others.
template <typename T>
struct Blocking {
  static constexpr int vectors = 2;  // per row of the tile
  static constexpr int nr = vectors * Vec<T>::width;
  static constexpr int mr = kVectorRegisters == 32 ? 12 : 6;
  static constexpr std::int64_t kc = 512;
  static constexpr std::int64_t mc = mr * (kVectorRegisters == 32 ? 16 : 24);
  static constexpr std::int64_t nc = 2048;
};

constexpr std::size_t kAlignment = 64;

// A growing, 64-byte aligned buffer, one per thread and role, kept for the thread's life so that
// small products (a batch of attention heads) allocate nothing.
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { ::operator delete(data_, std::align_val_t{kAlignment}); }

  template <typename T>
  T* get(std::int64_t count) {
    const std::size_t bytes = static_cast<std::size_t>(count) * sizeof(T);
    if (bytes > size_) {
      ::operator delete(data_, std::align_val_t{kAlignment});
      data_ = nullptr;  // stays consistent if the allocation throws
      size_ = 0;
      data_ = ::operator new(bytes, std::align_val_t{kAlignment});
      size_ = bytes;
    }
    return static_cast<T*>(data_);
  }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

thread_local Scratch packed_a_scratch;  // Ã: each thread its own
thread_local Scratch packed_b_scratch;  // B̃: the calling thread's, shared with the pool's threads

// One panel of `width` lanes (Ã's MR rows, or B̃'s NR columns) and kc steps along K, laid out
// [kc][width], lanes past `lanes` zero. Lane l of step p is source[l·lane_stride + p·depth_stride];
// one of the two strides is 1, and the loops run along it.
//
// When each step's lanes are contiguous, the steps are depth_stride apart: a few bytes from each
// of kc rows (a B̃ panel of a row-major b, 128 bytes from each of 512 rows 2 KB or more apart; an
// Ã panel of a transposed a, 48 bytes). The hardware's prefetchers follow such a walk late, so a
// product whose operands come from DRAM (a weight gradient, after the forward pass) waited on
// each row; the loop prefetches the row kPackAhead steps ahead. Cold 128 x 512 x 2048 and
// 512 x 128 x 2048 products with a transposed a (the weight gradients' shape) went from 0.90
// to 0.98 of OpenBLAS, averaged over six alternating runs with 2 threads.
constexpr std::int64_t kPackAhead = 8;

template <int width, typename T>
void pack_panel(const T* source, std::int64_t lane_stride, std::int64_t depth_stride, std::int64_t lanes,
                std::int64_t kc, T* out) {
  if (lane_stride == 1) {  // each step's lanes are contiguous
    constexpr std::size_t bytes = width * sizeof(T);
    for (std::int64_t p = 0; p < kc; ++p) {
      const T* step = source + p * depth_stride;
      if (p + kPackAhead < kc) {
        const char* ahead = reinterpret_cast<const char*>(step + kPackAhead * depth_stride);
        for (std::size_t byte = 0; byte < bytes; byte += 64) _mm_prefetch(ahead + byte, _MM_HINT_T0);
        _mm_prefetch(ahead + bytes - 1, _MM_HINT_T0);  // the row's last line, when it is not 64-aligned
      }
      T* target = out + p * width;
      for (std::int64_t l = 0; l < lanes; ++l) target[l] = step[l];
      for (std::int64_t l = lanes; l < width; ++l) target[l] = T(0);
    }
    return;
  }
  // Each lane's steps are contiguous (an Ã panel of a row-major a, most products): a transpose.
  // simd.h's blocked one took a forward matmul of the GPT step from 165-172 to 187-195 GFLOP/s
  // (2048 x 128 x 512) against element by element.
  transpose(source, lane_stride, lanes, kc, out, width);
  for (std::int64_t l = lanes; l < width; ++l)
    for (std::int64_t p = 0; p < kc; ++p) out[p * width + l] = T(0);
}

// Ã panel: rows [row, row + MR) of op(a), depths [depth, depth + kc).
template <typename T>
void pack_a_panel(const GemmOperands<T>& g, std::int64_t row, std::int64_t depth, std::int64_t kc, T* out) {
  const std::int64_t rows = std::min<std::int64_t>(Blocking<T>::mr, g.m - row);
  if (g.transpose_a)  // stored [K, M]
    pack_panel<Blocking<T>::mr>(g.a + depth * g.lda + row, 1, g.lda, rows, kc, out);
  else
    pack_panel<Blocking<T>::mr>(g.a + row * g.lda + depth, g.lda, 1, rows, kc, out);
}

// B̃ panel: depths [depth, depth + kc), columns [column, column + NR) of op(b).
template <typename T>
void pack_b_panel(const GemmOperands<T>& g, std::int64_t depth, std::int64_t column, std::int64_t kc, T* out) {
  const std::int64_t columns = std::min<std::int64_t>(Blocking<T>::nr, g.n - column);
  if (g.transpose_b)  // stored [N, K]
    pack_panel<Blocking<T>::nr>(g.b + column * g.ldb + depth, g.ldb, 1, columns, kc, out);
  else
    pack_panel<Blocking<T>::nr>(g.b + depth * g.ldb + column, 1, g.ldb, columns, kc, out);
}

// c[rows × columns] (+)= Ã panel · B̃ panel over kc steps; the tile is MR × NR, of which the top-left
// rows × columns are C's. Consecutive rows of the B panel are b_stride apart: NR when packed, ldb
// when read in place (SharedPanels).
template <typename T>
void micro_kernel(std::int64_t kc, const T* __restrict a, const T* __restrict b, std::int64_t b_stride, T* c,
                  std::int64_t ldc, std::int64_t rows, std::int64_t columns, bool accumulate) {
  using V = Vec<T>;
  using R = typename V::R;
  constexpr int mr = Blocking<T>::mr, nr = Blocking<T>::nr, vectors = Blocking<T>::vectors, width = V::width;
  R acc[mr][vectors];
#pragma GCC unroll 16
  for (int i = 0; i < mr; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < vectors; ++v) acc[i][v] = V::zero();

#pragma GCC unroll 16
  for (int i = 0; i < mr; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
#pragma GCC unroll 4
  for (std::int64_t p = 0; p < kc; ++p, a += mr, b += b_stride) {
    R row[vectors];
#pragma GCC unroll 4
    for (int v = 0; v < vectors; ++v) row[v] = V::loadu(b + v * width);
#pragma GCC unroll 16
    for (int i = 0; i < mr; ++i) {
      const R x = V::broadcast(a + i);
#pragma GCC unroll 4
      for (int v = 0; v < vectors; ++v) acc[i][v] = V::fma(x, row[v], acc[i][v]);
    }
  }

  if (rows == mr && columns == nr) {
#pragma GCC unroll 16
    for (int i = 0; i < mr; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < vectors; ++v) {
        T* out = c + i * ldc + v * width;
        V::store(out, accumulate ? V::add(acc[i][v], V::loadu(out)) : acc[i][v]);
      }
    return;
  }
  // Every index into acc is a constant once the loops are unrolled, this one's too: that is what
  // lets the compiler keep acc in registers rather than in memory.
  alignas(kAlignment) T tile[mr * nr];
#pragma GCC unroll 16
  for (int i = 0; i < mr; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < vectors; ++v) V::store(tile + i * nr + v * width, acc[i][v]);
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < columns; ++j)
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + tile[i * nr + j] : tile[i * nr + j];
}

// One panel of B as the micro-kernel reads it: its first row and the distance between rows.
template <typename T>
struct Panel {
  const T* data;
  std::int64_t stride;
};

// B̃ for one block of NC columns and all of K, packed on demand: the first task to need a panel
// packs it while any other that needs it meanwhile waits (the packer is running, so the wait is
// short and cannot deadlock), and every later reader finds it ready. The pool's threads thus pack
// the shared operand together, each panel once, inside the one parallel loop that computes C.
// Panel q of the K block at depth pc sits at pc · panels · NR + q · kc · NR.
//
// A product whose b is stored [K, N] reads its whole panels in place instead when it runs on one
// thread, or when b is small (kInPlaceElements: a Transformer's projection weights): a small
// product (a batch of attention heads) spends as long packing as multiplying, and a b that stays
// in cache gains nothing from packing. Measured with 2 threads: 256 x 256 x 256 went from 0.98 to
// 1.08 of OpenBLAS, 128 x 256 x 256 from 1.02 to 1.11.
template <typename T>
class SharedPanels {
 public:
  SharedPanels(const GemmOperands<T>& g, std::int64_t column, std::int64_t panels, T* data, int* state, bool in_place)
      : g_(g), column_(column), panels_(panels), data_(data), state_(state), in_place_(in_place && !g.transpose_b) {}

  Panel<T> get(std::int64_t depth, std::int64_t kc, std::int64_t q) const {
    constexpr int nr = Blocking<T>::nr;
    const std::int64_t first_column = column_ + q * nr;
    if (in_place_ && first_column + nr <= g_.n) return {g_.b + depth * g_.ldb + first_column, g_.ldb};
    T* panel = data_ + depth * panels_ * nr + q * kc * nr;
    std::atomic_ref<int> state(state_[depth / Blocking<T>::kc * panels_ + q]);
    if (state.load(std::memory_order_acquire) == kReady) return {panel, nr};
    int expected = kUnpacked;
    if (state.compare_exchange_strong(expected, kPacking, std::memory_order_acq_rel)) {
      pack_b_panel(g_, depth, first_column, kc, panel);
      state.store(kReady, std::memory_order_release);
      return {panel, nr};
    }
    while (state.load(std::memory_order_acquire) != kReady) _mm_pause();
    return {panel, nr};
  }

  static constexpr int kUnpacked = 0, kPacking = 1, kReady = 2;

 private:
  const GemmOperands<T>& g_;
  std::int64_t column_, panels_;
  T* data_;
  int* state_;
  bool in_place_;
};

// What one task computes of a block of NC columns: rows [row_begin, row_end) of C (a multiple of
// MR apart, but for the last) over panels [panel_begin, panel_end) of B̃, starting at panel
// `first` and wrapping around, so that tasks of the same columns that run at the same time begin
// by packing different panels instead of one waiting while the other packs.
struct TaskRange {
  std::int64_t row_begin, row_end, panel_begin, panel_end, first;
};

template <typename T>
void compute_task(const GemmOperands<T>& g, std::int64_t column, const SharedPanels<T>& b, const TaskRange& t) {
  constexpr int mr = Blocking<T>::mr, nr = Blocking<T>::nr;
  const std::int64_t mc = Blocking<T>::mc, count = t.panel_end - t.panel_begin;
  T* packed_a = packed_a_scratch.get<T>(mc * std::min(Blocking<T>::kc, g.k));
  for (std::int64_t depth = 0; depth < g.k; depth += Blocking<T>::kc) {
    const std::int64_t kc = std::min(Blocking<T>::kc, g.k - depth);
    const bool accumulate = g.accumulate || depth > 0;
    for (std::int64_t ic = t.row_begin; ic < t.row_end; ic += mc) {
      const std::int64_t rows = std::min(mc, t.row_end - ic);
      const std::int64_t row_panels = (rows + mr - 1) / mr;
      for (std::int64_t r = 0; r < row_panels; ++r) pack_a_panel(g, ic + r * mr, depth, kc, packed_a + r * mr * kc);
      for (std::int64_t i = 0; i < count; ++i) {
        const std::int64_t q = t.panel_begin + (t.first - t.panel_begin + i) % count;
        const Panel<T> panel = b.get(depth, kc, q);
        const std::int64_t first_column = column + q * nr;
        const std::int64_t columns = std::min<std::int64_t>(nr, g.n - first_column);
        for (std::int64_t r = 0; r < row_panels; ++r) {
          const std::int64_t row = ic + r * mr;
          micro_kernel(kc, packed_a + r * mr * kc, panel.data, panel.stride, g.c + row * g.ldc + first_column, g.ldc,
                       std::min<std::int64_t>(mr, ic + rows - row), columns, accumulate);
        }
      }
    }
  }
}

// How many row ranges and column ranges the tiles of a block are split into: kTasksPerThread
// tasks per thread, rows first (a column split makes each of its tasks pack the same rows of A).
// More tasks than threads, claimed as threads come free, keep the threads even when one starts
// late (a sleeping worker takes tens of microseconds to wake) or is slowed by another process;
// fewer tasks pack fewer Ã blocks and share B̃ panels among fewer waiters. Two per thread beat four
// in bench/matmul (N = 128 products, the weight gradients' shape: 0.92-0.93 -> 1.00 of OpenBLAS)
// and lost nothing elsewhere; one per thread was faster still on squares but not on those.
constexpr int kTasksPerThread = 2;
struct Split {
  std::int64_t row_parts, column_parts;
};
Split split_tiles(std::int64_t row_panels, std::int64_t column_panels, int threads) {
  const std::int64_t tasks = std::int64_t{kTasksPerThread} * threads;
  if (row_panels >= tasks) return {tasks, 1};
  const std::int64_t columns = std::min<std::int64_t>(column_panels, (tasks + row_panels - 1) / row_panels);
  return {row_panels, std::max<std::int64_t>(columns, 1)};
}

// The most elements of a [K, N] b that a product on the pool reads in place (SharedPanels).
constexpr std::int64_t kInPlaceElements = std::int64_t{1} << 16;

thread_local std::vector<int> panel_states;  // the calling thread's, shared like packed_b_scratch

// Elements of B̃ at most (8 MB of f32), but for at least 4 panels of a very deep K.
constexpr std::int64_t kPackedBudget = std::int64_t{1} << 21;

// The whole product, one parallel loop per block of NC columns on `pool`, or on the calling thread
// alone when it is null.
template <typename T>
void run_gemm(ThreadPool* pool, const GemmOperands<T>& g) {
  constexpr int mr = Blocking<T>::mr, nr = Blocking<T>::nr;
  const int threads = pool == nullptr ? 1 : pool->size();
  const std::int64_t row_panels = (g.m + mr - 1) / mr;
  const std::int64_t k_blocks = (g.k + Blocking<T>::kc - 1) / Blocking<T>::kc;
  // B̃ holds all of K: fewer columns per block when K is deep, to keep it within a budget.
  const std::int64_t nc = std::clamp(kPackedBudget / g.k / nr * nr, std::int64_t{4} * nr, Blocking<T>::nc);
  for (std::int64_t column = 0; column < g.n; column += nc) {
    const std::int64_t panels = (std::min(nc, g.n - column) + nr - 1) / nr;
    panel_states.assign(static_cast<std::size_t>(k_blocks * panels), SharedPanels<T>::kUnpacked);
    const SharedPanels<T> b(g, column, panels, packed_b_scratch.get<T>(panels * nr * g.k), panel_states.data(),
                            pool == nullptr || g.k * g.n <= kInPlaceElements);
    const Split split = split_tiles(row_panels, panels, threads);
    auto task = [&](std::int64_t index) {
      const std::int64_t r = index / split.column_parts, q = index % split.column_parts;
      const std::int64_t panel_begin = panels * q / split.column_parts;
      const std::int64_t panel_end = panels * (q + 1) / split.column_parts;
      compute_task(
          g, column, b,
          TaskRange{row_panels * r / split.row_parts * mr, std::min(g.m, row_panels * (r + 1) / split.row_parts * mr),
                    panel_begin, panel_end, panel_begin + (panel_end - panel_begin) * (r % threads) / threads});
    };
    const std::int64_t tasks = split.row_parts * split.column_parts;
    if (threads == 1 || tasks == 1) {
      for (std::int64_t i = 0; i < tasks; ++i) task(i);
      continue;
    }
    pool->parallel_for(tasks, 1, [&](std::int64_t first, std::int64_t last) {
      for (std::int64_t i = first; i < last; ++i) task(i);
    });
  }
}

// Below this many multiply-adds a product stays on one thread: waking the pool costs more.
constexpr std::int64_t kParallelWork = std::int64_t{1} << 20;

}  // namespace

template <typename T>
void gemm(const GemmOperands<T>& g) {
  if (g.m <= 0 || g.n <= 0) return;
  if (g.k <= 0) {
    if (!g.accumulate)
      for (std::int64_t i = 0; i < g.m; ++i) std::fill(g.c + i * g.ldc, g.c + i * g.ldc + g.n, T(0));
    return;
  }
  run_gemm<T>(nullptr, g);
}

template <typename T>
void gemm(ThreadPool& pool, const GemmOperands<T>& g) {
  // An empty product has no work either, and goes to the one-thread version's checks.
  if (pool.size() == 1 || g.m * g.n * g.k < kParallelWork)
    gemm(g);
  else
    run_gemm<T>(&pool, g);
}

template <typename T>
GemmTile gemm_tile() {
  return {Blocking<T>::mr, Blocking<T>::nr, static_cast<int>(Blocking<T>::kc)};
}

template void gemm<float>(const GemmOperands<float>&);
template void gemm<double>(const GemmOperands<double>&);
template void gemm<float>(ThreadPool&, const GemmOperands<float>&);
template void gemm<double>(ThreadPool&, const GemmOperands<double>&);
template GemmTile gemm_tile<float>();
template GemmTile gemm_tile<double>();

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE
