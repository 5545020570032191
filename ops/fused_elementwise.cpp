#include "fovea/ops/fused_elementwise.h"

#include <array>
#include <utility>

#include <fmt/format.h>

namespace fovea {

namespace fused {

namespace {

// Opcode → the op name it stands for, in Opcode order: both come from the same rows of
// ops/elementwise_table.h, so a name cannot go missing or land on another opcode.
#define FOVEA_ELEMENTWISE_STRING(name, ...) #name,
constexpr auto kNames =
    std::to_array<std::string_view>({FOVEA_UNARY_OPS(FOVEA_ELEMENTWISE_STRING) "copy", "to_bool",
                                     FOVEA_BINARY_OPS(FOVEA_ELEMENTWISE_STRING) "where", "uniform"});
#undef FOVEA_ELEMENTWISE_STRING
static_assert(kNames.size() == static_cast<std::size_t>(kOpcodeCount), "one name per opcode");
static_assert(kNames[static_cast<std::size_t>(Opcode::copy)] == "copy" &&
                  kNames[static_cast<std::size_t>(Opcode::where)] == "where",
              "names in Opcode order");

std::string register_name(const Program& p, std::int32_t r) {
  if (r < p.first_immediate()) return fmt::format("in{}", r);
  if (r < p.first_temporary()) return fmt::format("{}", p.immediates[static_cast<std::size_t>(r - p.inputs)]);
  return fmt::format("r{}", r - p.first_temporary());
}

}  // namespace

std::string_view opcode_name(Opcode op) { return kNames.at(static_cast<std::size_t>(op)); }

bool opcode_of(std::string_view op_name, Opcode& out) {
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] != op_name || kNames[i] == "copy" || kNames[i] == "to_bool" || kNames[i] == "uniform") continue;
    out = static_cast<Opcode>(i);
    return true;
  }
  return false;
}

Attributes Program::to_attributes() const {
  std::vector<std::int64_t> code_ints, random_ints, output_ints(outputs.begin(), outputs.end()), bool_ints;
  for (const Instruction& i : code) code_ints.insert(code_ints.end(), {static_cast<std::int64_t>(i.op), i.a, i.b, i.c});
  for (const RandomStream& r : randoms) random_ints.insert(random_ints.end(), {r.seed, r.stream, r.step_input});
  for (bool b : output_is_bool) bool_ints.push_back(b ? 1 : 0);
  Tensor imm = Tensor::empty(DType::f64, {static_cast<std::int64_t>(immediates.size())});
  for (std::size_t i = 0; i < immediates.size(); ++i) imm.data<double>()[i] = immediates[i];
  Attributes a;
  a.set("_inputs", std::int64_t{inputs});
  a.set("_immediates", imm);
  a.set("_code", code_ints);
  a.set("_randoms", random_ints);
  a.set("_outputs", output_ints);
  a.set("_output_bools", bool_ints);
  a.set("_shape", shape);
  a.set("program", to_string());
  return a;
}

Program Program::from_attributes(const Attributes& attrs) {
  Program p;
  p.inputs = static_cast<std::int32_t>(attrs.get_int("_inputs"));
  const Tensor& imm = attrs.get_tensor("_immediates");
  p.immediates.assign(imm.data<double>().begin(), imm.data<double>().end());
  const std::vector<std::int64_t>& code = attrs.get_ints("_code");
  for (std::size_t i = 0; i + 3 < code.size(); i += 4)
    p.code.push_back({static_cast<Opcode>(code[i]), static_cast<std::int32_t>(code[i + 1]),
                      static_cast<std::int32_t>(code[i + 2]), static_cast<std::int32_t>(code[i + 3])});
  const std::vector<std::int64_t>& randoms = attrs.get_ints("_randoms");
  for (std::size_t i = 0; i + 2 < randoms.size(); i += 3)
    p.randoms.push_back({randoms[i], randoms[i + 1], static_cast<std::int32_t>(randoms[i + 2])});
  for (std::int64_t r : attrs.get_ints("_outputs")) p.outputs.push_back(static_cast<std::int32_t>(r));
  for (std::int64_t b : attrs.get_ints("_output_bools")) p.output_is_bool.push_back(b != 0);
  p.shape = attrs.get_ints("_shape");
  return p;
}

std::string Program::to_string() const {
  std::string s;
  for (std::size_t i = 0; i < code.size(); ++i) {
    const Instruction& in = code[i];
    const int op = static_cast<int>(in.op);
    std::string args;
    if (in.op == Opcode::uniform) {
      const RandomStream& r = randoms.at(static_cast<std::size_t>(in.a));
      args = fmt::format("{}, {}, seed {}, stream {}{}", register_name(*this, in.b), register_name(*this, in.c), r.seed,
                         r.stream, r.step_input >= 0 ? fmt::format(" + in{}", r.step_input) : "");
    } else if (op < kUnaryEnd) {
      args = register_name(*this, in.a);
    } else if (op < kBinaryEnd) {
      args = register_name(*this, in.a) + ", " + register_name(*this, in.b);
    } else {
      args = register_name(*this, in.a) + ", " + register_name(*this, in.b) + ", " + register_name(*this, in.c);
    }
    s += fmt::format("r{} = {}({}); ", i, opcode_name(in.op), args);
  }
  for (std::size_t k = 0; k < outputs.size(); ++k)
    s += fmt::format("out{} = {}{}{}", k, register_name(*this, outputs[k]), output_is_bool[k] ? " as bool" : "",
                     k + 1 < outputs.size() ? "; " : "");
  return s;
}

}  // namespace fused

