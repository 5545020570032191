// CUDA kernels for the reductions over axes:
//
//   reduce_sum:   y[k] = Σ_r x[k, r]       (f32 and f64 accumulated in f64; integers wrap around)
//   reduce_max:   y[k] = max_r x[k, r]     (NaN if any x[k, r] is NaN)
//   reduce_min:   y[k] = min_r x[k, r]     (NaN if any x[k, r] is NaN)
//   reduce_prod:  y[k] = Π_r x[k, r]       (f32 and f64 accumulated in f64; integers wrap around)
//
// As on the CPU, the host merges axes so that most reductions are x [outer, count, inner]:
//
//   rows     (inner == 1): a block per output, its threads striding along the row, then a
//            tree over the block's threads in shared memory;
//   columns  (inner > 1):  a block per (o, 32 consecutive i): 32 x 8 threads, thread (i, t)
//            takes r = t, t + 8, ...; reads of one warp are 32 consecutive elements.
//
// A long reduction with few outputs would leave most of the GPU idle, so its count is cut into
// chunks: a first launch writes one partial result per (o, chunk, i) into a workspace, and a
// second reduces the partials over chunks. Any other set of axes takes a general kernel: one
// thread per output, walking its reduced elements with strides.
//
// Every order of combination depends only on the shape (no atomics), so results are the same
// at every run. They differ from the CPU's by summation order only: f32 sums are accumulated
// in f64 on both, so they agree to about 1e-7 relative.
//
// The ops along one axis, argmax, argmin and cumsum, are at the end of the file: one thread per
// (o, i) of x [outer, count, inner], walking r; a warp's reads are consecutive i.
#include <limits>
#include <type_traits>

#include "fovea/backends/cuda/device.cuh"

namespace fovea::cuda_backend {

namespace {

// Σ with identity 0. Floating sums accumulate in double; integer sums in unsigned 64-bit
// integers, whose wrap-around is defined, stored back modulo 2^bits (as on the CPU).
template <typename T>
struct SumOp {
  using Acc = std::conditional_t<std::is_floating_point_v<T>, double, unsigned long long>;
  __device__ static Acc identity() { return 0; }
  __device__ static Acc combine(Acc a, Acc b) { return a + b; }
};

// max with identity -∞ (the lowest integer); a NaN b wins and then stays (`v > NaN` is false).
template <typename T>
struct MaxOp {
  using Acc = T;
  __device__ static Acc identity() {
    if constexpr (std::is_floating_point_v<T>)
      return -std::numeric_limits<T>::infinity();
    else
      return std::numeric_limits<T>::lowest();
  }
  __device__ static Acc combine(Acc a, Acc b) {
    if constexpr (std::is_floating_point_v<T>)
      return (b > a || b != b) ? b : a;
    else
      return b > a ? b : a;
  }
};

// min with identity +∞ (the largest integer); a NaN b wins and then stays (`v < NaN` is false).
template <typename T>
struct MinOp {
  using Acc = T;
  __device__ static Acc identity() {
    if constexpr (std::is_floating_point_v<T>)
      return std::numeric_limits<T>::infinity();
    else
      return std::numeric_limits<T>::max();
  }
  __device__ static Acc combine(Acc a, Acc b) {
    if constexpr (std::is_floating_point_v<T>)
      return (b < a || b != b) ? b : a;
    else
      return b < a ? b : a;
  }
};

// Π with identity 1. Floating products accumulate in double; integer ones in unsigned 64-bit
// integers, stored back modulo 2^bits: the wrapping product (as on the CPU).
template <typename T>
struct ProdOp {
  using Acc = std::conditional_t<std::is_floating_point_v<T>, double, unsigned long long>;
  __device__ static Acc identity() { return 1; }
  __device__ static Acc combine(Acc a, Acc b) { return a * b; }
};

// Calls f(Op{}) with the functor of `op` for element type T.
template <typename T, typename F>
void with_reduce_op(ReduceOp op, F&& f) {
  switch (op) {
    case ReduceOp::sum:
      return f(SumOp<T>{});
    case ReduceOp::max:
      return f(MaxOp<T>{});
    case ReduceOp::min:
      return f(MinOp<T>{});
    case ReduceOp::prod:
      return f(ProdOp<T>{});
  }
}

// Threads of a column block: 32 consecutive outputs by kColumnRows strided reducers.
constexpr int kColumnRows = 8;
// Elements a chunk of a split reduction should hold at least, and the number of blocks a
// split aims to keep busy.
constexpr std::int64_t kRowChunk = 8192;
constexpr std::int64_t kColumnChunk = 512;
constexpr std::int64_t kTargetBlocks = 1024;

__host__ __device__ inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// y[o, c] = op over r in chunk c of x[o, r]  (x [outer, count], y [outer, chunks]).
// blockDim.x is a power of two, at most kThreads.
template <typename Op, typename In, typename Out>
__global__ void reduce_rows_kernel(const In* x, Out* y, std::int64_t outer, std::int64_t count, std::int64_t chunks,
                                   std::int64_t chunk) {
  using Acc = typename Op::Acc;
  __shared__ Acc partial[kThreads];
  const int t = static_cast<int>(threadIdx.x);
  for (std::int64_t task = blockIdx.x; task < outer * chunks; task += gridDim.x) {
    const std::int64_t o = task / chunks, c = task % chunks;
    const std::int64_t begin = c * chunk, end = begin + chunk < count ? begin + chunk : count;
    const In* row = x + o * count;
    Acc acc = Op::identity();
    for (std::int64_t r = begin + t; r < end; r += blockDim.x) acc = Op::combine(acc, static_cast<Acc>(row[r]));
    partial[t] = acc;
    __syncthreads();
    for (int width = static_cast<int>(blockDim.x) / 2; width > 0; width /= 2) {
      if (t < width) partial[t] = Op::combine(partial[t], partial[t + width]);
      __syncthreads();
    }
    if (t == 0) y[task] = static_cast<Out>(partial[0]);
    __syncthreads();  // partial is reused by the next task
  }
}

// y[o, c, i] = op over r in chunk c of x[o, r, i]  (x [outer, count, inner], y [outer, chunks,
// inner]). Blocks are 32 x kColumnRows threads.
template <typename Op, typename In, typename Out>
__global__ void reduce_columns_kernel(const In* x, Out* y, std::int64_t outer, std::int64_t count, std::int64_t inner,
                                      std::int64_t chunks, std::int64_t chunk) {
  using Acc = typename Op::Acc;
  __shared__ Acc partial[kColumnRows][32];
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const std::int64_t column_blocks = ceil_div(inner, 32);
  for (std::int64_t task = blockIdx.x; task < outer * chunks * column_blocks; task += gridDim.x) {
    const std::int64_t ib = task % column_blocks, rest = task / column_blocks;
    const std::int64_t c = rest % chunks, o = rest / chunks;
    const std::int64_t i = ib * 32 + tx;
    const std::int64_t begin = c * chunk, end = begin + chunk < count ? begin + chunk : count;
    Acc acc = Op::identity();
    if (i < inner)
      for (std::int64_t r = begin + ty; r < end; r += kColumnRows)
        acc = Op::combine(acc, static_cast<Acc>(x[(o * count + r) * inner + i]));
    partial[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && i < inner) {
      for (int k = 1; k < kColumnRows; ++k) acc = Op::combine(acc, partial[k][tx]);
      y[(o * chunks + c) * inner + i] = static_cast<Out>(acc);
    }
    __syncthreads();
  }
}

// y[k] = op over r < count of x[kept(k) + reduced(r)].
template <typename Op, typename T>
__global__ void reduce_general_kernel(const T* x, T* y, std::int64_t outputs, const __grid_constant__ Walk<1> kept,
                                      std::int64_t count, const __grid_constant__ Walk<1> reduced) {
  using Acc = typename Op::Acc;
  for (std::int64_t k = first_element(); k < outputs; k += grid_stride()) {
    std::int64_t base[1], offset[1];
    walk_offsets(kept, k, base);
    Acc acc = Op::identity();
    for (std::int64_t r = 0; r < count; ++r) {
      walk_offsets(reduced, r, offset);
      acc = Op::combine(acc, static_cast<Acc>(x[base[0] + offset[0]]));
    }
    y[k] = static_cast<T>(acc);
  }
}

// How a contiguous reduction is cut: `chunks` pieces of `chunk` reduced elements each.
struct Split {
  std::int64_t chunks = 1, chunk = 0;
};

Split split_for(std::int64_t outer, std::int64_t count, std::int64_t inner) {
  Split s;
  const std::int64_t blocks = inner == 1 ? outer : outer * ceil_div(inner, 32);
  const std::int64_t min_chunk = inner == 1 ? kRowChunk : kColumnChunk;
  if (count > 2 * min_chunk && blocks < kTargetBlocks) {
    const std::int64_t by_size = ceil_div(count, min_chunk);
    const std::int64_t by_blocks = ceil_div(kTargetBlocks, blocks);
    s.chunks = by_size < by_blocks ? by_size : by_blocks;
  }
  s.chunk = ceil_div(count, s.chunks);
  return s;
}

// The threads of a row block: the chunk length rounded up to a power of two, in [32, kThreads].
int row_threads(std::int64_t chunk) {
  int threads = 32;
  while (threads < kThreads && threads < chunk) threads *= 2;
  return threads;
}

// One pass over [outer, count, inner] with `chunks` chunks of `chunk`, from In to Out.
template <typename Op, typename In, typename Out>
void reduce_pass(const In* x, Out* y, std::int64_t outer, std::int64_t count, std::int64_t inner, Split s,
                 cudaStream_t stream) {
  if (inner == 1) {
    reduce_rows_kernel<Op, In, Out>
        <<<grid_for(outer * s.chunks), row_threads(s.chunk), 0, stream>>>(x, y, outer, count, s.chunks, s.chunk);
  } else {
    const dim3 threads(32, kColumnRows);
    reduce_columns_kernel<Op, In, Out><<<grid_for(outer * s.chunks * ceil_div(inner, 32)), threads, 0, stream>>>(
        x, y, outer, count, inner, s.chunks, s.chunk);
  }
}

template <typename Op, typename T>
void reduce_contiguous(const T* x, T* y, std::int64_t outer, std::int64_t count, std::int64_t inner, void* workspace,
                       cudaStream_t stream) {
  using Acc = typename Op::Acc;
  const Split s = split_for(outer, count, inner);
  if (s.chunks == 1) return reduce_pass<Op, T, T>(x, y, outer, count, inner, s, stream);
  Acc* partial = static_cast<Acc*>(workspace);  // [outer, chunks, inner]
  reduce_pass<Op, T, Acc>(x, partial, outer, count, inner, s, stream);
  reduce_pass<Op, Acc, T>(partial, y, outer, s.chunks, inner, Split{1, s.chunks}, stream);
}

// Calls f(T{}) for the numeric element types.
template <typename F>
bool numeric(Element t, F&& f) {
  switch (t) {
    case Element::f32:
      f(float{});
      return true;
    case Element::f64:
      f(double{});
      return true;
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

}  // namespace

std::int64_t reduce_workspace_bytes(ReduceOp op, Element type, std::int64_t outer, std::int64_t count,
                                    std::int64_t inner) {
  const Split s = split_for(outer, count, inner);
  if (s.chunks == 1) return 0;
  // Sums and products accumulate in 8-byte types; a max or a min in the element type.
  const bool wide = op == ReduceOp::sum || op == ReduceOp::prod;
  const std::int64_t acc_bytes = wide || type == Element::f64 || type == Element::i64 ? 8 : 4;
  return outer * s.chunks * inner * acc_bytes;
}

bool launch_reduce_contiguous(ReduceOp op, Element type, const void* x, void* y, std::int64_t outer, std::int64_t count,
                              std::int64_t inner, void* workspace, void* stream) {
  if (outer * inner == 0) return true;
  return numeric(type, [&](auto zero) {
    using T = decltype(zero);
    with_reduce_op<T>(op, [&](auto functor) {
      reduce_contiguous<decltype(functor)>(static_cast<const T*>(x), static_cast<T*>(y), outer, count, inner, workspace,
                                           as_stream(stream));
    });
  });
}

bool launch_reduce_general(ReduceOp op, Element type, const void* x, void* y, std::int64_t outputs, const Walk<1>& kept,
                           std::int64_t count, const Walk<1>& reduced, void* stream) {
  if (outputs == 0) return true;
  return numeric(type, [&](auto zero) {
    using T = decltype(zero);
    with_reduce_op<T>(op, [&](auto functor) {
      reduce_general_kernel<decltype(functor), T><<<blocks_for(outputs), kThreads, 0, as_stream(stream)>>>(
          static_cast<const T*>(x), static_cast<T*>(y), outputs, kept, count, reduced);
    });
  });
}

namespace {

// Whether v takes the place of `best` as the running maximum (Min: minimum). A NaN counts as
// beyond every number and equal to another NaN; an equal v wins only with `last` (as on the CPU).
template <bool Min, typename T>
__device__ bool replaces(T v, T best, bool last) {
  if constexpr (std::is_floating_point_v<T>) {
    if (best != best) return last && v != v;
    if (v != v) return true;
  }
  return (Min ? v < best : v > best) || (last && v == best);
}

// y[o, i] = the r of the largest (Min: smallest) x[o, r, i]; count > 0.
template <bool Min, typename T>
__global__ void arg_reduce_kernel(const T* x, std::int64_t* y, std::int64_t outer, std::int64_t count,
                                  std::int64_t inner, bool last) {
  for (std::int64_t k = first_element(); k < outer * inner; k += grid_stride()) {
    const T* column = x + (k / inner) * count * inner + k % inner;
    T best = column[0];
    std::int64_t index = 0;
    for (std::int64_t r = 1; r < count; ++r) {
      const T v = column[r * inner];
      if (replaces<Min>(v, best, last)) best = v, index = r;
    }
    y[k] = index;
  }
}

// y[o, r, i] = Σ x[o, r', i] over r' ≤ r (exclusive: r' < r; reverse: r' ≥ r, or r' > r),
// accumulated as reduce_sum accumulates (SumOp).
template <typename T>
__global__ void cumsum_kernel(const T* x, T* y, std::int64_t outer, std::int64_t count, std::int64_t inner,
                              bool exclusive, bool reverse) {
  using Acc = typename SumOp<T>::Acc;
  const std::int64_t step = reverse ? -inner : inner;
  for (std::int64_t k = first_element(); k < outer * inner; k += grid_stride()) {
    const std::int64_t base = (k / inner) * count * inner + k % inner + (reverse ? (count - 1) * inner : 0);
    Acc acc = SumOp<T>::identity();
    for (std::int64_t r = 0; r < count; ++r) {
      const std::int64_t at = base + r * step;
      const Acc v = static_cast<Acc>(x[at]);
      if (!exclusive) acc += v;
      y[at] = static_cast<T>(acc);
      if (exclusive) acc += v;
    }
  }
}

}  // namespace

bool launch_arg_reduce(bool min, Element type, const void* x, std::int64_t* y, std::int64_t outer, std::int64_t count,
                       std::int64_t inner, bool select_last_index, void* stream) {
  const std::int64_t outputs = outer * inner;
  if (outputs == 0) return true;
  return numeric(type, [&](auto zero) {
    using T = decltype(zero);
    const auto* in = static_cast<const T*>(x);
    if (min)
      arg_reduce_kernel<true, T>
          <<<blocks_for(outputs), kThreads, 0, as_stream(stream)>>>(in, y, outer, count, inner, select_last_index);
    else
      arg_reduce_kernel<false, T>
          <<<blocks_for(outputs), kThreads, 0, as_stream(stream)>>>(in, y, outer, count, inner, select_last_index);
  });
}

bool launch_cumsum(Element type, const void* x, void* y, std::int64_t outer, std::int64_t count, std::int64_t inner,
                   bool exclusive, bool reverse, void* stream) {
  const std::int64_t columns = outer * inner;
  if (columns == 0 || count == 0) return true;
  return numeric(type, [&](auto zero) {
    using T = decltype(zero);
    cumsum_kernel<T><<<blocks_for(columns), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(x), static_cast<T*>(y), outer, count, inner, exclusive, reverse);
  });
}

}  // namespace fovea::cuda_backend
