#include "fovea/runtime/machine.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "fovea/core/cpu_features.h"
#include "fovea/core/thread_pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fovea {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Independent accumulators per thread: an FMA's result is ready about 4 cycles after it starts
// and a core starts up to 2 per cycle, so at least 8 chains must be in flight; 12 leaves room.
constexpr int kAccumulators = 12;

// The multiply-add loops below come in one version per instruction set (core/cpu_features.h),
// like the kernels, and the one of the active Isa runs: the library is compiled for plain
// x86-64, so each vector version is a function compiled for its level by GCC's target
// attribute. Each does `rounds` multiply-adds on every lane of every accumulator. The factor
// and the addend pull each lane towards addend / (1 - factor), so no value overflows or turns
// subnormal. The sum returned keeps the compiler from dropping the loop.
#if defined(__x86_64__)
__attribute__((target("avx512f"))) float multiply_add_rounds_avx512(std::int64_t rounds, float factor, float addend) {
  constexpr int lanes = 16;
  __m512 accumulators[kAccumulators];
  for (int i = 0; i < kAccumulators; ++i) accumulators[i] = _mm512_set1_ps(1.0f + 0.01f * static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(factor), b = _mm512_set1_ps(addend);
  for (std::int64_t r = 0; r < rounds; ++r)
    for (__m512& acc : accumulators) acc = _mm512_fmadd_ps(acc, a, b);
  __m512 total = accumulators[0];
  for (int i = 1; i < kAccumulators; ++i) total = _mm512_add_ps(total, accumulators[i]);
  // Stored and summed by hand: GCC 12 warns about its own _mm512_reduce_add_ps.
  alignas(64) float values[lanes];
  _mm512_store_ps(values, total);
  float sum = 0;
  for (float value : values) sum += value;
  return sum;
}

__attribute__((target("avx2,fma"))) float multiply_add_rounds_avx2(std::int64_t rounds, float factor, float addend) {
  constexpr int lanes = 8;
  __m256 accumulators[kAccumulators];
  for (int i = 0; i < kAccumulators; ++i) accumulators[i] = _mm256_set1_ps(1.0f + 0.01f * static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(factor), b = _mm256_set1_ps(addend);
  for (std::int64_t r = 0; r < rounds; ++r)
    for (__m256& acc : accumulators) acc = _mm256_fmadd_ps(acc, a, b);
  __m256 total = accumulators[0];
  for (int i = 1; i < kAccumulators; ++i) total = _mm256_add_ps(total, accumulators[i]);
  alignas(32) float values[lanes];
  _mm256_store_ps(values, total);
  float sum = 0;
  for (float value : values) sum += value;
  return sum;
}
#endif

float multiply_add_rounds_portable(std::int64_t rounds, float factor, float addend) {
  constexpr int lanes = 8;
  float accumulators[kAccumulators][lanes];
  for (int i = 0; i < kAccumulators; ++i)
    for (int l = 0; l < lanes; ++l) accumulators[i][l] = 1.0f + 0.01f * static_cast<float>(i);
  for (std::int64_t r = 0; r < rounds; ++r)
    for (auto& acc : accumulators)
      for (float& lane : acc) lane = lane * factor + addend;
  float sum = 0;
  for (const auto& acc : accumulators)
    for (float lane : acc) sum += lane;
  return sum;
}

// The loop of one instruction set, with what a report says of it.
struct PeakLoop {
  float (*rounds)(std::int64_t rounds, float factor, float addend);
  int lanes;
  const char* vectors;
};

PeakLoop peak_loop(Isa isa) {
  switch (isa) {
#if defined(__x86_64__)
    case Isa::avx512:
      return {multiply_add_rounds_avx512, 16, "512-bit FMA"};
    case Isa::avx2:
      return {multiply_add_rounds_avx2, 8, "256-bit FMA"};
#endif
    default:
      return {multiply_add_rounds_portable, 8, "8-lane multiply-add (SSE2)"};
  }
}

// Where the benchmarks' results go, so that the compiler must compute them.
volatile float sink = 0;

// The FLOP peak: one thread's speed measured first (a few milliseconds), to size the pool's job
// to about 0.12 s; then 8 pieces per thread, handed out by the pool, timed together.
double measure_gflops(ThreadPool& pool, const PeakLoop& loop) {
  constexpr std::int64_t trial_rounds = 1 << 15;
  const Clock::time_point trial_start = Clock::now();
  sink = sink + loop.rounds(trial_rounds, 0.999f, 0.001f);
  const double round_seconds = std::max(seconds_since(trial_start), 1e-6) / trial_rounds;
  constexpr double piece_seconds = 0.015;
  const auto rounds = std::max<std::int64_t>(1000, static_cast<std::int64_t>(piece_seconds / round_seconds));
  const std::int64_t pieces = 8 * pool.size();
  std::vector<float> results(static_cast<std::size_t>(pieces));
  const Clock::time_point start = Clock::now();
  pool.parallel_for(pieces, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t p = begin; p < end; ++p)
      results[static_cast<std::size_t>(p)] = loop.rounds(rounds, 0.999f, 0.001f);
  });
  const double seconds = seconds_since(start);
  for (float r : results) sink = sink + r;
  const double flops_per_round = 2.0 * kAccumulators * loop.lanes;
  return flops_per_round * static_cast<double>(rounds) * static_cast<double>(pieces) / seconds / 1e9;
}

constexpr std::int64_t kTriadBytes = std::int64_t{64} << 20;  // per array
constexpr int kTriads = 3;

// The bandwidth: the best of a few triads over three 64 MiB arrays, each written first on the
// pool so that their pages are in place (and, on a NUMA machine, near the threads using them).
double measure_gbytes_per_second(ThreadPool& pool) {
  constexpr std::int64_t n = kTriadBytes / static_cast<std::int64_t>(sizeof(float));
  constexpr std::int64_t grain = 1 << 16;
  const std::unique_ptr<float[]> a(new float[n]), b(new float[n]), c(new float[n]);
  pool.parallel_for(n, grain, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      a[i] = 0.0f;
      b[i] = 1.0f;
      c[i] = 2.0f;
    }
  });
  double best = 1e30;
  for (int t = 0; t < kTriads; ++t) {
    const float s = 0.5f + static_cast<float>(t);
    const Clock::time_point start = Clock::now();
    pool.parallel_for(n, grain, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) a[i] = b[i] + s * c[i];
    });
    best = std::min(best, seconds_since(start));
    sink = sink + a[n / 2];
  }
  return 3.0 * static_cast<double>(kTriadBytes) / best / 1e9;
}

MachinePeak measure() {
  ThreadPool& pool = default_thread_pool();
  MachinePeak peak;
  peak.threads = pool.size();
  const PeakLoop loop = peak_loop(active_isa());
  peak.gflops = measure_gflops(pool, loop);
  peak.gbytes_per_second = measure_gbytes_per_second(pool);
  peak.method = fmt::format(
      "f32 {} ({}) on {} independent {}-lane accumulators per thread for the FLOPs (2 per lane and instruction), and "
      "the "
      "best of {} triads a[i] = b[i] + s*c[i] over three {} MiB arrays for the bandwidth (bytes read and written), "
      "both on the {} threads of the engine's pool",
      loop.vectors, isa_name(active_isa()), kAccumulators, loop.lanes, kTriads, kTriadBytes >> 20, peak.threads);
  return peak;
}

}  // namespace

const MachinePeak& machine_peak() {
  static const MachinePeak peak = measure();
  return peak;
}

}  // namespace fovea
