// The graph IR: nodes that apply ops to values, built through a Graph.
//
// A Graph owns its nodes in creation order, which is always a topological order (a node can
// only use values that already exist). A Value names one output of one node and carries a
// pointer to its graph, so that ops can be written as free functions and operators:
//
//   fovea::Graph g;
//   auto x = g.placeholder("x", fovea::f32, {32, 784});
//   auto w = g.parameter("w", fovea::f32, {784, 10}, fovea::init::normal(0.0, 0.02));
//   auto y = fovea::relu(fovea::matmul(x, w) + 1.0f);
//
// Every node records its scoped name ("mlp/l1/matmul") and the user's file:line, captured
// with std::source_location by the function that built it. Shapes and dtypes are inferred
// and checked when a node is built, so a mistake is reported at the line that made it.
//
// A Graph is neither copyable nor movable: Values point at it. Nodes never move once built, so
// compiled executables stay valid while the user keeps adding nodes (say, an eval head).
//
// Threads (docs/runtime.md): building a graph (apply, grad, passes) and writing its parameters
// by hand must not overlap anything else done with that graph. Runs of its executables may
// overlap each other: they share its persistent buffers under state_mutex().
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <shared_mutex>
#include <source_location>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fovea/core/attributes.h"
#include "fovea/core/init.h"
#include "fovea/core/op.h"
#include "fovea/core/tensor.h"

namespace fovea {

class Graph;

// One output of one node, as stored inside the graph.
struct ValueRef {
  std::uint32_t node = 0;
  std::uint32_t output = 0;
  friend auto operator<=>(const ValueRef&, const ValueRef&) = default;
};

// Which part of a training step a node belongs to; the DOT writer colours by it.
enum class NodeRole : std::uint8_t { forward, backward, update };

struct Node {
  const OpDef* op = nullptr;
  std::vector<ValueRef> inputs;
  Attributes attrs;
  std::vector<TensorType> outputs;
  std::string name;   // unique within the graph, scope included: "mlp/l1/matmul"
  std::string scope;  // "mlp/l1"
  SourceLoc where;    // the user's file:line
  NodeRole role = NodeRole::forward;
  // For a node a gradient rule built, the scoped name of the forward node whose rule it was
  // ("enc/l0/attn/matmul"); empty for every other node, the seed of the loss's gradient included.
  // It is how a reader of the training step finds which forward computation each backward
  // node belongs to, after the passes have renamed, merged and fused nodes on both sides.
  std::string gradient_of;

  std::string_view op_name() const { return op->name; }
  // Throws fovea::Error with this node's op, name and location.
  [[noreturn]] void fail(const std::string& message) const;
};

// A handle to one output of one node of a graph: what the builder functions take and return.
// One made by hand from a raw ValueRef (the only way to name a node that does not exist yet,
// which is how one would spell a cycle) is checked where it is used: node() and type() throw
// fovea::Error for a ref the graph has no node or output for, and Graph::apply, compile and
// run() refuse it, naming the node being built or the call.
class Value {
 public:
  Value() = default;
  Value(Graph* graph, ValueRef ref) : graph_(graph), ref_(ref) {}

  bool defined() const { return graph_ != nullptr; }
  Graph& graph() const { return *graph_; }
  ValueRef ref() const { return ref_; }
  const Node& node() const;
  const TensorType& type() const;
  DType dtype() const { return type().dtype; }
  const Shape& shape() const { return type().shape; }
  int rank() const { return shape().rank(); }
  const std::string& name() const { return node().name; }

  friend bool operator==(const Value& a, const Value& b) { return a.graph_ == b.graph_ && a.ref_ == b.ref_; }

 private:
  Graph* graph_ = nullptr;
  ValueRef ref_;
};

// RAII name scope: nodes built while it lives get "name/" prefixed to their names.
class [[nodiscard]] NameScope {
 public:
  NameScope(Graph& graph, const std::string& name);
  ~NameScope();
  NameScope(const NameScope&) = delete;
  NameScope& operator=(const NameScope&) = delete;

