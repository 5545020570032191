// The emitters of the optimizer's fused ops: each becomes the standard ONNX ops it stands for.
#include <array>
#include <limits>
#include <numeric>
#include <optional>

#include <fmt/format.h>

#include "fovea/core/error.h"
#include "fovea/onnx/exporter.h"
#include "fovea/onnx/tensor_proto.h"
#include "fovea/ops/attention.h"
#include "fovea/ops/fused_elementwise.h"
#include "fovea/ops/normalization.h"

namespace fovea::onnx {

namespace {

// --- fused_elementwise ------------------------------------------------------------------------

// One register of a program while it is exported: the tensor holding it as the program's float
// type T and the one holding it as bool (a comparison's result), each made from the other by a
// Cast when first asked for, and its shape (an input or an immediate may be smaller than the
// program's shape, until it meets a larger operand).
struct Register {
  std::string as_float, as_bool;
  Shape shape;
};

class ProgramExporter {
 public:
  ProgramExporter(Exporter& exporter, const Node& node)
      : exporter_(exporter), node_(node), params_(params_of<FusedElementwiseParams>(exporter, node)) {}

  void run() {
    const fused::Program& p = params_.program;
    for (std::int32_t i = 0; i < p.inputs; ++i) {
      const TensorType& type = exporter_.graph().type(node_.inputs[static_cast<std::size_t>(i)]);
      const std::string& name = exporter_.input(node_, static_cast<std::size_t>(i));
      registers_.push_back(type.dtype == DType::boolean ? Register{"", name, type.shape}
                                                        : Register{name, "", type.shape});
    }
    for (double immediate : p.immediates)
      registers_.push_back({exporter_.scalar(node_, "immediate", params_.dtype, immediate), "", Shape()});
    for (const fused::Instruction& instruction : p.code) registers_.push_back(execute(instruction));
    for (std::size_t k = 0; k < p.outputs.size(); ++k) store(k);
  }

 private:
  std::string as_float(std::int32_t r) {
    Register& reg = registers_.at(static_cast<std::size_t>(r));
    if (reg.as_float.empty()) reg.as_float = exporter_.cast(node_, reg.as_bool, params_.dtype);
    return reg.as_float;
  }
  std::string as_bool(std::int32_t r) {
    Register& reg = registers_.at(static_cast<std::size_t>(r));
    if (reg.as_bool.empty()) reg.as_bool = exporter_.cast(node_, reg.as_float, DType::boolean);
    return reg.as_bool;
  }
  Shape joined(std::initializer_list<std::int32_t> operands) const {
    Shape shape;
    for (std::int32_t r : operands) {
      Shape next;
      broadcast_shapes(shape, registers_.at(static_cast<std::size_t>(r)).shape, next);
      shape = next;
    }
    return shape;
  }
  Register execute(const fused::Instruction& in);
  void store(std::size_t k);

