// Compiled programs: the fused_elementwise programs of the engine's own layers, compiled ahead of
// time into straight-line loops.
//
// The CPU interpreter (fused_elementwise_kernels.cpp) runs a program one instruction at a time
// over a tile of elements, each instruction a loop that loads its operands from L1 and stores its
// result there. That is general and already far cheaper than one pass over memory per op, but a
// long program spends most of its time on those loads and stores: GELU's backward (26
// instructions, a tanh among them) ran at 2.9 ms per 2^20 elements, where one loop holding every
// value in vector registers takes 0.8 ms. Without a JIT, such a loop must exist when the engine
// is compiled, so this file lists the programs worth one, in the notation of
// Program::to_string():
//
//   r0 = add(in0, in1); r1 = mul(r0, r0); ...; out0 = r11 as bool; out1 = r13
//
// with three changes: an immediate is written k<j> instead of its value (so one compiled loop
// serves any dropout rate or constant), uniform's random slot is s<j>, and nothing else is
// allowed (no comments, no step offsets: those stay in the program's RandomStream). The parser
// below reads the text at compile time; a typo is a compile error.
//
// A node's program is compared with each entry when its kernel starts (match_compiled_program):
// the same opcodes, reading the same inputs and temporaries; where the entry has k<j> the program
// must have an immediate, the same one wherever the entry has k<j>. A program that matches none
// runs interpreted. The compiled loop computes every instruction with the interpreter's functors,
// in the same order, rounding each result to T (no contraction: the project compiles with
// -std=c++20, so -ffp-contract=off), so both give the same bits; tests/passes/compiled_programs_test.cpp
// checks that, and that each entry is what the nn layers it names fuse into.
//
// To add a program: print it (the text IR shows every fused node's program), write it here with
// its immediates named, add it to kCompiledPrograms, and add its layers to the test.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "fovea/backends/cpu/isa_namespace.h"
#include "fovea/ops/fused_elementwise.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

namespace compiled {

// One operand of an entry's instruction.
struct Operand {
  enum class Kind : std::int8_t { none, input, immediate, temporary, random_slot } kind = Kind::none;
  std::int32_t index = 0;
};

struct Instruction {
  fused::Opcode op{};
  Operand a, b, c;
};

struct Output {
  std::int32_t temporary = 0;
  bool is_bool = false;
};

// An entry, parsed: `instructions` instructions and `outputs` outputs, reading inputs
// [0, inputs) and immediates [0, immediates).
template <std::size_t instructions, std::size_t outputs>
struct Spec {
  std::string_view name;
  std::int32_t inputs = 0, immediates = 0;
  std::array<Instruction, instructions> code{};
  std::array<Output, outputs> out{};
};

// --- The parser, run at compile time ---------------------------------------------------------

constexpr std::string_view kOpcodeNames[] = {
#define FOVEA_COMPILED_OPCODE_NAME(name, ...) #name,
    FOVEA_UNARY_OPS(FOVEA_COMPILED_OPCODE_NAME) "copy",
    "to_bool",
    FOVEA_BINARY_OPS(FOVEA_COMPILED_OPCODE_NAME) "where",
    "uniform",
#undef FOVEA_COMPILED_OPCODE_NAME
};
static_assert(std::size(kOpcodeNames) == fused::kOpcodeCount, "one name per opcode");

// The entries are statements separated by ';': "rJ = op(operands)" or "outK = rJ [as bool]".
constexpr std::size_t count_statements(std::string_view text, std::string_view head) {
  std::size_t count = 0;
  for (std::size_t at = 0; at <= text.size();) {
    std::size_t end = text.find(';', at);
    if (end == std::string_view::npos) end = text.size();
    std::string_view statement = text.substr(at, end - at);
    while (!statement.empty() && statement.front() == ' ') statement.remove_prefix(1);
    if (statement.starts_with(head)) ++count;
    at = end + 1;
  }
  return count;
}

class Parser {
 public:
  constexpr explicit Parser(std::string_view text) : text_(text) {}

