#include "fovea/passes/simplify.h"

#include "fovea/ops/creation.h"
#include "fovea/ops/shape_ops.h"
#include "fovea/passes/pattern.h"

namespace fovea::passes {

namespace {

class Simplifier {
 public:
  Simplifier(GraphRewriter& rewriter, PassStats& stats) : rw_(rewriter), stats_(stats) {}

  // Applies the first rule that matches old node `id`; false when none does.
  bool visit(std::uint32_t id) {
    const Node& n = rw_.source().node(id);
    if (n.inputs.empty() || n.outputs.size() != 1) return false;
    const std::vector<Value> in = rw_.inputs(id);
    if (n.op == &ops::mul)
      return (is(in[1], 1) && forward(id, in[0], "x·1 → x")) || (is(in[0], 1) && forward(id, in[1], "1·x → x"));
    if (n.op == &ops::add)
      return (is(in[1], 0) && forward(id, in[0], "x+0 → x")) || (is(in[0], 0) && forward(id, in[1], "0+x → x"));
    if (n.op == &ops::sub) return is(in[1], 0) && forward(id, in[0], "x-0 → x");
    if (n.op == &ops::div) return is(in[1], 1) && forward(id, in[0], "x/1 → x");
    if (n.op == &ops::permute) return permute(id, in[0]);
    if (n.op == &ops::reshape) return reshape(id, in[0]);
    if (n.op == &ops::broadcast_to) return broadcast(id, in[0]);
    return false;
  }

 private:
  // Whether `v` (in the new graph) is a constant whose every element equals `c`.
  bool is(const Value& v, double c) const {
    const std::optional<double> u = uniform_value(rw_.target(), v.ref());
    return u && *u == c;
  }

  // Old node `id` now reads as `x`, when x has exactly the node's type.
  bool forward(std::uint32_t id, const Value& x, const char* kind) {
    if (x.type() != rw_.source().node(id).outputs[0]) return false;
    rw_.replace(id, {x});
    stats_.count(kind);
    return true;
  }

  static bool is_identity(const std::vector<std::int64_t>& axes) {
    for (std::size_t i = 0; i < axes.size(); ++i)
      if (axes[i] != static_cast<std::int64_t>(i)) return false;
    return true;
  }

  bool permute(std::uint32_t id, const Value& x) {
    const std::vector<std::int64_t>& b = rw_.source().node(id).attrs.get_ints("axes");
    if (is_identity(b)) return forward(id, x, "permute(identity) → x");
    const Node* inner = producer(rw_.target(), x.ref(), ops::permute);
    if (!inner) return false;
    // y = permute(x, a): y dim j is x dim a[j];  z = permute(y, b): z dim i is y dim b[i] = x dim a[b[i]].
    const std::vector<std::int64_t>& a = inner->attrs.get_ints("axes");
    std::vector<std::int64_t> c(b.size());
    for (std::size_t i = 0; i < b.size(); ++i) c[i] = a[static_cast<std::size_t>(b[i])];
    const Value source = rw_.target().value(inner->inputs[0]);
    if (is_identity(c)) return forward(id, source, "permute∘permute → x");
    rw_.replace(id, rw_.rebuild_node(id, std::vector<Value>{source}, {{"axes", c}}));
    stats_.count("permute∘permute → permute");
    return true;
  }

  bool reshape(std::uint32_t id, const Value& x) {
    const TensorType& out = rw_.source().node(id).outputs[0];
    if (x.type() == out) return forward(id, x, "reshape to its own shape → x");
    const Node* inner = producer(rw_.target(), x.ref(), ops::reshape);
    if (!inner) return false;
    const Value source = rw_.target().value(inner->inputs[0]);
    if (source.type() == out) return forward(id, source, "reshape∘reshape → x");
    rw_.replace(id, rw_.rebuild_node(id, std::vector<Value>{source}, rw_.source().node(id).attrs));
    stats_.count("reshape∘reshape → reshape");
    return true;
  }

  bool broadcast(std::uint32_t id, const Value& x) {
    const TensorType& out = rw_.source().node(id).outputs[0];
    if (x.type() == out) return forward(id, x, "broadcast_to its own shape → x");
    // fill holds its value as a double: exact for every dtype but i64 beyond 2^53.
    const std::optional<double> c = scalar_value(rw_.target(), x.ref());
    if (!c || out.dtype == DType::i64) return false;
    const Attributes attrs{{"shape", out.shape.dims()}, {"dtype", out.dtype}, {"value", *c}};
    rw_.replace(id, rw_.emit(id, ops::fill, {}, attrs));
    stats_.count("broadcast_to(scalar) → fill");
    return true;
  }

  GraphRewriter& rw_;
  PassStats& stats_;
};

}  // namespace

PassResult simplify(const Graph& graph, std::span<const ValueRef>) {
  PassStats stats;
  GraphRewriter rewriter(graph);
  Simplifier simplifier(rewriter, stats);
  rewriter.rebuild([&](std::uint32_t id) { return simplifier.visit(id); });
  return rewriter.finish(std::move(stats));
}

}  // namespace fovea::passes
