#include "fovea/passes/elementwise_fusion.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "fovea/ops/creation.h"
#include "fovea/ops/fused_elementwise.h"
#include "fovea/ops/shape_ops.h"
#include "fovea/passes/pattern.h"

namespace fovea::passes {

namespace {

using fused::Opcode;

// What a fusable node contributes: its loop shape and float type (none for bool-only logic).
struct Fusable {
  Shape shape;
  std::optional<DType> float_type;
};

bool is_float(DType t) { return t == DType::f32 || t == DType::f64; }

std::optional<Fusable> fusable(const Graph& g, const Node& n) {
  if (n.outputs.size() != 1 || n.op->source) return std::nullopt;
  Opcode code{};
  const bool arithmetic = n.op->elementwise && fused::opcode_of(n.op->name, code);
  const bool random = n.op == &ops::random_uniform;
  if (!arithmetic && !random && n.op != &ops::cast && n.op != &ops::broadcast_to) return std::nullopt;
  const TensorType& out = n.outputs[0];
  std::optional<DType> t;
  auto admit = [&](DType d) {
    if (d == DType::boolean) return true;
    if (!is_float(d) || (t && *t != d)) return false;
    t = d;
    return true;
  };
  if (!admit(out.dtype)) return std::nullopt;
  for (const ValueRef& in : n.inputs) {
    const TensorType& type = g.type(in);
    if (random) {
      if (type.dtype != DType::i64 || type.shape.numel() != 1) return std::nullopt;
      continue;
    }
    if (!admit(type.dtype)) return std::nullopt;
  }
  return Fusable{out.shape, t};
}

struct Group {
  Shape shape;
  std::optional<DType> float_type;
  std::uint32_t last = 0;              // the group's last node: where the fused node goes
  std::vector<std::uint32_t> members;  // in reverse graph order as they joined
  std::set<ValueRef> inputs;           // values read from outside (approximately: see join)
  std::set<std::uint32_t> outputs;     // members read from outside the group
  std::set<std::uint32_t> recomputed;  // other groups' members this group computes again itself
};

// The members of `group` that `root` (one of them) is computed from inside the group: what a
// reader elsewhere has to evaluate to recompute `root` from the group's inputs. Empty when
// that includes a random draw (stored masks are cheaper than Philox) or more than `limit` nodes.
std::vector<std::uint32_t> recompute_closure(const Graph& g, const std::vector<int>& group_of, int group,
                                             std::uint32_t root, std::size_t limit) {
  std::vector<std::uint32_t> closure, stack{root};
  std::set<std::uint32_t> seen{root};
  while (!stack.empty()) {
    const std::uint32_t id = stack.back();
    stack.pop_back();
    if (g.node(id).op == &ops::random_uniform || closure.size() >= limit) return {};
    closure.push_back(id);
    for (const ValueRef& in : g.node(id).inputs)
      if (group_of[in.node] == group && seen.insert(in.node).second) stack.push_back(in.node);
  }
  return closure;
}

// Builds the program of one group and the values it reads.
struct Lowered {
  fused::Program program;
  std::vector<ValueRef> inputs;
};

Lowered lower(const Graph& g, const Group& group) {
  std::vector<std::uint32_t> members = group.members;
  members.insert(members.end(), group.recomputed.begin(), group.recomputed.end());
  std::sort(members.begin(), members.end());
  const std::set<std::uint32_t> inside(members.begin(), members.end());

  // First the registers of the inputs and immediates, then the instructions.
  Lowered out;
  std::map<ValueRef, std::int32_t> input_index;
  std::map<double, std::size_t> immediate_index;
  std::vector<double> immediates;
  for (std::uint32_t id : members)
    for (const ValueRef& in : g.node(id).inputs) {
      if (inside.contains(in.node)) continue;
      if (g.node(id).op != &ops::random_uniform)
        if (const std::optional<double> v = uniform_value(g, in)) {
          immediate_index.emplace(*v, 0);
          continue;
        }
      if (input_index.emplace(in, static_cast<std::int32_t>(out.inputs.size())).second) out.inputs.push_back(in);
    }
  for (std::uint32_t id : members)
    if (g.node(id).op == &ops::random_uniform) {
      immediate_index.emplace(g.node(id).attrs.get_float("low"), 0);
      immediate_index.emplace(g.node(id).attrs.get_float("high"), 0);
    }
  fused::Program& p = out.program;
  p.inputs = static_cast<std::int32_t>(out.inputs.size());
  for (auto& [value, index] : immediate_index) {
    index = p.immediates.size();
    p.immediates.push_back(value);
  }
  auto immediate = [&](double v) { return p.first_immediate() + static_cast<std::int32_t>(immediate_index.at(v)); };

  std::map<std::uint32_t, std::int32_t> reg;  // member → its register
  auto read = [&](std::uint32_t user, const ValueRef& in) -> std::int32_t {
    if (auto it = reg.find(in.node); it != reg.end()) return it->second;
    if (g.node(user).op != &ops::random_uniform)
      if (const std::optional<double> v = uniform_value(g, in)) return immediate(*v);
    return input_index.at(in);
  };
  auto emit = [&](fused::Instruction instruction) {
    p.code.push_back(instruction);
    return p.first_temporary() + static_cast<std::int32_t>(p.code.size() - 1);
  };
  for (std::uint32_t id : members) {
    const Node& n = g.node(id);
    if (n.op == &ops::broadcast_to) {
      reg[id] = read(id, n.inputs[0]);  // the loop reads the input broadcast anyway
    } else if (n.op == &ops::cast) {
      const bool to_bool = n.outputs[0].dtype == DType::boolean && g.type(n.inputs[0]).dtype != DType::boolean;
      reg[id] = emit({to_bool ? Opcode::to_bool : Opcode::copy, read(id, n.inputs[0])});
    } else if (n.op == &ops::random_uniform) {
      fused::RandomStream stream{n.attrs.get_int("seed"), n.attrs.get_int("stream"), -1};
      if (!n.inputs.empty()) stream.step_input = input_index.at(n.inputs[0]);
      p.randoms.push_back(stream);
      reg[id] = emit({Opcode::uniform, static_cast<std::int32_t>(p.randoms.size() - 1),
                      immediate(n.attrs.get_float("low")), immediate(n.attrs.get_float("high"))});
    } else {
      Opcode code{};
      fused::opcode_of(n.op->name, code);
      fused::Instruction instruction{code};
      std::int32_t* args[3] = {&instruction.a, &instruction.b, &instruction.c};
      for (std::size_t k = 0; k < n.inputs.size() && k < 3; ++k) *args[k] = read(id, n.inputs[k]);
      reg[id] = emit(instruction);
    }
  }
  for (std::uint32_t id : members) {
    if (!group.outputs.contains(id)) continue;
    p.outputs.push_back(reg.at(id));
    p.output_is_bool.push_back(g.node(id).outputs[0].dtype == DType::boolean);
  }
  p.shape = group.shape.dims();
  return out;
}

// The groups found so far, and which group each node joined (-1: none).
struct Grouping {
  std::vector<int> group_of;
  std::vector<Group> groups;

