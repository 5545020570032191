#include "fovea/passes/attention_fusion.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "fovea/autograd/grad.h"
#include "fovea/nn/attention.h"
#include "fovea/ops/attention.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/indexing.h"
#include "fovea/ops/matmul.h"
#include "fovea/ops/reduce.h"
#include "fovea/ops/shape_ops.h"

namespace fovea::passes {

namespace {

// The statistics' name for an attention with dropout on its probabilities.
constexpr const char* kDropoutKind = "attention with dropout → fused_attention";

// What the match found; refs and ids are in the graph being matched.
struct Attention {
  ValueRef q, k, v, mask;
  bool has_mask = false;
  bool causal = false;
  double scale = 1.0;
  // Dropout on the probabilities: p, c, the random node's seed and stream, and its step.
  double dropout = 0.0, dropout_scale = 1.0;
  std::int64_t dropout_seed = 0, dropout_stream = 0;
  ValueRef step;
  bool has_step = false;
  std::vector<std::uint32_t> nodes;  // the chain, in no particular order; the root last
};

bool last_axis_keepdims(const Node& reduce, int rank) {
  const std::vector<std::int64_t>& axes = reduce.attrs.get_ints("axes");
  return axes.size() == 1 && axes[0] == rank - 1 && reduce.attrs.get_bool("keepdims");
}

// `c · x`, `x · c` or `x / c` with c a one-element constant that leaves x's type alone: the
// other operand and the factor, or nothing.
std::optional<std::pair<ValueRef, double>> scaled(const Graph& g, ValueRef v) {
  const Node& n = g.node(v.node);
  if (n.op != &ops::mul && n.op != &ops::div) return std::nullopt;
  for (int side = 0; side < (n.op == &ops::mul ? 2 : 1); ++side) {
    const ValueRef x = n.inputs[static_cast<std::size_t>(side)], c = n.inputs[static_cast<std::size_t>(1 - side)];
    const std::optional<double> factor = scalar_value(g, c);
    if (!factor || g.type(x) != n.outputs[0]) continue;
    if (n.op == &ops::div) {
      if (*factor == 0.0) return std::nullopt;
      return std::pair{x, 1.0 / *factor};
    }
    return std::pair{x, *factor};
  }
  return std::nullopt;
}

// The permutation that swaps the last two axes.
bool swaps_last_two(const std::vector<std::int64_t>& axes) {
  const auto r = static_cast<std::int64_t>(axes.size());
  if (r < 2) return false;
  for (std::int64_t i = 0; i < r - 2; ++i)
    if (axes[static_cast<std::size_t>(i)] != i) return false;
  return axes[static_cast<std::size_t>(r - 2)] == r - 1 && axes[static_cast<std::size_t>(r - 1)] == r - 2;
}

// The scores: [c ·] matmul(q [· c], kᵀ). Fills q, k and scale; adds the chain's nodes.
bool match_scores(const Graph& g, ValueRef s, Attention& a) {
  std::vector<std::uint32_t> nodes;
  double scale = 1.0;
  if (auto sc = scaled(g, s)) {
    nodes.push_back(s.node);
    scale *= sc->second;
    s = sc->first;
  }
  const Node* mm = producer(g, s, ops::matmul);
  if (!mm || mm->attrs.get_bool("transpose_a")) return false;
  nodes.push_back(s.node);
  ValueRef q = mm->inputs[0], k = mm->inputs[1];
  if (!mm->attrs.get_bool("transpose_b")) {
    // matmul(q, transpose(k)): read k itself; the permute stays for any other reader.
    const Node* t = producer(g, k, ops::permute);
    if (!t || !swaps_last_two(t->attrs.get_ints("axes"))) return false;
    k = t->inputs[0];
  }
  // A scale folded into q before the matmul (the q·c node stays for any other reader).
  if (auto qc = scaled(g, q)) {
    scale *= qc->second;
    q = qc->first;
  }
  a.q = q;
  a.k = k;
  a.scale = scale;
  a.nodes.insert(a.nodes.end(), nodes.begin(), nodes.end());
  return true;
}

// p = e / reduce_sum(e), e = exp(s [- max(s)]), over the last axis. Returns s.
std::optional<ValueRef> match_softmax(const Graph& g, ValueRef p, Attention& a) {
  const Node* div = producer(g, p, ops::div);
  if (!div) return std::nullopt;
  const int rank = g.type(p).shape.rank();
  const ValueRef e = div->inputs[0];
  std::vector<std::uint32_t> sum_nodes{p.node};
  const ValueRef total = unguard_softmax_sum(g, div->inputs[1], sum_nodes);
  const Node* sum = producer(g, total, ops::reduce_sum);
  const Node* exp = producer(g, e, ops::exp);
  if (!sum || !exp || sum->inputs[0] != e || !last_axis_keepdims(*sum, rank) || g.type(e) != div->outputs[0])
    return std::nullopt;
  a.nodes.insert(a.nodes.end(), sum_nodes.begin(), sum_nodes.end());
  a.nodes.insert(a.nodes.end(), {total.node, e.node});
  const ValueRef shifted = exp->inputs[0];
  // e = exp(s - [stop_gradient](max(reduce_max(s), lowest))): the stable form nn::softmax builds.
  if (const Node* sub = producer(g, shifted, ops::sub)) {
    ValueRef m = sub->inputs[1];
    std::vector<std::uint32_t> max_nodes{shifted.node};
    if (const Node* sg = producer(g, m, ops::stop_gradient)) {
      max_nodes.push_back(m.node);
      m = sg->inputs[0];
    }
    m = unguard_softmax_shift(g, m, max_nodes);
    const Node* max = producer(g, m, ops::reduce_max);
    if (max && max->inputs[0] == sub->inputs[0] && last_axis_keepdims(*max, rank)) {
      max_nodes.push_back(m.node);
      a.nodes.insert(a.nodes.end(), max_nodes.begin(), max_nodes.end());
      return sub->inputs[0];
    }
  }
  return shifted;  // e = exp(s): softmax without the shift (the fused kernel shifts anyway)
}

// A one-element constant, or a constant-valued fill, equal to `value`.
bool is_number(const Graph& g, ValueRef v, double value) {
  const std::optional<double> c = scalar_value(g, v);
  return c && *c == value;
}

// What a causal mask may add above the diagonal: -∞ (nn::masked_score) or any number as low as
// -1e9, whose exp() underflows to exactly 0 against scores of any trained model's size.
constexpr double kBlockedScore = -1e9;

// mask == nn::causal_mask(Tq, Tk): where(greater(sub(iota axis 1, iota axis 0), Tk - Tq), ≤-1e9, 0),
// or a constant with that pattern.
bool is_causal_mask(const Graph& g, ValueRef mask, std::int64_t tq, std::int64_t tk) {
  const Shape& shape = g.type(mask).shape;
  if (tq > tk || shape.rank() < 2 || shape.numel() != tq * tk || shape[shape.rank() - 2] != tq ||
      shape[shape.rank() - 1] != tk)
    return false;
  const Node& n = g.node(mask.node);
  if (n.op == &constant_op) {
    const Tensor& t = n.attrs.get_tensor("value");
    for (std::int64_t i = 0; i < tq; ++i)
      for (std::int64_t j = 0; j < tk; ++j) {
        const double m = t.at(i * tk + j);
        if (j <= i + (tk - tq) ? m != 0.0 : !(m <= kBlockedScore)) return false;
      }
    return true;
  }
  const Node* select = producer(g, mask, ops::where);
  if (!select || !is_number(g, select->inputs[2], 0.0)) return false;
  const std::optional<double> blocked = scalar_value(g, select->inputs[1]);
  const Node* future = producer(g, select->inputs[0], ops::greater);
  if (!blocked || !(*blocked <= kBlockedScore) || !future || !is_number(g, future->inputs[1], double(tk - tq)))
    return false;
  const Node* ahead = producer(g, future->inputs[0], ops::sub);
  if (!ahead) return false;
  const Node* column = producer(g, ahead->inputs[0], ops::iota);
  const Node* row = producer(g, ahead->inputs[1], ops::iota);
  const Shape grid{tq, tk};
  return column && row && column->outputs[0].shape == grid && row->outputs[0].shape == grid &&
         column->attrs.get_int("axis") == 1 && row->attrs.get_int("axis") == 0;
}

// The name of the first parameter the mask depends on through differentiable ops, if any. Such a
// mask (a learned attention bias: T5's relative positions, ALiBi's slopes) needs a gradient; the
// fused kernel gives the mask none, so fusing would silently zero it.
std::optional<std::string> parameter_behind(const Graph& g, ValueRef mask) {
  std::vector<std::uint32_t> stack{mask.node};
  std::set<std::uint32_t> seen{mask.node};
  while (!stack.empty()) {
    const Node& n = g.node(stack.back());
    stack.pop_back();
    if (n.op == &parameter_op) return n.name;
    if (!n.op->differentiable) continue;
    for (const ValueRef& in : n.inputs)
      if (is_floating(g.type(in).dtype) && seen.insert(in.node).second) stack.push_back(in.node);
  }
  return std::nullopt;
}

// The fused node's attributes for a match.
Attributes attributes_of(const Attention& a) {
  Attributes attrs{{"scale", a.scale}, {"causal", a.causal}};
  if (a.dropout > 0.0) {
    attrs.set("dropout", a.dropout);
    attrs.set("dropout_scale", a.dropout_scale);
    attrs.set("dropout_seed", a.dropout_seed);
    attrs.set("dropout_stream", a.dropout_stream);
    attrs.set("dropout_step", a.has_step);
  }
  return attrs;
}

// Whether fused_attention accepts these inputs and gives the root's type: the op's own shape
// rule decides, so the pass and the op never disagree about what is supported.
bool fused_op_accepts(const Graph& g, const Attention& a, const TensorType& want) {
  std::vector<TensorType> types{g.type(a.q), g.type(a.k), g.type(a.v)};
  if (a.has_mask) types.push_back(g.type(a.mask));
  if (a.has_step) types.push_back(g.type(a.step));
  const Attributes attrs = attributes_of(a);
  try {
    const InferContext ctx(ops::fused_attention, types, attrs, "fused_attention", SourceLoc{});
    return ops::fused_attention.infer(ctx)[0] == want;
  } catch (const Error&) {
    return false;
  }
}

// What the probabilities' dropout matched: nothing (no dropout there), a dropout the fused op
// cannot reproduce, or one it can (with the probabilities it drops).
struct DropoutMatch {
  enum { none, unsupported, fused } result = none;
  ValueRef probabilities;
};

// x = where(greater_equal(u, p), P · c, 0) (or c · P), u = random_uniform(scores' shape, low 0,
// high 1, [step]) of the scores' dtype, p and c one-element constants: nn::dropout on the
// softmax P. Fills a's dropout and adds the four nodes when the fused op can draw the same
// mask; a dropout of the softmax in any other form is `unsupported` (blocked, and counted).
DropoutMatch match_dropout(const Graph& g, ValueRef x, Attention& a) {
  const Node* select = producer(g, x, ops::where);
  if (!select) return {};
  const Node* rescale = producer(g, select->inputs[1], ops::mul);
  if (!rescale) return {};
  // The side of the mul that is a softmax is P; the other is c.
  DropoutMatch match{DropoutMatch::unsupported, {}};
  std::optional<ValueRef> factor;
  for (std::size_t side = 0; side < 2 && !factor; ++side) {
    Attention ignored;
    if (!match_softmax(g, rescale->inputs[side], ignored)) continue;
    match.probabilities = rescale->inputs[side];
    factor = rescale->inputs[1 - side];
  }
  if (!factor) return {};  // not the dropout of a softmax: not attention
  const TensorType& probabilities = g.type(match.probabilities);
  const std::optional<double> c = scalar_value(g, *factor);
  const Node* keep = producer(g, select->inputs[0], ops::greater_equal);
  const std::optional<double> p = keep ? scalar_value(g, keep->inputs[1]) : std::nullopt;
  const Node* random = keep ? producer(g, keep->inputs[0], ops::random_uniform) : nullptr;
  if (!c || !p || !random || !is_number(g, select->inputs[2], 0.0) || rescale->outputs[0] != probabilities ||
      select->outputs[0] != probabilities || random->outputs[0] != probabilities ||
      random->attrs.get_float("low") != 0.0 || random->attrs.get_float("high") != 1.0 || !(*p > 0.0))
    return match;
  a.dropout = *p;
  a.dropout_scale = *c;
  a.dropout_seed = random->attrs.get_int("seed");
  a.dropout_stream = random->attrs.get_int("stream");
  a.has_step = !random->inputs.empty();
  if (a.has_step) a.step = random->inputs[0];
  a.nodes.insert(a.nodes.end(), {x.node, select->inputs[1].node, select->inputs[0].node, keep->inputs[0].node});
  match.result = DropoutMatch::fused;
  return match;
}

}  // namespace

std::optional<Rewrite> match_attention(const Graph& g, std::uint32_t root, const UseCounts&,
                                       const AttentionFusionOptions& options) {
  const Node& out = g.node(root);
  if (out.op != &ops::matmul || out.attrs.get_bool("transpose_a") || out.attrs.get_bool("transpose_b")) return {};

  Attention a;
  a.v = out.inputs[1];
  ValueRef probabilities = out.inputs[0];
  const DropoutMatch dropout = match_dropout(g, probabilities, a);
  if (dropout.result == DropoutMatch::unsupported)
    return Rewrite{.kind = std::string(kDropoutKind),
                   .root = root,
                   .nodes = {},
                   .build = {},
                   .blocked =
                       "dropout on the probabilities in a form the fused op does not draw (it needs "
                       "where(random_uniform(scores' shape, 0, 1) >= p, P·c, 0) with constant p and c)"};
  if (dropout.result == DropoutMatch::fused) probabilities = dropout.probabilities;
  const std::optional<ValueRef> s = match_softmax(g, probabilities, a);
  if (!s) return {};
  if (const Node* add = producer(g, *s, ops::add)) {
    // s = scores + mask, in either order; the mask must not enlarge the scores.
    bool found = false;
    for (std::size_t side = 0; side < 2 && !found; ++side) {
      Attention attempt = a;
      const ValueRef scores = add->inputs[side], mask = add->inputs[1 - side];
      if (g.type(scores) != add->outputs[0] || !match_scores(g, scores, attempt)) continue;
      attempt.mask = mask;
      attempt.has_mask = true;
      attempt.nodes.push_back(s->node);
      a = attempt;
      found = true;
    }
    if (!found) return {};
  } else if (!match_scores(g, *s, a)) {
    return {};
  }

  const Shape& scores = g.type(*s).shape;
  const std::int64_t tq = scores[scores.rank() - 2], tk = scores[scores.rank() - 1];
  if (a.has_mask && options.recognize_causal_masks && is_causal_mask(g, a.mask, tq, tk)) {
    a.has_mask = false;
    a.causal = true;
  }
  if (!fused_op_accepts(g, a, out.outputs[0])) return {};
  if (a.has_mask)
    if (const std::optional<std::string> parameter = parameter_behind(g, a.mask))
      return Rewrite{.kind = a.dropout > 0.0 ? std::string(kDropoutKind) : std::string("fused attention"),
                     .root = root,
                     .nodes = a.nodes,  // for the decision: the driver rewrites nothing
                     .build = {},
                     .blocked = fmt::format("the mask depends on parameter '{}', and fused attention gives the mask "
                                            "no gradient",
                                            *parameter)};

  a.nodes.push_back(root);
  const std::string replaces = fmt::format(
      "{} .. {} ({} nodes)", g.node(*std::min_element(a.nodes.begin(), a.nodes.end())).name, out.name, a.nodes.size());
  const std::string kind(a.dropout > 0.0 ? kDropoutKind : "fused attention");
  Rewrite rewrite{.kind = kind, .root = root, .nodes = a.nodes, .build = {}, .blocked = {}};
  rewrite.build = [a, root, replaces](GraphRewriter& rw) {
    std::vector<Value> inputs{rw.mapped(a.q), rw.mapped(a.k), rw.mapped(a.v)};
    if (a.has_mask) inputs.push_back(rw.mapped(a.mask));
    if (a.has_step) inputs.push_back(rw.mapped(a.step));
    Attributes attrs = attributes_of(a);
    attrs.set("replaces", replaces);
    const std::vector<Value> fused = rw.emit(root, ops::fused_attention, inputs, attrs, /*same_name=*/false);
    return std::vector<Value>{fused[0]};  // o; lse is read by the gradient rule only
  };
  return rewrite;
}

PassResult fuse_attention(const Graph& graph, std::span<const ValueRef> roots, const AttentionFusionOptions& options) {
  return rewrite_patterns(graph, roots, [&](const Graph& g, std::uint32_t root, const UseCounts& uses) {
    return match_attention(g, root, uses, options);
  });
}

}  // namespace fovea::passes
