// What a gradient rule sees, and the helpers rules share.
//
// For a node y = f(x0, x1, ...) and the gradient ḡ = ∂L/∂y flowing into it, a rule builds
// ∂L/∂xi = ḡ · ∂y/∂xi (a vector-Jacobian product) for every input, with ordinary ops. Because
// the result is a graph, it prints, draws, optimizes and can itself be differentiated.
//
// This lives in ops/, not autograd/: the rules are part of each op's definition (ops/*.cpp), and
// autograd/ only walks the graph and calls them (docs/architecture.md, "Layers").
#pragma once

#include <span>
#include <vector>

#include "fovea/core/graph.h"

namespace fovea {

struct VjpContext {
  Graph& graph;
  const Node& node;
  std::span<const Value> inputs;        // the forward node's inputs
  std::span<const Value> outputs;       // the forward node's outputs
  std::span<const Value> output_grads;  // ∂L/∂output k; undefined when nothing flows into k

  const Value& x(std::size_t i) const { return inputs[i]; }
  const Value& y(std::size_t k = 0) const { return outputs[k]; }
  const Value& g(std::size_t k = 0) const { return output_grads[k]; }
  const Attributes& attrs() const { return node.attrs; }

  // Whether ∂L/∂input i is wanted: the input is floating and lies on a path from a value being
  // differentiated. Rules return every gradient they can (autodiff drops the unwanted ones);
  // one that is costly or unsupported for some input asks first. Empty means all are wanted.
  std::vector<bool> wanted = {};
  bool wants(std::size_t i) const { return i >= wanted.size() || wanted[i]; }
};

// Sums `grad` (of a broadcast result) back down to `shape`, the shape of the operand that
// was broadcast: leading dims that broadcasting added are summed away, and dims that were 1
// are summed with keepdims. Returns `grad` itself when nothing was broadcast.
Value unbroadcast(Value grad, const Shape& shape);

}  // namespace fovea
