#include "fovea/passes/conv_fusion.h"

#include <optional>

#include "fovea/ops/convolution.h"
#include "fovea/ops/shape_ops.h"
#include "fovea/passes/pattern.h"

namespace fovea::passes {

namespace {

const std::string kFolded = "per-channel affine after conv2d → conv2d(x, w·a) + b";

// One link of a chain: the node, and which of its operands is the chain's value (the other is
// the per-channel operand).
struct Link {
  std::uint32_t node = 0;
  std::size_t chain_operand = 0;
};

struct Chain {
  std::uint32_t conv = 0;
  std::vector<Link> links;  // in order; the last one's value replaces the chain
};

// Whether a value of `shape` broadcasts to [1,K,1,1] against the conv's [N,K,H,W]: every dim but
// the channel's is 1 once right-aligned to rank 4, and the channel's is 1 or K.
bool per_channel(const Shape& shape, std::int64_t k) {
  if (shape.rank() > 4) return false;
  for (int i = 0; i < shape.rank(); ++i) {
    const int axis = 4 - shape.rank() + i;
    if (axis == 1 ? (shape[i] != 1 && shape[i] != k) : shape[i] != 1) return false;
  }
  return true;
}

bool is_affine_op(const OpDef* op) { return op == &ops::add || op == &ops::sub || op == &ops::mul || op == &ops::div; }

// The chain that starts at conv2d node `conv`, or nothing worth folding.
std::optional<Chain> chain_from(const Graph& g, const UseCounts& uses, std::uint32_t conv) {
  Chain chain{conv, {}};
  const TensorType& y = g.node(conv).outputs[0];
  const std::int64_t k = y.shape[1];
  ValueRef v{conv, 0};
  bool scales = false;
  // The chain ends at a value read more than once (or kept by the caller): folding past it
  // would compute it twice.
  while (uses.uses(v) == 1 && !uses.is_root(v)) {
    const std::uint32_t user = uses.users(v)[0];
    const Node& n = g.node(user);
    if (!is_affine_op(n.op) || n.outputs[0] != y) break;
    const std::size_t operand = n.inputs[0] == v ? 0 : 1;
    const ValueRef other = n.inputs[1 - operand];
    // `other` cannot read the convolution: every value of the chain has one reader, the next link.
    if (other == v || !per_channel(g.type(other).shape, k)) break;
    if (n.op == &ops::div && operand == 1) break;  // p / x is not affine in x
    scales = scales || n.op == &ops::mul || n.op == &ops::div;
    chain.links.push_back({user, operand});
    v = {user, 0};
  }
  if (!scales) return std::nullopt;
  return chain;
}

// Builds the folded chain in the new graph at its last link.
class Folder {
 public:
  Folder(GraphRewriter& rw, const Chain& chain) : rw_(rw), chain_(chain) {
    k_ = rw.source().node(chain.conv).outputs[0].shape[1];
  }

  void fold() {
    const std::uint32_t end = chain_.links.back().node;
    for (const Link& link : chain_.links) apply(link, end);
    const Node& conv = rw_.source().node(chain_.conv);
    const std::vector<Value> in = rw_.inputs(chain_.conv);
    Value w = in[1];
    if (scale_.defined()) w = node(end, ops::mul, {w, reshaped(scale_, {k_, 1, 1, 1}, end)});
    const Value y = rw_.emit(chain_.conv, ops::conv2d, std::vector<Value>{in[0], w}, conv.attrs)[0];
    const Value out = shift_.defined() ? node(end, ops::add, {y, reshaped(shift_, {1, k_, 1, 1}, end)}) : y;
    rw_.replace(end, {out});
  }

