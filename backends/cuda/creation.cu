// CUDA kernels for cast, fill, iota and the random ops (ops/creation.h), with the CPU
// backend's conversion rules and the same Philox streams (core/philox.h).
//
// The random kernels draw the very words the CPU draws; the floating-point steps after that
// (the scaling, and Box-Muller's log, sqrt, cos and sin in f64) may round differently in the
// last bit of an f64, since the GPU's libm is not glibc's and either compiler may fuse a
// multiply and an add. Uniform numbers on [0, 1) are exact (24-bit fractions); normal ones
// agree to about 1e-15 relative in f64, and almost always exactly once rounded to f32.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <limits>
#include <type_traits>

#include "fovea/backends/cuda/device.cuh"
#include "fovea/core/philox.h"

namespace fovea::cuda_backend {

namespace {

template <typename T>
inline constexpr bool is_half_v = std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>;

__device__ inline float widen(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ inline float widen(__half x) { return __half2float(x); }
template <typename H>
__device__ H narrow(float x);
template <>
__device__ inline __nv_bfloat16 narrow(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ inline __half narrow(float x) {
  return __float2half_rn(x);
}

// convert<To>(x), as in the CPU backend (and documented at cast()):
//   to bool:       x != 0
//   float to int:  NaN -> 0; x >= 2^(bits-1) -> max; x <= -2^(bits-1) -> min; else trunc(x)
//   to or from a half type: through f32, rounding to nearest-even into the half
//   otherwise:     static_cast (int to int wraps modulo 2^bits; to float rounds to nearest)
template <typename To, typename From>
__device__ To convert(From x) {
  if constexpr (is_half_v<From>) {
    return convert<To>(widen(x));
  } else if constexpr (is_half_v<To>) {
    return narrow<To>(static_cast<float>(x));
  } else if constexpr (std::is_same_v<To, std::uint8_t>) {
    return x != From{0} ? 1 : 0;
  } else if constexpr (std::is_floating_point_v<From> && std::is_integral_v<To>) {
    const double v = static_cast<double>(x);
    constexpr double limit = -static_cast<double>(std::numeric_limits<To>::min());  // 2^31 or 2^63, exact
    if (v != v) return 0;
    if (v >= limit) return std::numeric_limits<To>::max();
    if (v <= -limit) return std::numeric_limits<To>::min();
    return static_cast<To>(v);
  } else {
    return static_cast<To>(x);
  }
}

template <typename From, typename To>
__global__ void cast_kernel(const From* x, To* y, std::int64_t n) {
  for (std::int64_t i = first_element(); i < n; i += grid_stride()) y[i] = convert<To>(x[i]);
}

template <typename T>
__global__ void fill_kernel(T* y, std::int64_t n, double value) {
  const T v = convert<T>(value);
  for (std::int64_t i = first_element(); i < n; i += grid_stride()) y[i] = v;
}

// y[i] = (i / inner) mod extent
template <typename T>
__global__ void iota_kernel(T* y, std::int64_t n, std::int64_t extent, std::int64_t inner) {
  for (std::int64_t i = first_element(); i < n; i += grid_stride()) y[i] = static_cast<T>(i / inner % extent);
}

// The stream a random node draws from: its own, shifted by the step input when it has one.
__device__ inline std::uint64_t stream_of(std::uint64_t stream_id, const std::int64_t* step) {
  return step ? stream_id + static_cast<std::uint64_t>(*step) : stream_id;
}

// y[i] = low + (high - low)·u_i,  u_i = philox::uniform(seed, stream, i): one thread per
// Philox block of four elements.
template <typename T>
__global__ void random_uniform_kernel(T* y, std::int64_t n, std::uint64_t seed, std::uint64_t stream_id,
                                      const std::int64_t* step, double low, double high) {
  const std::uint64_t stream = stream_of(stream_id, step);
  const std::int64_t blocks = (n + 3) / 4;
  for (std::int64_t b = first_element(); b < blocks; b += grid_stride()) {
    const philox::Block w = philox::words(seed, stream, static_cast<std::uint64_t>(b));
    for (std::int64_t lane = 0; lane < 4 && 4 * b + lane < n; ++lane)
      y[4 * b + lane] = static_cast<T>(low + (high - low) * philox::to_unit(w.v[lane]));
  }
}

// y[i] = mean + stddev·z_i with z from Box-Muller on lanes (0,1) and (2,3) of block i/4:
//   r = sqrt(-2 ln(1 - u_even)),  z_even = r cos(2π u_odd),  z_odd = r sin(2π u_odd)
template <typename T>
__global__ void random_normal_kernel(T* y, std::int64_t n, std::uint64_t seed, std::uint64_t stream_id,
                                     const std::int64_t* step, double mean, double stddev) {
  constexpr double two_pi = 6.283185307179586;
  const std::uint64_t stream = stream_of(stream_id, step);
  const std::int64_t blocks = (n + 3) / 4;
  for (std::int64_t b = first_element(); b < blocks; b += grid_stride()) {
    const philox::Block w = philox::words(seed, stream, static_cast<std::uint64_t>(b));
    for (std::int64_t pair = 0; pair < 2 && 4 * b + 2 * pair < n; ++pair) {
      const double u1 = 1.0 - philox::to_unit(w.v[2 * pair]);
      const double u2 = philox::to_unit(w.v[2 * pair + 1]);
      const double r = sqrt(-2.0 * log(u1));
      const std::int64_t i = 4 * b + 2 * pair;
      y[i] = static_cast<T>(mean + stddev * (r * cos(two_pi * u2)));
      if (i + 1 < n) y[i + 1] = static_cast<T>(mean + stddev * (r * sin(two_pi * u2)));
    }
  }
}

// Calls f(T{}) for the element type (`floating`: f32 and f64 only; `numeric`: no bool).
enum class Types { all, numeric, floating };

template <Types allowed, typename F>
bool with_type(Element t, F&& f) {
  switch (t) {
    case Element::f32:
      f(float{});
      return true;
    case Element::f64:
      f(double{});
      return true;
    default:
      break;
  }
  if constexpr (allowed != Types::floating) {
    if (t == Element::i32) {
      f(std::int32_t{});
      return true;
    }
    if (t == Element::i64) {
      f(std::int64_t{});
      return true;
    }
  }
  if constexpr (allowed == Types::all) {
    if (t == Element::boolean) {
      f(std::uint8_t{});
      return true;
    }
  }
  return false;
}

}  // namespace

bool launch_cast(Element from, Element to, const void* x, void* y, std::int64_t n, void* stream) {
  if (n == 0) return true;
  // Every type, the half ones included (cast is how values enter and leave them).
  const auto with_any_type = [](Element t, auto&& f) {
    if (t == Element::bf16) return f(__nv_bfloat16{}), true;
    if (t == Element::f16) return f(__half{}), true;
    return with_type<Types::all>(t, f);
  };
  bool known_to = false;
  const bool known_from = with_any_type(from, [&](auto from_zero) {
    using From = decltype(from_zero);
    known_to = with_any_type(to, [&](auto to_zero) {
      using To = decltype(to_zero);
      cast_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(static_cast<const From*>(x), static_cast<To*>(y),
                                                                     n);
    });
  });
  return known_from && known_to;
}

bool launch_fill(Element type, double value, void* y, std::int64_t n, void* stream) {
  if (n == 0) return true;
  return with_type<Types::all>(type, [&](auto zero) {
    using T = decltype(zero);
    fill_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(static_cast<T*>(y), n, value);
  });
}

bool launch_iota(Element type, void* y, std::int64_t n, std::int64_t extent, std::int64_t inner, void* stream) {
  if (n == 0) return true;
  return with_type<Types::numeric>(type, [&](auto zero) {
    using T = decltype(zero);
    iota_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(static_cast<T*>(y), n, extent, inner);
  });
}

bool launch_random_uniform(Element type, void* y, std::int64_t n, std::uint64_t seed, std::uint64_t stream_id,
                           const std::int64_t* step, double low, double high, void* stream) {
  if (n == 0) return true;
  return with_type<Types::floating>(type, [&](auto zero) {
    using T = decltype(zero);
    random_uniform_kernel<<<blocks_for((n + 3) / 4), kThreads, 0, as_stream(stream)>>>(static_cast<T*>(y), n, seed,
                                                                                       stream_id, step, low, high);
  });
}

bool launch_random_normal(Element type, void* y, std::int64_t n, std::uint64_t seed, std::uint64_t stream_id,
                          const std::int64_t* step, double mean, double stddev, void* stream) {
  if (n == 0) return true;
  return with_type<Types::floating>(type, [&](auto zero) {
    using T = decltype(zero);
    random_normal_kernel<<<blocks_for((n + 3) / 4), kThreads, 0, as_stream(stream)>>>(static_cast<T*>(y), n, seed,
                                                                                      stream_id, step, mean, stddev);
  });
}

}  // namespace fovea::cuda_backend
