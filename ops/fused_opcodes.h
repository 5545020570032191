// The instruction set of fused_elementwise programs (ops/fused_elementwise.h), in a header of
// its own so that the CUDA kernel (nvcc sees plain headers only) shares it with the CPU.
#pragma once

#include <cstdint>

#include "fovea/ops/elementwise_table.h"

namespace fovea::fused {

// What an instruction computes: one opcode per row of ops/elementwise_table.h, plus a few of
// the program's own. Values are positions in that table, so adding a row renumbers the ones
// after it: they are not stable across builds, and a program is never stored in a file (the
// fusion pass builds it again whenever a graph is compiled).
// clang-format off
enum class Opcode : std::int32_t {
  // unary: r = f(a)
  FOVEA_UNARY_OPS(FOVEA_ELEMENTWISE_NAME)
  copy,     // r = a (cast between the group's float type and bool is a copy: both are 0/1 in T)
  to_bool,  // r = (a != 0): a cast from T to bool
  // binary: r = f(a, b)
  FOVEA_BINARY_OPS(FOVEA_ELEMENTWISE_NAME)
  // ternary: r = a ? b : c
  where,
  // r = low + (high − low)·u_i, u_i Philox uniform: a = random slot, b/c = registers of low/high
  uniform,
};
// clang-format on

inline constexpr int kUnaryEnd = kUnaryOpCount + 2;            // [0, kUnaryEnd): one operand
inline constexpr int kBinaryEnd = kUnaryEnd + kBinaryOpCount;  // [kUnaryEnd, kBinaryEnd): two
inline constexpr int kOpcodeCount = static_cast<int>(Opcode::uniform) + 1;
static_assert(static_cast<int>(Opcode::to_bool) + 1 == kUnaryEnd && static_cast<int>(Opcode::where) == kBinaryEnd,
              "the opcodes must list the table's unary rows, copy and to_bool, then its binary rows");

}  // namespace fovea::fused
