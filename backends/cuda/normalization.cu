// CUDA kernels for the fused normalizations (ops/normalization.h): softmax, log-softmax, layer
// norm and softmax cross-entropy, forward and backward, f32 and f64. The math is the CPU
// kernels' (backends/cpu/normalization_kernels.cpp); the host side is normalization_kernels.cpp.
//
// One block per row (rows loop with a grid stride, so any grid covers them). A block has as many
// warps as the row needs, up to kMaxWarps: thread t handles elements t, t + blockDim, ... of the
// row. Row statistics are combined first within each warp by shuffles, then across the warps
// through shared memory, in a fixed order: the result depends on the shape only.
//
//   softmax, log-softmax   an online max and Σ exp per thread (m' = max(m, x),
//                          s' = e^(m-m')·s + e^(x-m')), combined pairwise; then y is written
//   layer norm             Σ (x - k) and Σ (x - k)² with k = x[0] (see the CPU kernel); then y
//   cross-entropy          the softmax statistics and Σ x; one thread writes loss and lse
//   backward ops           one row sum (Σ dy·y, Σ dy, or Σ g and Σ g·x̂), then dx is written;
//                          layer norm's dγ and dβ by a second kernel, one thread per column
//                          summing over the rows in order
//
// Sums are accumulated in the element type (f32 in f32: the GPU's f64 rate is low on most
// parts), so f32 results agree with the CPU's (which sums in f64) to rounding, not bit for bit.
#include <limits>

#include "fovea/backends/cuda/device.cuh"

namespace fovea::cuda_backend {

namespace {

constexpr int kWarp = 32;
constexpr unsigned kAllLanes = 0xffffffffu;
constexpr int kMaxWarps = 8;

template <typename T>
__device__ inline T infinity() {
  return std::numeric_limits<T>::infinity();
}
template <typename T>
__device__ inline T not_a_number() {
  return std::numeric_limits<T>::quiet_NaN();
}

__device__ inline float exp_of(float x) { return expf(x); }
__device__ inline double exp_of(double x) { return exp(x); }
__device__ inline float log_of(float x) { return logf(x); }
__device__ inline double log_of(double x) { return log(x); }
__device__ inline float rsqrt_of(float x) { return rsqrtf(x); }
__device__ inline double rsqrt_of(double x) { return rsqrt(x); }

// --- Online softmax statistics -----------------------------------------------------------------

// m = max, s = Σ exp(x - m) over the elements seen so far.
template <typename T>
struct Stats {
  T m, s;
};

// Adds one element. -∞ adds nothing (e^-∞ = 0, and -∞ - -∞ would be NaN); NaN makes s NaN.
template <typename T>
__device__ inline void add(Stats<T>& a, T x) {
  if (x > a.m) {
    a.s = a.s * exp_of(a.m - x) + T(1);
    a.m = x;
  } else if (!(x == -infinity<T>())) {
    a.s += exp_of(x - a.m);
  }
}

// The statistics of two disjoint sets of elements, merged.
template <typename T>
__device__ inline Stats<T> merge(Stats<T> a, Stats<T> b) {
  const T m = a.m > b.m ? a.m : b.m;
  if (m == -infinity<T>()) return {m, a.s + b.s};
  return {m, a.s * exp_of(a.m - m) + b.s * exp_of(b.m - m)};
}

// --- Block reductions ----------------------------------------------------------------------------

template <typename T>
__device__ inline T warp_sum(T v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kAllLanes, v, offset);
  return v;
}

template <typename T>
__device__ inline Stats<T> warp_merge(Stats<T> v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const Stats<T> other{__shfl_xor_sync(kAllLanes, v.m, offset), __shfl_xor_sync(kAllLanes, v.s, offset)};
    v = merge(v, other);
  }
  return v;
}

// Σ over the block's threads of `v`, returned to every thread; `scratch` holds kMaxWarps values.
// Warps' sums are added in warp order. Ends with a barrier, so scratch may be reused after it.
template <typename T>
__device__ inline T block_sum(T v, T* scratch) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp, warp = static_cast<int>(threadIdx.x) / kWarp;
  const int warps = static_cast<int>(blockDim.x) / kWarp;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < warps; ++w) total += scratch[w];
  __syncthreads();
  return total;
}

