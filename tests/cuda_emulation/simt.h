// A SIMT emulator that runs the project's real CUDA kernel sources on the host, so that the
// tensor-core attention kernels (backends/cuda/attention_mma*.cu) are tested on every build, with
// no GPU. The kernel files are compiled by g++ as C++ with -DFOVEA_CUDA_EMULATION: their
// FOVEA_LAUNCH (kernel_launch.cuh) becomes `launch` below and mma.cuh's PTX wrappers become
// ptx.h's; threadIdx, __syncthreads, __shfl_xor_sync and the atomics the kernels use are defined
// at the bottom of this file. Nothing here is seen by nvcc.
//
// --- What is emulated ------------------------------------------------------------------------
//
// Every CUDA thread is a ucontext fiber. The blocks of a grid run one after another; the threads
// of a block run on one OS thread, the scheduler picking a random runnable thread (or, "greedy",
// the threads of one randomly ranked warp first) at every point where a thread must wait:
//
//   __syncthreads           every thread of the block arrives before any goes on
//   warp collectives        __shfl_xor_sync, ldmatrix, mma.sync: the result is computed once all
//                           32 lanes arrived, with the same operation and parameter (else: the
//                           lanes diverged, a failure)
//   cp.async.wait_group     a thread's copy groups land, oldest first (PTX ISA, "cp.async",
//                           "cp.async.commit_group", "cp.async.wait_group")
//
// The warp collectives follow the PTX ISA's tables: "Matrix Fragments for mma.m16n8k16 with
// floating point type" (which elements of A, B, C, D a lane holds; the product is exact in f64
// and rounded once to f32, which real tensor cores need not match bit for bit) and "ldmatrix"
// (.x4, with and without .trans). Shared memory is one buffer per kernel file, filled with 0xFF
// bytes (NaN in f32, f16 and bf16) at every block, so a read before a write shows as NaN; bytes
// past the launch's dynamic size are ASan-poisoned when built with the sanitizers. cp.async lands
// either at issue ("early" copies: a tile overwritten while another warp still reads it shows) or
// only at the issuing thread's wait_group ("late": a read before the wait and the barrier that
// publishes the copy shows). Addresses are checked: ldmatrix rows and cp.async destinations
// 16-byte aligned and inside the launch's shared memory.
//
// --- What it cannot check --------------------------------------------------------------------
//
// Timing and performance (no bank conflicts, no occupancy, no register counts: ptxas -v tells
// those); the hardware's rounding of ex2.approx (std::exp2 stands in) and of the tensor cores'
// accumulation order; memory ordering between blocks (blocks run one at a time, so atomics
// never race); global memory races within a block beyond what the schedules happen to expose;
// and the ISA tables themselves: they are transcribed from the PTX ISA document, and a mistake
// there would be made the same way in the kernel and here. Only 1-D launches are supported.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <sanitizer/asan_interface.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <tuple>
#include <type_traits>
#include <vector>

namespace fovea::cuda_emulation {

// sm_90's per-block opt-in maximum of dynamic shared memory (227 KiB).
constexpr std::size_t kMaxShared = 232448;

// A broken kernel (or emulator) cannot be unwound through the fibers' stacks: say what and stop.
[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "CUDA EMULATION FAILURE: %s\n", what);
  std::abort();
}

struct Options {
  bool early_copies = false;  // cp.async lands at issue (true) or at wait_group (false)
  bool greedy = false;        // run the threads of one randomly ranked warp first (true) or any
  std::uint64_t seed = 1;     // of the scheduling order
  int compute_major = 9;      // what cudaDeviceGetAttribute reports
  int shared_optin = static_cast<int>(kMaxShared);
  unsigned max_blocks = 0;  // > 0: launch at most this many blocks (the kernels' grid-stride loops)
};

struct Statistics {
  long launches = 0, blocks = 0, collectives = 0, barriers = 0;
};

inline Options options;
inline Statistics statistics;
inline std::mt19937_64 block_order;  // seeds each block's scheduler

// Sets the options for the launches that follow and restarts the scheduling order from their seed.
inline void configure(const Options& chosen) {
  options = chosen;
  block_order.seed(chosen.seed);
}

struct Copy {
  std::uint32_t destination;
  const void* source;
  int bytes;
};