  constexpr bool done() {
    skip_spaces();
    return at_ == text_.size();
  }
  constexpr bool next_is(std::string_view word) {
    skip_spaces();
    return text_.substr(at_).starts_with(word);
  }
  constexpr void expect(std::string_view word) {
    check(next_is(word), "expected another token");
    at_ += word.size();
  }
  constexpr std::int32_t number() {
    skip_spaces();
    std::int32_t value = 0;
    const std::size_t start = at_;
    while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') value = value * 10 + (text_[at_++] - '0');
    check(at_ != start, "expected a number");
    return value;
  }
  constexpr std::string_view word() {
    skip_spaces();
    const std::size_t start = at_;
    while (at_ < text_.size() && ((text_[at_] >= 'a' && text_[at_] <= 'z') || text_[at_] == '_')) ++at_;
    return text_.substr(start, at_ - start);
  }
  constexpr fused::Opcode opcode() {
    const std::string_view name = word();
    for (std::size_t i = 0; i < std::size(kOpcodeNames); ++i)
      if (kOpcodeNames[i] == name) return static_cast<fused::Opcode>(i);
    check(false, "unknown opcode");
    return {};
  }
  constexpr Operand operand() {
    const std::string_view kind = word();
    const std::int32_t index = number();
    if (kind == "in") return {Operand::Kind::input, index};
    if (kind == "k") return {Operand::Kind::immediate, index};
    if (kind == "r") return {Operand::Kind::temporary, index};
    if (kind == "s") return {Operand::Kind::random_slot, index};
    check(false, "an operand is in<i>, k<j>, r<j> or s<j>");
    return {};
  }
  // A throw is not a constant expression: a parse error stops compilation here, naming `why`.
  static constexpr void check(bool ok, const char* why) {
    if (!ok) throw why;
  }

