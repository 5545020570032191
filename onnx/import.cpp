// The ONNX importer's driver: parse and check the model, make placeholders and parameters, run
// each node's converter (onnx/convert_*.cpp) under the node's scope, and check what they built
// against ONNX's own shape inference.
#include "fovea/onnx/import.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/shape_inference/implementation.h>

#include "fovea/core/error.h"
#include "fovea/core/init.h"
#include "fovea/onnx/converter.h"
#include "fovea/onnx/tensor_proto.h"
#include "fovea/runtime/executable.h"

namespace fovea::onnx {

namespace {

constexpr std::string_view kDefaultDomain;

// The newest opset of the default domain the ONNX schemas this build links know.
int newest_known_opset() {
  const auto& map = proto::OpSchemaRegistry::DomainToVersionRange::Instance().Map();
  return map.at(proto::ONNX_DOMAIN).second;
}

bool is_default_domain(const std::string& domain) { return domain.empty() || domain == "ai.onnx"; }

// The scope a node's ops are built under: its name without the leading '/' PyTorch writes.
std::string scope_of(const proto::NodeProto& node, int index) {
  std::string name = node.name();
  while (!name.empty() && name.front() == '/') name.erase(name.begin());
  return name.empty() ? fmt::format("{}_{}", node.op_type(), index) : name;
}

}  // namespace

// --- The importer ------------------------------------------------------------------------------

class Importer {
 public:
  Importer(Graph& graph, const ImportOptions& options, std::filesystem::path directory, SourceLoc where)
      : graph_(graph), options_(options), directory_(std::move(directory)), where_(where) {}

  // Consumes `model`: ONNX's shape inference runs on it in place once the nodes are converted.
  ImportedModel run(proto::ModelProto& model);

  Graph& graph() const { return graph_; }
  int opset() const { return opset_; }
  Value value(const std::string& name, const NodeContext& ctx) const;
  Tensor known(const std::string& name, const NodeContext& ctx);

 private:
  struct Slot {
    Value value;
    std::optional<Tensor> known;  // its value, when known at import
    bool placeholder = false;
    std::string producer;  // the node that computes it, described, for check_inferred
    std::string producer_op, producer_name;
  };

  void read_opset(const proto::ModelProto& model);
  void infer_types(proto::ModelProto& model);
  void add_initializers(const proto::GraphProto& graph, ImportedModel& out);
  void add_inputs(const proto::GraphProto& graph, ImportedModel& out);
  Shape input_shape(const proto::ValueInfoProto& input) const;
  void convert(const proto::NodeProto& node, int index);
  void bind_outputs(NodeContext& ctx, const std::vector<Value>& values);
  void check_inferred(const std::string& name, const Slot& slot) const;
  std::optional<Tensor> evaluate(const Value& value);

