// Reverse-mode automatic differentiation as a graph transform.
//
//   auto loss = ...;                                   // a scalar
//   auto grads = fovea::grad(loss, {w1, b1, w2, b2});  // Values in the same graph
//
// grad() walks the nodes between `wrt` and `loss` in reverse topological order and appends,
// for each, the nodes its op's gradient rule (OpDef::vjp) builds. Gradients of a value used
// several times are summed; gradients of a broadcast operand are summed back to its shape by
// the rules. The appended nodes are ordinary nodes: marked NodeRole::backward, named under
// "gradients/<forward scope>", and located at the user's line of the forward node they
// differentiate. They can be printed, drawn, optimized, compiled, and differentiated again
// (second derivatives, Hessian-vector products).
//
// No gradient flows through integer or bool values, through non-differentiable ops
// (comparisons, iota, random), or through stop_gradient. Asking for the gradient with
// respect to a value the loss does not depend on returns zeros by default
// (GradOptions::unconnected = Unconnected::zero), or raises fovea::Error with
// Unconnected::error.
#pragma once

#include <source_location>
#include <vector>

#include "fovea/core/graph.h"
#include "fovea/ops/state.h"

namespace fovea {

enum class Unconnected { zero, error };

struct GradOptions {
  Unconnected unconnected = Unconnected::zero;
};

// ∂loss/∂w for every w in `wrt`; `loss` must be a floating-point value with one element.
std::vector<Value> grad(Value loss, const std::vector<Value>& wrt, const GradOptions& options = {},
                        std::source_location where = std::source_location::current());

// The vector-Jacobian product: Σ_k ⟨cotangent_k, ∂output_k/∂w⟩ for every w in `wrt`, where
// each cotangent has its output's type. grad(loss, wrt) is vjp({loss}, {1}, wrt).
std::vector<Value> vjp(const std::vector<Value>& outputs, const std::vector<Value>& cotangents,
                       const std::vector<Value>& wrt, const GradOptions& options = {},
                       std::source_location where = std::source_location::current());

// stop_gradient(x), identity forward with no gradient back, is an op of ops/state.h.

}  // namespace fovea
