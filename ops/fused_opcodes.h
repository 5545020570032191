// The instruction set of fused_elementwise programs (ops/fused_elementwise.h), in a header of
// its own so that the CUDA kernel (nvcc sees plain headers only) shares it with the CPU.
#pragma once

#include <cstdint>

namespace fovea::fused {

// What an instruction computes. Values are stable: they are stored in graphs' attributes.
enum class Opcode : std::int32_t {
  // unary: r = f(a)
  neg = 0,
  abs,
  relu,
  exp,
  log,
  sqrt,
  rsqrt,
  tanh,
  sigmoid,
  sin,
  cos,
  logical_not,
  copy,     // r = a (cast between the group's float type and bool is a copy: both are 0/1 in T)
  to_bool,  // r = (a != 0): a cast from T to bool
  // binary: r = f(a, b)
  add,
  sub,
  mul,
  div,
  pow,
  maximum,
  minimum,
  equal,
  not_equal,
  less,
  less_equal,
  greater,
  greater_equal,
  logical_and,
  logical_or,
  // ternary: r = a ? b : c
  where,
  // r = low + (high − low)·u_i, u_i Philox uniform: a = random slot, b/c = registers of low/high
  uniform,
};

inline constexpr int kUnaryEnd = static_cast<int>(Opcode::add);
inline constexpr int kBinaryEnd = static_cast<int>(Opcode::where);

}  // namespace fovea::fused
