#include "fovea/onnx/export.h"

#include <onnx/checker.h>
#include <onnx/shape_inference/implementation.h>

#include <exception>

#include <fmt/format.h>

#include "fovea/core/error.h"
#include "fovea/core/needed.h"
#include "fovea/io/checkpoint.h"
#include "fovea/onnx/exporter.h"
#include "fovea/onnx/tensor_proto.h"

namespace fovea::onnx {

// --- Exporter ---------------------------------------------------------------------------------

std::string Exporter::fresh(const std::string& base) {
  std::string name = base;
  for (int suffix = 1; used_.contains(name); ++suffix) name = fmt::format("{}.{}", base, suffix);
  used_.insert(name);
  return name;
}

const std::string& Exporter::name_of(ValueRef value) const {
  const auto found = names_.find(value);
  if (found == names_.end())
    throw Error(fmt::format("export: the value {}:{} is read before it is exported", graph_.node(value.node).name,
                            value.output));
  return found->second;
}

std::string Exporter::output(std::size_t k) {
  const Node& node = graph_.node(current_);
  // Output 0 takes the node's own name, reserved for it before the export began.
  const std::string name = k == 0 ? node.name : fresh(fmt::format("{}:{}", node.name, k));
  names_[ValueRef{current_, static_cast<std::uint32_t>(k)}] = name;
  return name;
}

proto::NodeProto& Exporter::add(const Node& origin, std::string_view op_type, const std::string& name,
                                const std::vector<std::string>& inputs, const std::vector<std::string>& outputs) {
  proto::NodeProto& node = *out_.add_node();
  std::string unique = name;
  for (int suffix = 1; node_names_.contains(unique); ++suffix) unique = fmt::format("{}.{}", name, suffix);
  node_names_.insert(unique);
  node.set_name(unique);
  node.set_op_type(std::string(op_type));
  for (const std::string& input : inputs) node.add_input(input);
  for (const std::string& output : outputs) node.add_output(output);
  if (origin.where.known()) node.set_doc_string(origin.where.to_string());
  return node;
}

std::string Exporter::add_step(const Node& origin, std::string_view op_type, const std::vector<std::string>& inputs,
                               proto::NodeProto** added) {
  const std::string base = fmt::format("{}/{}", origin.name, op_type);
  const std::string output = fresh(base);
  proto::NodeProto& node = add(origin, op_type, base, inputs, {output});
  if (added) *added = &node;
  return output;
}

std::string Exporter::cast(const Node& origin, const std::string& tensor, DType dtype) {
  proto::NodeProto* node = nullptr;
  const std::string out = add_step(origin, "Cast", {tensor}, &node);
  set_attribute(*node, "to", std::int64_t{element_type_of(dtype)});
  return out;
}

std::string Exporter::initializer(const std::string& base, const Tensor& tensor) {
  proto::TensorProto& init = *out_.add_initializer();
  tensor_to_proto(tensor, init);
  init.set_name(fresh(base));
  return init.name();
}

std::string Exporter::int64s(const Node& origin, const std::string& what, const std::vector<std::int64_t>& values) {
  return initializer(fmt::format("{}/{}", origin.name, what),
                     Tensor::from(values, Shape({static_cast<std::int64_t>(values.size())})));
}

std::string Exporter::scalar(const Node& origin, const std::string& what, DType dtype, double value) {
  return initializer(fmt::format("{}/{}", origin.name, what), Tensor::full(dtype, Shape(), value));
}

void set_attribute(proto::NodeProto& node, const std::string& name, std::int64_t value) {
  proto::AttributeProto& a = *node.add_attribute();
  a.set_name(name);
  a.set_type(proto::AttributeProto::INT);
  a.set_i(value);
}

void set_attribute(proto::NodeProto& node, const std::string& name, float value) {
  proto::AttributeProto& a = *node.add_attribute();
  a.set_name(name);
  a.set_type(proto::AttributeProto::FLOAT);
  a.set_f(value);
}

void set_attribute(proto::NodeProto& node, const std::string& name, const std::vector<std::int64_t>& values) {
  proto::AttributeProto& a = *node.add_attribute();
  a.set_name(name);
  a.set_type(proto::AttributeProto::INTS);
  for (std::int64_t v : values) a.add_ints(v);
}

// --- The model --------------------------------------------------------------------------------

namespace {

constexpr int kMinOpset = 13, kMaxOpset = 17;

void check_arguments(const Graph& graph, const std::vector<Value>& outputs, const ExportOptions& options) {
  if (options.opset < kMinOpset || options.opset > kMaxOpset)
    throw Error(fmt::format("export: opset {} is not supported; Fovea exports opsets {} to {}", options.opset,
                            kMinOpset, kMaxOpset));
  if (outputs.empty()) throw Error("export: no outputs to export");
  for (const Value& v : outputs)
    if (!v.defined() || &v.graph() != &graph || !graph.contains(v.ref()))
      throw Error("export: an output is not a value of the graph being exported");
  if (!options.output_names.empty() && options.output_names.size() != outputs.size())
    throw Error(fmt::format("export: {} output names for {} outputs", options.output_names.size(), outputs.size()));
}

void set_type(proto::ValueInfoProto& info, const std::string& name, const TensorType& type) {
  info.set_name(name);
  proto::TypeProto::Tensor& tensor = *info.mutable_type()->mutable_tensor_type();
  tensor.set_elem_type(element_type_of(type.dtype));
  proto::TensorShapeProto& shape = *tensor.mutable_shape();
  for (std::int64_t d : type.shape.dims()) shape.add_dim()->set_dim_value(d);
}

// A source node: a placeholder becomes a graph input, a parameter, state or constant an
// initializer of the node's name.
void export_source(Exporter& exporter, proto::GraphProto& out, const Node& node, std::uint32_t id) {
  const std::string name = exporter.output(0);
  if (node.op == &placeholder_op) {
    set_type(*out.add_input(), name, node.outputs[0]);
    return;
  }
  const ValueRef ref{id, 0};
  const Tensor& value =
      exporter.graph().is_persistent(ref) ? exporter.graph().parameter_value(ref) : node.attrs.get_tensor("value");
  proto::TensorProto& init = *out.add_initializer();
  tensor_to_proto(value, init);
  init.set_name(name);
}

// The graph outputs, each named after its node or as the options say; an Identity gives an
// output its own name when it must differ from the tensor's (a name asked for, or one value
// exported twice).
void export_outputs(Exporter& exporter, proto::GraphProto& out, const std::vector<Value>& outputs,
                    const ExportOptions& options) {
  std::set<std::string> taken;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const std::string& tensor = exporter.name_of(outputs[i].ref());
    std::string name = tensor;
    if (!options.output_names.empty() && options.output_names[i] != tensor) {
      name = options.output_names[i];
      if (exporter.fresh(name) != name)
        throw Error(fmt::format("export: the output name '{}' is already the name of a tensor of the model", name));
    } else if (taken.contains(tensor)) {
      name = exporter.fresh(tensor);
    }
    if (name != tensor) exporter.add(outputs[i].node(), "Identity", name, {tensor}, {name});
    taken.insert(name);
    set_type(*out.add_output(), name, outputs[i].type());
  }
}

// Every node the outputs need, sources first in graph order (which is topological).
void export_nodes(Exporter& exporter, proto::GraphProto& out, const std::vector<Value>& outputs) {
  const Graph& graph = exporter.graph();
  std::vector<ValueRef> roots;
  for (const Value& v : outputs) roots.push_back(v.ref());
  const std::vector<bool> needed = needed_nodes(graph, roots);
  for (std::uint32_t id = 0; id < graph.size(); ++id) {
    if (!needed[id]) continue;
    exporter.reserve(graph.node(id).name);
    for (ValueRef input : graph.node(id).inputs) exporter.mark_read(input);
  }
  for (ValueRef root : roots) exporter.mark_read(root);
  for (std::uint32_t id = 0; id < graph.size(); ++id) {
    if (!needed[id]) continue;
    const Node& node = graph.node(id);
    exporter.begin(id);
    if (node.op->source) {
      export_source(exporter, out, node, id);
      continue;
    }
    emit_node(exporter, node);
    // The types Fovea inferred, for every tensor that stands for a Fovea value: ONNX's shape
    // inference checks them in check(), and Netron shows them.
    for (std::size_t k = 0; k < node.outputs.size(); ++k)
      if (exporter.is_read(k))
        set_type(*out.add_value_info(), exporter.name_of({id, static_cast<std::uint32_t>(k)}), node.outputs[k]);
  }
}

// ONNX's checker, then its shape inference in strict mode on a copy: that one also checks every
// node's input types against its schema and every inferred shape against the one Fovea recorded.
void check(const proto::ModelProto& model) {
  try {
    ::ONNX_NAMESPACE::checker::check_model(model);
    proto::ModelProto copy = model;
    ::ONNX_NAMESPACE::shape_inference::InferShapes(copy, ::ONNX_NAMESPACE::OpSchemaRegistry::Instance(),
                                                   ::ONNX_NAMESPACE::ShapeInferenceOptions(true, 1, false));
  } catch (const std::exception& e) {
    throw Error(fmt::format("export: ONNX's checker rejects the model: {}", e.what()));
  }
}

proto::ModelProto build_model(const Graph& graph, const std::vector<Value>& outputs, const ExportOptions& options) {
  check_arguments(graph, outputs, options);
  proto::ModelProto model;
  model.set_ir_version(proto::IR_VERSION);
  proto::OperatorSetIdProto& opset = *model.add_opset_import();
  opset.set_domain("");
  opset.set_version(options.opset);
  model.set_producer_name(options.producer_name);
  model.set_producer_version(options.producer_version);
  model.set_doc_string(options.doc_string);
  for (const auto& [key, value] : options.metadata) {
    proto::StringStringEntryProto& entry = *model.add_metadata_props();
    entry.set_key(key);
    entry.set_value(value);
  }
  proto::GraphProto& out = *model.mutable_graph();
  out.set_name(options.model_name.empty() ? graph.name() : options.model_name);
  Exporter exporter(graph, out, options.opset);
  export_nodes(exporter, out, outputs);
  export_outputs(exporter, out, outputs, options);
  if (options.check) check(model);
  return model;
}

}  // namespace

std::string export_model_bytes(const Graph& graph, const std::vector<Value>& outputs, const ExportOptions& options) {
  const proto::ModelProto model = build_model(graph, outputs, options);
  std::string bytes;
  if (!model.SerializeToString(&bytes)) throw Error("export: the model does not serialize (over 2 GiB?)");
  return bytes;
}

void export_model(const Graph& graph, const std::vector<Value>& outputs, const std::filesystem::path& path,
                  const ExportOptions& options) {
  const std::string bytes = export_model_bytes(graph, outputs, options);
  AtomicFile file(path.string());
  file.write(bytes);
  file.commit();
}

}  // namespace fovea::onnx