  Graph& graph_;
  const ImportOptions& options_;
  std::filesystem::path directory_;
  SourceLoc where_;
  int opset_ = 0;
  std::map<std::string, Slot> slots_;
  std::map<std::string, proto::TypeProto> inferred_;
};

void Importer::read_opset(const proto::ModelProto& model) {
  for (const auto& entry : model.opset_import())
    if (is_default_domain(entry.domain())) opset_ = static_cast<int>(entry.version());
  if (opset_ == 0) throw Error("the ONNX model imports no version of the default operator set (ai.onnx)");
  if (opset_ > newest_known_opset())
    throw Error(
        fmt::format("the ONNX model uses opset {}, newer than the ONNX schemas Fovea was built with "
                    "(opset {}): its ops may mean something else",
                    opset_, newest_known_opset()));
}

// ONNX's shape inference on the model, its inputs given the shapes the options gave (in place,
// so that a model of large weights is not copied):
// every converter's result is checked against it (check_inferred), so an importer mistake in a
// dtype or a shape is an error at import, never a wrong answer later. It runs after the
// converters, which have checked the model's ranks and attributes as they built their ops:
// ONNX's inference (libonnx 1.12) can crash on a model that is inconsistent there.
void Importer::infer_types(proto::ModelProto& model) {
  for (auto& input : *model.mutable_graph()->mutable_input()) {
    auto it = slots_.find(input.name());
    if (it == slots_.end() || !it->second.placeholder || !input.type().has_tensor_type()) continue;
    auto* dims = input.mutable_type()->mutable_tensor_type()->mutable_shape();
    dims->clear_dim();
    for (std::int64_t d : it->second.value.shape().dims()) dims->add_dim()->set_dim_value(d);
  }
  try {
    proto::shape_inference::InferShapes(model);
  } catch (const std::exception&) {
    return;  // inference is a cross-check only; a model it cannot handle is still imported
  }
  for (const auto& info : model.graph().value_info()) inferred_[info.name()] = info.type();
  for (const auto& info : model.graph().output()) inferred_[info.name()] = info.type();
  for (const auto& [name, slot] : slots_)
    if (!slot.producer.empty()) check_inferred(name, slot);
}

void Importer::add_initializers(const proto::GraphProto& graph, ImportedModel& out) {
  for (const auto& initializer : graph.initializer()) {
    Tensor tensor = tensor_from_proto(initializer, directory_);
    Slot slot;
    const bool floating = tensor.dtype() == DType::f32 || tensor.dtype() == DType::f64;
    if (floating && options_.trainable_initializers) {
      const Tensor values = tensor;
      Initializer copy{.fill =
                           [values](Tensor& t, std::uint64_t, std::uint64_t) {
                             if (t.nbytes() > 0) std::memcpy(t.raw(), values.raw(), t.nbytes());
                           },
                       .description = "onnx initializer"};
      slot.value = graph_.parameter(initializer.name(), tensor.dtype(), tensor.shape(), copy, where_);
      out.parameters.push_back(slot.value);
    } else {
      slot.value = graph_.constant(tensor, initializer.name(), where_);
    }
    slot.known = std::move(tensor);
    slots_[initializer.name()] = std::move(slot);
  }
}

Shape Importer::input_shape(const proto::ValueInfoProto& input) const {
  if (auto given = options_.input_shapes.find(input.name()); given != options_.input_shapes.end()) return given->second;
  const auto& tensor_type = input.type().tensor_type();
  if (!tensor_type.has_shape())
    throw Error(fmt::format("ONNX input '{}' has no shape: give it in ImportOptions::input_shapes", input.name()));
  std::vector<std::int64_t> dims;
  for (const auto& dim : tensor_type.shape().dim()) {
    if (dim.has_dim_value()) {
      dims.push_back(dim.dim_value());
    } else if (dim.has_dim_param() && options_.dims.contains(dim.dim_param())) {
      dims.push_back(options_.dims.at(dim.dim_param()));
    } else {
      throw Error(fmt::format(
          "ONNX input '{}' has the dim {} of unknown size: give its size in "
          "ImportOptions::dims (by name) or the input's shape in ImportOptions::input_shapes",
          input.name(), dim.has_dim_param() ? "'" + dim.dim_param() + "'" : "#" + std::to_string(dims.size())));
    }
  }
  return Shape(std::move(dims));
}

void Importer::add_inputs(const proto::GraphProto& graph, ImportedModel& out) {
  for (const auto& input : graph.input()) {
    if (slots_.contains(input.name())) continue;  // an initializer that may be overridden: it is not
    if (!input.type().has_tensor_type())
      throw Error(fmt::format("ONNX input '{}' is not a tensor (a sequence, a map or an optional)", input.name()));
    const DType dtype =
        dtype_from_element_type(input.type().tensor_type().elem_type(), fmt::format("ONNX input '{}'", input.name()));
    Slot slot;
    slot.value = graph_.placeholder(input.name(), dtype, input_shape(input), where_);
    slot.placeholder = true;
    out.input_names.push_back(input.name());
    out.inputs.push_back(slot.value);
    slots_[input.name()] = std::move(slot);
  }
}

Value Importer::value(const std::string& name, const NodeContext& ctx) const {
  auto it = slots_.find(name);
  if (it == slots_.end()) ctx.invalid(fmt::format("its input '{}' is not defined before it", name));
  return it->second.value;
}

Tensor Importer::known(const std::string& name, const NodeContext& ctx) {
  auto it = slots_.find(name);
  if (it == slots_.end()) ctx.invalid(fmt::format("its input '{}' is not defined before it", name));
  Slot& slot = it->second;
  if (slot.known) return *slot.known;
  if (slot.placeholder) {
    auto given = options_.constant_inputs.find(name);
    if (given == options_.constant_inputs.end())
      ctx.unsupported(
          fmt::format("its input '{}' must be known when the graph is built, and it is the model's "
                      "input: give its value in ImportOptions::constant_inputs",
                      name));
    const TensorType& type = slot.value.type();
    if (given->second.dtype() != type.dtype || given->second.shape() != type.shape)
      throw Error(fmt::format("ImportOptions::constant_inputs['{}'] is {}, but the input is {}", name,
                              TensorType{given->second.dtype(), given->second.shape()}.to_string(), type.to_string()));
    return given->second;
  }
  std::optional<Tensor> value = evaluate(slot.value);
  if (!value)
    ctx.unsupported(
        fmt::format("its input '{}' must be known when the graph is built, and it depends on the "
                    "model's inputs or parameters",
                    name));
  slot.known = *value;
  return *value;
}

// The value of `value` computed now, when it depends on constants and on inputs whose values
// ImportOptions::constant_inputs gives: compiled on its own (only the nodes it needs run) for
// the CPU backend. std::nullopt when it depends on anything else.
std::optional<Tensor> Importer::evaluate(const Value& value) {
  std::vector<std::uint32_t> stack{value.ref().node};
  std::set<std::uint32_t> seen;
  Feeds feeds;
  while (!stack.empty()) {
    const std::uint32_t id = stack.back();
    stack.pop_back();
    if (!seen.insert(id).second) continue;
    const Node& node = graph_.node(id);
    const std::string_view op = node.op_name();
    if (op == "placeholder") {
      auto given = options_.constant_inputs.find(node.name);
      if (given == options_.constant_inputs.end()) return std::nullopt;
      feeds.emplace_back(graph_.value(ValueRef{id, 0}), given->second);
      continue;
    }
    if (op == "parameter" || op == "state" || node.op->impure) return std::nullopt;
    for (const ValueRef& input : node.inputs) stack.push_back(input.node);
  }
  Executable exe = compile(graph_, {value}, cpu());
  return exe.run(feeds).at(0);
}

void Importer::check_inferred(const std::string& name, const Slot& slot) const {
  const Value& value = slot.value;
  auto it = inferred_.find(name);
  if (it == inferred_.end() || !it->second.has_tensor_type()) return;
  const auto& expected = it->second.tensor_type();
  const TensorType& got = value.type();
  bool agrees = !has_dtype(expected.elem_type()) || dtype_from_element_type(expected.elem_type(), name) == got.dtype;
  if (expected.has_shape()) {
    const auto& dims = expected.shape().dim();
    agrees = agrees && dims.size() == got.shape.rank();
    for (int i = 0; agrees && i < dims.size(); ++i)
      agrees = !dims[i].has_dim_value() || dims[i].dim_value() == got.shape[i];
  }
  if (!agrees) {
    std::string inferred = has_dtype(expected.elem_type())
                               ? std::string(dtype_name(dtype_from_element_type(expected.elem_type(), name)))
                               : element_type_name(expected.elem_type());
    std::vector<std::string> dims;
    for (const auto& d : expected.shape().dim())
      dims.push_back(d.has_dim_value() ? std::to_string(d.dim_value()) : (d.dim_param().empty() ? "?" : d.dim_param()));
    throw Error(fmt::format("{}: the importer built {} for output '{}' where ONNX's shape inference says "
                            "{}[{}]; this is a bug of Fovea's importer, please report it",
                            slot.producer, got.to_string(), name, inferred, fmt::join(dims, ",")),
                slot.producer_op, slot.producer_name, SourceLoc{});
  }
}

void Importer::bind_outputs(NodeContext& ctx, const std::vector<Value>& values) {
  for (int i = 0; i < ctx.output_count(); ++i) {
    if (!ctx.wants_output(i)) continue;
    if (i >= static_cast<int>(values.size()) || !values[static_cast<std::size_t>(i)].defined())
      ctx.unsupported(fmt::format("its output {} ('{}') is not supported", i, ctx.node().output(i)));
    const Value& v = values[static_cast<std::size_t>(i)];
    slots_[ctx.node().output(i)] = Slot{.value = v,
                                        .known = std::nullopt,
                                        .producer = ctx.describe(),
                                        .producer_op = ctx.op_type(),
                                        .producer_name = ctx.node().name()};
  }
}

void Importer::convert(const proto::NodeProto& node, int index) {
  if (!is_default_domain(node.domain()))
    throw Error(fmt::format("ONNX {} node '{}': the domain '{}' is not supported (only ai.onnx)", node.op_type(),
                            node.name(), node.domain()));
  const proto::OpSchema* schema = proto::OpSchemaRegistry::Schema(node.op_type(), opset_, proto::ONNX_DOMAIN);
  if (!schema)
    throw Error(fmt::format("ONNX node '{}': {} is not an ONNX op at opset {}", node.name(), node.op_type(), opset_));
  NodeContext ctx(*this, node, schema->SinceVersion());
  // Before version 6, many ops carried consumed_inputs, a hint for in-place updates that
  // changes no value.
  if (ctx.version() < 6 && ctx.has_attribute("consumed_inputs")) ctx.attribute_ints("consumed_inputs");
  const auto& table = converters();
  auto entry = table.find(node.op_type());
  if (entry == table.end()) ctx.unsupported("the op is not supported by Fovea's importer");
  const ConverterEntry& converter = entry->second;
  if (ctx.version() < converter.first_version ||
      (converter.last_version != 0 && ctx.version() > converter.last_version))
    ctx.unsupported(
        fmt::format("version {} of the op (the one opset {} picks) is not supported; see "
                    "fovea::onnx::supported_ops()",
                    ctx.version(), opset_));
  const std::string outer = graph_.current_scope();
  const std::string scope = outer.empty() ? scope_of(node, index) : outer + "/" + scope_of(node, index);
  const std::string previous = graph_.exchange_scope(scope);
  std::vector<Value> values;
  try {
    values = converter.convert(ctx);
  } catch (const Error& e) {
    graph_.exchange_scope(previous);
    if (e.message().starts_with("ONNX ")) throw;
    throw Error(fmt::format("{}: {}", ctx.describe(), e.message()), e.op(), e.node(), e.where());
  }
  graph_.exchange_scope(previous);
  if (auto unread = ctx.unread_attributes(); !unread.empty())
    ctx.unsupported(fmt::format("its attribute{} {} {} not supported", unread.size() > 1 ? "s" : "",
                                fmt::join(unread, ", "), unread.size() > 1 ? "are" : "is"));
  if (auto untaken = ctx.untaken_inputs(); !untaken.empty())
    ctx.unsupported(fmt::format("its input{} #{} {} not supported", untaken.size() > 1 ? "s" : "",
                                fmt::join(untaken, ", #"), untaken.size() > 1 ? "are" : "is"));
  bind_outputs(ctx, values);
}

ImportedModel Importer::run(proto::ModelProto& model) {
  read_opset(model);
  ImportedModel out;
  out.opset = opset_;
  out.producer = (model.producer_name() + " " + model.producer_version());
  if (!model.functions().empty())
    throw Error("the ONNX model defines local functions, which Fovea's importer does not support");
  const proto::GraphProto& graph = model.graph();
  add_initializers(graph, out);
  add_inputs(graph, out);
  for (int i = 0; i < graph.node_size(); ++i) {
    convert(graph.node(i), i);
    ++out.op_counts[graph.node(i).op_type()];
  }
  infer_types(model);
  for (const auto& output : graph.output()) {
    auto it = slots_.find(output.name());
    if (it == slots_.end()) throw Error(fmt::format("ONNX graph output '{}' is computed by no node", output.name()));
    out.output_names.push_back(output.name());
    out.outputs.push_back(it->second.value);
  }
  return out;
}

// --- NodeContext -------------------------------------------------------------------------------

NodeContext::NodeContext(Importer& importer, const proto::NodeProto& node, int version)
    : importer_(importer), node_(node), version_(version), taken_(static_cast<std::size_t>(node.input_size())) {}

Graph& NodeContext::graph() const { return importer_.graph(); }

std::string NodeContext::describe() const {
  // An unnamed node is named by its first output.
  const std::string name = !node_.name().empty()     ? fmt::format("'{}'", node_.name())
                           : node_.output_size() > 0 ? fmt::format("(output '{}')", node_.output(0))
                                                     : std::string("(unnamed)");
  return fmt::format("ONNX {} node {} (opset {})", node_.op_type(), name, importer_.opset());
}

void NodeContext::unsupported(const std::string& what) const {
  throw Error(fmt::format("{}: {}", describe(), what), node_.op_type(), node_.name(), SourceLoc{});
}

void NodeContext::invalid(const std::string& what) const {
  throw Error(fmt::format("{} is not valid ONNX: {}", describe(), what), node_.op_type(), node_.name(), SourceLoc{});
}

Value NodeContext::input(int i) {
  if (!has_input(i)) invalid(fmt::format("its input #{} is missing", i));
  taken_[static_cast<std::size_t>(i)] = true;
  return importer_.value(node_.input(i), *this);
}

std::optional<Value> NodeContext::optional_input(int i) {
  if (!has_input(i)) return std::nullopt;
  return input(i);
}

Tensor NodeContext::constant(int i) {
  if (!has_input(i)) invalid(fmt::format("its input #{} is missing", i));
  taken_[static_cast<std::size_t>(i)] = true;
  return importer_.known(node_.input(i), *this);
}

std::vector<std::int64_t> NodeContext::constant_ints(int i) {
  const Tensor t = constant(i);
  std::vector<std::int64_t> out;
  if (t.dtype() == DType::i64) {
    auto data = t.data<std::int64_t>();
    out.assign(data.begin(), data.end());
  } else if (t.dtype() == DType::i32) {
    auto data = t.data<std::int32_t>();
    out.assign(data.begin(), data.end());
  } else {
    unsupported(fmt::format("its input #{} must hold integers, not {}", i, dtype_name(t.dtype())));
  }
  return out;
}

double NodeContext::constant_number(int i) {
  const Tensor t = constant(i);
  if (t.numel() != 1) invalid(fmt::format("its input #{} must hold one number, not {}", i, t.numel()));
  return t.item();
}

bool NodeContext::has_attribute(std::string_view name) const {
  return std::any_of(node_.attribute().begin(), node_.attribute().end(),
                     [&](const auto& a) { return a.name() == name; });
}

const proto::AttributeProto* NodeContext::attribute(std::string_view name, proto::AttributeProto::AttributeType type) {
  read_.emplace_back(name);
  for (const auto& a : node_.attribute()) {
    if (a.name() != name) continue;
    if (!a.ref_attr_name().empty()) unsupported(fmt::format("its attribute '{}' refers to a function's", name));
    if (a.type() != type)
      invalid(fmt::format("its attribute '{}' has type {}, not {}", name,
                          proto::AttributeProto::AttributeType_Name(a.type()),
                          proto::AttributeProto::AttributeType_Name(type)));
    return &a;
  }
  return nullptr;
}

std::int64_t NodeContext::attribute_int(std::string_view name, std::optional<std::int64_t> fallback) {
  if (const auto* a = attribute(name, proto::AttributeProto::INT)) return a->i();
  if (!fallback) invalid(fmt::format("it lacks the required attribute '{}'", name));
  return *fallback;
}

double NodeContext::attribute_float(std::string_view name, std::optional<double> fallback) {
  if (const auto* a = attribute(name, proto::AttributeProto::FLOAT)) return a->f();
  if (!fallback) invalid(fmt::format("it lacks the required attribute '{}'", name));
  return *fallback;
}

std::string NodeContext::attribute_string(std::string_view name, std::optional<std::string> fallback) {
  if (const auto* a = attribute(name, proto::AttributeProto::STRING)) return a->s();
  if (!fallback) invalid(fmt::format("it lacks the required attribute '{}'", name));
  return *fallback;
}

std::vector<std::int64_t> NodeContext::attribute_ints(std::string_view name,
                                                      std::optional<std::vector<std::int64_t>> fallback) {
  if (const auto* a = attribute(name, proto::AttributeProto::INTS)) return {a->ints().begin(), a->ints().end()};
  if (!fallback) invalid(fmt::format("it lacks the required attribute '{}'", name));
  return *fallback;
}

std::vector<double> NodeContext::attribute_floats(std::string_view name, std::optional<std::vector<double>> fallback) {
  if (const auto* a = attribute(name, proto::AttributeProto::FLOATS)) return {a->floats().begin(), a->floats().end()};
  if (!fallback) invalid(fmt::format("it lacks the required attribute '{}'", name));
  return *fallback;
}

Tensor NodeContext::attribute_tensor(std::string_view name) {
  const auto* a = attribute(name, proto::AttributeProto::TENSOR);
  if (!a) invalid(fmt::format("it lacks the required attribute '{}'", name));
  return tensor_from_proto(a->t(), {});
}

std::vector<std::string> NodeContext::unread_attributes() const {
  std::vector<std::string> out;
  for (const auto& a : node_.attribute())
    if (std::find(read_.begin(), read_.end(), a.name()) == read_.end()) out.push_back("'" + a.name() + "'");
  return out;
}

std::vector<int> NodeContext::untaken_inputs() const {
  std::vector<int> out;
  for (int i = 0; i < node_.input_size(); ++i)
    if (!node_.input(i).empty() && !taken_[static_cast<std::size_t>(i)]) out.push_back(i);
  return out;
}

// --- Entry points -------------------------------------------------------------------------------

const ConverterTable& converters() {
  static const ConverterTable table = [] {
    ConverterTable t;
    add_elementwise_converters(t);
    add_shape_converters(t);
    add_reduction_converters(t);
    add_nn_converters(t);
    add_resize_converters(t);
    return t;
  }();
  return table;
}

namespace {

proto::ModelProto parse_model(std::string_view bytes, const ImportOptions& options) {
  proto::ModelProto model;
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()) ||
      !model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    throw Error("the bytes are not an ONNX model (a truncated or corrupt file?)");
  if (!model.has_graph()) throw Error("the ONNX model has no graph");
  if (options.check_model) {
    // A model of a newer IR version than this build's schemas know (PyTorch's current exporter
    // writes IR 10) is checked as one of the newest version they know: the file format is
    // compatible, and what the newer versions added (new element types) the importer refuses.
    const std::int64_t ir_version = model.ir_version();
    model.set_ir_version(std::min<std::int64_t>(ir_version, proto::IR_VERSION));
    try {
      proto::checker::check_model(model);
    } catch (const std::exception& e) {
      throw Error(fmt::format("ONNX's checker rejects the model: {}", e.what()));
    }
    model.set_ir_version(ir_version);
  }
  return model;
}

}  // namespace

