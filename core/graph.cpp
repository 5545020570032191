#include "fovea/core/graph.h"

#include <fmt/format.h>

#include "fovea/core/exact_number.h"
#include "fovea/core/philox.h"

namespace fovea {

namespace {

// Sources carry their type in attributes: "dtype" and "shape" (placeholder, parameter) or
// "value" (constant).
std::vector<TensorType> infer_declared(const InferContext& ctx) {
  return {TensorType{ctx.attrs().get_dtype("dtype"), Shape(ctx.attrs().get_ints("shape"))}};
}

std::vector<TensorType> infer_constant(const InferContext& ctx) {
  const Tensor& v = ctx.attrs().get_tensor("value");
  return {TensorType{v.dtype(), v.shape()}};
}

std::uint64_t hash_name(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a, then mixed
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return philox::mix(h);
}

}  // namespace

const OpDef placeholder_op{.name = "placeholder", .infer = infer_declared, .source = true, .half_types = true};
const OpDef parameter_op{.name = "parameter", .infer = infer_declared, .source = true};
const OpDef constant_op{.name = "constant", .infer = infer_constant, .source = true, .half_types = true};

void Node::fail(const std::string& message) const { throw Error(message, std::string(op->name), name, where); }

// A Value made by hand may name a node its graph does not have (yet): refuse it here rather
// than read past the end of the graph.
static void check_exists(const Graph* graph, ValueRef ref) {
  if (!graph) throw Error("an undefined Value (made by Value()) was used");
  if (!graph->contains(ref))
    throw Error(
        fmt::format("Value %{}.{} names no node output of graph '{}', which has {} nodes; only use Values "
                    "that the graph's builder functions returned",
                    ref.node, ref.output, graph->name(), graph->size()));
}

const Node& Value::node() const {
  check_exists(graph_, ref_);
  return graph_->node(ref_.node);
}

const TensorType& Value::type() const {
  check_exists(graph_, ref_);
  return graph_->type(ref_);
}

NameScope::NameScope(Graph& graph, const std::string& name) : graph_(graph), previous_length_(graph.scope_.size()) {
  if (name.empty() || name.find('/') != std::string::npos)
    throw Error(fmt::format("scope name '{}' must be non-empty and contain no '/'", name));
  if (!graph_.scope_.empty()) graph_.scope_ += '/';
  graph_.scope_ += name;
}

NameScope::~NameScope() { graph_.scope_.resize(previous_length_); }

LocationScope::LocationScope(Graph& graph, SourceLoc where) : graph_(graph), previous_(graph.location_override_) {
  if (!previous_.known()) graph_.location_override_ = where;
}

LocationScope::~LocationScope() { graph_.location_override_ = previous_; }

SourceLoc LocationScope::where() const { return graph_.location_override_; }

Graph::Graph(std::string name) : name_(std::move(name)) {}

std::string Graph::unique_name(const std::string& base) {
  const std::string scoped = scope_.empty() ? base : scope_ + "/" + base;
  if (!by_name_.contains(scoped)) return scoped;
  for (int i = 1;; ++i) {
    std::string candidate = fmt::format("{}_{}", scoped, i);
    if (!by_name_.contains(candidate)) return candidate;
  }
}

std::vector<Value> Graph::apply(const OpDef& op, std::span<const Value> inputs, Attributes attrs, SourceLoc where,
                                const std::string& name) {
  where = located(where);
  const std::string node_name = unique_name(name.empty() ? std::string(op.name) : name);
  const auto n = static_cast<int>(inputs.size());
  if (n < op.min_inputs || (op.max_inputs >= 0 && n > op.max_inputs))
    throw Error(fmt::format("takes {} inputs, got {}",
                            op.min_inputs == op.max_inputs ? std::to_string(op.min_inputs)
                                                           : fmt::format("{}..{}", op.min_inputs, op.max_inputs),
                            n),
                std::string(op.name), node_name, where);
  std::vector<TensorType> types;
  std::vector<ValueRef> refs;
  types.reserve(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Value& v = inputs[i];
    if (!v.defined())
      throw Error(fmt::format("input {} is an undefined Value", i), std::string(op.name), node_name, where);
    if (&v.graph() != this)
      throw Error(fmt::format("input {} ('{}') belongs to graph '{}', not '{}'", i,
                              v.graph().contains(v.ref()) ? v.name() : "?", v.graph().name(), name_),
                  std::string(op.name), node_name, where);
    // Every node that exists was built before this one, so this also rules out cycles.
    if (!contains(v.ref()))
      throw Error(fmt::format("input {} (%{}.{}) is not an output of any node built so far ({} nodes): a Value made "
                              "from a raw ValueRef may only name an existing node, which also makes cycles impossible",
                              i, v.ref().node, v.ref().output, nodes_.size()),
                  std::string(op.name), node_name, where);
    types.push_back(v.type());
    refs.push_back(v.ref());
  }
  InferContext ctx(op, types, attrs, node_name, where);
  std::vector<TensorType> outputs = infer_outputs(ctx, op, node_name, where);
  if (!op.half_types) {
    // One check here rather than one per op: every op but a few computes in f32 or f64.
    for (const auto* list : {&types, &outputs})
      for (const TensorType& t : *list)
        if (is_half(t.dtype))
          throw Error(fmt::format("does not take {} tensors ({}): bf16 and f16 are storage types for mixed "
                                  "precision, which only cast, the shape ops and the fused attention take; cast to "
                                  "f32 first",
                                  dtype_name(t.dtype), t.to_string()),
                      std::string(op.name), node_name, where);
  }

  const auto id = static_cast<std::uint32_t>(nodes_.size());
  nodes_.push_back(
      Node{&op, std::move(refs), std::move(attrs), std::move(outputs), node_name, scope_, where, role_, gradient_of_});
  by_name_.emplace(node_name, id);
  std::vector<Value> result;
  for (std::uint32_t i = 0; i < nodes_.back().outputs.size(); ++i) result.emplace_back(this, ValueRef{id, i});
  return result;
}

// The op's output types; an error without a node (a shape too large to count, thrown by
// Shape::numel) gets this node's context, and so does an output no buffer could ever hold.
std::vector<TensorType> Graph::infer_outputs(const InferContext& ctx, const OpDef& op, const std::string& node_name,
                                             SourceLoc where) const {
  std::vector<TensorType> outputs;
  try {
    outputs = op.infer(ctx);
  } catch (const Error& e) {
    if (!e.node().empty()) throw;
    throw Error(e.message(), std::string(op.name), node_name, where);
  }
  for (std::size_t k = 0; k < outputs.size(); ++k)
    if (!outputs[k].shape.checked_bytes(dtype_size(outputs[k].dtype)))
      throw Error(fmt::format("output {} would be {}: its element count or its size in bytes ({} per element) does "
                              "not fit in a 64-bit integer, so no buffer can hold it; check the dims",
                              k, outputs[k].to_string(), dtype_size(outputs[k].dtype)),
                  std::string(op.name), node_name, where);
  return outputs;
}

static void check_declared_shape(const std::string& what, const std::string& name, DType dtype, const Shape& shape,
                                 SourceLoc where) {
  for (std::int64_t d : shape)
    if (d < 0) throw Error(fmt::format("shape {} has a negative dimension", shape.to_string()), what, name, where);
  if (!shape.checked_bytes(dtype_size(dtype)))
    throw Error(fmt::format("shape {} of {} has more elements, or more bytes ({} per element), than a 64-bit integer "
                            "can count, so no buffer can hold it; check the dims",
                            shape.to_string(), dtype_name(dtype), dtype_size(dtype)),
                what, name, where);
}

Value Graph::placeholder(const std::string& name, DType dtype, Shape shape, SourceLoc where) {
  where = located(where);
  check_declared_shape("placeholder", name, dtype, shape, where);
  return apply1(placeholder_op, {}, {{"dtype", dtype}, {"shape", shape.dims()}}, where, name);
}

Value Graph::parameter(const std::string& name, DType dtype, Shape shape, const Initializer& initializer,
                       SourceLoc where) {
  where = located(where);
  if (!is_floating(dtype) || is_half(dtype))
    throw Error(fmt::format("parameters must be f32 or f64, got {} (mixed precision keeps the weights in f32 and "
                            "casts them where they are used)",
                            dtype_name(dtype)),
                "parameter", scope_.empty() ? name : scope_ + "/" + name, where);
  return persistent(name, dtype, std::move(shape), initializer, true, where);
}

Value Graph::state(const std::string& name, DType dtype, Shape shape, const Initializer& initializer, SourceLoc where) {
  return persistent(name, dtype, std::move(shape), initializer, false, where);
}

Value Graph::persistent(const std::string& name, DType dtype, Shape shape, const Initializer& initializer,
                        bool trainable, SourceLoc where) {
  where = located(where);
  const std::string scoped = scope_.empty() ? name : scope_ + "/" + name;
  check_declared_shape("parameter", scoped, dtype, shape, where);
  if (by_name_.contains(scoped))
    throw Error(fmt::format("a node named '{}' already exists; parameter names must be unique", scoped), "parameter",
                scoped, where);
  // The buffer first, so that a parameter too large for memory leaves no node behind.
  Tensor t;
  try {
    t = Tensor::zeros(dtype, shape);
  } catch (const Error& e) {
    throw Error(fmt::format("its buffer cannot be allocated: {}", e.message()), "parameter", scoped, where);
  }
  Value v =
      apply1(parameter_op, {},
             {{"dtype", dtype}, {"shape", shape.dims()}, {"init", initializer.description}, {"trainable", trainable}},
             where, name);
  if (initializer.fill) initializer.fill(t, seed_, hash_name(v.name()));
  parameter_values_[v.ref().node] = std::move(t);
  return v;
}

Value Graph::constant(Tensor value, const std::string& name, SourceLoc where) {
  where = located(where);
  if (!value.defined()) throw Error("constant: the tensor is undefined", "constant", name, where);
  return apply1(constant_op, {}, {{"value", std::move(value)}}, where, name);
}

Value Graph::scalar(double value, DType dtype, SourceLoc where) {
  where = located(where);
  // A number an integer or bool dtype cannot hold exactly is an error, not a truncation.
  if (const std::string why = number_mismatch(value, dtype); !why.empty())
    throw Error(fmt::format("cannot make a {} scalar: {}; make an f32 one and cast() it", dtype_name(dtype), why),
                "constant", "", where);
  return constant(Tensor::full(dtype, Shape{}, value), "", where);
}

const Node* Graph::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &nodes_[it->second];
}

