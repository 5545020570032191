// Whether a C++ number can become an element of a tensor of a given dtype unchanged.
//
// A number written next to a tensor (x * 0.5, fill(g, shape, v, i32)) takes the tensor's dtype.
// For a floating dtype that rounds to the nearest value, as floating point always does. For an
// integer dtype it would truncate (an i32 x * 0.5 would be x * 0, x / 2.7 would be x / 2) or,
// beyond the dtype's range, be undefined behaviour: so integer dtypes take only integral
// numbers within their range, and bool only 0 and 1. Integral doubles (2.0) are fine.
#pragma once

#include <cmath>
#include <limits>
#include <string>

#include <fmt/format.h>

#include "fovea/core/dtype.h"

namespace fovea {

// "" when `value` is exactly an element of `dtype`; otherwise why it is not, as a phrase
// ("0.5 is not an integer, and i32 holds only integers").
inline std::string number_mismatch(double value, DType dtype) {
  const std::string_view name = dtype_name(dtype);
  if (dtype == DType::boolean) {
    if (value == 0.0 || value == 1.0) return "";
    return fmt::format("{} is neither 0 nor 1, the only values of bool", value);
  }
  if (dtype != DType::i32 && dtype != DType::i64) return "";
  if (!std::isfinite(value)) return fmt::format("{} is not a finite number, and {} holds only integers", value, name);
  if (value != std::trunc(value)) return fmt::format("{} is not an integer, and {} holds only integers", value, name);
  // The range as doubles: -2^(bits-1) is exact; the top, 2^(bits-1) - 1, is not for i64, so
  // the test is against 2^(bits-1), exclusive.
  const double lowest = dtype == DType::i32 ? static_cast<double>(std::numeric_limits<std::int32_t>::min())
                                            : static_cast<double>(std::numeric_limits<std::int64_t>::min());
  if (value < lowest || value >= -lowest) {
    const long long top =
        dtype == DType::i32 ? std::numeric_limits<std::int32_t>::max() : std::numeric_limits<std::int64_t>::max();
    return fmt::format("{} is outside the range of {} [{}, {}]", value, name, static_cast<long long>(lowest), top);
  }
  return "";
}

}  // namespace fovea
