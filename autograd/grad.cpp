#include "fovea/autograd/grad.h"

#include <array>
#include <map>

#include <fmt/format.h>

#include "fovea/core/needed.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/vjp.h"

namespace fovea {

namespace {

// Restores the graph's scope, role, location override and gradient_of however the rule exits:
// exactly as they were, so that grad() called inside a layer's LocationScope leaves that scope
// in force.
class BackwardBuildState {
 public:
  explicit BackwardBuildState(Graph& g)
      : graph_(g),
        scope_(g.current_scope()),
        role_(g.role()),
        location_(g.location_override()),
        gradient_of_(g.gradient_of()) {
    graph_.set_role(NodeRole::backward);
  }
  // The nodes built from now on belong to `forward`'s gradient rule: its scope under
  // "gradients/", its line, and its name in Node::gradient_of.
  void enter(const Node& forward) {
    graph_.exchange_scope(forward.scope.empty() ? "gradients" : "gradients/" + forward.scope);
    graph_.set_location_override(forward.where);
    graph_.exchange_gradient_of(forward.name);
  }
  // Nodes built from now on belong to no rule (the zeros of an unconnected wrt).
  void leave() { graph_.exchange_gradient_of(""); }
  ~BackwardBuildState() {
    graph_.exchange_scope(scope_);
    graph_.set_role(role_);
    graph_.set_location_override(location_);
    graph_.exchange_gradient_of(gradient_of_);
  }

 private:
  Graph& graph_;
  std::string scope_;
  NodeRole role_;
  SourceLoc location_;
  std::string gradient_of_;
};

// Rejects outputs, cotangents and wrt that vjp() cannot differentiate: none, mismatched counts,
// undefined Values, Values of another graph, non-floating outputs, cotangents of the wrong type.
void check_vjp_arguments(const std::vector<Value>& outputs, const std::vector<Value>& cotangents,
                         const std::vector<Value>& wrt, const SourceLoc& call) {
  if (outputs.empty()) throw Error("vjp: no outputs to differentiate", "grad", "", call);
  if (outputs.size() != cotangents.size())
    throw Error(fmt::format("vjp: {} outputs but {} cotangents", outputs.size(), cotangents.size()), "grad", "", call);
  Graph& g = outputs[0].graph();
  for (const auto* list : {&outputs, &cotangents, &wrt})
    for (const Value& v : *list) {
      if (!v.defined()) throw Error("an undefined Value was passed", "grad", "", call);
      if (&v.graph() != &g)
        throw Error(fmt::format("'{}' belongs to graph '{}', not '{}'", v.name(), v.graph().name(), g.name()), "grad",
                    v.name(), call);
    }
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    if (!is_floating(outputs[i].dtype()))
      throw Error(fmt::format("cannot differentiate '{}' of type {}: only f32 and f64 values have gradients",
                              outputs[i].name(), outputs[i].type().to_string()),
                  "grad", outputs[i].name(), call);
    if (cotangents[i].type() != outputs[i].type())
      throw Error(fmt::format("the cotangent for '{}' is {}, but the output is {}", outputs[i].name(),
                              cotangents[i].type().to_string(), outputs[i].type().to_string()),
                  "grad", outputs[i].name(), call);
  }
}

// The nodes that matter lie on a path from some wrt to some output: from_wrt[id] when the node
// depends on a wrt through differentiable ops and floating values, to_output[id] when an
// output needs it. Nodes outside [first, last] matter to no gradient.
struct Relevant {
  std::vector<bool> from_wrt, to_output;
  std::uint32_t first = 0, last = 0;
};

Relevant relevant_nodes(const Graph& g, const std::vector<Value>& outputs, const std::vector<Value>& wrt) {
  const std::size_t n = g.size();
  Relevant r{std::vector<bool>(n, false), {}, static_cast<std::uint32_t>(n), 0};
  for (const Value& w : wrt) {
    r.from_wrt[w.ref().node] = true;
    r.first = std::min(r.first, w.ref().node);
  }
  for (const Value& o : outputs) r.last = std::max(r.last, o.ref().node);
  for (std::uint32_t id = r.first; id <= r.last && id < n; ++id) {
    const Node& node = g.node(id);
    if (r.from_wrt[id] || !node.op->differentiable) continue;
    for (const ValueRef& in : node.inputs)
      if (r.from_wrt[in.node] && is_floating(g.type(in).dtype)) r.from_wrt[id] = true;
  }
  std::vector<ValueRef> roots;
  for (const Value& o : outputs) roots.push_back(o.ref());
  r.to_output = needed_nodes(g, roots);
  return r;
}

// The gradient of every value reached so far: contributions from every consumer are summed.
// The add that sums one in is built inside the rule that gave it, so it names that rule's
// forward node in Node::gradient_of.
class Gradients {
 public:
  void accumulate(ValueRef v, Value contribution) {
    auto [it, inserted] = grads_.emplace(v, contribution);
    if (!inserted) it->second = add(it->second, contribution);
  }
  // The gradient of `v`, or an undefined Value when nothing has reached it.
  Value of(ValueRef v) const {
    auto it = grads_.find(v);
    return it == grads_.end() ? Value{} : it->second;
  }

