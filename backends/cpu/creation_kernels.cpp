// CPU kernels for cast, fill, iota and the random ops.
//
// The random kernels compute element i from (seed, stream + step, i) alone, so how the pool
// splits the loop cannot change a single number.
#include <cmath>
#include <limits>
#include <type_traits>

#include "fovea/backends/cpu/kernels.h"
#include "fovea/backends/cpu/philox_lanes.h"
#include "fovea/core/philox.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

namespace {

// f64 to f32 beyond f32's range is defined (±inf) only under IEEE 754 arithmetic.
static_assert(std::numeric_limits<float>::is_iec559 && std::numeric_limits<double>::is_iec559);

// convert<To>(x): the rules documented at cast() in ops/creation.h, free of undefined behaviour.
//   to bool:       x != 0
//   float to int:  NaN -> 0; x >= 2^(bits-1) -> max; x <= -2^(bits-1) -> min; else trunc(x)
//   otherwise:     static_cast (int to int wraps modulo 2^bits in C++20; to float rounds)
//   to or from a half type: through f32 (rounding to nearest-even into the half)
template <typename To, typename From>
To convert(From x) {
  constexpr bool from_half = std::is_same_v<From, bfloat16> || std::is_same_v<From, float16>;
  constexpr bool to_half = std::is_same_v<To, bfloat16> || std::is_same_v<To, float16>;
  if constexpr (from_half) {
    return convert<To>(to_float(x));
  } else if constexpr (to_half) {
    return from_double<To>(static_cast<double>(static_cast<float>(x)));
  } else if constexpr (std::is_same_v<To, std::uint8_t>) {
    return x != From{0} ? 1 : 0;
  } else if constexpr (std::is_floating_point_v<From> && std::is_integral_v<To>) {
    const double v = static_cast<double>(x);
    constexpr double limit = -static_cast<double>(std::numeric_limits<To>::min());  // 2^31 or 2^63, exact
    if (std::isnan(v)) return 0;
    if (v >= limit) return std::numeric_limits<To>::max();
    if (v <= -limit) return std::numeric_limits<To>::min();
    return static_cast<To>(v);  // in range: truncates toward zero
  } else {
    return static_cast<To>(x);
  }
}

// cast: y[i] = convert<To>(x[i])
template <typename From, typename To>
void cast_loop(const KernelContext& ctx) {
  const From* x = ctx.in(0).as<From>();
  To* y = ctx.out().as<To>();
  ctx.pool->parallel_for(ctx.out().numel(), kElementwiseGrain, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) y[i] = convert<To>(x[i]);
  });
}

// One kernel per input dtype; the output dtype picks the loop.
template <typename From>
void cast_kernel(const KernelContext& ctx) {
  visit_storage_dtype(ctx.out().type.dtype, [&](auto to_zero) { cast_loop<From, decltype(to_zero)>(ctx); });
}

// fill: y[i] = convert<T>(value)
template <typename T>
void fill_kernel(const KernelContext& ctx) {
  const T value = convert<T>(ctx.params<FillParams>().value);
  T* y = ctx.out().as<T>();
  ctx.pool->parallel_for(ctx.out().numel(), kElementwiseGrain, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) y[i] = value;
  });
}

// iota: y[o, k, j] = k, with y seen as [outer, n, inner] around the axis; row (o, k) is
// `inner` copies of k.
template <typename T>
void iota_kernel(const KernelContext& ctx) {
  const Shape& shape = ctx.out().shape();
  const int axis = ctx.params<AxisParams>().axis;
  std::int64_t inner = 1;
  for (int i = axis + 1; i < shape.rank(); ++i) inner *= shape[i];
  const std::int64_t n = shape[axis];
  const std::int64_t rows = inner == 0 ? 0 : ctx.out().numel() / inner;
  T* y = ctx.out().as<T>();
  const std::int64_t grain = std::max<std::int64_t>(1, kElementwiseGrain / std::max<std::int64_t>(inner, 1));
  ctx.pool->parallel_for(rows, grain, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const T k = static_cast<T>(r % n);
      for (std::int64_t j = 0; j < inner; ++j) y[r * inner + j] = k;
    }
  });
}

