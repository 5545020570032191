// Tensor: a dense, row-major array with an owning buffer, a dtype, a shape and a device tag.
//
// Copying a Tensor shares its buffer (like a shared_ptr); `clone()` makes a deep copy. The
// engine hands users Tensors as feeds and results; inside an executable, kernels see raw
// pointers into one planned arena instead (see runtime/memory_plan.h).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "fovea/core/dtype.h"
#include "fovea/core/error.h"
#include "fovea/core/shape.h"

namespace fovea {

enum class Device : std::uint8_t { cpu, cuda };

class Tensor {
 public:
  Tensor() = default;  // an empty f32 scalar with no buffer; `defined()` is false

  // A tensor of the given type with zero-filled storage.
  static Tensor zeros(DType dtype, Shape shape);
  // A tensor whose storage is not initialised (for kernels that overwrite every element).
  static Tensor empty(DType dtype, Shape shape);
  // A tensor filled with `value`, converted to `dtype`.
  static Tensor full(DType dtype, Shape shape, double value);
  // Copies `values` into a new tensor; the element type fixes the dtype.
  template <typename T>
  static Tensor from(std::span<const T> values, Shape shape);
  template <typename T>
  static Tensor from(std::initializer_list<T> values, Shape shape) {
    return from(std::span<const T>(values.begin(), values.size()), std::move(shape));
  }
  template <typename T>
  static Tensor from(const std::vector<T>& values, Shape shape) {
    return from(std::span<const T>(values), std::move(shape));
  }
  template <typename T>
  static Tensor scalar(T value) {
    return from<T>({value}, Shape{});
  }

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  std::int64_t numel() const { return shape_.numel(); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
  Device device() const { return device_; }

  // True when no other Tensor shares this buffer (so overwriting it surprises nobody).
  bool is_unique() const { return storage_.use_count() == 1; }

  std::byte* raw() { return storage_.get(); }
  const std::byte* raw() const { return storage_.get(); }

  // Typed access; throws fovea::Error when T does not match the dtype.
  template <typename T>
  std::span<T> data();
  template <typename T>
  std::span<const T> data() const;
  // The single element of a one-element tensor, converted to double.
  double item() const;
  // Element `i` (row-major flat index), converted to double: handy in tests and printers.
  double at(std::int64_t i) const;

  // A deep copy with its own buffer.
  Tensor clone() const;
  // Same buffer, new shape with the same number of elements.
  Tensor reshape(Shape shape) const;
  // A converted copy.
  Tensor to(DType dtype) const;

  // Whether this Tensor and `other` share one buffer.
  bool shares_storage_with(const Tensor& other) const { return storage_ == other.storage_; }

  // "f32[2,3] [[1, 2, 3], [4, 5, 6]]", eliding the middle of long dims.
  std::string to_string(int max_per_dim = 6) const;

 private:
  Tensor(DType dtype, Shape shape);
  void check_dtype(DType requested) const;

  std::shared_ptr<std::byte[]> storage_;
  DType dtype_ = DType::f32;
  Shape shape_;
  Device device_ = Device::cpu;
};

template <typename T>
Tensor Tensor::from(std::span<const T> values, Shape shape) {
  if (static_cast<std::int64_t>(values.size()) != shape.numel())
    throw Error(fmt::format("Tensor::from: {} values cannot fill shape {} ({} elements)", values.size(),
                            shape.to_string(), shape.numel()));
  Tensor t(dtype_of<T>, std::move(shape));
  auto out = t.data<T>();
  for (std::size_t i = 0; i < values.size(); ++i) out[i] = values[i];
  return t;
}

template <typename T>
std::span<T> Tensor::data() {
  check_dtype(dtype_of<T>);
  return {reinterpret_cast<T*>(storage_.get()), static_cast<std::size_t>(numel())};
}

template <typename T>
std::span<const T> Tensor::data() const {
  check_dtype(dtype_of<T>);
  return {reinterpret_cast<const T*>(storage_.get()), static_cast<std::size_t>(numel())};
}

// Allocates `bytes` aligned to 64 bytes (a cache line, and enough for AVX-512 loads). More than
// the machine's memory and swap together, or a failed allocation, is a fovea::Error saying how
// many bytes were asked for (never std::bad_alloc, never a pointer the kernel will not back).
std::shared_ptr<std::byte[]> allocate_aligned(std::size_t bytes);

}  // namespace fovea