ImportedModel import_model_bytes(Graph& graph, std::string_view bytes, const std::filesystem::path& directory,
                                 const ImportOptions& options, std::source_location where) {
  proto::ModelProto model = parse_model(bytes, options);
  auto at = graph.at(where);
  Importer importer(graph, options, directory, graph.located(where));
  return importer.run(model);
}

ImportedModel import_model(Graph& graph, const std::filesystem::path& path, const ImportOptions& options,
                           std::source_location where) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot open ONNX model {}", path.string()));
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    return import_model_bytes(graph, bytes, path.parent_path(), options, where);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", path.string(), e.message()), e.op(), e.node(), e.where());
  }
}

Value ImportedModel::input(std::string_view name) const {
  for (std::size_t i = 0; i < input_names.size(); ++i)
    if (input_names[i] == name) return inputs[i];
  throw Error(fmt::format("the imported model has no input '{}'", name));
}

Value ImportedModel::output(std::string_view name) const {
  for (std::size_t i = 0; i < output_names.size(); ++i)
    if (output_names[i] == name) return outputs[i];
  throw Error(fmt::format("the imported model has no output '{}'", name));
}

std::vector<SupportedOp> supported_ops() {
  std::vector<SupportedOp> out;
  const auto schemas = proto::OpSchemaRegistry::get_all_schemas_with_history();
  for (const auto& [op_type, entry] : converters()) {
    SupportedOp op{.op_type = op_type, .versions = {}};
    for (const auto& schema : schemas) {
      if (schema.Name() != op_type || !is_default_domain(schema.domain())) continue;
      const int v = schema.SinceVersion();
      if (v >= entry.first_version && (entry.last_version == 0 || v <= entry.last_version)) op.versions.push_back(v);
    }
    std::sort(op.versions.begin(), op.versions.end());
    out.push_back(std::move(op));
  }
  return out;
}

}  // namespace fovea::onnx
