#include "fovea/passes/pattern.h"

#include <algorithm>
#include <limits>
#include <set>

#include <fmt/format.h>

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

namespace {

// The IR name of one output: the node's scoped name, with ".k" when it has several outputs.
std::string output_name(const Graph& graph, ValueRef v) {
  const Node& n = graph.node(v.node);
  return n.outputs.size() > 1 ? fmt::format("{}.{}", n.name, v.output) : n.name;
}

// A node no match has claimed yet, in the driver's table of claims.
constexpr std::uint32_t unclaimed = std::numeric_limits<std::uint32_t>::max();

// The candidate as a decision not yet taken: its kind, root and nodes by scoped name (the root
// alone when the pattern listed none, as it does for a blocked match).
FusionDecision decision_for(const Graph& graph, const Rewrite& rewrite) {
  FusionDecision decision{rewrite.kind, graph.node(rewrite.root).name, {}, false, {}};
  for (std::uint32_t id : rewrite.nodes) decision.nodes.push_back(graph.node(id).name);
  if (std::find(rewrite.nodes.begin(), rewrite.nodes.end(), rewrite.root) == rewrite.nodes.end())
    decision.nodes.push_back(decision.root);
  return decision;
}

// Why `rewrite` may not be applied, as the sentence its decision gives, or "" when it may.
// `claimed_by` says which earlier match's root owns each node.
std::string rejection(const Graph& graph, const Rewrite& rewrite, const UseCounts& uses,
                      const std::vector<std::uint32_t>& claimed_by) {
  if (!rewrite.blocked.empty()) return rewrite.blocked;
  if (std::string leak = interior_leak(graph, rewrite, uses); !leak.empty()) return leak;
  for (std::uint32_t id : rewrite.nodes)
    if (claimed_by[id] != unclaimed)
      return fmt::format("it overlaps the match rooted at '{}' (both cover '{}')", graph.node(claimed_by[id]).name,
                         graph.node(id).name);
  return "";
}

// The key PassStats::blocked counts a rejection under: the pattern's own reason, or the kind of
// conflict without node names, so that the counts add up across candidates.
std::string blocked_key(const Rewrite& rewrite, const std::string& reason) {
  if (!rewrite.blocked.empty()) return rewrite.kind + ", " + rewrite.blocked;
  if (reason.starts_with("it overlaps")) return rewrite.kind + ", overlaps another match";
  return rewrite.kind + ", an inner value is used outside the match";
}

}  // namespace

std::string interior_leak(const Graph& graph, const Rewrite& rewrite, const UseCounts& uses) {
  const std::set<std::uint32_t> inside(rewrite.nodes.begin(), rewrite.nodes.end());
  for (std::uint32_t id : rewrite.nodes) {
    if (id == rewrite.root) continue;
    const Node& n = graph.node(id);
    for (std::uint32_t k = 0; k < n.outputs.size(); ++k) {
      const ValueRef v{id, k};
      for (std::uint32_t reader : uses.users(v))
        if (!inside.contains(reader))
          return fmt::format("the inner value '{}' ({}) is also read by '{}' ({}), outside the match",
                             output_name(graph, v), n.op_name(), graph.node(reader).name, graph.node(reader).op_name());
      if (uses.is_root(v))
        return fmt::format("the inner value '{}' ({}) is an output the caller keeps", output_name(graph, v),
                           n.op_name());
    }
  }
  return "";
}

bool interior_is_private(const Graph& graph, const Rewrite& rewrite, const UseCounts& uses) {
  return interior_leak(graph, rewrite, uses).empty();
}

PassResult rewrite_patterns(const Graph& graph, std::span<const ValueRef> roots, const Pattern& pattern) {
  const UseCounts uses(graph, roots);
  PassStats stats;
  std::vector<std::optional<Rewrite>> at_root(graph.size());
  std::vector<std::uint32_t> claimed_by(graph.size(), unclaimed);
  for (std::uint32_t id = 0; id < graph.size(); ++id) {
    std::optional<Rewrite> found = pattern(graph, id, uses);
    if (!found) continue;
    FusionDecision decision = decision_for(graph, *found);
    decision.reason = rejection(graph, *found, uses, claimed_by);
    decision.fused = decision.reason.empty();
    if (decision.fused) {
      for (std::uint32_t n : found->nodes) claimed_by[n] = id;
      stats.count(found->kind);
      at_root[id] = std::move(found);
    } else {
      stats.block(blocked_key(*found, decision.reason));
    }
    stats.decisions.push_back(std::move(decision));
  }

  GraphRewriter rewriter(graph);
  rewriter.rebuild([&](std::uint32_t id) {
    if (at_root[id]) {
      rewriter.replace(id, at_root[id]->build(rewriter));
      return true;
    }
    return claimed_by[id] != unclaimed;  // an interior node: nothing reads it any more, so it is not copied
  });
  return rewriter.finish(std::move(stats));
}

}  // namespace fovea::passes
