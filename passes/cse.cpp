#include "fovea/passes/cse.h"

#include <cstring>
#include <unordered_map>

namespace fovea::passes {

namespace {

// FNV-1a over bytes, the same mixing step for every part of a node's key.
struct Hasher {
  std::uint64_t h = 1469598103934665603ull;
  void bytes(const void* data, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
  template <typename T>
  void value(const T& v) {
    bytes(&v, sizeof v);
  }
};

bool tensors_equal(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  return a.shares_storage_with(b) || std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

bool attribute_equal(const Attribute& a, const Attribute& b) {
  if (a.index() != b.index()) return false;
  return std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        const T& y = std::get<T>(b);
        if constexpr (std::is_same_v<T, double>)
          return std::memcmp(&x, &y, sizeof(double)) == 0;
        else if constexpr (std::is_same_v<T, Tensor>)
          return tensors_equal(x, y);
        else
          return x == y;
      },
      a);
}

void hash_attribute(Hasher& h, const Attribute& a) {
  h.value(a.index());
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          h.bytes(v.data(), v.size());
        } else if constexpr (std::is_same_v<T, std::vector<std::int64_t>>) {
          h.bytes(v.data(), v.size() * sizeof(std::int64_t));
        } else if constexpr (std::is_same_v<T, Tensor>) {
          h.value(v.dtype());
          h.bytes(v.shape().dims().data(), v.shape().dims().size() * sizeof(std::int64_t));
          if (v.defined()) h.bytes(v.raw(), v.nbytes());
        } else {
          h.value(v);
        }
      },
      a);
}

// The key a node is merged by: its op, its (new) inputs and its attributes.
std::uint64_t node_key(const OpDef& op, std::span<const Value> inputs, const Attributes& attrs) {
  Hasher h;
  h.value(&op);
  for (const Value& v : inputs) h.value(v.ref());
  for (const auto& [name, value] : attrs.items()) {
    h.bytes(name.data(), name.size());
    hash_attribute(h, value);
  }
  return h.h;
}

bool mergeable(const OpDef& op) { return (!op.source || &op == &constant_op) && !op.impure && !op.assigns; }

}  // namespace

bool attributes_equal(const Attributes& a, const Attributes& b) {
  if (a.items().size() != b.items().size()) return false;
  for (std::size_t i = 0; i < a.items().size(); ++i)
    if (a.items()[i].first != b.items()[i].first || !attribute_equal(a.items()[i].second, b.items()[i].second))
      return false;
  return true;
}

PassResult eliminate_common_subexpressions(const Graph& graph, std::span<const ValueRef>) {
  PassStats stats;
  GraphRewriter rewriter(graph);
  std::unordered_map<std::uint64_t, std::vector<std::uint32_t>> seen;  // key -> new node ids
  rewriter.rebuild([&](std::uint32_t id) {
    const Node& n = graph.node(id);
    if (!mergeable(*n.op)) return false;
    const std::vector<Value> inputs = rewriter.inputs(id);
    const std::uint64_t key = node_key(*n.op, inputs, n.attrs);
    Graph& target = rewriter.target();
    for (std::uint32_t candidate : seen[key]) {
      const Node& c = target.node(candidate);
      bool same = c.op == n.op && c.inputs.size() == inputs.size() && attributes_equal(c.attrs, n.attrs);
      for (std::size_t i = 0; same && i < inputs.size(); ++i) same = c.inputs[i] == inputs[i].ref();
      if (!same) continue;
      std::vector<Value> outputs;
      for (std::uint32_t k = 0; k < c.outputs.size(); ++k) outputs.push_back(target.value({candidate, k}));
      rewriter.replace(id, outputs);
      stats.count(n.op == &constant_op ? "equal constants merged" : "repeated " + std::string(n.op_name()) + " merged");
      return true;
    }
    const std::vector<Value> copied = rewriter.copy(id);
    seen[key].push_back(copied[0].ref().node);
    return true;
  });
  return rewriter.finish(std::move(stats));
}

}  // namespace fovea::passes