// The seed and the stream (shifted by the optional step input) a random node draws from.
struct RandomKey {
  std::uint64_t seed, stream;
  template <typename Params>
  RandomKey(const KernelContext& ctx, const Params& params) : seed(params.seed), stream(params.stream) {
    if (!ctx.inputs.empty()) stream += static_cast<std::uint64_t>(*ctx.in(0).as<std::int64_t>());
  }
};

// random_uniform: y[i] = low + (high - low) · u_i,  u_i = philox::uniform(seed, stream, i)
// Philox blocks are drawn eight at a time (philox_lanes.h); threads take element ranges.
template <typename T>
void random_uniform_kernel(const KernelContext& ctx) {
  const auto& params = ctx.params<UniformParams>();
  const RandomKey key(ctx, params);
  const double low = params.low, high = params.high;
  T* y = ctx.out().as<T>();
  ctx.pool->parallel_for(ctx.out().numel(), kElementwiseGrain, [&](std::int64_t begin, std::int64_t end) {
    philox_uniform_run(key.seed, key.stream, low, high, begin, end - begin, y + begin);
  });
}

// random_normal: y[i] = mean + stddev · z_i,  z_i = philox::normal(seed, stream, i)
// philox::normal turns lanes (0,1) and (2,3) of block i/4 into two Box-Muller pairs:
//   r = sqrt(-2 ln(1 - u_even)),  z_even = r cos(2π u_odd),  z_odd = r sin(2π u_odd)
// It draws the block once per element; this loop draws it once per four elements and does
// each pair's logarithm once, with the same operations (the tests compare it with philox::normal).
template <typename T>
void random_normal_kernel(const KernelContext& ctx) {
  const auto& params = ctx.params<NormalParams>();
  const RandomKey key(ctx, params);
  const double mean = params.mean, stddev = params.stddev;
  T* y = ctx.out().as<T>();
  const std::int64_t n = ctx.out().numel();
  const std::int64_t blocks = (n + 3) / 4;
  ctx.pool->parallel_for(blocks, kElementwiseGrain / 16, [&](std::int64_t b0, std::int64_t b1) {
    constexpr double two_pi = 6.283185307179586;
    for (std::int64_t b = b0; b < b1; ++b) {
      const philox::Block w = philox::words(key.seed, key.stream, static_cast<std::uint64_t>(b));
      for (std::int64_t pair = 0; pair < 2 && 4 * b + 2 * pair < n; ++pair) {
        const double u1 = 1.0 - philox::to_unit(w.v[2 * pair]);
        const double u2 = philox::to_unit(w.v[2 * pair + 1]);
        const double r = std::sqrt(-2.0 * std::log(u1));
        const std::int64_t i = 4 * b + 2 * pair;
        y[i] = static_cast<T>(mean + stddev * (r * std::cos(two_pi * u2)));
        if (i + 1 < n) y[i + 1] = static_cast<T>(mean + stddev * (r * std::sin(two_pi * u2)));
      }
    }
  });
}

}  // namespace

void register_creation_kernels(KernelRegistry& r) {
  auto each_dtype = [&](const OpDef& op, auto kernel_of, auto... zeros) {
    (r.add(op, dtype_of<decltype(zeros)>, kernel_of(zeros)), ...);
  };
  const auto all = [&](const OpDef& op, auto kernel_of) {
    each_dtype(op, kernel_of, float{}, double{}, std::int32_t{}, std::int64_t{}, std::uint8_t{});
  };
  each_dtype(
      ops::cast, [](auto zero) { return &cast_kernel<decltype(zero)>; }, float{}, double{}, std::int32_t{},
      std::int64_t{}, std::uint8_t{}, bfloat16{}, float16{});
  all(ops::fill, [](auto zero) { return &fill_kernel<decltype(zero)>; });
  each_dtype(
      ops::iota, [](auto zero) { return &iota_kernel<decltype(zero)>; }, float{}, double{}, std::int32_t{},
      std::int64_t{});
  each_dtype(
      ops::random_uniform, [](auto zero) { return &random_uniform_kernel<decltype(zero)>; }, float{}, double{});
  each_dtype(
      ops::random_normal, [](auto zero) { return &random_normal_kernel<decltype(zero)>; }, float{}, double{});
}

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE
