// fused_elementwise: a chain of elementwise ops evaluated in one loop, one pass over memory.
//
// The elementwise fusion pass (passes/elementwise_fusion.h) replaces a group of elementwise
// nodes that share an output shape by one node of this op. Instead of one loop per op, each
// writing its result to memory for the next to read back,
//
//   t1 = mul(x, 0.5)      ─┐
//   t2 = tanh(t1)          │  three loops, two temporaries
//   y  = mul(t2, x)       ─┘
//
// the fused node runs a small PROGRAM over registers for each element:
//
//   fused_elementwise(x) program:
//     r1 = mul(in0, 0.5)
//     r2 = tanh(r1)
//     r3 = mul(r2, in0)
//     out0 = r3
//
// Registers hold one element type T (f32 or f64, the group's float type); booleans (the
// result of a comparison, the mask of `where`) are 0 or 1 in T. The inputs are any values
// that broadcast to the output shape; scalar constants are folded into the program as
// immediates. The node has one output per value of the group that someone outside it reads,
// all of the output shape, each stored as T or as bool. `random_uniform` can be part of a
// program (dropout's mask is then never written to memory): element i of the output draws
// Philox block i/4, lane i%4, exactly as the random_uniform kernel does.
//
// The op has no gradient rule (asking for one is an error): the pass runs after autodiff, on the whole training step,
// so the group sees both the forward and the backward readers of every value (docs/architecture.md,
// decision 4).
#pragma once

#include <cstdint>
#include <source_location>
#include <span>
#include <string>
#include <vector>

#include "fovea/core/graph.h"
#include "fovea/ops/fused_opcodes.h"

namespace fovea {

namespace fused {

// The op name an opcode stands for ("mul"), or "uniform"/"copy"/"to_bool".
std::string_view opcode_name(Opcode op);
// The opcode of an elementwise op, by name; false when the op has no opcode.
bool opcode_of(std::string_view op_name, Opcode& out);

struct Instruction {
  Opcode op;
  std::int32_t a = -1, b = -1, c = -1;  // registers (or, for uniform, a random slot in a)
};

// A random stream of the program: the Philox key of one random_uniform node.
struct RandomStream {
  std::int64_t seed = 0, stream = 0;
  std::int32_t step_input = -1;  // index of the i64 scalar input added to the stream, or -1
};

// The whole program of a node. Registers: [0, inputs) the inputs, then the immediates, then
// one per instruction, in order.
struct Program {
  std::int32_t inputs = 0;
  std::vector<double> immediates;
  std::vector<Instruction> code;
  std::vector<RandomStream> randoms;
  std::vector<std::int32_t> outputs;  // the register of each output
  std::vector<bool> output_is_bool;   // stored as bool rather than T
  std::vector<std::int64_t> shape;    // the output shape

  std::int32_t registers() const { return inputs + static_cast<std::int32_t>(immediates.size() + code.size()); }
  std::int32_t first_immediate() const { return inputs; }
  std::int32_t first_temporary() const { return inputs + static_cast<std::int32_t>(immediates.size()); }

  // To and from the node's attributes.
  Attributes to_attributes() const;
  static Program from_attributes(const Attributes& attrs);
  // "r3 = mul(in0, 0.5)\n..." — what the text IR and the dumps show.
  std::string to_string() const;
};

}  // namespace fused

// What the kernels read (core/op.h, decoded attributes): the program, decoded once per step,
// and its element type.
struct FusedElementwiseParams {
  fused::Program program;
  DType dtype = DType::f32;
  static FusedElementwiseParams decode(const DecodeContext& context);
};

namespace ops {
extern const OpDef fused_elementwise;
}  // namespace ops

// Builds a fused_elementwise node computing `program` over `inputs` in element type `dtype`
// (f32 or f64); one Value per output. Used by the elementwise fusion pass; a user writes the
// ops themselves.
std::vector<Value> fused_elementwise(Graph& graph, std::span<const Value> inputs, const fused::Program& program,
                                     DType dtype, std::source_location where = std::source_location::current());

}  // namespace fovea
