// The pattern rewriter: find a subgraph by op, shape and use count, and replace it by another.
//
// A pattern is matched from its root, the node whose outputs the replacement provides (for
// attention, the final matmul), by walking up its inputs and checking ops, attributes and
// shapes. The match lists every node it covers. The nodes other than the root are its
// INTERIOR: the replacement no longer computes them, so each interior value must be used by
// nothing outside the match, and must not be an output or update the caller keeps. One
// outside use (a user who keeps the attention probabilities for a heatmap) blocks the rewrite:
// fusing anyway would compute the probabilities twice, or not at all.
//
//   %5 = exp(%4)          interior: used by %6 and %7 only, both inside the match
//   %6 = reduce_sum(%5)   interior
//   %7 = div(%5, %6)      interior ── used by %12 outside the match? then no rewrite
//   %8 = matmul(%7, %v)   root: its output is now the replacement's
//
// Uses are counted over the whole graph (a node that nothing needs still counts: run dead-code
// elimination first to drop it) plus the roots the caller named. Matches do not overlap: a
// node claimed by one rewrite is not matched again.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fovea/passes/rewriter.h"

namespace fovea::passes {

// Who reads each value: node inputs, and the roots (outputs, updates) the caller keeps.
class UseCounts {
 public:
  UseCounts(const Graph& graph, std::span<const ValueRef> roots);

  // Every read: one per input slot that names the value, plus one per root naming it.
  std::size_t uses(ValueRef v) const;
  // The nodes that read `v`, once per input slot.
  const std::vector<std::uint32_t>& users(ValueRef v) const;
  bool is_root(ValueRef v) const;

 private:
  std::vector<std::vector<std::vector<std::uint32_t>>> users_;  // [node][output] -> readers
  std::vector<std::vector<std::size_t>> root_uses_;             // [node][output]
};

// --- Matching helpers -------------------------------------------------------------------------
// The node producing `v` when it applies `op`; nullptr otherwise.
const Node* producer(const Graph& graph, ValueRef v, const OpDef& op);
// When `v` is a constant (or a fill) whose elements all equal one number, that number.
std::optional<double> uniform_value(const Graph& graph, ValueRef v);
// When `v` is a one-element constant or fill, its value: a scalar factor such as 1/√d.
std::optional<double> scalar_value(const Graph& graph, ValueRef v);

// nn::softmax guards the two places where a row of only -∞ would give NaN (nn/losses.cpp); the
// softmax patterns look through those guards. Each returns the value under its guard, or `v`
// itself when unguarded, and adds the guard's nodes (not its constants) to `nodes`.
//   the shift:        maximum(m, c), c a constant <= the dtype's lowest finite number  →  m
//   the denominator:  where(s == 0, 1, s)                                             →  s
ValueRef unguard_softmax_shift(const Graph& graph, ValueRef v, std::vector<std::uint32_t>& nodes);
ValueRef unguard_softmax_sum(const Graph& graph, ValueRef v, std::vector<std::uint32_t>& nodes);

// One match: the nodes it covers (root included), and how to build the replacement.
struct Rewrite {
  std::string kind;                  // for the statistics: "fused attention"
  std::uint32_t root = 0;            // the node whose outputs the replacement provides
  std::vector<std::uint32_t> nodes;  // every node the pattern covers, root included
  // Builds the replacement in the new graph, at the root's place (the rewriter has mapped every
  // value the match reads from outside); returns one new value per output of the root.
  std::function<std::vector<Value>(GraphRewriter&)> build;
  // Set when the pattern is there but must not be rewritten (say, dropout the fused op lacks):
  // the driver leaves the nodes alone and counts the reason in PassStats::blocked.
  std::string blocked;
};

// A pattern: looks at one candidate root and returns a Rewrite when the pattern is there.
using Pattern = std::function<std::optional<Rewrite>(const Graph& graph, std::uint32_t root, const UseCounts& uses)>;

// True when every value computed by the match's interior nodes is read only by nodes of the
// match and is not a root; the root's own outputs may be used anywhere.
bool interior_is_private(const Graph& graph, const Rewrite& rewrite, const UseCounts& uses);
// Why the interior is not private, naming the first inner value that leaks and who takes it:
// "the inner value 'a/div' (div) is also read by 'probe/mul' (mul), outside the match", or
// "... is an output the caller keeps". Empty when the interior is private.
std::string interior_leak(const Graph& graph, const Rewrite& rewrite, const UseCounts& uses);

// Tries `pattern` at every node (in graph order); keeps the matches whose interior is private
// and that overlap no earlier match; rebuilds the graph with each match replaced. Matches that
// were found but blocked are counted in PassStats::blocked with the reason. Every match found
// becomes a PassStats::decisions entry: fused, or rejected with a reason that names the
// nodes (the pattern's own `blocked` reason, the leaking inner value and its outside reader,
// or the earlier match it overlaps).
PassResult rewrite_patterns(const Graph& graph, std::span<const ValueRef> roots, const Pattern& pattern);

}  // namespace fovea::passes
