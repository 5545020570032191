// GraphRewriter: how every pass rebuilds a graph.
//
// Graphs are append-only (nodes never move, so Values stay valid), so a pass does not edit a
// graph in place: it copies the nodes it keeps, in order, into a fresh Graph, and builds
// replacements where it rewrites. A pass is a function Graph → new Graph that also says where
// each old value went:
//
//   old graph                              new graph               value_map
//   %3 = mul(%x, %2) : f32[4]     ──▶      (not copied)            %3 → %x
//   %4 = exp(%3) : f32[4]         ──▶      %1 = exp(%x)            %4 → %1
//
// A copy is indistinguishable from the original: the same scoped name (Graph::apply makes
// names unique, so the rewriter restores the old node's scope with exchange_scope and passes
// its leaf name), the same source location, the same role (forward, backward, update), the
// same forward node in Node::gradient_of, the same attributes. A node a pass builds in an old
// node's place (emit, constant_at) takes that node's scope, role and gradient_of too.
// Parameters and state are copied bound to the SAME persistent Tensor: the new graph reads and
// writes the weights the old graph holds, so training the optimized graph trains the model the
// user built, and checkpoints of either graph agree.
//
// A pass drives the copy with one hook per node (rebuild), which either handles the node
// (maps its outputs to new values, or drops it) or lets the rewriter copy it. Inside the hook,
// inputs(id) gives the node's inputs as they are in the new graph (already rewritten), so local
// rewrites cascade: reshape(reshape(reshape(x))) collapses in one sweep.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fovea/core/graph.h"

namespace fovea::passes {

// One candidate a fusion pass found, and what became of it. The counts in PassStats say how
// often a fusion happened; a decision says which nodes it was about, so that a reader who
// expected a fused kernel can see why there is none and which node to change.
struct FusionDecision {
  std::string kind;                // what the pass would build: "fused attention", "layer norm → fused_layer_norm"
  std::string root;                // the scoped name of the candidate's root, in the pass's input graph
  std::vector<std::string> nodes;  // the scoped names of every node the candidate covers, root included
  bool fused = false;
  // When not fused, a full sentence naming the node(s) responsible: "the inner value 'a/div'
  // (div) is also read by 'probe/mul' (mul), outside the match". Empty when fused.
  std::string reason;
};

// What one pass did, for the manager's table.
struct PassStats {
  std::size_t nodes_before = 0;
  std::size_t nodes_after = 0;
  std::map<std::string, std::size_t> rewrites;  // by kind: "x·1 → x" → 3
  std::map<std::string, std::size_t> blocked;   // patterns found but not rewritten, by reason
  // Every candidate a fusion pass considered, fused or not, in the order it met them (empty
  // for passes that fuse nothing). The explorer lists them; `blocked` only counts.
  std::vector<FusionDecision> decisions;

  void count(const std::string& kind, std::size_t n = 1) { rewrites[kind] += n; }
  void block(const std::string& reason, std::size_t n = 1) { blocked[reason] += n; }
  std::size_t total_rewrites() const;
  // "x·1 → x ×3, x+0 → x ×1; blocked: ... ×1", or "-" when nothing happened.
  std::string rewrites_to_string() const;
};

// A pass's output: the new graph, where each old value went (values the pass removed are
// absent), and what it did.
struct PassResult {
  std::unique_ptr<Graph> graph;
  std::map<ValueRef, ValueRef> value_map;
  PassStats stats;
};

// The signature of every pass: the graph, and the values that must survive (the outputs and
// optimizer updates the caller will compile). Passes read the input graph and never change it.
using PassFunction = std::function<PassResult(const Graph& graph, std::span<const ValueRef> roots)>;

class GraphRewriter {
 public:
  // Starts an empty graph with the source's name and seed.
  explicit GraphRewriter(const Graph& source);

  const Graph& source() const { return source_; }
  Graph& target() { return *target_; }

  // --- The sweep -----------------------------------------------------------------------------
  // Visits every node of the source in order. `hook(id)` returns true when it handled the node
  // (mapped its outputs with replace(), or chose to drop it); otherwise the node is copied.
  void rebuild(const std::function<bool(std::uint32_t id)>& hook);
  // The result; the rewriter is spent afterwards.
  PassResult finish(PassStats stats);

  // --- Where old values went -----------------------------------------------------------------
  bool has(ValueRef old) const { return map_.contains(old); }
  // The new value of an old one; throws fovea::Error naming the node if the pass dropped it.
  Value mapped(ValueRef old) const;
  // The inputs of old node `id`, as new values.
  std::vector<Value> inputs(std::uint32_t id) const;
  // Old node `id`'s outputs are now `values` (one per output).
  void replace(std::uint32_t id, const std::vector<Value>& values);
  void replace(ValueRef old, Value now);

  // --- Building --------------------------------------------------------------------------------
  // Copies old node `id` with its inputs mapped, maps its outputs, and returns them.
  std::vector<Value> copy(std::uint32_t id);
  // Builds old node `id`'s op again in its place (same name, scope, role, location) but with
  // other inputs and attributes: permute(permute(x)) becomes one permute named like the outer.
  std::vector<Value> rebuild_node(std::uint32_t id, std::span<const Value> inputs, Attributes attrs);
  // Builds a node of `op` in old node `id`'s place with its name (or a fresh one when
  // `same_name` is false, for a node that stands for several old ones).
  std::vector<Value> emit(std::uint32_t id, const OpDef& op, std::span<const Value> inputs, Attributes attrs,
                          bool same_name = true);
  // A constant holding `value`, named, scoped and located like old node `id`.
  Value constant_at(std::uint32_t id, Tensor value, bool same_name = true);

  // A leaf name, under old node `id`'s scope, that neither graph uses: new nodes must not
  // steal the name of an old node that is copied later.
  std::string fresh_name(std::uint32_t id, const std::string& base) const;

 private:
  // Sets the new graph's scope, role, gradient_of and location override to old node `id`'s
  // while alive.
  class Site {
   public:
    Site(Graph& target, const Node& old);
    ~Site();
    Site(const Site&) = delete;
    Site& operator=(const Site&) = delete;

   private:
    Graph& target_;
    std::string scope_;
    NodeRole role_;
    std::string gradient_of_;
  };

  std::string leaf_name(const Node& n) const;

  const Graph& source_;
  std::unique_ptr<Graph> target_;
  std::map<ValueRef, ValueRef> map_;
};

// The plain copy: every node, nothing rewritten (what a manager with every pass disabled returns).
PassResult copy_graph(const Graph& graph);

}  // namespace fovea::passes