template <typename T>
__device__ inline Stats<T> block_merge(Stats<T> v, T* scratch_m, T* scratch_s) {
  const int lane = static_cast<int>(threadIdx.x) % kWarp, warp = static_cast<int>(threadIdx.x) / kWarp;
  const int warps = static_cast<int>(blockDim.x) / kWarp;
  v = warp_merge(v);
  if (lane == 0) {
    scratch_m[warp] = v.m;
    scratch_s[warp] = v.s;
  }
  __syncthreads();
  Stats<T> total{-infinity<T>(), T(0)};
  for (int w = 0; w < warps; ++w) total = merge(total, Stats<T>{scratch_m[w], scratch_s[w]});
  __syncthreads();
  return total;
}

// The softmax statistics of row x[0, n), for every thread of the block.
template <typename T>
__device__ inline Stats<T> row_stats(const T* x, std::int64_t n, T* scratch_m, T* scratch_s) {
  Stats<T> own{-infinity<T>(), T(0)};
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) add(own, x[i]);
  return block_merge(own, scratch_m, scratch_s);
}

// --- Kernels ---------------------------------------------------------------------------------------

// y[i] = exp(x[i] - m)/s (softmax) or (x[i] - m) - log s (log-softmax)
template <typename T>
__global__ void softmax_kernel(bool log, const T* x, T* y, std::int64_t rows, std::int64_t n) {
  __shared__ T scratch_m[kMaxWarps], scratch_s[kMaxWarps];
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    const Stats<T> st = row_stats(xr, n, scratch_m, scratch_s);
    if (log) {
      const T log_sum = log_of(st.s);
      for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = (xr[i] - st.m) - log_sum;
    } else {
      // A row of only -∞ (m = -∞, s = 0) has softmax 0, as nn::softmax defines it.
      const bool empty_row = st.s == T(0);
      const T inverse = empty_row ? T(0) : T(1) / st.s;
      for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x)
        yr[i] = empty_row ? T(0) : exp_of(xr[i] - st.m) * inverse;
    }
  }
}

// softmax:      dx[i] = y[i]·(dy[i] - Σ_j dy[j]·y[j])
// log-softmax:  dx[i] = dy[i] - exp(y[i])·Σ_j dy[j]
template <typename T>
__global__ void softmax_backward_kernel(bool log, const T* y, const T* dy, T* dx, std::int64_t rows, std::int64_t n) {
  __shared__ T scratch[kMaxWarps];
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *yr = y + r * n, *dyr = dy + r * n;
    T* dxr = dx + r * n;
    T own = 0;
    for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) own += log ? dyr[i] : dyr[i] * yr[i];
    const T total = block_sum(own, scratch);
    for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x)
      dxr[i] = log ? dyr[i] - exp_of(yr[i]) * total : yr[i] * (dyr[i] - total);
  }
}

// μ = k + a/n, σ² = b/n - (a/n)² with a = Σ (x - k), b = Σ (x - k)², k = x[0];
// y[i] = (x[i] - μ)·r·γ[i] + β[i], r = 1/√(σ² + eps)
template <typename T>
__global__ void layer_norm_kernel(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, std::int64_t rows,
                                  std::int64_t n, T eps) {
  __shared__ T scratch[kMaxWarps];
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    if (n == 0) {
      if (threadIdx.x == 0) mean[r] = rstd[r] = not_a_number<T>();
      continue;
    }
    const T k = xr[0];
    T own_a = 0, own_b = 0;
    for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const T d = xr[i] - k;
      own_a += d;
      own_b += d * d;
    }
    const T a = block_sum(own_a, scratch) / static_cast<T>(n);
    const T b = block_sum(own_b, scratch) / static_cast<T>(n);
    const T variance = b - a * a > T(0) ? b - a * a : T(0);
    const T m = k + a, s = rsqrt_of(variance + eps);
    if (threadIdx.x == 0) {
      mean[r] = m;
      rstd[r] = s;
    }
    for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = (xr[i] - m) * s * gamma[i] + beta[i];
  }
}

// dx[i] = r·(g[i] - mean(g) - x̂[i]·mean(g ⊙ x̂)),  g = dy ⊙ γ,  x̂ = (x - μ)·r
template <typename T>
__global__ void layer_norm_input_grad_kernel(const T* dy, const T* x, const T* gamma, const T* mean, const T* rstd,
                                             T* dx, std::int64_t rows, std::int64_t n) {
  __shared__ T scratch[kMaxWarps];
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *dyr = dy + r * n, *xr = x + r * n;
    T* dxr = dx + r * n;
    const T m = mean[r], s = rstd[r];
    T own_g = 0, own_gx = 0;
    for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const T g = dyr[i] * gamma[i];
      own_g += g;
      own_gx += g * (xr[i] - m) * s;
    }
    const T mean_g = block_sum(own_g, scratch) / static_cast<T>(n);
    const T mean_gx = block_sum(own_gx, scratch) / static_cast<T>(n);
    for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x)
      dxr[i] = s * (dyr[i] * gamma[i] - mean_g - (xr[i] - m) * s * mean_gx);
  }
}