namespace {

// The outputs: the program's shape, each output T or bool. Inputs must broadcast to the shape
// and be T or bool, or i64 scalars (random stream offsets); registers must be in range.
std::vector<TensorType> infer_fused_elementwise(const InferContext& ctx) {
  const fused::Program p = fused::Program::from_attributes(ctx.attrs());
  const DType t = ctx.attrs().get_dtype("dtype");
  if (!is_floating(t)) ctx.fail(fmt::format("the program's element type must be f32 or f64, got {}", dtype_name(t)));
  if (static_cast<std::size_t>(p.inputs) != ctx.inputs().size())
    ctx.fail(fmt::format("the program reads {} inputs, the node has {}", p.inputs, ctx.inputs().size()));
  const Shape shape(p.shape);
  for (std::size_t i = 0; i < ctx.inputs().size(); ++i) {
    const TensorType& in = ctx.input(i);
    Shape joined;
    const bool key = in.dtype == DType::i64 && in.shape.numel() == 1;
    if (!key && in.dtype != t && in.dtype != DType::boolean)
      ctx.fail(fmt::format("input {} is {}; a {} program reads {} or bool inputs", i, in.to_string(), dtype_name(t),
                           dtype_name(t)));
    if (!key && (!broadcast_shapes(in.shape, shape, joined) || joined != shape))
      ctx.fail(
          fmt::format("input {} ({}) does not broadcast to the output shape {}", i, in.to_string(), shape.to_string()));
  }
  const std::int32_t registers = p.registers();
  for (std::size_t i = 0; i < p.code.size(); ++i) {
    const fused::Instruction& in = p.code[i];
    const auto limit = p.first_temporary() + static_cast<std::int32_t>(i);  // reads only earlier registers
    const int op = static_cast<int>(in.op);
    if (op < 0 || op > static_cast<int>(fused::Opcode::uniform)) ctx.fail(fmt::format("bad opcode {}", op));
    const int reads = in.op == fused::Opcode::uniform ? 0
                                                      : (op < fused::kUnaryEnd    ? 1
                                                         : op < fused::kBinaryEnd ? 2
                                                                                  : 3);
    const std::array<std::int32_t, 3> args{in.a, in.b, in.c};
    for (int k = 0; k < reads; ++k)
      if (args[static_cast<std::size_t>(k)] < 0 || args[static_cast<std::size_t>(k)] >= limit)
        ctx.fail(
            fmt::format("instruction {} reads register {}, not yet defined", i, args[static_cast<std::size_t>(k)]));
    if (in.op == fused::Opcode::uniform && (in.a < 0 || static_cast<std::size_t>(in.a) >= p.randoms.size()))
      ctx.fail(fmt::format("instruction {} names random stream {} of {}", i, in.a, p.randoms.size()));
  }
  for (const fused::RandomStream& r : p.randoms)
    if (r.step_input >= static_cast<std::int32_t>(ctx.inputs().size()) ||
        (r.step_input >= 0 && ctx.input(static_cast<std::size_t>(r.step_input)).dtype != DType::i64))
      ctx.fail(fmt::format("random stream offset input {} is not an i64 input", r.step_input));
  if (p.outputs.empty() || p.outputs.size() != p.output_is_bool.size()) ctx.fail("the program has no outputs");
  std::vector<TensorType> out;
  for (std::size_t k = 0; k < p.outputs.size(); ++k) {
    if (p.outputs[k] < 0 || p.outputs[k] >= registers) ctx.fail(fmt::format("output {} names no register", k));
    out.push_back({p.output_is_bool[k] ? DType::boolean : t, shape});
  }
  return out;
}

}  // namespace

namespace ops {
const OpDef fused_elementwise{.name = "fused_elementwise",
                              .min_inputs = 0,
                              .max_inputs = -1,
                              .infer = infer_fused_elementwise,
                              .elementwise = true,
                              .key_on_output = true,
                              .decode = decode_as<FusedElementwiseParams>};
}  // namespace ops

FusedElementwiseParams FusedElementwiseParams::decode(const DecodeContext& context) {
  return {fused::Program::from_attributes(context.attrs), context.attrs.get_dtype("dtype")};
}

std::vector<Value> fused_elementwise(Graph& graph, std::span<const Value> inputs, const fused::Program& program,
                                     DType dtype, std::source_location where) {
  Attributes attrs = program.to_attributes();
  attrs.set("dtype", dtype);
  return graph.apply(ops::fused_elementwise, inputs, std::move(attrs), where);
}

}  // namespace fovea