  Group& group(int gi) { return groups[static_cast<std::size_t>(gi)]; }
  const Group& group(int gi) const { return groups[static_cast<std::size_t>(gi)]; }
  // Where a reader runs: its own place, or its group's last node when it was fused.
  std::uint32_t position(std::uint32_t reader) const {
    const int gi = group_of[reader];
    return gi >= 0 ? group(gi).last : reader;
  }
};

// The group node `id` may join, or -1: the one among its readers' groups that runs first, if
// its shape and float type agree, it has room, and every other reader (in no group, or in
// another group) runs after that group's last node.
int group_to_join(const Node& n, const Fusable& f, const std::vector<std::uint32_t>& readers, const Grouping& grouping,
                  const ElementwiseFusionOptions& options) {
  int target = -1;
  for (std::uint32_t r : readers) {
    const int gi = grouping.group_of[r];
    if (gi >= 0 && (target < 0 || grouping.group(gi).last < grouping.group(target).last)) target = gi;
  }
  if (target < 0) return -1;
  const Group& grp = grouping.group(target);
  const bool fits = grp.shape == f.shape && (!grp.float_type || !f.float_type || *grp.float_type == *f.float_type) &&
                    grp.members.size() < options.max_nodes &&
                    grp.inputs.size() + n.inputs.size() <= options.max_inputs + 1;
  if (!fits) return -1;
  for (std::uint32_t r : readers)
    if (grouping.group_of[r] != target && grouping.position(r) <= grp.last) return -1;
  return target;
}

// Groups the fusable nodes, walking the graph backwards: each joins a group among its readers'
// (group_to_join) or starts one of its own.
Grouping form_groups(const Graph& graph, const UseCounts& uses, const ElementwiseFusionOptions& options) {
  Grouping grouping{std::vector<int>(graph.size(), -1), {}};
  for (std::uint32_t id = static_cast<std::uint32_t>(graph.size()); id-- > 0;) {
    const Node& n = graph.node(id);
    const std::optional<Fusable> f = fusable(graph, n);
    if (!f) continue;
    const ValueRef value{id, 0};
    const std::vector<std::uint32_t>& readers = uses.users(value);
    int target = group_to_join(n, *f, readers, grouping, options);
    const bool join = target >= 0;
    const bool read_outside = uses.is_root(value) || std::any_of(readers.begin(), readers.end(), [&](std::uint32_t r) {
                                return !join || grouping.group_of[r] != target;
                              });
    if (!join) {
      target = static_cast<int>(grouping.groups.size());
      grouping.groups.push_back(Group{f->shape, f->float_type, id, {}, {}, {}, {}});
    }
    Group& grp = grouping.group(target);
    grouping.group_of[id] = target;
    grp.members.push_back(id);
    if (!grp.float_type) grp.float_type = f->float_type;
    if (read_outside || !join) grp.outputs.insert(id);
    grp.inputs.erase(value);
    for (const ValueRef& in : n.inputs)
      if (!scalar_value(graph, in)) grp.inputs.insert(in);
  }
  return grouping;
}

// The groups other than g1 that read `value`, when every reader outside g1 is in a group of
// g1's shape and float type; empty otherwise.
std::set<int> fused_reader_groups(const Grouping& grouping, int g1, const std::vector<std::uint32_t>& readers) {
  const Group& first = grouping.group(g1);
  bool all_fused_elsewhere = !readers.empty();
  std::set<int> reader_groups;
  for (std::uint32_t r : readers) {
    const int gr = grouping.group_of[r];
    if (gr == g1) continue;
    if (gr < 0 || grouping.group(gr).shape != first.shape || grouping.group(gr).float_type != first.float_type)
      all_fused_elsewhere = false;
    reader_groups.insert(gr);
  }
  return all_fused_elsewhere ? reader_groups : std::set<int>{};
}

// Lets the reader groups of member `p` of group g1 recompute it instead of g1 storing it, when
// its closure is short and reads only values no group computes. True when it did.
bool recompute_in_readers(const Graph& graph, const UseCounts& uses, Grouping& grouping, int g1, std::uint32_t p,
                          const ElementwiseFusionOptions& options) {
  const ValueRef value{p, 0};
  if (uses.is_root(value)) return false;
  const std::set<int> reader_groups = fused_reader_groups(grouping, g1, uses.users(value));
  if (reader_groups.empty()) return false;
  const std::vector<std::uint32_t> closure =
      recompute_closure(graph, grouping.group_of, g1, p, options.max_recompute_nodes);
  if (closure.empty()) return false;
  // What the closure reads from outside the first group becomes the readers' input. Only
  // values no group computes (matmul results, placeholders, parameters) are read: those are
  // stored whatever this loop decides, so recomputations never chain.
  std::set<ValueRef> reads;
  bool anchored = true;
  for (std::uint32_t id : closure)
    for (const ValueRef& in : graph.node(id).inputs) {
      if (grouping.group_of[in.node] == g1 || scalar_value(graph, in)) continue;
      if (grouping.group_of[in.node] >= 0) anchored = false;
      reads.insert(in);
    }
  bool fits = anchored;
  for (int gr : reader_groups) {
    const Group& reader = grouping.group(gr);
    fits = fits && reader.inputs.size() + reads.size() <= options.max_inputs &&
           reader.members.size() + reader.recomputed.size() + closure.size() <= options.max_nodes;
  }
  if (!fits) return false;
  for (int gr : reader_groups) {
    Group& reader = grouping.group(gr);
    reader.recomputed.insert(closure.begin(), closure.end());
    reader.inputs.erase(value);
    reader.inputs.insert(reads.begin(), reads.end());
  }
  grouping.group(g1).outputs.erase(p);
  return true;
}

// Recomputation. A value one group stores only for other groups to read (the forward pass's
// GELU intermediates, read again by GELU's backward) is recomputed by those readers from the
// first group's inputs when that is a short chain: a few more operations per element instead
// of writing the value to memory and reading it back.
void recompute_shared_values(const Graph& graph, const UseCounts& uses, Grouping& grouping,
                             const ElementwiseFusionOptions& options, PassStats& stats) {
  if (options.max_recompute_nodes == 0) return;
  for (std::size_t g1 = 0; g1 < grouping.groups.size(); ++g1) {
    const std::vector<std::uint32_t> stored(grouping.groups[g1].outputs.begin(), grouping.groups[g1].outputs.end());
    for (std::uint32_t p : stored)
      if (recompute_in_readers(graph, uses, grouping, static_cast<int>(g1), p, options))
        stats.count("value recomputed instead of stored");
  }
}

// The decision about a group of two or more nodes: fused, or why not. Its nodes are the
// members in graph order, then the other groups' members it recomputes.
FusionDecision group_decision(const Graph& graph, const Group& grp) {
  FusionDecision decision{"elementwise chain → fused_elementwise", graph.node(grp.last).name, {}, true, {}};
  std::vector<std::uint32_t> members(grp.members.begin(), grp.members.end());
  std::sort(members.begin(), members.end());
  members.insert(members.end(), grp.recomputed.begin(), grp.recomputed.end());
  for (std::uint32_t id : members) decision.nodes.push_back(graph.node(id).name);
  if (!grp.float_type) {
    decision.fused = false;
    decision.reason = fmt::format(
        "the chain ending at '{}' computes no floating-point value, and the fused loop "
        "computes in a float type",
        decision.root);
  } else if (grp.outputs.empty()) {
    decision.fused = false;
    decision.reason = fmt::format("nothing outside the chain ending at '{}' reads any of its values", decision.root);
  }
  return decision;
}

// The program of every group worth a fused node (two or more nodes and a float type to
// compute in); the others get no program.
std::vector<std::optional<Lowered>> lower_groups(const Graph& graph, const Grouping& grouping, PassStats& stats) {
  std::vector<std::optional<Lowered>> lowered(grouping.groups.size());
  for (std::size_t gi = 0; gi < grouping.groups.size(); ++gi) {
    const Group& grp = grouping.groups[gi];
    if (grp.members.size() + grp.recomputed.size() < 2) continue;
    stats.decisions.push_back(group_decision(graph, grp));
    if (!stats.decisions.back().fused) continue;
    lowered[gi] = lower(graph, grp);
    stats.count("elementwise chain → fused_elementwise");
    stats.count("nodes fused", grp.members.size());
  }
  return lowered;
}

// The graph with each lowered group replaced by one fused_elementwise node, emitted at the
// group's last node; its outputs replace the group's stored members.
PassResult rewrite_groups(const Graph& graph, const Grouping& grouping,
                          const std::vector<std::optional<Lowered>>& lowered, PassStats stats) {
  GraphRewriter rw(graph);
  rw.rebuild([&](std::uint32_t id) {
    const int gi = grouping.group_of[id];
    if (gi < 0 || !lowered[static_cast<std::size_t>(gi)]) return false;
    const Group& grp = grouping.group(gi);
    if (id != grp.last) return true;  // emitted at the group's last node
    const Lowered& l = *lowered[static_cast<std::size_t>(gi)];
    std::vector<Value> inputs;
    for (const ValueRef& in : l.inputs) inputs.push_back(rw.mapped(in));
    Attributes attrs = l.program.to_attributes();
    attrs.set("dtype", *grp.float_type);
    // Emitted in the place of the group's last node, the fused node takes that node's role and
    // Node::gradient_of: a chain of backward nodes is named after the forward node whose
    // gradient rule built its last member.
    const std::vector<Value> outs = rw.emit(id, ops::fused_elementwise, inputs, std::move(attrs), false);
    std::vector<std::uint32_t> members(grp.members.begin(), grp.members.end());
    std::sort(members.begin(), members.end());
    std::size_t k = 0;
    for (std::uint32_t m : members)
      if (grp.outputs.contains(m)) rw.replace(ValueRef{m, 0}, outs[k++]);
    return true;
  });
  return rw.finish(std::move(stats));
}

}  // namespace

PassResult fuse_elementwise(const Graph& graph, std::span<const ValueRef> roots,
                            const ElementwiseFusionOptions& options) {
  const UseCounts uses(graph, roots);
  Grouping grouping = form_groups(graph, uses, options);
  PassStats stats;
  recompute_shared_values(graph, uses, grouping, options, stats);
  const std::vector<std::optional<Lowered>> lowered = lower_groups(graph, grouping, stats);
  return rewrite_groups(graph, grouping, lowered, std::move(stats));
}

}  // namespace fovea::passes
