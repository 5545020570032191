// CUDA kernels for gather, scatter_add and where (ops/indexing.h).
//
// gather and scatter_add see x as [outer, n, inner] around the axis and the indices as a flat
// list of m entries. The host launches check_indices first, which records the first bad
// position in the step's verdict without anyone waiting for it; the data kernels then never
// use a bad index to address memory (gather writes 0, scatter_add skips it) and note the index
// at the recorded position, so that the host can raise fovea::Error after the run.
//
// scatter_add adds with atomics, one thread per update element: repeated indices are summed
// in whatever order the threads arrive, so floating results may differ from the CPU's (which
// sums in index order) in the last bits, and from one run to the next. Integer sums wrap
// modulo 2^bits, the same in any order.
#include "fovea/backends/cuda/device.cuh"

namespace fovea::cuda_backend {

namespace {

// first = min { p : ids[p] < 0 or ids[p] >= n, and ids[p] is not the allowed value (if any) }
template <typename I>
__global__ void check_indices_kernel(const I* ids, std::int64_t m, std::int64_t n, bool has_allowed,
                                     std::int64_t allowed, unsigned long long* first) {
  for (std::int64_t p = first_element(); p < m; p += grid_stride()) {
    const auto id = static_cast<std::int64_t>(ids[p]);
    if ((id < 0 || id >= n) && !(has_allowed && id == allowed)) record_first(first, p);
  }
}

// verdict[1] = ids[verdict[0]] when the check before this kernel found a bad index: the index
// the error will name. Done by one thread of the data kernel, which runs after the check.
template <typename I>
__device__ inline void note_bad_index(const I* ids, unsigned long long* verdict) {
  if (first_element() == 0 && verdict[0] != ~0ull)
    verdict[1] = static_cast<unsigned long long>(static_cast<std::int64_t>(ids[verdict[0]]));
}

// One thread: note_bad_index, for check_indices, which has no data kernel of its own.
template <typename I>
__global__ void note_bad_index_kernel(const I* ids, unsigned long long* verdict) {
  note_bad_index(ids, verdict);
}

// y[o, p, j] = x[o, ids[p], j], or 0 where ids[p] is outside [0, n); one thread per element of y.
template <typename Word, typename I>
__global__ void gather_kernel(const Word* x, const I* ids, Word* y, std::int64_t outer, std::int64_t n, std::int64_t m,
                              std::int64_t inner, unsigned long long* verdict) {
  note_bad_index(ids, verdict);
  const std::int64_t total = outer * m * inner;
  for (std::int64_t e = first_element(); e < total; e += grid_stride()) {
    const std::int64_t j = e % inner, row = e / inner;
    const std::int64_t p = row % m, o = row / m;
    const auto id = static_cast<std::int64_t>(ids[p]);
    y[e] = (id >= 0 && id < n) ? x[(o * n + id) * inner + j] : Word(0);
  }
}

// a += b, atomically, wrapping for integers.
__device__ inline void atomic_add(float* a, float b) { atomicAdd(a, b); }
__device__ inline void atomic_add(double* a, double b) { atomicAdd(a, b); }
__device__ inline void atomic_add(std::int32_t* a, std::int32_t b) { atomicAdd(reinterpret_cast<int*>(a), b); }
__device__ inline void atomic_add(std::int64_t* a, std::int64_t b) {
  // Two's complement: adding b's bit pattern as an unsigned number is the wrapping signed sum.
  atomicAdd(reinterpret_cast<unsigned long long*>(a), static_cast<unsigned long long>(b));
}

// y[o, ids[p], j] += u[o, p, j], skipping ids[p] outside [0, n); one thread per element of u.
template <typename T, typename I>
__global__ void scatter_add_kernel(const I* ids, const T* u, T* y, std::int64_t outer, std::int64_t n, std::int64_t m,
                                   std::int64_t inner, unsigned long long* verdict) {
  note_bad_index(ids, verdict);
  const std::int64_t total = outer * m * inner;
  for (std::int64_t e = first_element(); e < total; e += grid_stride()) {
    const std::int64_t j = e % inner, row = e / inner;
    const std::int64_t p = row % m, o = row / m;
    const auto id = static_cast<std::int64_t>(ids[p]);
    if (id >= 0 && id < n) atomic_add(y + (o * n + id) * inner + j, u[e]);
  }
}

// y[i] = cond[i'] ? a[i''] : b[i''']
template <typename Word>
__global__ void where_kernel(const std::uint8_t* cond, const Word* a, const Word* b, Word* y, std::int64_t n,
                             const __grid_constant__ Walk<3> walk) {
  for (std::int64_t i = first_element(); i < n; i += grid_stride()) {
    std::int64_t offset[3];
    walk_offsets(walk, i, offset);
    y[i] = cond[offset[0]] ? a[offset[1]] : b[offset[2]];
  }
}

// Calls f(I{}) for the index type.
template <typename F>
bool with_index(Element index_type, F&& f) {
  switch (index_type) {
    case Element::i32:
      f(std::int32_t{});
      return true;
    case Element::i64:
      f(std::int64_t{});
      return true;
    default:
      return false;
  }
}

// Calls f(Word{}) for an element size.
template <typename F>
bool with_word(int element_size, F&& f) {
  switch (element_size) {
    case 1:
      f(std::uint8_t{});
      return true;
    case 4:
      f(std::uint32_t{});
      return true;
    case 8:
      f(std::uint64_t{});
      return true;
    default:
      return false;
  }
}

}  // namespace

bool launch_check_indices(Element index_type, const void* ids, std::int64_t m, std::int64_t n,
                          unsigned long long* first, void* stream, bool has_allowed, std::int64_t allowed) {
  if (m == 0) return true;
  return with_index(index_type, [&](auto zero) {
    using I = decltype(zero);
    check_indices_kernel<<<blocks_for(m), kThreads, 0, as_stream(stream)>>>(static_cast<const I*>(ids), m, n,
                                                                            has_allowed, allowed, first);
  });
}

bool launch_note_bad_index(Element index_type, const void* ids, std::int64_t m, unsigned long long* verdict,
                           void* stream) {
  if (m == 0) return true;
  return with_index(index_type, [&](auto zero) {
    using I = decltype(zero);
    note_bad_index_kernel<<<1, 1, 0, as_stream(stream)>>>(static_cast<const I*>(ids), verdict);
  });
}

// Both data kernels are launched whenever there are indices, even with nothing to copy or add
// (an empty x, say): their first thread notes the bad index for the error.
bool launch_gather(int element_size, Element index_type, const void* x, const void* ids, void* y, std::int64_t outer,
                   std::int64_t n, std::int64_t m, std::int64_t inner, unsigned long long* verdict, void* stream) {
  if (m == 0) return true;
  const std::int64_t total = outer * m * inner;
  bool known_index = false;
  const bool known_size = with_word(element_size, [&](auto word) {
    using Word = decltype(word);
    known_index = with_index(index_type, [&](auto zero) {
      using I = decltype(zero);
      gather_kernel<<<blocks_for(total > 0 ? total : 1), kThreads, 0, as_stream(stream)>>>(
          static_cast<const Word*>(x), static_cast<const I*>(ids), static_cast<Word*>(y), outer, n, m, inner, verdict);
    });
  });
  return known_size && known_index;
}

bool launch_scatter_add(Element type, Element index_type, const void* ids, const void* u, void* y, std::int64_t outer,
                        std::int64_t n, std::int64_t m, std::int64_t inner, unsigned long long* verdict, void* stream) {
  if (m == 0) return true;
  const std::int64_t total = outer * m * inner;
  auto launch = [&](auto zero) {
    using T = decltype(zero);
    return with_index(index_type, [&](auto index_zero) {
      using I = decltype(index_zero);
      scatter_add_kernel<<<blocks_for(total > 0 ? total : 1), kThreads, 0, as_stream(stream)>>>(
          static_cast<const I*>(ids), static_cast<const T*>(u), static_cast<T*>(y), outer, n, m, inner, verdict);
    });
  };
  switch (type) {
    case Element::f32:
      return launch(float{});
    case Element::f64:
      return launch(double{});
    case Element::i32:
      return launch(std::int32_t{});
    case Element::i64:
      return launch(std::int64_t{});
    default:
      return false;
  }
}

bool launch_where(int element_size, const void* cond, const void* a, const void* b, void* y, std::int64_t n,
                  const Walk<3>& walk, void* stream) {
  if (n == 0) return true;
  return with_word(element_size, [&](auto word) {
    using Word = decltype(word);
    where_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const std::uint8_t*>(cond), static_cast<const Word*>(a), static_cast<const Word*>(b),
        static_cast<Word*>(y), n, walk);
  });
}

}  // namespace fovea::cuda_backend