 private:
  constexpr void skip_spaces() {
    while (at_ < text_.size() && text_[at_] == ' ') ++at_;
  }
  std::string_view text_;
  std::size_t at_ = 0;
};

template <std::size_t instructions, std::size_t outputs>
constexpr Spec<instructions, outputs> parse(std::string_view name, std::string_view text) {
  Spec<instructions, outputs> spec;
  spec.name = name;
  Parser p(text);
  std::uint64_t immediates_seen = 0;  // bit j: k<j> appears
  auto note = [&](const Operand& o) {
    if (o.kind == Operand::Kind::input && o.index >= spec.inputs) spec.inputs = o.index + 1;
    if (o.kind == Operand::Kind::immediate) {
      Parser::check(o.index < 63, "at most 63 immediates");
      immediates_seen |= std::uint64_t{1} << o.index;
      if (o.index >= spec.immediates) spec.immediates = o.index + 1;
    }
  };
  std::size_t j = 0, k = 0;
  while (!p.done()) {
    if (p.next_is("out")) {
      p.expect("out");
      Parser::check(p.number() == static_cast<std::int32_t>(k), "outputs are numbered in order");
      p.expect("=");
      p.expect("r");
      spec.out[k].temporary = p.number();
      if (p.next_is("as")) {
        p.expect("as");
        p.expect("bool");
        spec.out[k].is_bool = true;
      }
      ++k;
    } else {
      p.expect("r");
      Parser::check(p.number() == static_cast<std::int32_t>(j), "instructions are numbered in order");
      p.expect("=");
      Instruction& in = spec.code[j];
      in.op = p.opcode();
      p.expect("(");
      Operand* operands[] = {&in.a, &in.b, &in.c};
      for (int i = 0; i < 3 && !p.next_is(")"); ++i) {
        if (i > 0) p.expect(",");
        *operands[i] = p.operand();
        note(*operands[i]);
      }
      p.expect(")");
      ++j;
    }
    if (!p.done()) p.expect(";");
  }
  Parser::check(j == instructions && k == outputs, "miscounted statements");
  // The matcher maps every k<j> to one of the program's immediates: none may be left unnamed.
  Parser::check(immediates_seen == (std::uint64_t{1} << spec.immediates) - 1, "immediates are k0, k1, ... with no gap");
  return spec;
}

#define FOVEA_COMPILED_PROGRAM(name, text)                                              \
  ::fovea::cpu_backend::FOVEA_ISA_NAMESPACE::compiled::parse<                           \
      ::fovea::cpu_backend::FOVEA_ISA_NAMESPACE::compiled::count_statements(text, "r"), \
      ::fovea::cpu_backend::FOVEA_ISA_NAMESPACE::compiled::count_statements(text, "out")>(name, text)

// --- The programs ----------------------------------------------------------------------------
// Each is what the elementwise fusion pass makes of the named layers in a training step
// (forward, backward and the optimizer's update fused together, passes/optimize.h).

// GELU, tanh form (nn::gelu), of a matmul's output plus its bias: in0 = x·W, in1 = bias.
// k0 = 0.044715, k1 = √(2/π), k2 = 0.5, k3 = 1.
#define FOVEA_GELU_OF_BIASED                                                                                       \
  "r0 = add(in0, in1); r1 = mul(r0, r0); r2 = mul(r1, r0); r3 = mul(r2, k0); r4 = add(r0, r3); r5 = mul(r4, k1); " \
  "r6 = mul(r0, k2); r7 = tanh(r5); r8 = add(r7, k3); "

// nn::dropout(nn::gelu(x·W + bias)): the feed-forward's first half. in2 is the step (the random
// stream's offset); k4 = 0, k5 = the rate, k6 = 1 / (1 - rate). out0 is the mask kept for the
// backward pass.
inline constexpr auto kGeluDropout = FOVEA_COMPILED_PROGRAM(
    "gelu_dropout", FOVEA_GELU_OF_BIASED
    "r9 = mul(r6, r8); r10 = uniform(s0, k4, k3); r11 = greater_equal(r10, k5); r12 = mul(r9, k6); "
    "r13 = where(r11, r12, k4); out0 = r11 as bool; out1 = r13");

// Its backward: the gradient of x·W given the mask (in2) and the gradient of the dropout's output
// (in3), GELU recomputed from x·W + bias rather than stored. k4 = 0, k5 = 1 / (1 - rate).
inline constexpr auto kGeluDropoutBackward = FOVEA_COMPILED_PROGRAM(
    "gelu_dropout_backward", FOVEA_GELU_OF_BIASED
    "r9 = where(in2, in3, k4); r10 = mul(r9, k5); r11 = mul(r10, r8); r12 = mul(r10, r6); r13 = mul(r7, r7); "
    "r14 = sub(k3, r13); r15 = mul(r12, r14); r16 = mul(r11, k2); r17 = mul(r15, k1); r18 = add(r16, r17); "
    "r19 = mul(r17, k0); r20 = mul(r19, r0); r21 = mul(r19, r1); r22 = add(r18, r21); r23 = mul(r20, r0); "
    "r24 = add(r22, r23); r25 = add(r24, r23); out0 = r25");

// nn::gelu(x·W + bias) without dropout, and its backward (in2 = the output's gradient).
inline constexpr auto kGelu = FOVEA_COMPILED_PROGRAM("gelu", FOVEA_GELU_OF_BIASED "r9 = mul(r6, r8); out0 = r9");
inline constexpr auto kGeluBackward = FOVEA_COMPILED_PROGRAM(
    "gelu_backward", FOVEA_GELU_OF_BIASED
    "r9 = mul(in2, r8); r10 = mul(in2, r6); r11 = mul(r7, r7); r12 = sub(k3, r11); r13 = mul(r10, r12); "
    "r14 = mul(r9, k2); r15 = mul(r13, k1); r16 = add(r14, r15); r17 = mul(r15, k0); r18 = mul(r17, r0); "
    "r19 = mul(r17, r1); r20 = add(r16, r19); r21 = mul(r18, r0); r22 = add(r20, r21); r23 = add(r22, r21); "
    "out0 = r23");

// nn::dropout(x·W + bias), and the same added to a residual (in3): the end of an attention block
// or a feed-forward. k0 = 0, k1 = 1, k2 = the rate, k3 = 1 / (1 - rate).
#define FOVEA_DROPOUT_OF_BIASED                                                                                     \
  "r0 = add(in0, in1); r1 = uniform(s0, k0, k1); r2 = greater_equal(r1, k2); r3 = mul(r0, k3); r4 = where(r2, r3, " \
  "k0); "
inline constexpr auto kBiasDropout =
    FOVEA_COMPILED_PROGRAM("bias_dropout", FOVEA_DROPOUT_OF_BIASED "out0 = r2 as bool; out1 = r4");
inline constexpr auto kBiasDropoutResidual = FOVEA_COMPILED_PROGRAM(
    "bias_dropout_residual", FOVEA_DROPOUT_OF_BIASED "r5 = add(in3, r4); out0 = r2 as bool; out1 = r5");

#undef FOVEA_GELU_OF_BIASED
#undef FOVEA_DROPOUT_OF_BIASED

// Every entry, in the order the kernel's table of loops follows.
#define FOVEA_COMPILED_PROGRAMS(X) \
  X(kGeluDropout)                  \
  X(kGeluDropoutBackward)          \
  X(kGelu)                         \
  X(kGeluBackward)                 \
  X(kBiasDropout)                  \
  X(kBiasDropoutResidual)

// --- Matching --------------------------------------------------------------------------------

// A program that matched an entry: which one, and the program's register for each of the
// entry's immediates.
struct Match {
  int entry = -1;
  std::string_view name;
  std::vector<std::int32_t> immediates;
};

template <std::size_t instructions, std::size_t outputs>
bool matches(const Spec<instructions, outputs>& spec, const fused::Program& program,
             std::vector<std::int32_t>& immediates) {
  if (program.code.size() != instructions || program.outputs.size() != outputs || program.inputs < spec.inputs)
    return false;
  immediates.assign(static_cast<std::size_t>(spec.immediates), -1);
  const std::int32_t first_immediate = program.first_immediate(), first_temporary = program.first_temporary();
  auto same = [&](const Operand& o, std::int32_t r) {
    switch (o.kind) {
      case Operand::Kind::none:
        return r < 0;
      case Operand::Kind::input:
        return r == o.index;
      case Operand::Kind::temporary:
        return r == first_temporary + o.index;
      case Operand::Kind::random_slot:
        return r == o.index;
      case Operand::Kind::immediate: {
        if (r < first_immediate || r >= first_temporary) return false;
        std::int32_t& mapped = immediates[static_cast<std::size_t>(o.index)];
        if (mapped < 0) mapped = r;
        return mapped == r;
      }
    }
    return false;
  };
  for (std::size_t j = 0; j < instructions; ++j) {
    const Instruction& want = spec.code[j];
    const fused::Instruction& have = program.code[j];
    if (want.op != have.op || !same(want.a, have.a) || !same(want.b, have.b) || !same(want.c, have.c)) return false;
  }
  for (std::size_t k = 0; k < outputs; ++k)
    if (program.outputs[k] != first_temporary + spec.out[k].temporary ||
        program.output_is_bool[k] != spec.out[k].is_bool)
      return false;
  return true;
}

// The entry `program` matches, if any (entry -1 when none).
inline Match match_compiled_program(const fused::Program& program) {
  Match match;
  int index = 0;
  auto try_entry = [&](const auto& spec) {
    if (match.entry < 0 && matches(spec, program, match.immediates)) {
      match.entry = index;
      match.name = spec.name;
    }
    ++index;
  };
#define FOVEA_TRY_ENTRY(spec) try_entry(spec);
  FOVEA_COMPILED_PROGRAMS(FOVEA_TRY_ENTRY)
#undef FOVEA_TRY_ENTRY
  if (match.entry < 0) match.immediates.clear();
  return match;
}

}  // namespace compiled

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE
