// One vector register of T and the few operations that the CPU kernels' register-blocked
// products need (gemm_kernels.cpp, attention_kernels.cpp), for the instruction set the including
// file is compiled for (isa_namespace.h): AVX-512 (32 registers of 16 floats), AVX2 with FMA (16
// of 8) or SSE2 (16 of 4, with no fused multiply-add: fma multiplies, rounds, then adds).
//
// kHasFma says whether fma is one rounding, the same as std::fma: kernels that promise bitwise
// equal results between tile layouts rely on it.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#include "fovea/backends/cpu/isa_namespace.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

template <typename T>
struct Vec;

#if defined(__AVX512F__)
constexpr int kVectorRegisters = 32;
constexpr bool kHasFma = true;
template <>
struct Vec<float> {
  using R = __m512;
  static constexpr int width = 16;
  static R zero() { return _mm512_setzero_ps(); }
  static R load(const float* p) { return _mm512_load_ps(p); }
  static R loadu(const float* p) { return _mm512_loadu_ps(p); }
  static R broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static void store(float* p, R v) { _mm512_storeu_ps(p, v); }
};
template <>
struct Vec<double> {
  using R = __m512d;
  static constexpr int width = 8;
  static R zero() { return _mm512_setzero_pd(); }
  static R load(const double* p) { return _mm512_load_pd(p); }
  static R loadu(const double* p) { return _mm512_loadu_pd(p); }
  static R broadcast(const double* p) { return _mm512_set1_pd(*p); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
  static R add(R a, R b) { return _mm512_add_pd(a, b); }
  static R mul(R a, R b) { return _mm512_mul_pd(a, b); }
  static void store(double* p, R v) { _mm512_storeu_pd(p, v); }
};
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kVectorRegisters = 16;
constexpr bool kHasFma = true;
template <>
struct Vec<float> {
  using R = __m256;
  static constexpr int width = 8;
  static R zero() { return _mm256_setzero_ps(); }
  static R load(const float* p) { return _mm256_load_ps(p); }
  static R loadu(const float* p) { return _mm256_loadu_ps(p); }
  static R broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static void store(float* p, R v) { _mm256_storeu_ps(p, v); }
};
template <>
struct Vec<double> {
  using R = __m256d;
  static constexpr int width = 4;
  static R zero() { return _mm256_setzero_pd(); }
  static R load(const double* p) { return _mm256_load_pd(p); }
  static R loadu(const double* p) { return _mm256_loadu_pd(p); }
  static R broadcast(const double* p) { return _mm256_broadcast_sd(p); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
  static R add(R a, R b) { return _mm256_add_pd(a, b); }
  static R mul(R a, R b) { return _mm256_mul_pd(a, b); }
  static void store(double* p, R v) { _mm256_storeu_pd(p, v); }
};
#else
constexpr int kVectorRegisters = 16;
constexpr bool kHasFma = false;
template <>
struct Vec<float> {
  using R = __m128;
  static constexpr int width = 4;
  static R zero() { return _mm_setzero_ps(); }
  static R load(const float* p) { return _mm_load_ps(p); }
  static R loadu(const float* p) { return _mm_loadu_ps(p); }
  static R broadcast(const float* p) { return _mm_set1_ps(*p); }
  static R fma(R a, R b, R c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
  static R add(R a, R b) { return _mm_add_ps(a, b); }
  static R mul(R a, R b) { return _mm_mul_ps(a, b); }
  static void store(float* p, R v) { _mm_storeu_ps(p, v); }
};
template <>
struct Vec<double> {
  using R = __m128d;
  static constexpr int width = 2;
  static R zero() { return _mm_setzero_pd(); }
  static R load(const double* p) { return _mm_load_pd(p); }
  static R loadu(const double* p) { return _mm_loadu_pd(p); }
  static R broadcast(const double* p) { return _mm_set1_pd(*p); }
  static R fma(R a, R b, R c) { return _mm_add_pd(_mm_mul_pd(a, b), c); }
  static R add(R a, R b) { return _mm_add_pd(a, b); }
  static R mul(R a, R b) { return _mm_mul_pd(a, b); }
  static void store(double* p, R v) { _mm_storeu_pd(p, v); }
};
#endif

// dst[c·dst_stride + r] = src[r·src_stride + c] for r < rows, c < cols: a transpose, by square
// blocks of SSE registers (4 x 4 f32, 2 x 2 f64; every x86-64 has SSE2) where they fit, then
// element by element. Element by element it is a load and a store each; by blocks, a quarter (f32)
// of the loads and stores and a few shuffles. The gemm packs row-major a's panels with it, the
// attention kernels their transposed blocks.
inline void transpose_sse_block(const float* src, std::int64_t src_stride, float* dst, std::int64_t dst_stride) {
  __m128 r0 = _mm_loadu_ps(src), r1 = _mm_loadu_ps(src + src_stride), r2 = _mm_loadu_ps(src + 2 * src_stride),
         r3 = _mm_loadu_ps(src + 3 * src_stride);
  _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
  _mm_storeu_ps(dst, r0);
  _mm_storeu_ps(dst + dst_stride, r1);
  _mm_storeu_ps(dst + 2 * dst_stride, r2);
  _mm_storeu_ps(dst + 3 * dst_stride, r3);
}
inline void transpose_sse_block(const double* src, std::int64_t src_stride, double* dst, std::int64_t dst_stride) {
  const __m128d r0 = _mm_loadu_pd(src), r1 = _mm_loadu_pd(src + src_stride);
  _mm_storeu_pd(dst, _mm_unpacklo_pd(r0, r1));
  _mm_storeu_pd(dst + dst_stride, _mm_unpackhi_pd(r0, r1));
}

template <typename T>
void transpose(const T* src, std::int64_t src_stride, std::int64_t rows, std::int64_t cols, T* dst,
               std::int64_t dst_stride) {
  constexpr std::int64_t block = 16 / sizeof(T);
  std::int64_t r = 0;
  for (; r + block <= rows; r += block) {
    std::int64_t c = 0;
    for (; c + block <= cols; c += block)
      transpose_sse_block(src + r * src_stride + c, src_stride, dst + c * dst_stride + r, dst_stride);
    for (std::int64_t i = r; i < r + block; ++i)
      for (std::int64_t j = c; j < cols; ++j) dst[j * dst_stride + i] = src[i * src_stride + j];
  }
  for (; r < rows; ++r)
    for (std::int64_t j = 0; j < cols; ++j) dst[j * dst_stride + r] = src[r * src_stride + j];
}

// Memory aligned to a cache line, for scratch tiles that vector loads read: a 64-byte load from
// an address that straddles two lines costs two loads, and std::vector's memory is aligned to 16.
template <typename T>
struct CacheAligned {
  using value_type = T;
  static constexpr std::align_val_t alignment{64};
  CacheAligned() = default;
  template <typename U>
  CacheAligned(const CacheAligned<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), alignment)); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, alignment); }
  friend bool operator==(const CacheAligned&, const CacheAligned&) { return true; }
};
template <typename T>
using AlignedVector = std::vector<T, CacheAligned<T>>;

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE
