// DType: the element types a tensor can hold, and the C++ type behind each.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string_view>
#include <type_traits>
#include <utility>

#include <fmt/format.h>

#include "fovea/core/error.h"
#include "fovea/core/half.h"

namespace fovea {

// bf16 and f16 are storage types for mixed precision (core/half.h): only the ops that say so
// (OpDef::half_types) take them, and they compute in f32.
enum class DType : std::uint8_t { f32, f64, i32, i64, boolean, bf16, f16 };

inline constexpr DType f32 = DType::f32;
inline constexpr DType f64 = DType::f64;
inline constexpr DType i32 = DType::i32;
inline constexpr DType i64 = DType::i64;
inline constexpr DType boolean = DType::boolean;
inline constexpr DType bf16 = DType::bf16;
inline constexpr DType f16 = DType::f16;

// Bytes per element.
constexpr std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
      return 4;
    case DType::f64:
      return 8;
    case DType::i32:
      return 4;
    case DType::i64:
      return 8;
    case DType::boolean:
      return 1;
    case DType::bf16:
      return 2;
    case DType::f16:
      return 2;
  }
  return 0;
}

// The name used by the text IR: "f32", "f64", "i32", "i64", "bool", "bf16", "f16".
constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
    case DType::i32:
      return "i32";
    case DType::i64:
      return "i64";
    case DType::boolean:
      return "bool";
    case DType::bf16:
      return "bf16";
    case DType::f16:
      return "f16";
  }
  return "?";
}

// The 16-bit floating storage types.
constexpr bool is_half(DType t) { return t == DType::bf16 || t == DType::f16; }
constexpr bool is_floating(DType t) { return t == DType::f32 || t == DType::f64 || is_half(t); }
// The most negative finite number of f32 (or of f64, for any other dtype), as a double.
constexpr double lowest_finite(DType t) {
  return t == DType::f32 ? double(std::numeric_limits<float>::lowest()) : std::numeric_limits<double>::lowest();
}
constexpr bool is_integer(DType t) { return t == DType::i32 || t == DType::i64; }

// Maps a C++ element type to its DType: dtype_of<float> == f32. Booleans are stored as
// one byte (std::uint8_t holding 0 or 1), so that a bool tensor's data is addressable.
template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::f64;
};
template <>
struct DTypeOf<std::int32_t> {
  static constexpr DType value = DType::i32;
};
template <>
struct DTypeOf<std::int64_t> {
  static constexpr DType value = DType::i64;
};
template <>
struct DTypeOf<std::uint8_t> {
  static constexpr DType value = DType::boolean;
};
template <>
struct DTypeOf<bfloat16> {
  static constexpr DType value = DType::bf16;
};
template <>
struct DTypeOf<float16> {
  static constexpr DType value = DType::f16;
};
template <typename T>
inline constexpr DType dtype_of = DTypeOf<T>::value;

// Calls f(T{}) with T the C++ element type of `t`: the one place where a runtime dtype
// becomes a compile-time type. The arithmetic types only: a half type throws (its values are
// converted to f32 for arithmetic; see visit_storage_dtype).
template <typename F>
decltype(auto) visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::f32:
      return f(float{});
    case DType::f64:
      return f(double{});
    case DType::i32:
      return f(std::int32_t{});
    case DType::i64:
      return f(std::int64_t{});
    case DType::boolean:
      return f(std::uint8_t{});
    case DType::bf16:
    case DType::f16:
      break;
  }
  throw Error(fmt::format("{} is a storage type: no arithmetic on it here (cast to f32 first)", dtype_name(t)));
}

// As visit_dtype, the half types included (as bfloat16 and float16): for code that only moves
// or converts elements.
template <typename F>
decltype(auto) visit_storage_dtype(DType t, F&& f) {
  if (t == DType::bf16) return f(bfloat16{});
  if (t == DType::f16) return f(float16{});
  return visit_dtype(t, std::forward<F>(f));
}

// x as a double, for any storage type (halves through f32).
template <typename T>
constexpr double to_double(T x) {
  if constexpr (std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>) {
    return static_cast<double>(to_float(x));
  } else {
    return static_cast<double>(x);
  }
}

// A double converted to storage type T (halves through f32, rounding to nearest-even).
template <typename T>
constexpr T from_double(double x) {
  if constexpr (std::is_same_v<T, bfloat16>) {
    return to_bfloat16(static_cast<float>(x));
  } else if constexpr (std::is_same_v<T, float16>) {
    return to_float16(static_cast<float>(x));
  } else {
    return static_cast<T>(x);
  }
}

}  // namespace fovea
