// Finding NaN and infinities in floating-point buffers: for the feeds' check
// (CompileOptions::check_finite_feeds) and anomaly mode (CompileOptions::check_finite).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "fovea/core/dtype.h"
#include "fovea/core/shape.h"

namespace fovea {

// The first element of a buffer that is not an accepted value, and that element as a double.
struct NonFinite {
  std::int64_t index = -1;  // -1: every element is accepted
  double value = 0;
  bool found() const { return index >= 0; }
};

// The first NaN or infinity among `count` elements of `dtype` at `data` (host memory); with
// `negative_infinity_allowed`, -inf is accepted and only NaN and +inf are found. Integer and
// bool buffers hold none.
NonFinite first_non_finite(DType dtype, const std::byte* data, std::int64_t count,
                           bool negative_infinity_allowed = false);

// "[1,450]" for flat index 1234 of shape [B,784].
std::string index_string(const Shape& shape, std::int64_t flat);

// "NaN", "+inf" or "-inf".
std::string describe_non_finite(double value);

}  // namespace fovea
