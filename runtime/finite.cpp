#include "fovea/runtime/finite.h"

#include <cmath>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

namespace fovea {

namespace {

bool accepted(double x, bool negative_infinity_allowed) {
  return std::isfinite(x) || (negative_infinity_allowed && x < 0 && std::isinf(x));
}

}  // namespace

NonFinite first_non_finite(DType dtype, const std::byte* data, std::int64_t count, bool negative_infinity_allowed) {
  return visit_storage_dtype(dtype, [&](auto zero) -> NonFinite {
    using T = decltype(zero);
    if constexpr (std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>) {
      const T* p = reinterpret_cast<const T*>(data);
      for (std::int64_t i = 0; i < count; ++i)
        if (!accepted(to_float(p[i]), negative_infinity_allowed)) return {i, to_float(p[i])};
    } else if constexpr (std::is_floating_point_v<T>) {
      const T* p = reinterpret_cast<const T*>(data);
      // Summing x·0 is NaN exactly when some x is NaN or infinite: one cheap pass, then a second
      // one only to find the culprit. The sums run in independent lanes, which the compiler
      // vectorises (one running sum would be a chain of dependent additions).
      constexpr std::int64_t lanes = 16;
      T probe[lanes] = {};
      std::int64_t i = 0;
      for (; i + lanes <= count; i += lanes)
        for (std::int64_t lane = 0; lane < lanes; ++lane) probe[lane] += p[i + lane] * T(0);
      for (; i < count; ++i) probe[0] += p[i] * T(0);
      T sum = 0;
      for (T lane : probe) sum += lane;
      if (sum == T(0)) return {};
      for (i = 0; i < count; ++i)
        if (!accepted(p[i], negative_infinity_allowed)) return {i, static_cast<double>(p[i])};
    }
    return {};
  });
}

std::string index_string(const Shape& shape, std::int64_t flat) {
  std::vector<std::int64_t> index(static_cast<std::size_t>(shape.rank()));
  for (int d = shape.rank() - 1; d >= 0; --d) {
    index[static_cast<std::size_t>(d)] = flat % shape[d];
    flat /= shape[d];
  }
  return fmt::format("[{}]", fmt::join(index, ","));
}

std::string describe_non_finite(double value) { return std::isnan(value) ? "NaN" : (value > 0 ? "+inf" : "-inf"); }

}  // namespace fovea