// dγ[j] = Σ_rows dy[j]·x̂[j],  dβ[j] = Σ_rows dy[j]: one thread per column, rows in order.
template <typename T>
__global__ void layer_norm_parameter_grad_kernel(const T* dy, const T* x, const T* mean, const T* rstd, T* dgamma,
                                                 T* dbeta, std::int64_t rows, std::int64_t n) {
  for (std::int64_t j = first_element(); j < n; j += grid_stride()) {
    T sum_gamma = 0, sum_beta = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      const T d = dy[r * n + j];
      sum_gamma += d * (x[r * n + j] - mean[r]) * rstd[r];
      sum_beta += d;
    }
    dgamma[j] = sum_gamma;
    dbeta[j] = sum_beta;
  }
}

template <typename Index>
__device__ inline std::int64_t target_class(const Index* targets, std::int64_t r, std::int64_t classes) {
  const std::int64_t t = static_cast<std::int64_t>(targets[r]);
  return t >= 0 && t < classes ? t : -1;
}

// loss = (1-ε)·(lse - x[t]) + ε·(lse - mean_c x[c]) for 0 <= t < C; ε·(lse - mean_c x[c]) otherwise
template <typename T, typename Index>
__global__ void cross_entropy_kernel(const T* x, const Index* targets, T* loss, T* lse, std::int64_t rows,
                                     std::int64_t classes, T smoothing) {
  __shared__ T scratch_m[kMaxWarps], scratch_s[kMaxWarps];
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * classes;
    const Stats<T> st = row_stats(xr, classes, scratch_m, scratch_s);
    T own = 0;
    for (std::int64_t c = threadIdx.x; c < classes; c += blockDim.x) own += xr[c];
    const T mean = block_sum(own, scratch_m) / static_cast<T>(classes);
    if (threadIdx.x == 0) {
      const T row_lse = st.m + log_of(st.s);
      const std::int64_t t = target_class(targets, r, classes);
      T value = t >= 0 ? (T(1) - smoothing) * (row_lse - xr[t]) : T(0);
      if (smoothing > T(0)) value += smoothing * (row_lse - mean);
      loss[r] = value;
      lse[r] = row_lse;
    }
  }
}

// dx[c] = ḡ·(k·exp(x[c] - lse) - (1-ε)·[c = t] - ε/C),  k = 1 when 0 <= t < C, else ε
template <typename T, typename Index>
__global__ void cross_entropy_backward_kernel(const T* x, const Index* targets, const T* lse, const T* dloss, T* dx,
                                              std::int64_t rows, std::int64_t classes, T smoothing) {
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * classes;
    T* dxr = dx + r * classes;
    const std::int64_t t = target_class(targets, r, classes);
    const T g = dloss[r], shift = lse[r], weight = t >= 0 ? T(1) : smoothing;
    const T uniform = smoothing / static_cast<T>(classes);
    for (std::int64_t c = threadIdx.x; c < classes; c += blockDim.x) {
      T value = weight * exp_of(xr[c] - shift) - uniform;
      if (c == t) value -= T(1) - smoothing;
      dxr[c] = g * value;
    }
  }
}

// Threads per block for rows of n elements: whole warps, enough for one element each, at most
// kMaxWarps warps.
// --- Batch norm (ops/batch_norm.h) ------------------------------------------------------------
// x as [N, C, inner]; one block per channel (grid stride over channels), its threads striding
// over the channel's N·inner values: element e is x[(e / inner · C + c)·inner + e % inner].

template <typename T>
__device__ inline T channel_value(const T* x, std::int64_t c, std::int64_t e, std::int64_t channels,
                                  std::int64_t inner) {
  return x[((e / inner) * channels + c) * inner + e % inner];
}

