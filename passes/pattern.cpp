#include "fovea/passes/pattern.h"

#include <algorithm>
#include <set>

#include "fovea/ops/creation.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/indexing.h"

namespace fovea::passes {

UseCounts::UseCounts(const Graph& graph, std::span<const ValueRef> roots) {
  users_.resize(graph.size());
  root_uses_.resize(graph.size());
  for (std::uint32_t id = 0; id < graph.size(); ++id) {
    users_[id].resize(graph.node(id).outputs.size());
    root_uses_[id].resize(graph.node(id).outputs.size(), 0);
  }
  for (std::uint32_t id = 0; id < graph.size(); ++id)
    for (const ValueRef& in : graph.node(id).inputs) users_[in.node][in.output].push_back(id);
  for (const ValueRef& r : roots) ++root_uses_[r.node][r.output];
}

std::size_t UseCounts::uses(ValueRef v) const { return users_[v.node][v.output].size() + root_uses_[v.node][v.output]; }

const std::vector<std::uint32_t>& UseCounts::users(ValueRef v) const { return users_[v.node][v.output]; }

bool UseCounts::is_root(ValueRef v) const { return root_uses_[v.node][v.output] > 0; }

const Node* producer(const Graph& graph, ValueRef v, const OpDef& op) {
  const Node& n = graph.node(v.node);
  return n.op == &op ? &n : nullptr;
}

std::optional<double> uniform_value(const Graph& graph, ValueRef v) {
  const Node& n = graph.node(v.node);
  if (n.op == &ops::fill) return n.attrs.get_float("value");
  if (n.op != &constant_op) return std::nullopt;
  const Tensor& t = n.attrs.get_tensor("value");
  if (t.numel() == 0) return std::nullopt;
  const double first = t.at(0);
  for (std::int64_t i = 1; i < t.numel(); ++i)
    if (t.at(i) != first) return std::nullopt;
  return first;
}

std::optional<double> scalar_value(const Graph& graph, ValueRef v) {
  if (graph.type(v).shape.numel() != 1) return std::nullopt;
  return uniform_value(graph, v);
}

ValueRef unguard_softmax_shift(const Graph& graph, ValueRef v, std::vector<std::uint32_t>& nodes) {
  const Node* guard = producer(graph, v, ops::maximum);
  if (!guard || graph.type(guard->inputs[0]) != graph.type(v)) return v;
  const std::optional<double> c = scalar_value(graph, guard->inputs[1]);
  if (!c || !(*c <= lowest_finite(graph.type(v).dtype))) return v;
  nodes.push_back(v.node);
  return guard->inputs[0];
}

ValueRef unguard_softmax_sum(const Graph& graph, ValueRef v, std::vector<std::uint32_t>& nodes) {
  const Node* select = producer(graph, v, ops::where);
  if (!select) return v;
  const ValueRef s = select->inputs[2];
  const Node* is_zero = producer(graph, select->inputs[0], ops::equal);
  const std::optional<double> one = scalar_value(graph, select->inputs[1]);
  if (!is_zero || is_zero->inputs[0] != s || !one || *one != 1.0 || graph.type(s) != graph.type(v)) return v;
  const std::optional<double> zero = scalar_value(graph, is_zero->inputs[1]);
  if (!zero || *zero != 0.0) return v;
  nodes.insert(nodes.end(), {v.node, select->inputs[0].node});
  return s;
}

bool interior_is_private(const Graph& graph, const Rewrite& rewrite, const UseCounts& uses) {
  const std::set<std::uint32_t> inside(rewrite.nodes.begin(), rewrite.nodes.end());
  for (std::uint32_t id : rewrite.nodes) {
    if (id == rewrite.root) continue;
    for (std::uint32_t k = 0; k < graph.node(id).outputs.size(); ++k) {
      const ValueRef v{id, k};
      if (uses.is_root(v)) return false;
      for (std::uint32_t reader : uses.users(v))
        if (!inside.contains(reader)) return false;
    }
  }
  return true;
}

PassResult rewrite_patterns(const Graph& graph, std::span<const ValueRef> roots, const Pattern& pattern) {
  const UseCounts uses(graph, roots);
  PassStats stats;
  std::vector<std::optional<Rewrite>> at_root(graph.size());
  std::vector<bool> claimed(graph.size(), false);
  for (std::uint32_t id = 0; id < graph.size(); ++id) {
    std::optional<Rewrite> found = pattern(graph, id, uses);
    if (!found) continue;
    if (!found->blocked.empty()) {
      stats.block(found->kind + ", " + found->blocked);
      continue;
    }
    if (!interior_is_private(graph, *found, uses)) {
      stats.block(found->kind + ", an inner value is used outside the match");
      continue;
    }
    if (std::any_of(found->nodes.begin(), found->nodes.end(), [&](std::uint32_t n) { return claimed[n]; })) {
      stats.block(found->kind + ", overlaps another match");
      continue;
    }
    for (std::uint32_t n : found->nodes) claimed[n] = true;
    stats.count(found->kind);
    at_root[id] = std::move(found);
  }

  GraphRewriter rewriter(graph);
  rewriter.rebuild([&](std::uint32_t id) {
    if (at_root[id]) {
      rewriter.replace(id, at_root[id]->build(rewriter));
      return true;
    }
    return bool(claimed[id]);  // an interior node: nothing reads it any more, so it is not copied
  });
  return rewriter.finish(std::move(stats));
}

}  // namespace fovea::passes
