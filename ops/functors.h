// The math of every elementwise op, as __host__ __device__ functors shared by the CPU and
// CUDA kernels (DESIGN.md, decision 10): the CPU tests exercise the very code the GPU runs.
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

// y = -x
struct Neg {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return -x;
  }
};
// y = |x|
struct Abs {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return x < T(0) ? -x : x;
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
// y = max(x, 0)
struct Relu {
  template <typename T>
  FOVEA_HD T operator()(T x) const {
    return x > T(0) ? x : T(0);
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
// y = !x (bool)
struct LogicalNot {
  FOVEA_HD std::uint8_t operator()(std::uint8_t x) const { return x ? 0 : 1; }
};

// y = a + b, a - b, a · b, a / b
struct Add {
  template <typename T>
  FOVEA_HD T operator()(T a, T b) const {
    return a + b;
  }
};
struct Sub {
  template <typename T>
  FOVEA_HD T operator()(T a, T b) const {
    return a - b;
  }
};
struct Mul {
  template <typename T>
  FOVEA_HD T operator()(T a, T b) const {
    return a * b;
  }
};
// Integer division truncates toward zero (as in C++). A zero divisor is an error that the
// kernel reports (the CPU before dividing, the GPU after the run: see Verdict in
// backends/backend.h); here it gives 0 instead of undefined behaviour, so that the GPU's
// division can run to its end.
struct Div {
  template <typename T>
  FOVEA_HD T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) {
      if (b == T(0)) return T(0);
    }
    return a / b;
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
// Logical and/or on bool tensors.
struct LogicalAnd {
  FOVEA_HD std::uint8_t operator()(std::uint8_t a, std::uint8_t b) const { return a && b; }
};
struct LogicalOr {
  FOVEA_HD std::uint8_t operator()(std::uint8_t a, std::uint8_t b) const { return a || b; }
};

}  // namespace fovea::fn
