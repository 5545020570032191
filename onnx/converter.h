// How one ONNX node becomes Fovea ops (onnx/ internal).
//
// A converter is a function from a NodeContext to the values of the node's outputs, built with
// Fovea's ops. The context hands it the node's inputs as Values, the inputs it needs to know now
// (a Reshape's shape) as Tensors, and the attributes. Two rules keep a model from importing
// into something that computes a different function:
//   - every attribute the node carries must be read by its converter, and every input it gives
//     must be taken: the importer rejects a node with an attribute or input its converter left
//     alone, so a converter written before an attribute existed cannot silently ignore it;
//   - a value the converter cannot compute as ONNX specifies is refused with ctx.unsupported().
// Each converter file adds its ops to the table with an add_*_converters function; a row names
// the oldest version of the op (ONNX's since_version) whose semantics the converter implements,
// and every newer version the ONNX schemas know is taken to be implemented too unless the row
// gives a last version.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fovea/core/graph.h"
#include "fovea/core/tensor.h"
#include "fovea/onnx/proto.h"

namespace fovea::onnx {

class Importer;

class NodeContext {
 public:
  NodeContext(Importer& importer, const proto::NodeProto& node, int version);

  Graph& graph() const;
  const proto::NodeProto& node() const { return node_; }
  const std::string& op_type() const { return node_.op_type(); }
  // The version of the op's schema the model's opset picks (ONNX's since_version).
  int version() const { return version_; }

  // --- Inputs: ONNX leaves an optional input out by giving it an empty name -------------------
  int input_count() const { return node_.input_size(); }
  bool has_input(int i) const { return i < node_.input_size() && !node_.input(i).empty(); }
  // The input's value; an error naming the node when it is missing.
  Value input(int i);
  std::optional<Value> optional_input(int i);
  // The input's value as known now: an initializer, a Constant node's value, a value of
  // ImportOptions::constant_inputs, or something computed from those alone. An error naming
  // the node and the input when it depends on a placeholder or a parameter.
  Tensor constant(int i);
  std::vector<std::int64_t> constant_ints(int i);
  double constant_number(int i);

  // --- Attributes: each read marks the attribute as understood --------------------------------
  bool has_attribute(std::string_view name) const;
  std::int64_t attribute_int(std::string_view name, std::optional<std::int64_t> fallback = std::nullopt);
  double attribute_float(std::string_view name, std::optional<double> fallback = std::nullopt);
  std::string attribute_string(std::string_view name, std::optional<std::string> fallback = std::nullopt);
  std::vector<std::int64_t> attribute_ints(std::string_view name,
                                           std::optional<std::vector<std::int64_t>> fallback = std::nullopt);
  std::vector<double> attribute_floats(std::string_view name,
                                       std::optional<std::vector<double>> fallback = std::nullopt);
  Tensor attribute_tensor(std::string_view name);

  // --- Outputs --------------------------------------------------------------------------------
  int output_count() const { return node_.output_size(); }
  bool wants_output(int i) const { return i < node_.output_size() && !node_.output(i).empty(); }

  // A fovea::Error naming the op, the node and the opset: the node asks for something the
  // importer does not implement.
  [[noreturn]] void unsupported(const std::string& what) const;
  // The same for a node that breaks ONNX's own rules (a required attribute missing).
  [[noreturn]] void invalid(const std::string& what) const;
  // "Reshape node 'reshape_1' (opset 13)"
  std::string describe() const;

  // For the importer, after the converter ran: what the converter left unread.
  std::vector<std::string> unread_attributes() const;
  std::vector<int> untaken_inputs() const;

 private:
  const proto::AttributeProto* attribute(std::string_view name, proto::AttributeProto::AttributeType type);

  Importer& importer_;
  const proto::NodeProto& node_;
  int version_;
  std::vector<bool> taken_;
  std::vector<std::string> read_;
};

using Converter = std::vector<Value> (*)(NodeContext& ctx);

struct ConverterEntry {
  std::string op_type;
  int first_version;  // the oldest since_version implemented
  Converter convert;
  int last_version = 0;  // the newest since_version implemented; 0: every one the schemas know
};
using ConverterTable = std::map<std::string, ConverterEntry, std::less<>>;

void add_elementwise_converters(ConverterTable& table);
void add_shape_converters(ConverterTable& table);
void add_reduction_converters(ConverterTable& table);
void add_nn_converters(ConverterTable& table);
void add_resize_converters(ConverterTable& table);

// The converters of every op, built once.
const ConverterTable& converters();

}  // namespace fovea::onnx

namespace fovea::onnx {

// Helpers the converter files share (onnx/convert_util.cpp).

// `axis` in [-rank, rank) made non-negative; invalid() when outside.
std::int64_t normalize_axis(const NodeContext& ctx, std::int64_t axis, std::int64_t rank);
// An i64 constant of the given values and shape (a vector when `shape` is left out).
Value int64_constant(Graph& graph, const std::vector<std::int64_t>& values, std::optional<Shape> shape = std::nullopt);
// Indices that may count from the end (ONNX allows -dim..dim-1) made non-negative, as i64.
Value wrap_negative_indices(Value indices, std::int64_t dim);
// For GatherElements and ScatterElements: the position in the flattened `data_shape` of every
// element of `indices` (non-negative, i64) read along `axis`, the other coordinates being the
// element's own.
Value flat_positions(Value indices, const Shape& data_shape, std::int64_t axis);

}  // namespace fovea::onnx