 private:
  // Composes the link's op onto (scale, shift): the chain so far is y·scale + shift.
  void apply(const Link& link, std::uint32_t end) {
    const Node& n = rw_.source().node(link.node);
    const Value p = channel_vector(rw_.mapped(n.inputs[1 - link.chain_operand]), end);
    if (n.op == &ops::add) {
      shift_ = shift_.defined() ? node(end, ops::add, {shift_, p}) : p;
    } else if (n.op == &ops::sub && link.chain_operand == 0) {  // chain - p
      shift_ = shift_.defined() ? node(end, ops::sub, {shift_, p}) : node(end, ops::neg, {p});
    } else if (n.op == &ops::sub) {  // p - chain
      scale_ = scale_.defined() ? node(end, ops::neg, {scale_}) : node(end, ops::neg, {ones(end)});
      shift_ = shift_.defined() ? node(end, ops::sub, {p, shift_}) : p;
    } else {  // mul, or div with the chain as the dividend
      const OpDef& op = n.op == &ops::mul ? ops::mul : ops::div;
      scale_ = scale_.defined() ? node(end, op, {scale_, p}) : (n.op == &ops::mul ? p : node(end, op, {ones(end), p}));
      if (shift_.defined()) shift_ = node(end, op, {shift_, p});
    }
  }

  // p as a [K] vector: its channel dim (or its only element) broadcast to K.
  Value channel_vector(const Value& p, std::uint32_t at) {
    const std::int64_t channel = p.rank() >= 3 ? p.shape()[p.rank() - 3] : 1;
    Value v = reshaped(p, {channel}, at);
    if (channel != k_)
      v = rw_.emit(at, ops::broadcast_to, std::vector<Value>{v}, {{"shape", std::vector<std::int64_t>{k_}}}, false)[0];
    return v;
  }

  Value reshaped(const Value& v, std::vector<std::int64_t> dims, std::uint32_t at) {
    return rw_.emit(at, ops::reshape, std::vector<Value>{v}, {{"shape", std::move(dims)}}, false)[0];
  }

  Value ones(std::uint32_t at) {
    const TensorType& y = rw_.source().node(chain_.conv).outputs[0];
    return rw_.constant_at(at, Tensor::full(y.dtype, {k_}, 1.0), false);
  }

  Value node(std::uint32_t at, const OpDef& op, std::vector<Value> inputs) {
    return rw_.emit(at, op, inputs, {}, false)[0];
  }

