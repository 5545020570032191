// The math of every elementwise op, as __host__ __device__ functors shared by the CPU and
// CUDA kernels (docs/architecture.md, decision 10): the CPU tests exercise the very code the GPU runs.
//
// A unary functor maps x to y; a binary one maps (a, b) to y. Comparisons return uint8_t
// (the storage type of bool tensors).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "fovea/core/philox.h"  // FOVEA_HD
#include "fovea/ops/fast_math.h"

namespace fovea::fn {

// Integer arithmetic wraps around (two's complement, as in NumPy and PyTorch): i32 2147483647 + 1
// is -2147483648. Signed overflow is undefined behaviour in C++, so the integer functors compute
// in an unsigned type at least as wide, where wrapping is the rule, and convert back (narrow
// types go through `unsigned`, since smaller ones would be promoted to signed int).
template <typename T>
using WrapType = std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, std::make_unsigned_t<T>>;
template <typename T>
FOVEA_HD T wrapping_add(T a, T b) {
  using U = WrapType<T>;
  return static_cast<T>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
}
template <typename T>
FOVEA_HD T wrapping_sub(T a, T b) {
  using U = WrapType<T>;
  return static_cast<T>(static_cast<U>(static_cast<U>(a) - static_cast<U>(b)));
}
template <typename T>
FOVEA_HD T wrapping_mul(T a, T b) {
  using U = WrapType<T>;
  return static_cast<T>(static_cast<U>(static_cast<U>(a) * static_cast<U>(b)));
}

// y = -x  (integers wrap: -INT_MIN = INT_MIN)
struct Neg {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    if constexpr (std::is_integral_v<T>)
      return wrapping_sub(T(0), x);
    else
      return -x;
  }
};
// y = |x|  (integers wrap: |INT_MIN| = INT_MIN; NaN stays NaN)
struct Abs {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return x < T(0) ? Neg{}(x) : x;
  }
};
// y = e^x
struct Exp {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::exp(x);
  }
  FOVEA_HD float operator()(float x) const { return fast::exp_f32(x); }  // vectorizes (fast_math.h)
};
// y = ln x
struct Log {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::log(x);
  }
};
// y = √x
struct Sqrt {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::sqrt(x);
  }
};
// y = 1/√x
struct Rsqrt {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return T(1) / std::sqrt(x);
  }
};
// y = tanh x
struct Tanh {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::tanh(x);
  }
  FOVEA_HD float operator()(float x) const { return fast::tanh_f32(x); }  // vectorizes (fast_math.h)
};
// y = 1 / (1 + e^-x), computed so that e^|x| never overflows.
struct Sigmoid {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
    const T e = std::exp(x);
    return e / (T(1) + e);
  }
};
// y = ln(1 + eˣ), a smooth relu. For x > 20, ln(1 + eˣ) = x + ln(1 + e^-x) is x to within
// e^-20 ≈ 2e-9 (as in PyTorch), and eˣ would overflow f32 from x ≈ 89 on; below, log1p keeps the
// small values of very negative x exact.
struct Softplus {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return x > T(20) ? x : std::log1p(std::exp(x));
  }
};
// y = max(x, 0), and NaN for a NaN x (as in PyTorch): `x < 0` is false for NaN, so x passes.
struct Relu {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return x < T(0) ? T(0) : x;
  }
};
// y = sin x
struct Sin {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::sin(x);
  }
};
// y = cos x
struct Cos {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::cos(x);
  }
};
// y = tan x
struct Tan {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::tan(x);
  }
};
// y = arcsin x, arccos x, arctan x (NaN outside [-1, 1] for the first two)
struct Asin {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::asin(x);
  }
};
struct Acos {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::acos(x);
  }
};
struct Atan {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::atan(x);
  }
};
// y = sinh x, cosh x, and their inverses (acosh is NaN below 1, atanh outside [-1, 1])
struct Sinh {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::sinh(x);
  }
};
struct Cosh {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::cosh(x);
  }
};
struct Asinh {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::asinh(x);
  }
};
struct Acosh {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::acosh(x);
  }
};
struct Atanh {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::atanh(x);
  }
};
// y = erf x, the error function
struct Erf {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::erf(x);
  }
};
// y = 1/x
struct Reciprocal {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return T(1) / x;
  }
};
// y = ⌊x⌋, ⌈x⌉
struct Floor {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::floor(x);
  }
};
struct Ceil {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::ceil(x);
  }
};
// y = x rounded to the nearest integer, halves to the even one (0.5 → 0, 1.5 → 2, -2.5 → -2), as
// ONNX's Round and NumPy's round do: nearbyint in the default rounding mode, which Fovea never
// changes. (std::round would take halves away from zero.)
struct Round {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return std::nearbyint(x);
  }
};
// y = -1, 0 or 1 as x is negative, zero or positive; NaN stays NaN (both comparisons are false
// for it, and so are they for zero, which is returned as it is).
struct Sign {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    if (x > T(0)) return T(1);
    if (x < T(0)) return T(-1);
    return x;
  }
};
// Classification of floating values: 1 where x is NaN, or ±∞, else 0.
struct IsNan {
  template <typename T>
  FOVEA_HD std::uint8_t operator()(T x) const {
    return std::isnan(x) ? 1 : 0;
  }
};
struct IsInf {
  template <typename T>
  FOVEA_HD std::uint8_t operator()(T x) const {
    return std::isinf(x) ? 1 : 0;
  }
};
// y = !x: 1 where x is 0, else 0 (on bool tensors; in a fused program, on registers holding
// 0 or 1)
struct LogicalNot {
  template <typename T>
  FOVEA_HD std::uint8_t operator()(T x) const {
    return x == T(0) ? 1 : 0;
  }
};

