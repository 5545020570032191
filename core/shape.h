// Shape: the extent of each dimension of a dense, row-major tensor.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace fovea {

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<std::int64_t> dims) : dims_(dims) {}
  explicit Shape(std::vector<std::int64_t> dims) : dims_(std::move(dims)) {}
  explicit Shape(std::span<const std::int64_t> dims) : dims_(dims.begin(), dims.end()) {}

  int rank() const { return static_cast<int>(dims_.size()); }
  std::int64_t operator[](int axis) const { return dims_[static_cast<std::size_t>(axis)]; }
  std::int64_t& operator[](int axis) { return dims_[static_cast<std::size_t>(axis)]; }
  const std::vector<std::int64_t>& dims() const { return dims_; }
  std::vector<std::int64_t>::const_iterator begin() const { return dims_.begin(); }
  std::vector<std::int64_t>::const_iterator end() const { return dims_.end(); }

  // Number of elements: the product of the dims (1 for a scalar, 0 if any dim is 0). Throws
  // fovea::Error when checked_numel() finds no answer; Graph::apply refuses such shapes first.
  // Inline and branch-free in its loop: kernels ask for it on every run.
  std::int64_t numel() const {
    std::int64_t n = 1;
    if (multiply_dims(n)) [[unlikely]]
      throw_uncountable();
    return n;
  }
  // The number of elements, or nothing when it or a stride (a product of trailing dims) does
  // not fit in an int64: {2^62+1} elements fit, not 4 bytes each; {2^40, 2^40} does not fit.
  std::optional<std::int64_t> checked_numel() const;
  // numel() · element_bytes, or nothing when that does not fit in an int64: the largest
  // buffer anything could ever hold.
  std::optional<std::int64_t> checked_bytes(std::size_t element_bytes) const;
  bool is_scalar() const { return dims_.empty(); }

  // Row-major strides in elements: strides()[rank-1] == 1.
  std::vector<std::int64_t> strides() const;

  // "[32,784]"; a scalar prints as "[]".
  std::string to_string() const;

  friend bool operator==(const Shape&, const Shape&) = default;

 private:
  // n = Π dims, from the last dim to the first; true when a partial product overflowed.
  bool multiply_dims(std::int64_t& n) const {
    bool overflow = false;
    for (auto d = dims_.rbegin(); d != dims_.rend(); ++d) overflow |= __builtin_mul_overflow(n, *d, &n);
    return overflow;
  }
  [[noreturn]] void throw_uncountable() const;
  std::vector<std::int64_t> dims_;
};

// Normalises a possibly negative axis (-1 is the last) into [0, rank). Returns -1 when the
// axis is out of range, so that the caller can report it with the node's context.
int normalize_axis(int axis, int rank);

// NumPy broadcasting of two shapes: dims are aligned from the right, and each pair must be
// equal or contain a 1. Returns false (leaving `out` untouched) when they do not broadcast.
bool broadcast_shapes(const Shape& a, const Shape& b, Shape& out);

}  // namespace fovea
