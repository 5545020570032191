#include "fovea/core/shape.h"

#include <algorithm>

#include <fmt/format.h>

#include "fovea/core/error.h"

namespace fovea {

// The product is taken from the last dim to the first, as the strides are, and every partial
// product must fit: a 0 in front does not excuse {0, 2^40, 2^40}, whose stride overflows.
std::optional<std::int64_t> Shape::checked_numel() const {
  std::int64_t n = 1;
  if (multiply_dims(n)) return std::nullopt;
  return n;
}

std::optional<std::int64_t> Shape::checked_bytes(std::size_t element_bytes) const {
  const std::optional<std::int64_t> n = checked_numel();
  std::int64_t bytes = 0;
  if (!n || *n < 0 || __builtin_mul_overflow(*n, static_cast<std::int64_t>(element_bytes), &bytes)) return std::nullopt;
  return bytes;
}

void Shape::throw_uncountable() const {
  throw Error(fmt::format("shape {} has more elements than a 64-bit integer can count", to_string()));
}

std::vector<std::int64_t> Shape::strides() const {
  std::vector<std::int64_t> s(dims_.size(), 1);
  for (int i = rank() - 2; i >= 0; --i) s[i] = s[i + 1] * dims_[i + 1];
  return s;
}

std::string Shape::to_string() const {
  std::string s = "[";
  for (std::size_t i = 0; i < dims_.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(dims_[i]);
  }
  return s + "]";
}

int normalize_axis(int axis, int rank) {
  if (axis < 0) axis += rank;
  return (axis < 0 || axis >= rank) ? -1 : axis;
}

bool broadcast_shapes(const Shape& a, const Shape& b, Shape& out) {
  const int rank = std::max(a.rank(), b.rank());
  std::vector<std::int64_t> dims(static_cast<std::size_t>(rank));
  for (int i = 0; i < rank; ++i) {
    const int ia = a.rank() - rank + i, ib = b.rank() - rank + i;
    const std::int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1) return false;
    dims[static_cast<std::size_t>(i)] = da == 1 ? db : da;
  }
  out = Shape(std::move(dims));
  return true;
}

}  // namespace fovea