struct Fiber {
  ucontext_t context;
  uint3 thread;
  bool finished = false, runnable = true;
  std::deque<std::vector<Copy>> groups;  // committed copy groups, oldest first
  std::vector<Copy> open;                // issued since the last commit
};

enum class Collective { none, shuffle, load_matrices, load_matrices_transposed, mma_bf16, mma_f16 };

// What the lanes of a warp deposit at a collective, and what it computes for them.
struct WarpState {
  int arrived = 0;
  Collective collective = Collective::none;
  int parameter = 0;
  float value[32], value_out[32];              // shuffle
  std::uint32_t address[32], matrices[32][4];  // ldmatrix
  std::uint32_t a[32][4], b0[32], b1[32];      // mma operands
  float c[32][4], d[32][4];                    // mma accumulators in and out
};

struct Block {
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  int current = -1;
  uint3 index;
  dim3 grid, block;
  unsigned char* shared = nullptr;
  std::size_t shared_bytes = 0;
  int barrier_arrived = 0;
  std::vector<WarpState> warps;
  std::mt19937_64 random;
  std::vector<int> rank;  // greedy: warp w runs before the warps of larger rank[w]
};

inline Block* running = nullptr;
inline std::vector<std::vector<char>> stacks;  // one per thread of the largest block so far

inline Fiber& me() { return running->fibers[running->current]; }

// Back to the scheduler; the fiber stays runnable unless it marked itself otherwise.
inline void yield() { swapcontext(&me().context, &running->scheduler); }

// --- cp.async ------------------------------------------------------------------------------

inline void land(const Copy& copy) {
  Block& b = *running;
  if (copy.destination % 16 != 0 || copy.destination + 16 > b.shared_bytes)
    fail("cp.async destination outside shared memory or misaligned");
  if (copy.bytes == 16)
    std::memcpy(b.shared + copy.destination, copy.source, 16);
  else if (copy.bytes == 0)
    std::memset(b.shared + copy.destination, 0, 16);
  else
    fail("cp.async src-size other than 0 or 16");
}

inline void copy_async(std::uint32_t destination, const void* source, int bytes) {
  const Copy copy{destination, source, bytes};
  if (bytes == 16) {  // the source must be readable at issue (ASan checks this read)
    unsigned char probe[16];
    std::memcpy(probe, source, 16);
  }
  if (options.early_copies)
    land(copy);
  else
    me().open.push_back(copy);
}

inline void commit_copies() {
  Fiber& f = me();
  f.groups.push_back(std::move(f.open));
  f.open.clear();
}

inline void wait_copies(int pending) {
  Fiber& f = me();
  while (static_cast<int>(f.groups.size()) > pending) {
    for (const Copy& copy : f.groups.front()) land(copy);
    f.groups.pop_front();
  }
  yield();
}

// --- Barrier and warp collectives ------------------------------------------------------------

inline void barrier() {
  Block& b = *running;
  ++statistics.barriers;
  if (++b.barrier_arrived == static_cast<int>(b.fibers.size())) {
    b.barrier_arrived = 0;
    b.rank.clear();  // a new warp order after every barrier
    for (Fiber& f : b.fibers) f.runnable = true;
  } else {
    me().runnable = false;
  }
  yield();
}

inline int lane() { return static_cast<int>(me().thread.x) % 32; }

// Deposits this lane's operands; the 32nd lane to arrive computes for all.
template <typename Deposit, typename Compute>
WarpState& arrive(Collective collective, int parameter, Deposit deposit, Compute compute) {
  Block& b = *running;
  const int warp = static_cast<int>(me().thread.x) / 32;
  WarpState& w = b.warps[warp];
  if (w.arrived == 0) {
    w.collective = collective;
    w.parameter = parameter;
  } else if (w.collective != collective || w.parameter != parameter) {
    fail("the lanes of a warp disagree on a collective (divergence)");
  }
  deposit(w);
  if (++w.arrived == 32) {
    ++statistics.collectives;
    compute(w);
    w.arrived = 0;
    for (int l = 0; l < 32; ++l) b.fibers[warp * 32 + l].runnable = true;
  } else {
    me().runnable = false;
  }
  yield();
  return w;
}

