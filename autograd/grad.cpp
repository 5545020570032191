#include "fovea/autograd/grad.h"

#include <array>
#include <map>

#include <fmt/format.h>

#include "fovea/ops/creation.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/vjp.h"

namespace fovea {

namespace ops {
const OpDef stop_gradient{.name = "stop_gradient",
                          .min_inputs = 1,
                          .max_inputs = 1,
                          .infer = [](const InferContext& ctx) { return std::vector<TensorType>{ctx.input(0)}; },
                          .view = true,
                          .differentiable = false};
}  // namespace ops

Value stop_gradient(Value x, std::source_location where) {
  const std::array<Value, 1> in{x};
  return x.graph().apply1(ops::stop_gradient, in, {}, where);
}

namespace {

// Restores the graph's scope, role and location override however the rule exits.
class BackwardBuildState {
 public:
  explicit BackwardBuildState(Graph& g) : graph_(g), scope_(g.current_scope()), role_(g.role()) {
    graph_.set_role(NodeRole::backward);
  }
  void enter(const Node& forward) {
    graph_.exchange_scope(forward.scope.empty() ? "gradients" : "gradients/" + forward.scope);
    graph_.set_location_override(forward.where);
  }
  ~BackwardBuildState() {
    graph_.exchange_scope(scope_);
    graph_.set_role(role_);
    graph_.clear_location_override();
  }

 private:
  Graph& graph_;
  std::string scope_;
  NodeRole role_;
};

}  // namespace

std::vector<Value> vjp(const std::vector<Value>& outputs, const std::vector<Value>& cotangents,
                       const std::vector<Value>& wrt, const GradOptions& options, std::source_location where) {
  const SourceLoc call(where);
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

  // The nodes that matter lie on a path from some wrt to some output.
  const std::size_t n = g.size();
  std::vector<bool> from_wrt(n, false), to_output(n, false);
  std::uint32_t first = static_cast<std::uint32_t>(n), last = 0;
  for (const Value& w : wrt) {
    from_wrt[w.ref().node] = true;
    first = std::min(first, w.ref().node);
  }
  for (const Value& o : outputs) last = std::max(last, o.ref().node);
  for (std::uint32_t id = first; id <= last && id < n; ++id) {
    const Node& node = g.node(id);
    if (from_wrt[id] || !node.op->differentiable) continue;
    for (const ValueRef& in : node.inputs)
      if (from_wrt[in.node] && is_floating(g.type(in).dtype)) from_wrt[id] = true;
  }
  for (const Value& o : outputs) to_output[o.ref().node] = true;
  for (std::uint32_t id = last + 1; id-- > 0;)
    if (to_output[id])
      for (const ValueRef& in : g.node(id).inputs) to_output[in.node] = true;

  // Accumulated gradient per value: contributions from every consumer are summed.
  std::map<ValueRef, Value> grads;
  BackwardBuildState state(g);
  auto accumulate = [&](ValueRef v, Value contribution) {
    auto [it, inserted] = grads.emplace(v, contribution);
    if (!inserted) it->second = add(it->second, contribution);
  };
  for (std::size_t i = 0; i < outputs.size(); ++i) accumulate(outputs[i].ref(), cotangents[i]);

  for (std::uint32_t id = last + 1; id-- > first;) {
    if (!from_wrt[id] || !to_output[id]) continue;
    const Node& node = g.node(id);
    if (node.op->source || !node.op->differentiable) continue;
    std::vector<Value> out_values, out_grads;
    bool any = false;
    for (std::uint32_t k = 0; k < node.outputs.size(); ++k) {
      out_values.push_back(g.value({id, k}));
      auto it = grads.find({id, k});
      out_grads.push_back(it == grads.end() ? Value{} : it->second);
      any |= it != grads.end();
    }
    if (!any) continue;
    if (!node.op->vjp)
      throw Error(fmt::format("no gradient rule for op '{}': the loss depends on this node through a "
                              "differentiable input",
                              node.op->name),
                  std::string(node.op->name), node.name, node.where);
    std::vector<Value> in_values;
    std::vector<bool> wanted;
    for (const ValueRef& in : node.inputs) {
      in_values.push_back(g.value(in));
      wanted.push_back(from_wrt[in.node] && is_floating(g.type(in).dtype));
    }
    state.enter(node);
    const VjpContext ctx{g, node, in_values, out_values, out_grads, std::move(wanted)};
    std::vector<Value> in_grads = node.op->vjp(ctx);
    if (in_grads.size() != node.inputs.size())
      node.fail(fmt::format("internal: the gradient rule returned {} gradients for {} inputs", in_grads.size(),
                            node.inputs.size()));
    for (std::size_t i = 0; i < in_grads.size(); ++i) {
      const ValueRef in = node.inputs[i];
      if (!in_grads[i].defined() || !from_wrt[in.node] || !is_floating(g.type(in).dtype)) continue;
      if (in_grads[i].type() != g.type(in))
        node.fail(fmt::format("internal: the gradient rule gave {} for input {} of type {}",
                              in_grads[i].type().to_string(), i, g.type(in).to_string()));
      accumulate(in, in_grads[i]);
    }
  }

  std::vector<Value> result;
  for (const Value& w : wrt) {
    auto it = grads.find(w.ref());
    if (it != grads.end()) {
      result.push_back(it->second);
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
