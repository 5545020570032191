#include "fovea/passes/rewriter.h"

#include <fmt/format.h>

#include "fovea/core/printer.h"

namespace fovea::passes {

std::size_t PassStats::total_rewrites() const {
  std::size_t total = 0;
  for (const auto& [kind, n] : rewrites) total += n;
  return total;
}

std::string PassStats::rewrites_to_string() const {
  if (rewrites.empty() && blocked.empty()) return "-";
  std::string s;
  for (const auto& [kind, n] : rewrites) s += fmt::format("{}{} ×{}", s.empty() ? "" : ", ", kind, n);
  for (const auto& [reason, n] : blocked) s += fmt::format("{}blocked: {} ×{}", s.empty() ? "" : "; ", reason, n);
  return s;
}

GraphRewriter::Site::Site(Graph& target, const Node& old)
    : target_(target),
      scope_(target.exchange_scope(old.scope)),
      role_(target.role()),
      gradient_of_(target.exchange_gradient_of(old.gradient_of)) {
  target_.set_role(old.role);
  target_.set_location_override(old.where);
}

GraphRewriter::Site::~Site() {
  target_.exchange_scope(scope_);
  target_.set_role(role_);
  target_.exchange_gradient_of(gradient_of_);
  target_.clear_location_override();
}

GraphRewriter::GraphRewriter(const Graph& source) : source_(source), target_(std::make_unique<Graph>(source.name())) {
  target_->set_seed(source.seed());
}

std::string GraphRewriter::leaf_name(const Node& n) const {
  if (n.scope.empty()) return n.name;
  return n.name.substr(n.scope.size() + 1);  // Graph::apply names a node "<scope>/<leaf>"
}

std::string GraphRewriter::fresh_name(std::uint32_t id, const std::string& base) const {
  const Node& old = source_.node(id);
  const std::string prefix = old.scope.empty() ? "" : old.scope + "/";
  const auto taken = [&](const std::string& leaf) {
    return source_.find(prefix + leaf) != nullptr || target_->find(prefix + leaf) != nullptr;
  };
  if (!taken(base)) return base;
  for (int i = 1;; ++i) {
    std::string candidate = fmt::format("{}_{}", base, i);
    if (!taken(candidate)) return candidate;
  }
}

void GraphRewriter::rebuild(const std::function<bool(std::uint32_t id)>& hook) {
  for (std::uint32_t id = 0; id < source_.size(); ++id)
    if (!hook(id)) copy(id);
}

PassResult GraphRewriter::finish(PassStats stats) {
  stats.nodes_before = source_.size();
  stats.nodes_after = target_->size();
  return PassResult{std::move(target_), std::move(map_), std::move(stats)};
}

Value GraphRewriter::mapped(ValueRef old) const {
  auto it = map_.find(old);
  if (it == map_.end()) {
    const Node& n = source_.node(old.node);
    n.fail(fmt::format("optimizer: value {} was removed by a pass but is still used; this is a bug in the pass",
                       value_name(source_, old)));
  }
  return target_->value(it->second);
}

std::vector<Value> GraphRewriter::inputs(std::uint32_t id) const {
  std::vector<Value> values;
  for (const ValueRef& in : source_.node(id).inputs) values.push_back(mapped(in));
  return values;
}

void GraphRewriter::replace(std::uint32_t id, const std::vector<Value>& values) {
  const Node& n = source_.node(id);
  if (values.size() != n.outputs.size())
    n.fail(fmt::format("optimizer: a rewrite gave {} values for {} outputs", values.size(), n.outputs.size()));
  for (std::uint32_t k = 0; k < values.size(); ++k) replace(ValueRef{id, k}, values[k]);
}

void GraphRewriter::replace(ValueRef old, Value now) {
  if (&now.graph() != target_.get() || now.type() != source_.type(old))
    source_.node(old.node).fail(fmt::format("optimizer: a rewrite replaced {} ({}) by a value of another type or graph",
                                            value_name(source_, old), source_.type(old).to_string()));
  map_[old] = now.ref();
}

std::vector<Value> GraphRewriter::copy(std::uint32_t id) {
  const Node& n = source_.node(id);
  std::vector<Value> out;
  if (n.op == &parameter_op) {
    // A parameter or state bound to the old graph's buffer: declared with an initializer that
    // fills nothing, then pointed at the same Tensor (copying a Tensor shares its storage).
    Site site(*target_, n);
    const Attribute* init = n.attrs.find("init");
    const std::string* description = init ? std::get_if<std::string>(init) : nullptr;
    const Initializer keep{nullptr, description ? *description : std::string()};
    const TensorType& type = n.outputs[0];
    const Value v = is_state(n) ? target_->state(leaf_name(n), type.dtype, type.shape, keep, n.where)
                                : target_->parameter(leaf_name(n), type.dtype, type.shape, keep, n.where);
    target_->parameter_value(v) = source_.parameter_value(ValueRef{id, 0});
    out.push_back(v);
  } else {
    out = rebuild_node(id, inputs(id), n.attrs);
  }
  replace(id, out);
  return out;
}

std::vector<Value> GraphRewriter::rebuild_node(std::uint32_t id, std::span<const Value> new_inputs, Attributes attrs) {
  return emit(id, *source_.node(id).op, new_inputs, std::move(attrs), true);
}

std::vector<Value> GraphRewriter::emit(std::uint32_t id, const OpDef& op, std::span<const Value> new_inputs,
                                       Attributes attrs, bool same_name) {
  const Node& old = source_.node(id);
  Site site(*target_, old);
  const std::string name = same_name ? leaf_name(old) : fresh_name(id, std::string(op.name));
  return target_->apply(op, new_inputs, std::move(attrs), old.where, name);
}

Value GraphRewriter::constant_at(std::uint32_t id, Tensor value, bool same_name) {
  const Node& old = source_.node(id);
  Site site(*target_, old);
  const std::string name = same_name ? leaf_name(old) : fresh_name(id, "constant");
  return target_->constant(std::move(value), name, old.where);
}

PassResult copy_graph(const Graph& graph) {
  GraphRewriter rewriter(graph);
  rewriter.rebuild([](std::uint32_t) { return false; });
  return rewriter.finish({});
}

}  // namespace fovea::passes