 private:
  std::map<ValueRef, Value> grads_;
};

// Applies the gradient rule of `node` to its outputs' gradients and adds what it gives to its
// inputs' gradients. Nothing happens for a node whose outputs no gradient has reached.
void backpropagate_through(Graph& g, std::uint32_t id, const Relevant& relevant, Gradients& grads,
                           BackwardBuildState& state) {
  const Node& node = g.node(id);
  std::vector<Value> out_values, out_grads;
  bool any = false;
  for (std::uint32_t k = 0; k < node.outputs.size(); ++k) {
    out_values.push_back(g.value({id, k}));
    out_grads.push_back(grads.of({id, k}));
    any |= out_grads.back().defined();
  }
  if (!any) return;
  if (!node.op->vjp)
    throw Error(fmt::format("no gradient rule for op '{}': the loss depends on this node through a "
                            "differentiable input",
                            node.op->name),
                std::string(node.op->name), node.name, node.where);
  std::vector<Value> in_values;
  std::vector<bool> wanted;
  for (const ValueRef& in : node.inputs) {
    in_values.push_back(g.value(in));
    wanted.push_back(relevant.from_wrt[in.node] && is_floating(g.type(in).dtype));
  }
  state.enter(node);
  const VjpContext ctx{g, node, in_values, out_values, out_grads, std::move(wanted)};
  std::vector<Value> in_grads = node.op->vjp(ctx);
  if (in_grads.size() != node.inputs.size())
    node.fail(fmt::format("internal: the gradient rule returned {} gradients for {} inputs", in_grads.size(),
                          node.inputs.size()));
  for (std::size_t i = 0; i < in_grads.size(); ++i) {
    const ValueRef in = node.inputs[i];
    if (!in_grads[i].defined() || !relevant.from_wrt[in.node] || !is_floating(g.type(in).dtype)) continue;
    if (in_grads[i].type() != g.type(in))
      node.fail(fmt::format("internal: the gradient rule gave {} for input {} of type {}",
                            in_grads[i].type().to_string(), i, g.type(in).to_string()));
    grads.accumulate(in, in_grads[i]);
  }
}

// The gradient of each wrt; one no output depends on is zeros, or an error when the options ask
// for one (and always for a value that is not floating).
std::vector<Value> gradients_of_wrt(Graph& g, const Gradients& grads, const std::vector<Value>& wrt,
                                    const GradOptions& options, const SourceLoc& call, BackwardBuildState& state) {
  std::vector<Value> result;
  state.leave();
  for (const Value& w : wrt) {
    if (const Value grad = grads.of(w.ref()); grad.defined()) {
      result.push_back(grad);
      continue;
    }
    if (options.unconnected == Unconnected::error || !is_floating(w.dtype()))
      throw Error(fmt::format("the differentiated outputs do not depend on '{}' (or only through "
                              "non-differentiable ops){}",
                              w.name(), is_floating(w.dtype()) ? "" : "; it is not a floating-point value"),
                  "grad", w.name(), call);
    g.exchange_scope("gradients");
    g.set_location_override(call);
    result.push_back(zeros_like(w));
  }
  return result;
}

}  // namespace

std::vector<Value> vjp(const std::vector<Value>& outputs, const std::vector<Value>& cotangents,
                       const std::vector<Value>& wrt, const GradOptions& options, std::source_location where) {
  const SourceLoc call(where);
  check_vjp_arguments(outputs, cotangents, wrt, call);
  Graph& g = outputs[0].graph();
  const Relevant relevant = relevant_nodes(g, outputs, wrt);
  Gradients grads;
  BackwardBuildState state(g);
  for (std::size_t i = 0; i < outputs.size(); ++i) grads.accumulate(outputs[i].ref(), cotangents[i]);
  // Every node that matters, from the last to the first: its outputs' gradients are complete
  // by then, since every consumer comes after it.
  for (std::uint32_t id = relevant.last + 1; id-- > relevant.first;) {
    const Node& node = g.node(id);
    if (!relevant.from_wrt[id] || !relevant.to_output[id] || node.op->source || !node.op->differentiable) continue;
    backpropagate_through(g, id, relevant, grads, state);
  }
  return gradients_of_wrt(g, grads, wrt, options, call, state);
}

std::vector<Value> grad(Value loss, const std::vector<Value>& wrt, const GradOptions& options,
                        std::source_location where) {
  const SourceLoc call(where);
  if (!loss.defined()) throw Error("grad: the loss is an undefined Value", "grad", "", call);
  if (loss.shape().numel() != 1)
    throw Error(fmt::format("the loss '{}' must have one element to differentiate, but it is {}; reduce it "
                            "first (reduce_mean, reduce_sum) or use vjp()",
                            loss.name(), loss.type().to_string()),
                "grad", loss.name(), call);
  if (!is_floating(loss.dtype()))
    throw Error(fmt::format("the loss '{}' is {}: only f32 and f64 values have gradients", loss.name(),
                            loss.type().to_string()),
                "grad", loss.name(), call);
  Graph& g = loss.graph();
  const std::string scope = g.exchange_scope("gradients");
  const NodeRole role = g.role();
  g.set_role(NodeRole::backward);
  Value one = ones_like(loss, where);
  g.exchange_scope(scope);
  g.set_role(role);
  return vjp({loss}, {one}, wrt, options, where);
}

}  // namespace fovea