inline float shuffle_xor(float value, int offset) {
  const int l = lane();
  WarpState& w = arrive(
      Collective::shuffle, offset, [&](WarpState& s) { s.value[l] = value; },
      [&](WarpState& s) {
        for (int x = 0; x < 32; ++x) s.value_out[x] = s.value[x ^ offset];
      });
  return w.value_out[l];
}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lane x names row x % 8 of matrix x / 8;
// register i of lane (g, t) gets M_i[g][2t, 2t+1], or M_i[2t, 2t+1][g] with .trans.
inline void load_matrices(std::uint32_t (&r)[4], std::uint32_t address, bool transposed) {
  const int l = lane();
  WarpState& w = arrive(
      transposed ? Collective::load_matrices_transposed : Collective::load_matrices, 0,
      [&](WarpState& s) { s.address[l] = address; },
      [&](WarpState& s) {
        const Block& b = *running;
        for (int i = 0; i < 4; ++i) {
          std::uint16_t m[8][8];
          for (int row = 0; row < 8; ++row) {
            const std::uint32_t at = s.address[8 * i + row];
            if (at % 16 != 0 || at + 16 > b.shared_bytes) fail("ldmatrix row outside shared memory or misaligned");
            std::memcpy(m[row], b.shared + at, 16);
          }
          for (int x = 0; x < 32; ++x) {
            const int g = x / 4, t = x % 4;
            const std::uint16_t low = transposed ? m[2 * t][g] : m[g][2 * t];
            const std::uint16_t high = transposed ? m[2 * t + 1][g] : m[g][2 * t + 1];
            s.matrices[x][i] = std::uint32_t{low} | (std::uint32_t{high} << 16);
          }
        }
      });
  for (int i = 0; i < 4; ++i) r[i] = w.matrices[l][i];
}

// The 16-bit element in bits 0..15 (low) or 16..31 (high) of a register, as a float.
template <typename Half>
float low_half(std::uint32_t r) {
  const auto bits = static_cast<unsigned short>(r & 0xffff);
  if constexpr (std::is_same_v<Half, __nv_bfloat16>) {
    __nv_bfloat16_raw raw;
    raw.x = bits;
    return __bfloat162float(__nv_bfloat16(raw));
  } else {
    __half_raw raw;
    raw.x = bits;
    return __half2float(__half(raw));
  }
}
template <typename Half>
float high_half(std::uint32_t r) {
  return low_half<Half>(r >> 16);
}

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32: D = A·B + C, lane (g, t)
// holding A0 = A[g][2t, 2t+1], A1 = A[g+8][2t, 2t+1], A2 = A[g][2t+8, +9], A3 = A[g+8][2t+8, +9],
// B0 = B[2t, 2t+1][g], B1 = B[2t+8, 2t+9][g], c0, c1 = C[g][2t, 2t+1], c2, c3 = C[g+8][2t, 2t+1].
template <typename Half>
void mma(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  const int l = lane();
  constexpr bool bf16 = std::is_same_v<Half, __nv_bfloat16>;
  WarpState& w = arrive(
      bf16 ? Collective::mma_bf16 : Collective::mma_f16, 0,
      [&](WarpState& s) {
        for (int i = 0; i < 4; ++i) s.a[l][i] = a[i], s.c[l][i] = c[i];
        s.b0[l] = b0;
        s.b1[l] = b1;
      },
      [&](WarpState& s) {
        double A[16][16], B[16][8], C[16][8];
        for (int x = 0; x < 32; ++x) {
          const int g = x / 4, t = x % 4;
          const std::uint32_t* ax = s.a[x];
          A[g][2 * t] = low_half<Half>(ax[0]), A[g][2 * t + 1] = high_half<Half>(ax[0]);
          A[g + 8][2 * t] = low_half<Half>(ax[1]), A[g + 8][2 * t + 1] = high_half<Half>(ax[1]);
          A[g][2 * t + 8] = low_half<Half>(ax[2]), A[g][2 * t + 9] = high_half<Half>(ax[2]);
          A[g + 8][2 * t + 8] = low_half<Half>(ax[3]), A[g + 8][2 * t + 9] = high_half<Half>(ax[3]);
          B[2 * t][g] = low_half<Half>(s.b0[x]), B[2 * t + 1][g] = high_half<Half>(s.b0[x]);
          B[2 * t + 8][g] = low_half<Half>(s.b1[x]), B[2 * t + 9][g] = high_half<Half>(s.b1[x]);
          C[g][2 * t] = s.c[x][0], C[g][2 * t + 1] = s.c[x][1];
          C[g + 8][2 * t] = s.c[x][2], C[g + 8][2 * t + 1] = s.c[x][3];
        }
        // D[row][n] = C[row][n] + Σ_k A[row][k]·B[k][n], exact in f64, rounded once to f32.
        for (int row = 0; row < 16; ++row)
          for (int n = 0; n < 8; ++n) {
            double sum = C[row][n];
            for (int k = 0; k < 16; ++k) sum += A[row][k] * B[k][n];
            C[row][n] = static_cast<float>(sum);
          }
        for (int x = 0; x < 32; ++x) {
          const int g = x / 4, t = x % 4;
          s.d[x][0] = static_cast<float>(C[g][2 * t]), s.d[x][1] = static_cast<float>(C[g][2 * t + 1]);
          s.d[x][2] = static_cast<float>(C[g + 8][2 * t]), s.d[x][3] = static_cast<float>(C[g + 8][2 * t + 1]);
        }
      });
  for (int i = 0; i < 4; ++i) c[i] = w.d[l][i];
}

// --- Launch ----------------------------------------------------------------------------------

template <typename Kernel, typename Arguments>
struct FiberStart {
  Kernel kernel;
  Arguments arguments;
};

// makecontext passes int arguments only: the start record's address comes in two halves.
template <typename Start>
void fiber_entry(int address_low, int address_high) {
  const std::uintptr_t address =
      (static_cast<std::uintptr_t>(static_cast<unsigned>(address_high)) << 32) | static_cast<unsigned>(address_low);
  const Start* start = reinterpret_cast<const Start*>(address);
  std::apply(start->kernel, start->arguments);
  me().finished = true;
  me().runnable = false;
  swapcontext(&me().context, &running->scheduler);
}

// Thread t's fiber, to run entry(address) on its own stack. (A function of its own: getcontext
// returns twice, and the caller's loop variables should not live across it.)
inline void start_fiber(Fiber& f, unsigned t, void (*entry)(int, int), std::uintptr_t address) {
  f.thread = uint3{t, 0, 0};
  getcontext(&f.context);
  f.context.uc_stack.ss_sp = stacks[t].data();
  f.context.uc_stack.ss_size = stacks[t].size();
  f.context.uc_link = nullptr;
  makecontext(&f.context, reinterpret_cast<void (*)()>(entry), 2, static_cast<int>(address & 0xffffffffu),
              static_cast<int>(address >> 32));
}

// Picks the next thread to run: any runnable one at random, or (greedy) one of the best-ranked warp.
inline int next_thread(Block& b, const std::vector<int>& ready) {
  if (!options.greedy) return ready[std::uniform_int_distribution<std::size_t>(0, ready.size() - 1)(b.random)];
  if (b.barrier_arrived == 0 && b.rank.empty()) {
    b.rank.resize(b.warps.size());
    for (std::size_t w = 0; w < b.rank.size(); ++w) b.rank[w] = static_cast<int>(w);
    std::shuffle(b.rank.begin(), b.rank.end(), b.random);
  }
  int best = ready[0];
  for (int t : ready)
    if (b.rank[t / 32] < b.rank[best / 32]) best = t;
  return best;
}

// kernel<<<grid, block, bytes>>>(arguments...), the blocks one after another.
template <typename... Parameters, typename... Arguments>
void run_grid(void (*kernel)(Parameters...), dim3 grid, dim3 block, std::size_t bytes, unsigned char* shared,
              Arguments... arguments) {
  ++statistics.launches;
  if (bytes > static_cast<std::size_t>(options.shared_optin)) fail("launch asks for more shared memory than allowed");
  if (block.y != 1 || block.z != 1 || grid.y != 1 || grid.z != 1) fail("only 1-D launches are emulated");
  if (block.x % 32 != 0) fail("a block of a fractional number of warps");
  using Start = FiberStart<void (*)(Parameters...), std::tuple<std::decay_t<Parameters>...>>;
  const Start start{kernel, std::tuple<std::decay_t<Parameters>...>(static_cast<Parameters>(arguments)...)};
  if (stacks.size() < block.x) stacks.resize(block.x, std::vector<char>(1 << 17));
  const auto address = reinterpret_cast<std::uintptr_t>(&start);
  if (options.max_blocks > 0 && grid.x > options.max_blocks) grid.x = options.max_blocks;
  for (unsigned x = 0; x < grid.x; ++x) {
    ++statistics.blocks;
    Block b;
    b.index = uint3{x, 0, 0};
    b.grid = grid;
    b.block = block;
    b.shared = shared;
    b.shared_bytes = bytes;
    b.random.seed(block_order());
    b.warps.resize(block.x / 32);
    ASAN_UNPOISON_MEMORY_REGION(shared, kMaxShared);
    std::memset(shared, 0xFF, kMaxShared);
    ASAN_POISON_MEMORY_REGION(shared + bytes, kMaxShared - bytes);
    b.fibers.resize(block.x);
    running = &b;
    for (unsigned t = 0; t < block.x; ++t) start_fiber(b.fibers[t], t, &fiber_entry<Start>, address);
    std::vector<int> ready;
    for (;;) {
      ready.clear();
      bool all_finished = true;
      for (unsigned t = 0; t < block.x; ++t) {
        all_finished = all_finished && b.fibers[t].finished;
        if (b.fibers[t].runnable && !b.fibers[t].finished) ready.push_back(static_cast<int>(t));
      }
      if (all_finished) break;
      if (ready.empty()) fail("deadlock: a barrier or collective not reached by every thread");
      b.current = next_thread(b, ready);
      swapcontext(&b.scheduler, &b.fibers[b.current].context);
    }
    running = nullptr;
  }
  ASAN_UNPOISON_MEMORY_REGION(shared, kMaxShared);
}

inline uint3 thread_index() { return me().thread; }
inline uint3 block_index() { return running->index; }
inline dim3 block_dimensions() { return running->block; }
inline dim3 grid_dimensions() { return running->grid; }

}  // namespace fovea::cuda_emulation

// --- The CUDA built-ins the kernels use --------------------------------------------------------

#define threadIdx (::fovea::cuda_emulation::thread_index())
#define blockIdx (::fovea::cuda_emulation::block_index())
#define blockDim (::fovea::cuda_emulation::block_dimensions())
#define gridDim (::fovea::cuda_emulation::grid_dimensions())
#define __launch_bounds__(...)

inline void __syncthreads() { ::fovea::cuda_emulation::barrier(); }

inline float __shfl_xor_sync(unsigned mask, float value, int offset) {
  if (mask != 0xffffffffu) ::fovea::cuda_emulation::fail("a shuffle with a partial mask");
  return ::fovea::cuda_emulation::shuffle_xor(value, offset);
}

// Blocks run one at a time and a block's threads switch only at the points above, so a
// read-modify-write is atomic here.
inline float atomicAdd(float* address, float value) {
  const float old = *address;
  *address = old + value;
  return old;
}

inline unsigned long long atomicMin(unsigned long long* address, unsigned long long value) {
  const unsigned long long old = *address;
  if (value < old) *address = value;
  return old;
}

template <typename Result, typename... Parameters>
cudaError_t cudaFuncSetAttribute(Result (*)(Parameters...), cudaFuncAttribute attribute, int value) {
  if (attribute == cudaFuncAttributeMaxDynamicSharedMemorySize && value > ::fovea::cuda_emulation::options.shared_optin)
    return cudaErrorInvalidValue;
  return cudaSuccess;
}

// Each kernel file's shared memory (the kernels declare `extern __shared__ unsigned char shared[]`
// in fovea::cuda_backend's unnamed namespace, which this definition completes) and its launch:
// FOVEA_LAUNCH(kernel, grid, block, bytes, stream)(arguments...) under FOVEA_CUDA_EMULATION.
namespace fovea::cuda_backend {
namespace {
alignas(128) unsigned char shared[::fovea::cuda_emulation::kMaxShared];

template <typename Kernel>
auto emulated_launch(Kernel kernel, dim3 grid, dim3 block, std::size_t bytes, cudaStream_t) {
  return
      [=](auto... arguments) { ::fovea::cuda_emulation::run_grid(kernel, grid, block, bytes, shared, arguments...); };
}
}  // namespace
}  // namespace fovea::cuda_backend