std::vector<Value> Graph::placeholders() {
  std::vector<Value> out;
  for (std::uint32_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].op == &placeholder_op) out.emplace_back(this, ValueRef{i, 0});
  return out;
}

std::vector<Value> Graph::parameters() {
  std::vector<Value> out;
  for (const auto& [id, tensor] : parameter_values_)
    if (nodes_[id].attrs.get_bool("trainable")) out.emplace_back(this, ValueRef{id, 0});
  return out;
}

std::vector<Value> Graph::persistent_values() {
  std::vector<Value> out;
  for (const auto& [id, tensor] : parameter_values_) out.emplace_back(this, ValueRef{id, 0});
  return out;
}

Tensor& Graph::parameter_value(Value parameter) {
  auto it = parameter_values_.find(parameter.ref().node);
  if (&parameter.graph() != this || it == parameter_values_.end())
    throw Error(fmt::format("'{}' is not a parameter of graph '{}'", parameter.name(), name_));
  return it->second;
}

const Tensor& Graph::parameter_value(ValueRef parameter) const {
  auto it = parameter_values_.find(parameter.node);
  if (it == parameter_values_.end())
    throw Error(fmt::format("node {} is not a parameter of graph '{}'", parameter.node, name_));
  return it->second;
}

void Graph::verify() const {
  std::unordered_map<std::string, std::uint32_t> names;
  for (std::uint32_t id = 0; id < nodes_.size(); ++id) {
    const Node& n = nodes_[id];
    if (!n.op) throw Error(fmt::format("verify: node {} has no op", id));
    if (!names.emplace(n.name, id).second) n.fail(fmt::format("verify: duplicate node name '{}'", n.name));
    std::vector<TensorType> types;
    for (const ValueRef& in : n.inputs) {
      if (in.node >= id) n.fail(fmt::format("verify: input %{} is not defined before node %{}", in.node, id));
      if (in.output >= nodes_[in.node].outputs.size())
        n.fail(fmt::format("verify: input %{}.{} does not exist", in.node, in.output));
      types.push_back(type(in));
    }
    const auto count = static_cast<int>(n.inputs.size());
    if (count < n.op->min_inputs || (n.op->max_inputs >= 0 && count > n.op->max_inputs))
      n.fail(fmt::format("verify: {} inputs is not a valid count", count));
    InferContext ctx(*n.op, types, n.attrs, n.name, n.where);
    if (ctx.op().infer(ctx) != n.outputs)
      n.fail(fmt::format("verify: recorded output types ({}) differ from inferred ones", format_types(n.outputs)));
    if (n.op == &parameter_op && !parameter_values_.contains(id)) n.fail("verify: parameter has no buffer");
  }
}

std::unique_ptr<const DecodedParams> decode_params(const Graph& graph, const Node& node) {
  if (!node.op->decode) return nullptr;
  std::vector<TensorType> inputs;
  inputs.reserve(node.inputs.size());
  for (ValueRef v : node.inputs) inputs.push_back(graph.type(v));
  try {
    return node.op->decode({node.attrs, inputs, node.outputs});
  } catch (const Error& e) {
    node.fail(fmt::format("its attributes {} cannot be decoded: {}", node.attrs.to_string(), e.what()));
  }
}

}  // namespace fovea