  Exporter& exporter_;
  const Node& node_;
  const FusedElementwiseParams params_;
  std::vector<Register> registers_;
};

Register ProgramExporter::execute(const fused::Instruction& in) {
  const std::string_view name = fused::opcode_name(in.op);
  const int op = static_cast<int>(in.op);
  const bool unary = op < fused::kUnaryEnd;
  Register out{"", "", unary ? registers_.at(static_cast<std::size_t>(in.a)).shape : joined({in.a, in.b})};
  if (in.op == fused::Opcode::copy) return registers_.at(static_cast<std::size_t>(in.a));
  if (in.op == fused::Opcode::to_bool) return {"", as_bool(in.a), out.shape};
  if (in.op == fused::Opcode::uniform)
    node_.fail("export: op random_uniform (inside fused_elementwise) of node " + node_.name +
               " has no ONNX equivalent (dropout in training mode: export the inference graph)");
  if (in.op == fused::Opcode::where) {
    out.shape = joined({in.a, in.b, in.c});
    out.as_float = exporter_.add_step(node_, "Where", {as_bool(in.a), as_float(in.b), as_float(in.c)});
    return out;
  }
  if (name == "rsqrt") {
    out.as_float = exporter_.add_step(node_, "Reciprocal", {exporter_.add_step(node_, "Sqrt", {as_float(in.a)})});
    return out;
  }
  if (name == "not_equal") {
    out.as_bool =
        exporter_.add_step(node_, "Not", {exporter_.add_step(node_, "Equal", {as_float(in.a), as_float(in.b)})});
    return out;
  }
  if (const ElementwiseOp* row = find_elementwise_op(name)) {
    std::vector<std::string> inputs{row->reads_bool ? as_bool(in.a) : as_float(in.a)};
    if (!unary) inputs.push_back(row->reads_bool ? as_bool(in.b) : as_float(in.b));
    (row->writes_bool ? out.as_bool : out.as_float) = exporter_.add_step(node_, row->onnx, inputs);
    return out;
  }
  node_.fail(fmt::format("export: the fused_elementwise opcode {} has no ONNX equivalent", name));
}

// Output k: its register in the type the node stores it as, expanded to the program's shape
// when the register is smaller.
void ProgramExporter::store(std::size_t k) {
  const fused::Program& p = params_.program;
  const std::int32_t r = p.outputs[k];
  std::string value = p.output_is_bool[k] ? as_bool(r) : as_float(r);
  const std::string name = exporter_.output(k);
  if (registers_.at(static_cast<std::size_t>(r)).shape != Shape(p.shape)) {
    exporter_.add(node_, "Expand", name, {value, exporter_.int64s(node_, "shape", p.shape)}, {name});
    return;
  }
  exporter_.add(node_, "Identity", name, {value}, {name});
}

}  // namespace

void emit_fused_elementwise(Exporter& exporter, const Node& node) { ProgramExporter(exporter, node).run(); }

// --- fused_attention --------------------------------------------------------------------------

namespace {

// Where causal attention lets query i see key j: j <= i + (Tk - Tq), bottom-right aligned.
Tensor causal_allowed(std::int64_t queries, std::int64_t keys) {
  Tensor allowed = Tensor::empty(DType::boolean, Shape({queries, keys}));
  auto data = allowed.data<std::uint8_t>();
  for (std::int64_t i = 0; i < queries; ++i)
    for (std::int64_t j = 0; j < keys; ++j) data[static_cast<std::size_t>(i * keys + j)] = j <= i + (keys - queries);
  return allowed;
}

}  // namespace

// softmax(scale·q·kᵀ + mask, causal) · v as the chain a framework would write; half-precision
// operands are computed in f32, as the fused kernels do. lse, when read, is a ReduceLogSumExp of
// the scores.
void emit_fused_attention(Exporter& exporter, const Node& node) {
  const auto p = params_of<AttentionParams>(exporter, node);
  if (p.dropout.enabled())
    node.fail("export: op fused_attention of node " + node.name +
              " has dropout (training mode), which has no ONNX equivalent: export the inference graph");
  const TensorType& q = exporter.graph().type(node.inputs[0]);
  const DType compute = is_half(q.dtype) ? DType::f32 : q.dtype;
  std::array<std::string, 3> operands;
  for (std::size_t i = 0; i < 3; ++i) {
    operands[i] = exporter.input(node, i);
    if (compute != q.dtype) operands[i] = exporter.cast(node, operands[i], compute);
  }
  std::vector<std::int64_t> perm(static_cast<std::size_t>(q.shape.rank()));
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[perm.size() - 1], perm[perm.size() - 2]);
  proto::NodeProto* transpose = nullptr;
  const std::string keys = exporter.add_step(node, "Transpose", {operands[1]}, &transpose);
  set_attribute(*transpose, "perm", perm);
  std::string scores = exporter.add_step(node, "MatMul", {operands[0], keys});
  scores = exporter.add_step(node, "Mul", {scores, exporter.scalar(node, "scale", compute, p.scale)});
  if (p.inputs.has_mask) scores = exporter.add_step(node, "Add", {scores, exporter.input(node, p.inputs.mask)});
  if (p.causal) {
    const std::int64_t tq = q.shape[q.shape.rank() - 2],
                       tk = exporter.graph().type(node.inputs[1]).shape[q.shape.rank() - 2];
    const std::string allowed = exporter.initializer(node.name + "/causal", causal_allowed(tq, tk));
    const std::string forbidden = exporter.scalar(node, "forbidden", compute, -std::numeric_limits<double>::infinity());
    scores = exporter.add_step(node, "Where", {allowed, scores, forbidden});
  }
  proto::NodeProto* softmax = nullptr;
  const std::string weights = exporter.add_step(node, "Softmax", {scores}, &softmax);
  set_attribute(*softmax, "axis", std::int64_t{-1});
  const std::string output = exporter.output(0);
  if (compute == q.dtype) {
    exporter.add(node, "MatMul", node.name, {weights, operands[2]}, {output});
  } else {
    const std::string product = exporter.add_step(node, "MatMul", {weights, operands[2]});
    set_attribute(exporter.add(node, "Cast", node.name, {product}, {output}), "to",
                  std::int64_t{element_type_of(q.dtype)});
  }
  if (!exporter.is_read(1)) return;
  proto::NodeProto& lse = exporter.add(node, "ReduceLogSumExp", node.name + "/lse", {scores}, {exporter.output(1)});
  set_attribute(lse, "axes", std::vector<std::int64_t>{-1});
  set_attribute(lse, "keepdims", std::int64_t{0});
}

// --- fused_layer_norm -------------------------------------------------------------------------

// LayerNormalization over the last axis. Its Mean and InvStdDev outputs are f32 (the stash
// type), so for another dtype they are cast to it when read.
void emit_fused_layer_norm(Exporter& exporter, const Node& node) {
  if (exporter.opset() < 17) node.fail("export: LayerNormalization needs opset 17 or later");
  const DType dtype = node.outputs[0].dtype;
  std::vector<std::string> outputs{exporter.output(0)};
  std::vector<std::string> statistics(3);
  for (std::size_t k = 1; k < 3; ++k) {
    if (!exporter.is_read(k)) {
      outputs.emplace_back();
      continue;
    }
    statistics[k] = exporter.output(k);
    outputs.push_back(dtype == DType::f32 ? statistics[k] : exporter.fresh(statistics[k] + "/f32"));
  }
  while (outputs.back().empty()) outputs.pop_back();
  std::vector<std::string> inputs;
  for (std::size_t i = 0; i < node.inputs.size(); ++i) inputs.push_back(exporter.input(node, i));
  proto::NodeProto& norm = exporter.add(node, "LayerNormalization", node.name, inputs, outputs);
  set_attribute(norm, "axis", std::int64_t{-1});
  set_attribute(norm, "epsilon", static_cast<float>(params_of<LayerNormParams>(exporter, node).eps));
  for (std::size_t k = 1; k < outputs.size(); ++k)
    if (!statistics[k].empty() && outputs[k] != statistics[k])
      set_attribute(exporter.add(node, "Cast", statistics[k], {outputs[k]}, {statistics[k]}), "to",
                    std::int64_t{element_type_of(dtype)});
}

}  // namespace fovea::onnx
