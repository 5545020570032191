// The emitters: one function per Fovea op (or family), and the table that maps op names to them.
#include <algorithm>
#include <numeric>
#include <string_view>

#include <fmt/format.h>

#include "fovea/core/error.h"
#include "fovea/onnx/exporter.h"
#include "fovea/onnx/tensor_proto.h"
#include "fovea/ops/convolution.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/matmul.h"
#include "fovea/ops/reduce.h"
#include "fovea/ops/shape_ops.h"

namespace fovea::onnx {

// The rows of ops/elementwise_table.h that are one ONNX op of the same meaning (rsqrt and
// not_equal take two, and are emitted on their own).
constexpr ElementwiseOp kElementwiseOps[] = {
    {"neg", "Neg", false, false},           {"abs", "Abs", false, false},
    {"relu", "Relu", false, false},         {"exp", "Exp", false, false},
    {"log", "Log", false, false},           {"sqrt", "Sqrt", false, false},
    {"tanh", "Tanh", false, false},         {"sigmoid", "Sigmoid", false, false},
    {"sin", "Sin", false, false},           {"cos", "Cos", false, false},
    {"softplus", "Softplus", false, false}, {"logical_not", "Not", true, true},
    {"add", "Add", false, false},           {"sub", "Sub", false, false},
    {"mul", "Mul", false, false},           {"div", "Div", false, false},
    {"pow", "Pow", false, false},           {"maximum", "Max", false, false},
    {"minimum", "Min", false, false},       {"equal", "Equal", false, true},
    {"less", "Less", false, true},          {"less_equal", "LessOrEqual", false, true},
    {"greater", "Greater", false, true},    {"greater_equal", "GreaterOrEqual", false, true},
    {"logical_and", "And", true, true},     {"logical_or", "Or", true, true},
};

const ElementwiseOp* find_elementwise_op(std::string_view fovea_op) {
  for (const ElementwiseOp& row : kElementwiseOps)
    if (row.fovea == fovea_op) return &row;
  return nullptr;
}

namespace {

using EmitFn = void (*)(Exporter&, const Node&);

// The typed attributes of `node` (core/op.h, decoded attributes).
// Every input of `node`, by tensor name.
std::vector<std::string> inputs_of(const Exporter& exporter, const Node& node) {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < node.inputs.size(); ++i) names.push_back(exporter.input(node, i));
  return names;
}

// One ONNX node of `op_type` named after `node`, reading its inputs and writing its output 0.
proto::NodeProto& emit_same(Exporter& exporter, const Node& node, std::string_view op_type) {
  return exporter.add(node, op_type, node.name, inputs_of(exporter, node), {exporter.output(0)});
}

// --- Elementwise ------------------------------------------------------------------------------

// Ops that are one ONNX op reading the same inputs, besides the elementwise rows: where, and
// the ops ONNX needs nothing for (a gradient barrier, a device transfer, an index check that
// ONNX runtimes make themselves or not at all) as Identity.
struct Direct {
  std::string_view fovea, onnx;
};
constexpr Direct kDirect[] = {
    {"where", "Where"},      {"stop_gradient", "Identity"}, {"to_device", "Identity"},
    {"to_host", "Identity"}, {"check_indices", "Identity"},
};

std::string_view direct_op(std::string_view fovea_op) {
  if (const ElementwiseOp* row = find_elementwise_op(fovea_op)) return row->onnx;
  for (const Direct& d : kDirect)
    if (d.fovea == fovea_op) return d.onnx;
  return {};
}

bool is_ordering(std::string_view onnx_op) {
  return onnx_op == "Less" || onnx_op == "Greater" || onnx_op == "LessOrEqual" || onnx_op == "GreaterOrEqual";
}

void emit_direct(Exporter& exporter, const Node& node) {
  const std::string_view op = direct_op(node.op_name());
  std::vector<std::string> inputs = inputs_of(exporter, node);
  // ONNX orders numbers only; Fovea also compares booleans (false < true), as 0 and 1.
  if (is_ordering(op) && exporter.graph().type(node.inputs[0]).dtype == DType::boolean) {
    for (std::string& input : inputs) input = exporter.cast(node, input, DType::i32);
  }
  exporter.add(node, op, node.name, inputs, {exporter.output(0)});
}

void emit_rsqrt(Exporter& exporter, const Node& node) {
  const std::string root = exporter.add_step(node, "Sqrt", {exporter.input(node, 0)});
  exporter.add(node, "Reciprocal", node.name, {root}, {exporter.output(0)});
}

void emit_not_equal(Exporter& exporter, const Node& node) {
  const std::string equal = exporter.add_step(node, "Equal", inputs_of(exporter, node));
  exporter.add(node, "Not", node.name, {equal}, {exporter.output(0)});
}

void emit_cast(Exporter& exporter, const Node& node) {
  set_attribute(emit_same(exporter, node, "Cast"), "to", std::int64_t{element_type_of(node.outputs[0].dtype)});
}

// --- Linear algebra and shapes ----------------------------------------------------------------

// The permutation that swaps the last two of `rank` dims.
std::vector<std::int64_t> swap_last_two(int rank) {
  std::vector<std::int64_t> perm(static_cast<std::size_t>(rank));
  std::iota(perm.begin(), perm.end(), 0);
  std::swap(perm[perm.size() - 1], perm[perm.size() - 2]);
  return perm;
}

// A 2-D product is a Gemm, whose transA and transB say what Fovea's flags say; a batched one is
// a MatMul, after a Transpose of each operand whose flag is set.
void emit_matmul(Exporter& exporter, const Node& node) {
  const auto p = params_of<MatmulParams>(exporter, node);
  const int rank_a = exporter.graph().type(node.inputs[0]).shape.rank();
  const int rank_b = exporter.graph().type(node.inputs[1]).shape.rank();
  if (rank_a == 2 && rank_b == 2) {
    proto::NodeProto& gemm = emit_same(exporter, node, "Gemm");
    set_attribute(gemm, "transA", std::int64_t{p.transpose_a});
    set_attribute(gemm, "transB", std::int64_t{p.transpose_b});
    return;
  }
  std::vector<std::string> inputs = inputs_of(exporter, node);
  const bool flags[2] = {p.transpose_a, p.transpose_b};
  const int ranks[2] = {rank_a, rank_b};
  for (std::size_t i = 0; i < 2; ++i) {
    if (!flags[i]) continue;
    proto::NodeProto* transpose = nullptr;
    inputs[i] = exporter.add_step(node, "Transpose", {inputs[i]}, &transpose);
    set_attribute(*transpose, "perm", swap_last_two(ranks[i]));
  }
  exporter.add(node, "MatMul", node.name, inputs, {exporter.output(0)});
}

void emit_reshape(Exporter& exporter, const Node& node) {
  const std::string shape = exporter.int64s(node, "shape", node.outputs[0].shape.dims());
  exporter.add(node, "Reshape", node.name, {exporter.input(node, 0), shape}, {exporter.output(0)});
}

void emit_permute(Exporter& exporter, const Node& node) {
  set_attribute(emit_same(exporter, node, "Transpose"), "perm", params_of<PermuteParams>(exporter, node).axes);
}

void emit_broadcast_to(Exporter& exporter, const Node& node) {
  const std::string shape = exporter.int64s(node, "shape", node.outputs[0].shape.dims());
  exporter.add(node, "Expand", node.name, {exporter.input(node, 0), shape}, {exporter.output(0)});
}

// Slice's end is where the last element taken ends: start + count·step, which ONNX clamps to
// the dim as Fovea does.
void emit_slice(Exporter& exporter, const Node& node) {
  const auto p = params_of<SliceParams>(exporter, node);
  const std::int64_t count = node.outputs[0].shape[p.axis];
  const std::vector<std::string> inputs{exporter.input(node, 0), exporter.int64s(node, "starts", {p.start}),
                                        exporter.int64s(node, "ends", {p.start + count * p.step}),
                                        exporter.int64s(node, "axes", {p.axis}),
                                        exporter.int64s(node, "steps", {p.step})};
  exporter.add(node, "Slice", node.name, inputs, {exporter.output(0)});
}

void emit_concat(Exporter& exporter, const Node& node) {
  set_attribute(emit_same(exporter, node, "Concat"), "axis", std::int64_t{params_of<AxisParams>(exporter, node).axis});
}

void emit_gather(Exporter& exporter, const Node& node) {
  set_attribute(emit_same(exporter, node, "Gather"), "axis", std::int64_t{params_of<AxisParams>(exporter, node).axis});
}

// Opset 13 made ReduceSum's axes an input; ReduceMax keeps them an attribute up to opset 17.
void emit_reduce(Exporter& exporter, const Node& node) {
  const auto p = params_of<ReduceParams>(exporter, node);
  const bool sum = node.op_name() == "reduce_sum";
  std::vector<std::string> inputs{exporter.input(node, 0)};
  if (sum) inputs.push_back(exporter.int64s(node, "axes", p.axes));
  proto::NodeProto& reduce =
      exporter.add(node, sum ? "ReduceSum" : "ReduceMax", node.name, inputs, {exporter.output(0)});
  set_attribute(reduce, "keepdims", std::int64_t{p.keepdims});
  if (!sum) set_attribute(reduce, "axes", p.axes);
  // No axes in Fovea means a rank-0 input, whose one element is its own sum.
  if (sum && p.axes.empty()) set_attribute(reduce, "noop_with_empty_axes", std::int64_t{1});
}

// --- Creation ---------------------------------------------------------------------------------

// fill: a ConstantOfShape, which stores one element however large the tensor.
void emit_fill(Exporter& exporter, const Node& node) {
  const TensorType& type = node.outputs[0];
  const double value = params_of<FillParams>(exporter, node).value;
  if (type.dtype == DType::bf16) {  // ConstantOfShape takes bfloat16 from opset 20 only
    const std::string name = exporter.initializer(node.name + "/value", Tensor::full(type.dtype, type.shape, value));
    exporter.add(node, "Identity", node.name, {name}, {exporter.output(0)});
    return;
  }
  const std::string shape = exporter.int64s(node, "shape", type.shape.dims());
  proto::NodeProto& constant = exporter.add(node, "ConstantOfShape", node.name, {shape}, {exporter.output(0)});
  proto::AttributeProto& attribute = *constant.add_attribute();
  attribute.set_name("value");
  attribute.set_type(proto::AttributeProto::TENSOR);
  tensor_to_proto(Tensor::full(type.dtype, Shape({1}), value), *attribute.mutable_t());
}

// iota: a Range along the axis, reshaped to lie along it and expanded to the whole shape.
void emit_iota(Exporter& exporter, const Node& node) {
  const TensorType& type = node.outputs[0];
  const int axis = params_of<AxisParams>(exporter, node).axis;
  const std::int64_t count = type.shape[axis];
  const std::string range = exporter.add_step(node, "Range",
                                              {exporter.scalar(node, "start", type.dtype, 0),
                                               exporter.scalar(node, "limit", type.dtype, static_cast<double>(count)),
                                               exporter.scalar(node, "delta", type.dtype, 1)});
  std::vector<std::int64_t> along(static_cast<std::size_t>(type.shape.rank()), 1);
  along[static_cast<std::size_t>(axis)] = count;
  const std::string line = exporter.add_step(node, "Reshape", {range, exporter.int64s(node, "along", along)});
  exporter.add(node, "Expand", node.name, {line, exporter.int64s(node, "shape", type.shape.dims())},
               {exporter.output(0)});
}

// --- Convolutions -----------------------------------------------------------------------------

const std::vector<std::int64_t>& ints(const Node& node, const char* name) { return node.attrs.get_ints(name); }

// conv2d and fused_conv2d: a Conv (with the bias as its third input), and a Relu after it when
// the fused node's epilogue has one.
void emit_conv(Exporter& exporter, const Node& node) {
  const bool relu = node.attrs.has("activation") && node.attrs.get_string("activation") == "relu";
  const std::string output = exporter.output(0);
  const std::string conv_output = relu ? exporter.fresh(node.name + "/Conv") : output;
  proto::NodeProto& conv =
      exporter.add(node, "Conv", relu ? node.name + "/Conv" : node.name, inputs_of(exporter, node), {conv_output});
  const Shape& w = exporter.graph().type(node.inputs[1]).shape;
  set_attribute(conv, "kernel_shape", std::vector<std::int64_t>{w[2], w[3]});
  set_attribute(conv, "strides", ints(node, "stride"));
  set_attribute(conv, "pads", ints(node, "padding"));
  set_attribute(conv, "dilations", ints(node, "dilation"));
  set_attribute(conv, "group", node.attrs.get_int("groups"));
  if (relu) exporter.add(node, "Relu", node.name, {conv_output}, {output});
}

void emit_pool(Exporter& exporter, const Node& node) {
  const bool max = node.op_name() == "max_pool2d";
  proto::NodeProto& pool = emit_same(exporter, node, max ? "MaxPool" : "AveragePool");
  set_attribute(pool, "kernel_shape", ints(node, "kernel"));
  set_attribute(pool, "strides", ints(node, "stride"));
  set_attribute(pool, "pads", ints(node, "padding"));
  if (max) {
    set_attribute(pool, "dilations", ints(node, "dilation"));
    return;
  }
  if (ints(node, "dilation") != std::vector<std::int64_t>{1, 1})
    node.fail("export: ONNX's AveragePool has no dilation before opset 19");
  const bool include = node.attrs.has("count_include_pad") && node.attrs.get_bool("count_include_pad");
  set_attribute(pool, "count_include_pad", std::int64_t{include});
}

void emit_pad(Exporter& exporter, const Node& node) {
  const auto p = params_of<PadParams>(exporter, node);
  std::vector<std::int64_t> pads = p.before;
  pads.insert(pads.end(), p.after.begin(), p.after.end());
  const DType dtype = node.outputs[0].dtype;
  const std::string value = exporter.scalar(node, "value", dtype, p.value);
  proto::NodeProto& pad =
      exporter.add(node, "Pad", node.name, {exporter.input(node, 0), exporter.int64s(node, "pads", pads), value},
                   {exporter.output(0)});
  proto::AttributeProto& mode = *pad.add_attribute();
  mode.set_name("mode");
  mode.set_type(proto::AttributeProto::STRING);
  mode.set_s(p.mode == PadMode::reflect ? "reflect" : "constant");
}

// --- Normalizations ---------------------------------------------------------------------------

void emit_softmax(Exporter& exporter, const Node& node) {
  const bool log = node.op_name() == "fused_log_softmax";
  set_attribute(emit_same(exporter, node, log ? "LogSoftmax" : "Softmax"), "axis", std::int64_t{-1});
}

// --- The table --------------------------------------------------------------------------------

struct Emitter {
  std::string_view op;
  EmitFn emit;
};
constexpr Emitter kEmitters[] = {
    {"rsqrt", emit_rsqrt},
    {"not_equal", emit_not_equal},
    {"cast", emit_cast},
    {"matmul", emit_matmul},
    {"reshape", emit_reshape},
    {"permute", emit_permute},
    {"broadcast_to", emit_broadcast_to},
    {"slice", emit_slice},
    {"concat", emit_concat},
    {"gather", emit_gather},
    {"reduce_sum", emit_reduce},
    {"reduce_max", emit_reduce},
    {"fill", emit_fill},
    {"iota", emit_iota},
    {"conv2d", emit_conv},
    {"fused_conv2d", emit_conv},
    {"max_pool2d", emit_pool},
    {"avg_pool2d", emit_pool},
    {"pad", emit_pad},
    {"fused_softmax", emit_softmax},
    {"fused_log_softmax", emit_softmax},
    {"fused_layer_norm", emit_fused_layer_norm},
    {"fused_attention", emit_fused_attention},
    {"fused_elementwise", emit_fused_elementwise},
};

EmitFn find_emitter(std::string_view op) {
  if (!direct_op(op).empty()) return emit_direct;
  for (const Emitter& e : kEmitters)
    if (e.op == op) return e.emit;
  return nullptr;
}

}  // namespace

void emit_node(Exporter& exporter, const Node& node) {
  const EmitFn emit = find_emitter(node.op_name());
  if (!emit || node.role != NodeRole::forward)
    node.fail(
        fmt::format("export: op {} of node {} has no ONNX equivalent (backward ops, updates, random ops and "
                    "training-mode batch norm cannot be exported: export the inference graph)",
                    node.op_name(), node.name));
  emit(exporter, node);
}

}  // namespace fovea::onnx