  GraphRewriter& rw_;
  const Chain& chain_;
  std::int64_t k_ = 0;
  Value scale_, shift_;  // undefined: 1 and 0
};

const std::string kBiased = "conv2d + bias → fused_conv2d";
const std::string kBiasedRelu = "conv2d + bias + relu → fused_conv2d";

// conv2d, its bias add and an optional ReLU; the last node's value is the fused op's.
struct Epilogue {
  std::uint32_t conv = 0, add = 0;
  std::size_t bias_operand = 0;  // which of add's operands is the bias
  std::optional<std::uint32_t> relu;
  std::uint32_t last() const { return relu ? *relu : add; }
};

// The only reader of `v` when it has exactly one and the caller does not keep it.
std::optional<std::uint32_t> sole_reader(const UseCounts& uses, ValueRef v) {
  if (uses.uses(v) != 1 || uses.is_root(v)) return std::nullopt;
  return uses.users(v)[0];
}

// The bias add (and ReLU) after conv2d node `conv`, when the values between have no other reader.
std::optional<Epilogue> epilogue_from(const Graph& g, const UseCounts& uses, std::uint32_t conv) {
  const ValueRef y{conv, 0};
  const TensorType& type = g.node(conv).outputs[0];
  const std::optional<std::uint32_t> add = sole_reader(uses, y);
  if (!add) return std::nullopt;
  const Node& n = g.node(*add);
  if (n.op != &ops::add || n.outputs[0] != type) return std::nullopt;
  const std::size_t bias_operand = n.inputs[0] == y ? 1 : 0;
  const Shape& bias = g.type(n.inputs[bias_operand]).shape;
  // One value per channel: [K], [K,1,1], [1,K,1,1], not a scalar broadcast to every channel.
  if (n.inputs[bias_operand] == y || !per_channel(bias, type.shape[1]) || bias.numel() != type.shape[1])
    return std::nullopt;
  Epilogue e{conv, *add, bias_operand, std::nullopt};
  const std::optional<std::uint32_t> relu = sole_reader(uses, {*add, 0});
  if (relu && g.node(*relu).op == &ops::relu) e.relu = relu;
  return e;
}

// The decision for a match this pass applies (it applies every match it finds: a conv whose
// value has other readers is no candidate at all).
FusionDecision fused_decision(const Graph& g, const std::string& kind, std::uint32_t root,
                              const std::vector<std::uint32_t>& nodes) {
  FusionDecision decision{kind, g.node(root).name, {}, true, {}};
  for (std::uint32_t id : nodes) decision.nodes.push_back(g.node(id).name);
  return decision;
}

// Builds the fused node at the epilogue's last node.
void emit_fused(GraphRewriter& rw, const Epilogue& e) {
  const Node& conv = rw.source().node(e.conv);
  const std::vector<Value> in = rw.inputs(e.conv);
  const std::int64_t k = conv.outputs[0].shape[1];
  Value bias = rw.mapped(rw.source().node(e.add).inputs[e.bias_operand]);
  if (bias.rank() != 1)
    bias = rw.emit(e.add, ops::reshape, std::vector<Value>{bias}, {{"shape", std::vector<std::int64_t>{k}}}, false)[0];
  Attributes attrs = conv.attrs;
  attrs.set("activation", std::string(e.relu ? "relu" : "none"));
  const Value y = rw.emit(e.last(), ops::fused_conv2d, std::vector<Value>{in[0], in[1], bias}, std::move(attrs))[0];
  rw.replace(e.last(), {y});
}

}  // namespace

PassResult fuse_conv_epilogues(const Graph& graph, std::span<const ValueRef> roots) {
  PassStats stats;
  const UseCounts uses(graph, roots);
  std::vector<Epilogue> matches;
  std::vector<int> role(graph.size(), -1);  // node → the match it belongs to
  for (std::uint32_t id = 0; id < graph.size(); ++id) {
    if (graph.node(id).op != &ops::conv2d) continue;
    const std::optional<Epilogue> e = epilogue_from(graph, uses, id);
    if (!e) continue;
    const int index = static_cast<int>(matches.size());
    role[e->conv] = role[e->add] = index;
    if (e->relu) role[*e->relu] = index;
    matches.push_back(*e);
    std::vector<std::uint32_t> nodes{e->conv, e->add};
    if (e->relu) nodes.push_back(*e->relu);
    stats.decisions.push_back(fused_decision(graph, e->relu ? kBiasedRelu : kBiased, e->last(), nodes));
  }
  GraphRewriter rewriter(graph);
  rewriter.rebuild([&](std::uint32_t id) {
    if (role[id] < 0) return false;
    const Epilogue& e = matches[static_cast<std::size_t>(role[id])];
    if (id != e.last()) return true;  // the conv and the add: built at the end
    emit_fused(rewriter, e);
    stats.count(e.relu ? kBiasedRelu : kBiased);
    return true;
  });
  return rewriter.finish(std::move(stats));
}

PassResult fuse_convolutions(const Graph& graph, std::span<const ValueRef> roots) {
  PassStats stats;
  const UseCounts uses(graph, roots);
  std::vector<Chain> chains;
  std::vector<int> role(graph.size(), -1);  // node → the chain it belongs to
  for (std::uint32_t id = 0; id < graph.size(); ++id) {
    if (graph.node(id).op != &ops::conv2d) continue;
    std::optional<Chain> chain = chain_from(graph, uses, id);
    if (!chain) continue;
    const int index = static_cast<int>(chains.size());
    role[id] = index;
    std::vector<std::uint32_t> nodes{id};
    for (const Link& link : chain->links) {
      role[link.node] = index;
      nodes.push_back(link.node);
    }
    stats.decisions.push_back(fused_decision(graph, kFolded, chain->links.back().node, nodes));
    chains.push_back(std::move(*chain));
  }
  GraphRewriter rewriter(graph);
  rewriter.rebuild([&](std::uint32_t id) {
    if (role[id] < 0) return false;
    const Chain& chain = chains[static_cast<std::size_t>(role[id])];
    if (id != chain.links.back().node) return true;  // the conv and the interior: built at the end
    Folder(rewriter, chain).fold();
    stats.count(kFolded);
    return true;
  });
  return rewriter.finish(std::move(stats));
}

}  // namespace fovea::passes
