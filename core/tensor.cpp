#include "fovea/core/tensor.h"

#if defined(__linux__)
#include <sys/sysinfo.h>
#endif

#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <optional>

namespace fovea {

namespace {

// Memory and swap together: more than this can never be backed, whatever the kernel's
// overcommit setting promises (0 when the system does not say).
std::uint64_t memory_and_swap_bytes() {
#if defined(__linux__)
  struct sysinfo info {};
  if (sysinfo(&info) != 0) return 0;
  return (static_cast<std::uint64_t>(info.totalram) + info.totalswap) * info.mem_unit;
#else
  return 0;
#endif
}

std::string describe_bytes(std::uint64_t bytes) {
  return fmt::format("{} bytes ({:.1f} GiB)", bytes, static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
}

}  // namespace

std::shared_ptr<std::byte[]> allocate_aligned(std::size_t bytes) {
  constexpr std::align_val_t alignment{64};
  // Asking the allocator for more than the machine has would either fail or, with memory
  // overcommitted, succeed and crash later, on the first touch of a page it cannot back.
  static const std::uint64_t available = memory_and_swap_bytes();
  if (bytes > std::numeric_limits<std::size_t>::max() - 128 || (available > 0 && bytes > available))
    throw Error(fmt::format("cannot allocate {}: the machine has {} of memory and swap", describe_bytes(bytes),
                            describe_bytes(available)));
  // Round up so that a zero-byte tensor still owns a valid, unique pointer.
  const std::size_t size = (bytes + 63) / 64 * 64 + 64;
  std::byte* p = nullptr;
  try {
    p = static_cast<std::byte*>(::operator new[](size, alignment));
  } catch (const std::bad_alloc&) {
    throw Error(fmt::format("cannot allocate {}: out of memory", describe_bytes(bytes)));
  }
  return std::shared_ptr<std::byte[]>(p, [](std::byte* q) { ::operator delete[](q, std::align_val_t{64}); });
}

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  for (std::int64_t d : shape_)
    if (d < 0) throw Error(fmt::format("Tensor: negative dimension in shape {}", shape_.to_string()));
  const std::optional<std::int64_t> bytes = shape_.checked_bytes(dtype_size(dtype_));
  if (!bytes)
    throw Error(fmt::format("Tensor: a {}{} tensor has more elements or bytes than a 64-bit integer can count",
                            dtype_name(dtype_), shape_.to_string()));
  try {
    storage_ = allocate_aligned(static_cast<std::size_t>(*bytes));
  } catch (const Error& e) {
    throw Error(fmt::format("Tensor {}{}: {}", dtype_name(dtype_), shape_.to_string(), e.message()));
  }
}

Tensor Tensor::empty(DType dtype, Shape shape) { return Tensor(dtype, std::move(shape)); }

Tensor Tensor::zeros(DType dtype, Shape shape) {
  Tensor t(dtype, std::move(shape));
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::full(DType dtype, Shape shape, double value) {
  Tensor t(dtype, std::move(shape));
  visit_storage_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    for (T& x : t.data<T>()) x = from_double<T>(value);
  });
  return t;
}

void Tensor::check_dtype(DType requested) const {
  if (requested != dtype_)
    throw Error(fmt::format("Tensor: data<{}>() asked of a {} tensor of shape {}", dtype_name(requested),
                            dtype_name(dtype_), shape_.to_string()));
}

double Tensor::at(std::int64_t i) const {
  if (i < 0 || i >= numel())
    throw Error(fmt::format("Tensor::at: index {} out of range for shape {}", i, shape_.to_string()));
  return visit_storage_dtype(dtype_, [&](auto zero) {
    using T = decltype(zero);
    return to_double(reinterpret_cast<const T*>(raw())[i]);
  });
}

double Tensor::item() const {
  if (numel() != 1)
    throw Error(fmt::format("Tensor::item: tensor of shape {} has {} elements, not 1", shape_.to_string(), numel()));
  return at(0);
}

Tensor Tensor::clone() const {
  if (!defined()) return {};
  Tensor t(dtype_, shape_);
  std::memcpy(t.raw(), raw(), nbytes());
  return t;
}

Tensor Tensor::reshape(Shape shape) const {
  if (shape.numel() != numel())
    throw Error(fmt::format("Tensor::reshape: cannot view {} elements of shape {} as {}", numel(), shape_.to_string(),
                            shape.to_string()));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::to(DType dtype) const {
  Tensor t(dtype, shape_);
  visit_storage_dtype(dtype_, [&](auto from_zero) {
    using From = decltype(from_zero);
    visit_storage_dtype(dtype, [&](auto to_zero) {
      using To = decltype(to_zero);
      const From* src = reinterpret_cast<const From*>(raw());
      To* dst = reinterpret_cast<To*>(t.raw());
      constexpr bool half = is_half(dtype_of<From>) || is_half(dtype_of<To>);
      for (std::int64_t i = 0; i < numel(); ++i) {
        if constexpr (half) {
          dst[i] = from_double<To>(to_double(src[i]));  // halves go through f32
        } else {
          dst[i] = static_cast<To>(src[i]);
        }
      }
    });
  });
  return t;
}

static void format_elements(const Tensor& t, std::string& s, int axis, std::int64_t offset,
                            const std::vector<std::int64_t>& strides, int max_per_dim) {
  if (axis == t.rank()) {
    const double v = t.at(offset);
    s += is_floating(t.dtype()) ? fmt::format("{:.6g}", v) : fmt::format("{}", static_cast<long long>(v));
    return;
  }
  const std::int64_t n = t.shape()[axis];
  s += '[';
  for (std::int64_t i = 0; i < n; ++i) {
    if (n > max_per_dim && i == max_per_dim / 2) {
      s += "..., ";
      i = n - max_per_dim / 2;
    }
    format_elements(t, s, axis + 1, offset + i * strides[static_cast<std::size_t>(axis)], strides, max_per_dim);
    if (i + 1 < n) s += ", ";
  }
  s += ']';
}

std::string Tensor::to_string(int max_per_dim) const {
  std::string s = fmt::format("{}{} ", dtype_name(dtype_), shape_.to_string());
  if (!defined()) return s + "<undefined>";
  format_elements(*this, s, 0, 0, shape_.strides(), max_per_dim);
  return s;
}

}  // namespace fovea