// μ and σ² in two passes (the sum, then the centred squares), then y = x·scale + shift.
template <typename T>
__global__ void batch_norm_kernel(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* variance,
                                  std::int64_t batch, std::int64_t channels, std::int64_t inner, T eps) {
  __shared__ T scratch[kMaxWarps];
  const std::int64_t count = batch * inner;
  for (std::int64_t c = blockIdx.x; c < channels; c += gridDim.x) {
    T own = 0;
    for (std::int64_t e = threadIdx.x; e < count; e += blockDim.x) own += channel_value(x, c, e, channels, inner);
    const T mu = block_sum(own, scratch) / static_cast<T>(count);
    T own_squares = 0;
    for (std::int64_t e = threadIdx.x; e < count; e += blockDim.x) {
      const T d = channel_value(x, c, e, channels, inner) - mu;
      own_squares += d * d;
    }
    const T var = block_sum(own_squares, scratch) / static_cast<T>(count);
    if (threadIdx.x == 0) {
      mean[c] = mu;
      variance[c] = var;
    }
    const T scale = gamma[c] * rsqrt_of(var + eps), shift = beta[c] - mu * scale;
    for (std::int64_t e = threadIdx.x; e < count; e += blockDim.x) {
      const std::int64_t at = ((e / inner) * channels + c) * inner + e % inner;
      y[at] = x[at] * scale + shift;
    }
  }
}

// dβ = Σ ḡ, dγ = Σ ḡ·x̂, dx = γ·r·(ḡ - dβ/n - x̂·dγ/n)
template <typename T>
__global__ void batch_norm_backward_kernel(const T* dy, const T* x, const T* gamma, const T* mean, const T* variance,
                                           T* dx, T* dgamma, T* dbeta, std::int64_t batch, std::int64_t channels,
                                           std::int64_t inner, T eps) {
  __shared__ T scratch[kMaxWarps];
  const std::int64_t count = batch * inner;
  for (std::int64_t c = blockIdx.x; c < channels; c += gridDim.x) {
    const T mu = mean[c], r = rsqrt_of(variance[c] + eps);
    T own_dy = 0, own_dy_centred = 0;
    for (std::int64_t e = threadIdx.x; e < count; e += blockDim.x) {
      const std::int64_t at = ((e / inner) * channels + c) * inner + e % inner;
      own_dy += dy[at];
      own_dy_centred += dy[at] * (x[at] - mu);
    }
    const T sum_dy = block_sum(own_dy, scratch);
    const T sum_dy_xhat = block_sum(own_dy_centred, scratch) * r;
    if (threadIdx.x == 0) {
      dbeta[c] = sum_dy;
      dgamma[c] = sum_dy_xhat;
    }
    const T n = static_cast<T>(count), a = gamma[c] * r;
    for (std::int64_t e = threadIdx.x; e < count; e += blockDim.x) {
      const std::int64_t at = ((e / inner) * channels + c) * inner + e % inner;
      dx[at] = a * (dy[at] - sum_dy / n - (x[at] - mu) * r * sum_dy_xhat / n);
    }
  }
}

int threads_for(std::int64_t n) {
  const std::int64_t warps = (n + kWarp - 1) / kWarp;
  return kWarp * static_cast<int>(warps < 1 ? 1 : (warps > kMaxWarps ? kMaxWarps : warps));
}

// Calls f(T{}, Index{}) for a float element type and an i32 or i64 index type.
template <typename F>
bool with_float_and_index_types(Element type, Element index_type, F&& f) {
  if (index_type != Element::i32 && index_type != Element::i64) return false;
  return with_float_type(type, [&](auto zero) {
    if (index_type == Element::i32)
      f(zero, std::int32_t{});
    else
      f(zero, std::int64_t{});
  });
}

}  // namespace

bool launch_softmax(Element type, bool log, const void* x, void* y, std::int64_t rows, std::int64_t n, void* stream) {
  if (rows == 0 || n == 0) return type == Element::f32 || type == Element::f64;
  return with_float_type(type, [&](auto zero) {
    using T = decltype(zero);
    softmax_kernel<T><<<grid_for(rows), threads_for(n), 0, as_stream(stream)>>>(log, static_cast<const T*>(x),
                                                                                static_cast<T*>(y), rows, n);
  });
}

bool launch_softmax_backward(Element type, bool log, const void* y, const void* dy, void* dx, std::int64_t rows,
                             std::int64_t n, void* stream) {
  if (rows == 0 || n == 0) return type == Element::f32 || type == Element::f64;
  return with_float_type(type, [&](auto zero) {
    using T = decltype(zero);
    softmax_backward_kernel<T><<<grid_for(rows), threads_for(n), 0, as_stream(stream)>>>(
        log, static_cast<const T*>(y), static_cast<const T*>(dy), static_cast<T*>(dx), rows, n);
  });
}

bool launch_layer_norm(Element type, const void* x, const void* gamma, const void* beta, void* y, void* mean,
                       void* rstd, std::int64_t rows, std::int64_t n, double eps, void* stream) {
  if (rows == 0) return type == Element::f32 || type == Element::f64;
  return with_float_type(type, [&](auto zero) {
    using T = decltype(zero);
    layer_norm_kernel<T><<<grid_for(rows), threads_for(n), 0, as_stream(stream)>>>(
        static_cast<const T*>(x), static_cast<const T*>(gamma), static_cast<const T*>(beta), static_cast<T*>(y),
        static_cast<T*>(mean), static_cast<T*>(rstd), rows, n, static_cast<T>(eps));
  });
}

bool launch_layer_norm_backward(Element type, const void* dy, const void* x, const void* gamma, const void* mean,
                                const void* rstd, void* dx, void* dgamma, void* dbeta, std::int64_t rows,
                                std::int64_t n, void* stream) {
  if (n == 0) return type == Element::f32 || type == Element::f64;
  return with_float_type(type, [&](auto zero) {
    using T = decltype(zero);
    if (rows > 0)
      layer_norm_input_grad_kernel<T><<<grid_for(rows), threads_for(n), 0, as_stream(stream)>>>(
          static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(gamma),
          static_cast<const T*>(mean), static_cast<const T*>(rstd), static_cast<T*>(dx), rows, n);
    layer_norm_parameter_grad_kernel<T><<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(mean), static_cast<const T*>(rstd),
        static_cast<T*>(dgamma), static_cast<T*>(dbeta), rows, n);
  });
}

bool launch_cross_entropy(Element type, Element index_type, const void* logits, const void* targets, void* loss,
                          void* lse, std::int64_t rows, std::int64_t classes, double label_smoothing, void* stream) {
  if (rows == 0) return type == Element::f32 || type == Element::f64;
  return with_float_and_index_types(type, index_type, [&](auto zero, auto index_zero) {
    using T = decltype(zero);
    using Index = decltype(index_zero);
    cross_entropy_kernel<T, Index><<<grid_for(rows), threads_for(classes), 0, as_stream(stream)>>>(
        static_cast<const T*>(logits), static_cast<const Index*>(targets), static_cast<T*>(loss), static_cast<T*>(lse),
        rows, classes, static_cast<T>(label_smoothing));
  });
}

bool launch_cross_entropy_backward(Element type, Element index_type, const void* logits, const void* targets,
                                   const void* lse, const void* dloss, void* dlogits, std::int64_t rows,
                                   std::int64_t classes, double label_smoothing, void* stream) {
  if (rows == 0) return type == Element::f32 || type == Element::f64;
  return with_float_and_index_types(type, index_type, [&](auto zero, auto index_zero) {
    using T = decltype(zero);
    using Index = decltype(index_zero);
    cross_entropy_backward_kernel<T, Index><<<grid_for(rows), threads_for(classes), 0, as_stream(stream)>>>(
        static_cast<const T*>(logits), static_cast<const Index*>(targets), static_cast<const T*>(lse),
        static_cast<const T*>(dloss), static_cast<T*>(dlogits), rows, classes, static_cast<T>(label_smoothing));
  });
}

bool launch_batch_norm(Element type, const void* x, const void* gamma, const void* beta, void* y, void* mean,
                       void* variance, std::int64_t batch, std::int64_t channels, std::int64_t inner, double eps,
                       void* stream) {
  if (channels == 0) return type == Element::f32 || type == Element::f64;
  return with_float_type(type, [&](auto zero) {
    using T = decltype(zero);
    batch_norm_kernel<T><<<grid_for(channels), threads_for(batch * inner), 0, as_stream(stream)>>>(
        static_cast<const T*>(x), static_cast<const T*>(gamma), static_cast<const T*>(beta), static_cast<T*>(y),
        static_cast<T*>(mean), static_cast<T*>(variance), batch, channels, inner, static_cast<T>(eps));
  });
}

bool launch_batch_norm_backward(Element type, const void* dy, const void* x, const void* gamma, const void* mean,
                                const void* variance, void* dx, void* dgamma, void* dbeta, std::int64_t batch,
                                std::int64_t channels, std::int64_t inner, double eps, void* stream) {
  if (channels == 0) return type == Element::f32 || type == Element::f64;
  return with_float_type(type, [&](auto zero) {
    using T = decltype(zero);
    batch_norm_backward_kernel<T><<<grid_for(channels), threads_for(batch * inner), 0, as_stream(stream)>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(gamma), static_cast<const T*>(mean),
        static_cast<const T*>(variance), static_cast<T*>(dx), static_cast<T*>(dgamma), static_cast<T*>(dbeta), batch,
        channels, inner, static_cast<T>(eps));
  });
}

}  // namespace fovea::cuda_backend
