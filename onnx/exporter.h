// The state of one export (onnx/ internal): the GraphProto being written, the ONNX name of every
// Fovea value already exported, and helpers that add nodes and initializers. The emitters
// (onnx/export_ops.cpp) turn one Fovea node each into ONNX nodes through it.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fovea/core/graph.h"
#include "fovea/onnx/proto.h"

namespace fovea::onnx {

class Exporter {
 public:
  Exporter(const Graph& graph, proto::GraphProto& out, int opset) : graph_(graph), out_(out), opset_(opset) {}

  const Graph& graph() const { return graph_; }
  int opset() const { return opset_; }

  // Reserves the names the model must keep as they are (the Fovea node names), so that helper
  // tensors never take one of them.
  void reserve(const std::string& name) { used_.insert(name); }
  // A tensor name not used yet: `base`, or `base` with a numeric suffix.
  std::string fresh(const std::string& base);

  // The ONNX tensor name of a Fovea value that has been exported.
  const std::string& name_of(ValueRef value) const;
  // The tensor name of input `i` of `node`.
  const std::string& input(const Node& node, std::size_t i) const { return name_of(node.inputs.at(i)); }
  // Starts exporting node `id`: output() and is_read() below are about its outputs.
  void begin(std::uint32_t id) { current_ = id; }
  // The name output `k` of the node being exported is exported under: the node's name for
  // output 0, "<name>:<k>" for the others. Registers it for the nodes that read it.
  std::string output(std::size_t k = 0);
  // Whether some exported node or graph output reads output `k` of the node being exported.
  bool is_read(std::size_t k) const { return read_.contains(ValueRef{current_, static_cast<std::uint32_t>(k)}); }
  void mark_read(ValueRef value) { read_.insert(value); }

  // Adds an ONNX node named `name` (made unique) with the given inputs and outputs; "" as an
  // input is an omitted optional input. Its doc_string is the file:line of `origin`.
  proto::NodeProto& add(const Node& origin, std::string_view op_type, const std::string& name,
                        const std::vector<std::string>& inputs, const std::vector<std::string>& outputs);
  // The same for a helper node of `origin`: named "<origin>/<op_type>", with one fresh output
  // named likewise, which it returns.
  std::string add_step(const Node& origin, std::string_view op_type, const std::vector<std::string>& inputs,
                       proto::NodeProto** added = nullptr);

  // `tensor` converted to `dtype` by a Cast step of `origin`; returns the Cast's output.
  std::string cast(const Node& origin, const std::string& tensor, DType dtype);

  // An initializer holding `tensor`, under a fresh name made from `base`; returns the name.
  std::string initializer(const std::string& base, const Tensor& tensor);
  // An i64 vector initializer (shapes, axes, pads), named "<origin>/<what>".
  std::string int64s(const Node& origin, const std::string& what, const std::vector<std::int64_t>& values);
  // A rank-0 initializer of `dtype` holding `value`, named "<origin>/<what>".
  std::string scalar(const Node& origin, const std::string& what, DType dtype, double value);

 private:
  const Graph& graph_;
  proto::GraphProto& out_;
  int opset_;
  std::uint32_t current_ = 0;
  std::set<std::string> used_, node_names_;
  std::map<ValueRef, std::string> names_;
  std::set<ValueRef> read_;
};

// The typed attributes of `node` (core/op.h, decoded attributes).
template <typename P>
P params_of(const Exporter& exporter, const Node& node) {
  const auto decoded = decode_params(exporter.graph(), node);
  return dynamic_cast<const Decoded<P>&>(*decoded).value;
}

// Attributes of ONNX nodes.
void set_attribute(proto::NodeProto& node, const std::string& name, std::int64_t value);
void set_attribute(proto::NodeProto& node, const std::string& name, float value);
void set_attribute(proto::NodeProto& node, const std::string& name, const std::vector<std::int64_t>& values);

// An elementwise op of ops/elementwise_table.h that is one ONNX op, and whether that op reads
// and writes booleans (the logical ops, the comparisons' results).
struct ElementwiseOp {
  std::string_view fovea, onnx;
  bool reads_bool, writes_bool;
};
// Its row, by the Fovea op's name (an opcode of fused_elementwise has the same name); nullptr
// for an op that is not one ONNX op.
const ElementwiseOp* find_elementwise_op(std::string_view fovea_op);

// Writes the ONNX nodes of one Fovea node; fovea::Error naming the node when its op has no ONNX
// equivalent (a backward op, an update, a random op) or uses something ONNX lacks.
void emit_node(Exporter& exporter, const Node& node);

// The emitters of the fused ops (onnx/export_fused.cpp), which emit_node dispatches to.
void emit_fused_elementwise(Exporter& exporter, const Node& node);
void emit_fused_attention(Exporter& exporter, const Node& node);
void emit_fused_layer_norm(Exporter& exporter, const Node& node);

}  // namespace fovea::onnx