 private:
  Graph& graph_;
  std::size_t previous_length_;
};

// RAII location scope: nodes built while it lives record `where` (the user's line) instead of
// the lines of the functions that built them, and errors raised while building them name it.
// A layer opens one with the location its caller passed, so its body can call ops without
// forwarding it. When a location is already in force (an outer layer's scope, or autodiff
// building a gradient) that one stays: the outermost caller is the user. The previous location
// is restored when the scope ends, by an exception too.
class [[nodiscard]] LocationScope {
 public:
  LocationScope(Graph& graph, SourceLoc where);
  ~LocationScope();
  LocationScope(const LocationScope&) = delete;
  LocationScope& operator=(const LocationScope&) = delete;

  // The location nodes built now record: the outermost scope's. Errors a layer raises itself
  // name this one, so a check inside a nested layer still points at the user's line.
  SourceLoc where() const;

 private:
  Graph& graph_;
  SourceLoc previous_;
};

class Graph {
 public:
  explicit Graph(std::string name = "main");
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  const std::string& name() const { return name_; }

  // --- Sources -----------------------------------------------------------------------------
  // An input fed at every run.
  Value placeholder(const std::string& name, DType dtype, Shape shape,
                    SourceLoc where = std::source_location::current());
  // A trainable tensor with a persistent buffer, filled now by `initializer` from Philox keyed
  // by the graph's seed and the scoped name. Names must be unique: checkpoints map by them.
  Value parameter(const std::string& name, DType dtype, Shape shape, const Initializer& initializer,
                  SourceLoc where = std::source_location::current());
  // Persistent, non-trainable state (optimizer moments, step counters, running statistics):
  // a parameter that grad-based optimizers skip but checkpoints save. Any dtype.
  Value state(const std::string& name, DType dtype, Shape shape, const Initializer& initializer,
              SourceLoc where = std::source_location::current());
  // A constant tensor baked into the graph.
  Value constant(Tensor value, const std::string& name = "", SourceLoc where = std::source_location::current());
  // A rank-0 constant of the given dtype.
  Value scalar(double value, DType dtype, SourceLoc where = std::source_location::current());

  // --- Building ----------------------------------------------------------------------------
  // Appends a node applying `op`; infers and checks its output types (throwing fovea::Error
  // at the user's line on a mismatch). `name` defaults to the op's name; the current scope
  // is prefixed and a suffix makes it unique. Every op function ends here.
  std::vector<Value> apply(const OpDef& op, std::span<const Value> inputs, Attributes attrs, SourceLoc where,
                           const std::string& name = "");
  Value apply1(const OpDef& op, std::span<const Value> inputs, Attributes attrs, SourceLoc where,
               const std::string& name = "") {
    return apply(op, inputs, std::move(attrs), where, name)[0];
  }

  NameScope scope(const std::string& name) { return NameScope(*this, name); }
  const std::string& current_scope() const { return scope_; }
  // Replaces the whole scope path (autodiff puts gradient nodes under "gradients/<scope>");
  // returns the previous one so the caller can restore it.
  std::string exchange_scope(std::string scope) { return std::exchange(scope_, std::move(scope)); }
  // While set, nodes record this location instead of the one their builder was given, and the
  // sources (placeholder, parameter, constant, ...) report it in their errors: the nodes a
  // gradient rule builds point at the user's forward line, not at the rule's source. Setting
  // replaces any location in force; layers use at() instead, which keeps an outer one.
  void set_location_override(SourceLoc where) { location_override_ = where; }
  void clear_location_override() { location_override_ = SourceLoc{}; }
  // The location in force; unknown (line 0) when none is.
  SourceLoc location_override() const { return location_override_; }
  // A LocationScope at `where`: `auto at = g.at(where);` opens it until the end of the block.
  LocationScope at(SourceLoc where) { return LocationScope(*this, where); }
  // The location a node built now with `where` records: the one in force, else `where`. An op
  // that rejects its arguments before it builds a node (a number its input's dtype cannot hold)
  // names this one, so that the error points where the node would have.
  SourceLoc located(SourceLoc where) const { return location_override_.known() ? location_override_ : where; }
  // The role given to nodes built from now on (autodiff marks its nodes backward).
  void set_role(NodeRole role) { role_ = role; }
  NodeRole role() const { return role_; }
  // The forward node named in Node::gradient_of of nodes built from now on (autodiff sets it
  // around each gradient rule, the rewriter to the old node's when it copies one); empty
  // outside a gradient rule. Returns the previous one so the caller can restore it.
  std::string exchange_gradient_of(std::string forward) { return std::exchange(gradient_of_, std::move(forward)); }
  const std::string& gradient_of() const { return gradient_of_; }

  // --- Looking at it -----------------------------------------------------------------------
  std::size_t size() const { return nodes_.size(); }
  // Whether `v` names an existing output of an existing node of this graph.
  bool contains(ValueRef v) const { return v.node < nodes_.size() && v.output < nodes_[v.node].outputs.size(); }
  const Node& node(std::uint32_t id) const { return nodes_[id]; }
  const TensorType& type(ValueRef v) const { return nodes_[v.node].outputs[v.output]; }
  Value value(ValueRef ref) { return Value(this, ref); }
  // The node with this exact scoped name, or nullptr.
  const Node* find(const std::string& name) const;

  std::vector<Value> placeholders();
  // Trainable parameters, in creation order.
  std::vector<Value> parameters();
  // Every persistent buffer: parameters and state, in creation order (what a checkpoint holds).
  std::vector<Value> persistent_values();
  bool is_persistent(ValueRef v) const { return parameter_values_.contains(v.node); }

  // The persistent buffer of a parameter; writing into it changes the parameter.
  Tensor& parameter_value(Value parameter);
  const Tensor& parameter_value(ValueRef parameter) const;

  // Seed for initializers and random ops built from now on.
  void set_seed(std::uint64_t seed) { seed_ = seed; }
  std::uint64_t seed() const { return seed_; }

  // Runs of this graph's executables hold it while they run: shared by those that only read the
  // persistent buffers, exclusively by those that write them (a training step's updates), so an
  // evaluation never sees a step half applied. (runtime/executable.h)
  std::shared_mutex& state_mutex() const { return state_mutex_; }

  // Checks the invariants every pass must keep: inputs refer to earlier nodes, input counts
  // match the ops, recorded types equal re-inferred ones, names are unique. Throws on error.
  void verify() const;

 private:
  friend class NameScope;
  friend class LocationScope;
  std::string unique_name(const std::string& base);
  std::vector<TensorType> infer_outputs(const InferContext& ctx, const OpDef& op, const std::string& node_name,
                                        SourceLoc where) const;
  Value persistent(const std::string& name, DType dtype, Shape shape, const Initializer& initializer, bool trainable,
                   SourceLoc where);

  std::string name_;
  std::deque<Node> nodes_;  // a deque: references stay valid as the graph grows
  std::string scope_;
  NodeRole role_ = NodeRole::forward;
  std::string gradient_of_;
  SourceLoc location_override_;
  std::uint64_t seed_ = 0;
  std::unordered_map<std::string, std::uint32_t> by_name_;
  std::map<std::uint32_t, Tensor> parameter_values_;  // node id -> persistent buffer
  mutable std::shared_mutex state_mutex_;
};

// The node's attributes decoded by its op (OpDef::decode) for its kernels: the runtime calls this
// once per step when it compiles a schedule. nullptr for ops without a decoder; a failure names
// the node and the user's line.
std::unique_ptr<const DecodedParams> decode_params(const Graph& graph, const Node& node);

// The source ops every graph has.
extern const OpDef placeholder_op;
extern const OpDef parameter_op;
extern const OpDef constant_op;

}  // namespace fovea
