#include "fovea/passes/normalization_fusion.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "fovea/autograd/grad.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/normalization.h"
#include "fovea/ops/reduce.h"
#include "fovea/ops/shape_ops.h"

namespace fovea::passes {

namespace {

using Nodes = std::vector<std::uint32_t>;

const std::string kSoftmax = "softmax → fused_softmax";
const std::string kLogSoftmax = "log_softmax → fused_log_softmax";
const std::string kLayerNorm = "layer_norm → fused_layer_norm";
const std::string kCrossEntropy = "cross_entropy → fused_softmax_cross_entropy";
const std::string kSmoothedCrossEntropy = "cross_entropy with label smoothing → fused_softmax_cross_entropy";
const std::string kUnshifted = " (written without the max shift)";
const std::string kOtherAxis = "over an axis other than the last";

// What a pattern found: the fused op's inputs and attribute, the nodes it covers (the root
// included), and the statistics' name for it. `blocked` is set for a near-miss worth counting.
struct Found {
  std::string kind;
  std::vector<ValueRef> inputs;
  double number = 0;  // eps, or the label smoothing
  Nodes nodes;
  std::string blocked;
  ValueRef log_probabilities{};  // for a cross-entropy: its log_softmax's value
};

Found fusable(std::string kind, std::vector<ValueRef> inputs, Nodes nodes, double number = 0) {
  Found found;
  found.kind = std::move(kind);
  found.inputs = std::move(inputs);
  found.nodes = std::move(nodes);
  found.number = number;
  return found;
}

Found blocked(std::string kind, std::string reason) {
  Found found;
  found.kind = std::move(kind);
  found.blocked = std::move(reason);
  return found;
}

// The operands of binary node n: as written (swap = false) or swapped.
std::pair<ValueRef, ValueRef> operands(const Node& n, bool swap) {
  return swap ? std::pair{n.inputs[1], n.inputs[0]} : std::pair{n.inputs[0], n.inputs[1]};
}

int rank_of(const Graph& g, ValueRef v) { return g.type(v).shape.rank(); }

// A reduction over the last axis only, with or without keepdims.
bool reduces_last_axis(const Graph& g, const Node& reduce, bool keepdims) {
  const std::vector<std::int64_t>& axes = reduce.attrs.get_ints("axes");
  return axes.size() == 1 && axes[0] == rank_of(g, reduce.inputs[0]) - 1 &&
         reduce.attrs.get_bool("keepdims") == keepdims;
}

// A keepdims reduction over one axis that is not the last: a normalization along another axis.
bool reduces_other_axis(const Graph& g, const Node& reduce) {
  const std::vector<std::int64_t>& axes = reduce.attrs.get_ints("axes");
  return axes.size() == 1 && axes[0] != rank_of(g, reduce.inputs[0]) - 1 && reduce.attrs.get_bool("keepdims");
}

// v = [stop_gradient](reduce_max(x, {-1}, keepdims)): x, with the nodes added to `nodes`.
std::optional<ValueRef> row_max_of(const Graph& g, ValueRef v, Nodes& nodes) {
  Nodes found;
  if (const Node* sg = producer(g, v, ops::stop_gradient)) {
    found.push_back(v.node);
    v = sg->inputs[0];
  }
  v = unguard_softmax_shift(g, v, found);
  const Node* max = producer(g, v, ops::reduce_max);
  if (!max || !reduces_last_axis(g, *max, true)) return std::nullopt;
  found.push_back(v.node);
  nodes.insert(nodes.end(), found.begin(), found.end());
  return max->inputs[0];
}

// s = x - max(x) over the last axis: x, shifted = true and the nodes (sub, stop_gradient, max);
// anything else is s itself, unshifted.
struct Shift {
  ValueRef x;
  bool shifted = false;
  Nodes nodes;
};
Shift shift_of(const Graph& g, ValueRef s) {
  if (const Node* sub = producer(g, s, ops::sub)) {
    Nodes nodes{s.node};
    const std::optional<ValueRef> x = row_max_of(g, sub->inputs[1], nodes);
    if (x && *x == sub->inputs[0] && g.type(s) == g.type(*x)) return {*x, true, nodes};
  }
  return {s, false, {}};
}

// mean(x) over the last axis: reduce_sum(x, {-1}, keepdims)·c with c = 1/n (reduce_mean's form,
// either order) or reduce_sum(...)/n. Returns x; adds the nodes (not the constant).
std::optional<ValueRef> mean_of(const Graph& g, ValueRef v, bool keepdims, Nodes& nodes) {
  const Node& n = g.node(v.node);
  const bool is_mul = n.op == &ops::mul;
  if (!is_mul && n.op != &ops::div) return std::nullopt;
  for (bool swap : {false, true}) {
    if (swap && !is_mul) break;
    const auto [s, c] = operands(n, swap);
    const Node* sum = producer(g, s, ops::reduce_sum);
    const std::optional<double> factor = scalar_value(g, c);
    if (!sum || !factor || !reduces_last_axis(g, *sum, keepdims) || g.type(s) != n.outputs[0]) continue;
    const Shape& shape = g.type(sum->inputs[0]).shape;
    const double count = static_cast<double>(shape[shape.rank() - 1]);
    // reduce_mean stores 1/n rounded to the dtype: allow that rounding, no more.
    const double tolerance = n.outputs[0].dtype == DType::f32 ? 1e-6 : 1e-12;
    const double product = is_mul ? *factor * count : count / *factor;
    if (!(std::abs(product - 1.0) <= tolerance)) continue;
    nodes.insert(nodes.end(), {v.node, s.node});
    return sum->inputs[0];
  }
  return std::nullopt;
}

// --- softmax and log_softmax ---------------------------------------------------------------------

// root = e / reduce_sum(e, {-1}, keepdims), e = exp(x - max(x)) or exp(x).
std::optional<Found> softmax_at(const Graph& g, std::uint32_t root) {
  const Node& div = g.node(root);
  if (div.op != &ops::div) return std::nullopt;
  const ValueRef e = div.inputs[0];
  Nodes guard;
  const ValueRef total = unguard_softmax_sum(g, div.inputs[1], guard);
  const Node* sum = producer(g, total, ops::reduce_sum);
  const Node* exp = producer(g, e, ops::exp);
  if (!sum || !exp || sum->inputs[0] != e || g.type(e) != div.outputs[0]) return std::nullopt;
  if (!reduces_last_axis(g, *sum, true)) {
    if (reduces_other_axis(g, *sum)) return blocked(kSoftmax, kOtherAxis);
    return std::nullopt;
  }
  Shift shift = shift_of(g, exp->inputs[0]);
  Found found = fusable(shift.shifted ? kSoftmax : kSoftmax + kUnshifted, {shift.x}, {root});
  found.nodes.insert(found.nodes.end(), {total.node, e.node});
  found.nodes.insert(found.nodes.end(), guard.begin(), guard.end());
  found.nodes.insert(found.nodes.end(), shift.nodes.begin(), shift.nodes.end());
  return found;
}

// root = s - log(reduce_sum(exp(s), {-1}, keepdims)), s = x - max(x) or x.
std::optional<Found> log_softmax_at(const Graph& g, std::uint32_t root) {
  const Node& out = g.node(root);
  if (out.op != &ops::sub) return std::nullopt;
  const ValueRef s = out.inputs[0];
  const Node* log = producer(g, out.inputs[1], ops::log);
  if (!log || g.type(s) != out.outputs[0]) return std::nullopt;
  const Node* sum = producer(g, log->inputs[0], ops::reduce_sum);
  if (!sum) return std::nullopt;
  const Node* exp = producer(g, sum->inputs[0], ops::exp);
  if (!exp || exp->inputs[0] != s) return std::nullopt;
  if (!reduces_last_axis(g, *sum, true)) {
    if (reduces_other_axis(g, *sum)) return blocked(kLogSoftmax, kOtherAxis);
    return std::nullopt;
  }
  Shift shift = shift_of(g, s);
  Found found = fusable(shift.shifted ? kLogSoftmax : kLogSoftmax + kUnshifted, {shift.x}, {root});
  found.nodes.insert(found.nodes.end(), {out.inputs[1].node, log->inputs[0].node, sum->inputs[0].node});
  found.nodes.insert(found.nodes.end(), shift.nodes.begin(), shift.nodes.end());
  return found;
}

// --- layer_norm -------------------------------------------------------------------------------------

// c = x - mean(x): x.
std::optional<ValueRef> centred_of(const Graph& g, ValueRef c, Nodes& nodes) {
  const Node* sub = producer(g, c, ops::sub);
  if (!sub) return std::nullopt;
  Nodes found{c.node};
  const std::optional<ValueRef> x = mean_of(g, sub->inputs[1], true, found);
  if (!x || *x != sub->inputs[0] || g.type(c) != g.type(*x)) return std::nullopt;
  nodes.insert(nodes.end(), found.begin(), found.end());
  return x;
}

// d = v + eps (either order), v = mean(c·c): eps; adds the nodes.
std::optional<double> variance_plus_eps(const Graph& g, ValueRef d, ValueRef c, Nodes& nodes) {
  const Node* add = producer(g, d, ops::add);
  if (!add) return std::nullopt;
  for (bool swap : {false, true}) {
    const auto [v, e] = operands(*add, swap);
    const std::optional<double> eps = scalar_value(g, e);
    if (!eps || !(*eps >= 0.0) || g.type(v) != add->outputs[0]) continue;
    Nodes found{d.node};
    const std::optional<ValueRef> square = mean_of(g, v, true, found);
    if (!square) continue;
    const Node* mul = producer(g, *square, ops::mul);
    if (!mul || mul->inputs[0] != c || mul->inputs[1] != c) continue;
    found.push_back(square->node);
    nodes.insert(nodes.end(), found.begin(), found.end());
    return eps;
  }
  return std::nullopt;
}

// n = c·rsqrt(v + eps) (either order) or c / sqrt(v + eps), c = x - mean(x): x and eps.
std::optional<std::pair<ValueRef, double>> normalised_of(const Graph& g, ValueRef n, Nodes& nodes) {
  const Node& node = g.node(n.node);
  const bool is_mul = node.op == &ops::mul;
  if (!is_mul && node.op != &ops::div) return std::nullopt;
  for (bool swap : {false, true}) {
    if (swap && !is_mul) break;
    const auto [c, r] = operands(node, swap);
    const Node* root = producer(g, r, is_mul ? ops::rsqrt : ops::sqrt);
    if (!root || g.type(c) != node.outputs[0]) continue;
    Nodes found{n.node, r.node};
    const std::optional<ValueRef> x = centred_of(g, c, found);
    if (!x) continue;
    const std::optional<double> eps = variance_plus_eps(g, root->inputs[0], c, found);
    if (!eps) continue;
    nodes.insert(nodes.end(), found.begin(), found.end());
    return std::pair{*x, *eps};
  }
  return std::nullopt;
}

// root = n·γ + β, both in either order, n the normalised x.
std::optional<Found> layer_norm_at(const Graph& g, std::uint32_t root) {
  const Node& add = g.node(root);
  if (add.op != &ops::add) return std::nullopt;
  for (bool swap_add : {false, true}) {
    const auto [scaled, beta] = operands(add, swap_add);
    const Node* mul = producer(g, scaled, ops::mul);
    if (!mul) continue;
    for (bool swap_mul : {false, true}) {
      const auto [n, gamma] = operands(*mul, swap_mul);
      Nodes nodes{root, scaled.node};
      const std::optional<std::pair<ValueRef, double>> normalised = normalised_of(g, n, nodes);
      if (!normalised) continue;
      const auto [x, eps] = *normalised;
      const TensorType& xt = g.type(x);
      const TensorType affine{xt.dtype, Shape{xt.shape[xt.shape.rank() - 1]}};
      if (g.type(gamma) != affine || g.type(beta) != affine || add.outputs[0] != xt)
        return blocked(kLayerNorm, "gamma or beta is not [D] (one value per feature)");
      return fusable(kLayerNorm, {x, gamma, beta}, nodes, eps);
    }
  }
  return std::nullopt;
}

// --- cross_entropy ---------------------------------------------------------------------------------

// The class index along the last axis of a [..., C] grid: iota(axis -1), or a constant holding
// it (constant folding turns small iotas into constants).
bool is_class_grid(const Graph& g, ValueRef v, std::int64_t classes) {
  const Node& n = g.node(v.node);
  const Shape& shape = g.type(v).shape;
  if (shape.rank() < 1 || shape[shape.rank() - 1] != classes || !is_integer(g.type(v).dtype)) return false;
  if (n.op == &ops::iota) return n.attrs.get_int("axis") == shape.rank() - 1;
  if (n.op != &constant_op) return false;
  const Tensor& t = n.attrs.get_tensor("value");
  for (std::int64_t i = 0; i < t.numel(); ++i)
    if (t.at(i) != static_cast<double>(i % classes)) return false;
  return true;
}

// h = cast(equal(classes, unsqueeze(t, -1)), dtype) (either order) = nn::one_hot(t): the targets t,
// when h has the logits' type and t their shape without the class dim.
std::optional<ValueRef> one_hot_targets(const Graph& g, ValueRef h, const TensorType& logits) {
  const Node* cast = producer(g, h, ops::cast);
  if (!cast || g.type(h) != logits) return std::nullopt;
  const Node* equal = producer(g, cast->inputs[0], ops::equal);
  if (!equal || g.type(cast->inputs[0]).shape != logits.shape) return std::nullopt;
  const std::int64_t classes = logits.shape[logits.shape.rank() - 1];
  std::vector<std::int64_t> batch = logits.shape.dims();
  batch.pop_back();
  for (bool swap : {false, true}) {
    const auto [grid, column] = operands(*equal, swap);
    const Node* unsqueeze = producer(g, column, ops::reshape);
    if (!unsqueeze || !is_class_grid(g, grid, classes)) continue;
    const ValueRef targets = unsqueeze->inputs[0];
    std::vector<std::int64_t> column_shape = batch;
    column_shape.push_back(1);
    if (g.type(targets).shape == Shape(batch) && g.type(column).shape == Shape(column_shape)) return targets;
  }
  return std::nullopt;
}

// p = reduce_sum(logp · one_hot(t), {-1}) (either order, no keepdims), logp a log_softmax of x:
// a Found with inputs (x, t), covering the sum, the product and the log_softmax.
std::optional<Found> picked_at(const Graph& g, ValueRef p) {
  const Node* sum = producer(g, p, ops::reduce_sum);
  if (!sum || !reduces_last_axis(g, *sum, false)) return std::nullopt;
  const Node* product = producer(g, sum->inputs[0], ops::mul);
  if (!product) return std::nullopt;
  for (bool swap : {false, true}) {
    const auto [logp, hot] = operands(*product, swap);
    if (g.type(logp) != product->outputs[0]) continue;
    std::optional<Found> log_softmax = log_softmax_at(g, logp.node);
    if (!log_softmax || !log_softmax->blocked.empty()) continue;
    const std::optional<ValueRef> targets = one_hot_targets(g, hot, g.type(logp));
    if (!targets) continue;
    Found found = fusable(log_softmax->kind == kLogSoftmax ? "" : kUnshifted, {log_softmax->inputs[0], *targets},
                          {p.node, sum->inputs[0].node});
    found.log_probabilities = logp;
    found.nodes.insert(found.nodes.end(), log_softmax->nodes.begin(), log_softmax->nodes.end());
    return found;
  }
  return std::nullopt;
}

// root = -picked: the per-example cross-entropy without smoothing.
std::optional<Found> cross_entropy_at(const Graph& g, std::uint32_t root) {
  const Node& neg = g.node(root);
  if (neg.op != &ops::neg) return std::nullopt;
  std::optional<Found> found = picked_at(g, neg.inputs[0]);
  if (!found) return std::nullopt;
  found->kind = kCrossEntropy + found->kind;
  found->nodes.push_back(root);
  return found;
}

// `v` times a one-element constant (either order): the other operand and the constant.
std::optional<std::pair<ValueRef, double>> times_constant(const Graph& g, ValueRef v) {
  const Node* mul = producer(g, v, ops::mul);
  if (!mul) return std::nullopt;
  for (bool swap : {false, true}) {
    const auto [x, c] = operands(*mul, swap);
    const std::optional<double> factor = scalar_value(g, c);
    if (factor && g.type(x) == mul->outputs[0]) return std::pair{x, *factor};
  }
  return std::nullopt;
}

// root = (-picked)·(1-ε) + (-mean(logp, {-1}))·ε (either order everywhere): nn::cross_entropy's
// per-example value with label smoothing ε, the same logp in both terms.
std::optional<Found> smoothed_cross_entropy_at(const Graph& g, std::uint32_t root) {
  const Node& add = g.node(root);
  if (add.op != &ops::add) return std::nullopt;
  for (bool swap : {false, true}) {
    const auto [hard, soft] = operands(add, swap);
    const auto hard_term = times_constant(g, hard);
    const auto soft_term = times_constant(g, soft);
    if (!hard_term || !soft_term) continue;
    std::optional<Found> found = cross_entropy_at(g, hard_term->first.node);
    const Node* neg_mean = producer(g, soft_term->first, ops::neg);
    if (!found || !neg_mean) continue;
    // Both terms must read the same log-probabilities.
    Nodes mean_nodes;
    const std::optional<ValueRef> logp = mean_of(g, neg_mean->inputs[0], false, mean_nodes);
    if (!logp || *logp != found->log_probabilities) continue;
    const double eps = soft_term->second, keep = hard_term->second;
    const double tolerance = add.outputs[0].dtype == DType::f32 ? 1e-6 : 1e-12;
    if (!(eps > 0.0 && eps <= 1.0) || !(std::abs(keep - (1.0 - eps)) <= tolerance)) continue;
    if (g.type(hard_term->first) != add.outputs[0] || g.type(soft_term->first) != add.outputs[0]) continue;
    found->kind = kSmoothedCrossEntropy + found->kind.substr(kCrossEntropy.size());
    found->number = eps;
    found->nodes.insert(found->nodes.end(), {root, hard.node, soft.node, soft_term->first.node});
    found->nodes.insert(found->nodes.end(), mean_nodes.begin(), mean_nodes.end());
    return found;
  }
  return std::nullopt;
}

// Whether the unsmoothed cross-entropy rooted at `neg` is the hard term of a smoothed one, which
// then takes the whole chain (it comes later in graph order, so it must be let through).
bool feeds_smoothed_cross_entropy(const Graph& g, std::uint32_t neg, const UseCounts& uses) {
  for (std::uint32_t scaled : uses.users(ValueRef{neg, 0})) {
    if (g.node(scaled).op != &ops::mul) continue;
    for (std::uint32_t add : uses.users(ValueRef{scaled, 0}))
      if (smoothed_cross_entropy_at(g, add)) return true;
  }
  return false;
}

// --- Rewrites --------------------------------------------------------------------------------------

// The Rewrite that replaces the root by output 0 of one `op` node reading `found.inputs`.
Rewrite rewrite_for(const Graph& g, std::uint32_t root, Found found, const OpDef& op, const char* attribute) {
  Rewrite rewrite{.kind = found.kind, .root = root, .nodes = found.nodes, .build = {}, .blocked = found.blocked};
  std::sort(rewrite.nodes.begin(), rewrite.nodes.end());
  rewrite.nodes.erase(std::unique(rewrite.nodes.begin(), rewrite.nodes.end()), rewrite.nodes.end());
  // A blocked match keeps its nodes: its decision lists them (the driver rewrites nothing).
  if (!found.blocked.empty()) return rewrite;
  Attributes attrs{{"replaces", fmt::format("{} .. {} ({} nodes)", g.node(rewrite.nodes.front()).name,
                                            g.node(root).name, rewrite.nodes.size())}};
  if (attribute) attrs.set(attribute, found.number);
  rewrite.build = [inputs = found.inputs, root, &op, attrs](GraphRewriter& rw) {
    std::vector<Value> mapped;
    for (const ValueRef& v : inputs) mapped.push_back(rw.mapped(v));
    const std::vector<Value> fused = rw.emit(root, op, mapped, attrs, /*same_name=*/false);
    return std::vector<Value>{fused[0]};  // the statistics outputs are read by gradient rules only
  };
  return rewrite;
}

// Runs `second` on `first`'s graph and composes the two results into one.
PassResult then(PassResult first, std::span<const ValueRef> roots,
                const std::function<PassResult(const Graph&, std::span<const ValueRef>)>& second) {
  std::vector<ValueRef> mid_roots;
  for (const ValueRef& r : roots)
    if (auto it = first.value_map.find(r); it != first.value_map.end()) mid_roots.push_back(it->second);
  PassResult next = second(*first.graph, mid_roots);
  PassResult result{.graph = std::move(next.graph), .value_map = {}, .stats = first.stats};
  for (const auto& [old, mid] : first.value_map)
    if (auto it = next.value_map.find(mid); it != next.value_map.end()) result.value_map.emplace(old, it->second);
  result.stats.nodes_after = next.stats.nodes_after;
  for (const auto& [kind, n] : next.stats.rewrites) result.stats.count(kind, n);
  for (const auto& [reason, n] : next.stats.blocked) result.stats.block(reason, n);
  // The second sweep's candidates are named in its input graph, where every node the first
  // sweep left alone has the name it had in `first`'s input.
  result.stats.decisions.insert(result.stats.decisions.end(), next.stats.decisions.begin(), next.stats.decisions.end());
  return result;
}

}  // namespace

std::optional<Rewrite> match_cross_entropy(const Graph& g, std::uint32_t root, const UseCounts& uses) {
  if (std::optional<Found> smoothed = smoothed_cross_entropy_at(g, root))
    return rewrite_for(g, root, *smoothed, ops::fused_softmax_cross_entropy, "label_smoothing");
  std::optional<Found> plain = cross_entropy_at(g, root);
  if (!plain || feeds_smoothed_cross_entropy(g, root, uses)) return std::nullopt;
  return rewrite_for(g, root, *plain, ops::fused_softmax_cross_entropy, "label_smoothing");
}

std::optional<Rewrite> match_normalization(const Graph& g, std::uint32_t root, const UseCounts&) {
  if (std::optional<Found> found = softmax_at(g, root))
    return rewrite_for(g, root, *found, ops::fused_softmax, nullptr);
  if (std::optional<Found> found = log_softmax_at(g, root))
    return rewrite_for(g, root, *found, ops::fused_log_softmax, nullptr);
  if (std::optional<Found> found = layer_norm_at(g, root))
    return rewrite_for(g, root, *found, ops::fused_layer_norm, "eps");
  return std::nullopt;
}

PassResult fuse_normalizations(const Graph& graph, std::span<const ValueRef> roots) {
  // Cross-entropy first, in a sweep of its own: its log_softmax is part of its chain.
  PassResult first = rewrite_patterns(graph, roots, match_cross_entropy);
  return then(std::move(first), roots,
              [](const Graph& g, std::span<const ValueRef> r) { return rewrite_patterns(g, r, match_normalization); });
}

}  // namespace fovea::passes