// y = a + b, a - b, a · b, a / b; on integers + - · wrap (see wrapping_add above).
struct Add {
  template <typename T>
  FOVEA_HD T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>)
      return wrapping_add(a, b);
    else
      return a + b;
  }
};
struct Sub {
  template <typename T>
  FOVEA_HD T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>)
      return wrapping_sub(a, b);
    else
      return a - b;
  }
};
struct Mul {
  template <typename T>
  FOVEA_HD T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>)
      return wrapping_mul(a, b);
    else
      return a * b;
  }
};
// Integer division truncates toward zero (as in C++). INT_MIN / -1 wraps to INT_MIN, like
// -INT_MIN (in C++ it is undefined, and x86 traps). A zero divisor is an error that the
// kernel reports (the CPU before dividing, the GPU after the run: see Verdict in
// backends/backend.h); here it gives 0 instead of undefined behaviour, so that the GPU's
// division can run to its end.
struct Div {
  template <typename T>
  FOVEA_HD T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) {
      if (b == T(0)) return T(0);
      if (b == T(-1)) return Neg{}(a);
    }
    return a / b;
  }
};
// Remainders. fmod's takes the dividend's sign (C's fmod; integers: C++'s %, which truncates),
// mod's the divisor's (floor modulo, as Python's % and ONNX's Mod with fmod = 0): fmod(-7, 3) is
// -1, mod(-7, 3) is 2 and mod(7, -3) is -2. As with Div, an integer zero divisor is an error the
// kernel reports, and gives 0 here; a divisor of -1 gives 0 without computing INT_MIN % -1,
// which is undefined in C++ (and traps on x86).
struct Fmod {
  template <typename T>
  FOVEA_HD T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) {
      if (b == T(0) || b == T(-1)) return T(0);
      return a % b;
    } else {
      return std::fmod(a, b);
    }
  }
};
// The truncated remainder moved by one divisor when its sign differs from the divisor's; the
// sum cannot overflow, since the two have opposite signs.
struct Mod {
  template <typename T>
  FOVEA_HD T operator()(T a, T b) const {
    const T r = Fmod{}(a, b);
    return r != T(0) && (r < T(0)) != (b < T(0)) ? r + b : r;
  }
};
// y = a^b
struct Pow {
  template <typename T>
  FOVEA_HD T operator()(T a, T b) const {
    return std::pow(a, b);
  }
};
// y = max(a, b), min(a, b); a NaN in either operand propagates.
struct Maximum {
  template <typename T>
  FOVEA_HD T operator()(T a, T b) const {
    return (a != a || a > b) ? a : b;
  }
};
struct Minimum {
  template <typename T>
  FOVEA_HD T operator()(T a, T b) const {
    return (a != a || a < b) ? a : b;
  }
};
// Comparisons: y = a ⋄ b as 0 or 1.
struct Equal {
  template <typename T>
  FOVEA_HD std::uint8_t operator()(T a, T b) const {
    return a == b;
  }
};
struct NotEqual {
  template <typename T>
  FOVEA_HD std::uint8_t operator()(T a, T b) const {
    return a != b;
  }
};
struct Less {
  template <typename T>
  FOVEA_HD std::uint8_t operator()(T a, T b) const {
    return a < b;
  }
};
struct LessEqual {
  template <typename T>
  FOVEA_HD std::uint8_t operator()(T a, T b) const {
    return a <= b;
  }
};
struct Greater {
  template <typename T>
  FOVEA_HD std::uint8_t operator()(T a, T b) const {
    return a > b;
  }
};
struct GreaterEqual {
  template <typename T>
  FOVEA_HD std::uint8_t operator()(T a, T b) const {
    return a >= b;
  }
};
// Logical and/or: nonzero is true (bool tensors, or fused registers holding 0 or 1).
struct LogicalAnd {
  template <typename T>
  FOVEA_HD std::uint8_t operator()(T a, T b) const {
    return a != T(0) && b != T(0);
  }
};
struct LogicalOr {
  template <typename T>
  FOVEA_HD std::uint8_t operator()(T a, T b) const {
    return a != T(0) || b != T(0);
  }
};

}  // namespace fovea::fn
