// The building blocks of a Transformer, as compositions of primitive ops (docs/architecture.md, decision 1):
// embeddings, layer normalisation, dropout, GELU, the position-wise feed-forward network and
// positional encodings. No layer has a kernel of its own; the optimizer recovers fast ones by
// fusion (FusedLayerNorm, FusedElementwise).
//
// A layer is a small struct holding its parameters, like nn::Linear. Its constructor declares
// them under the layer's name in the current scope; calling it builds the forward ops under the
// same scope, so a dump reads `encoder/layer0/feed_forward/up/matmul`. Both take the user's
// source location as a defaulted last argument and open a LocationScope (core/graph.h) at it, so
// the ops they build record the user's line and a shape mistake is reported there, with the
// layer's scope in the node's name; a layer that another layer calls keeps the outer one's:
//
//   nn::LayerNorm norm(g, "norm", 64);
//   nn::FeedForward ff(g, "ff", 64, 256, nn::Activation::gelu, 0.1);
//   Value y = ff(norm(x), {.training = true, .step = step});
#pragma once

#include <cstdint>
#include <source_location>
#include <string>
#include <utility>
#include <vector>

#include "fovea/core/graph.h"
#include "fovea/nn/linear.h"

namespace fovea::nn {

// How a forward pass is built. Dropout is active only when `training`; `step`, an optional i64
// scalar (a training loop feeds its step counter), selects fresh dropout masks at every step
// while the same step always gives the same masks.
struct Mode {
  bool training = false;
  Value step = {};
  // Where layers that keep running statistics (nn::BatchNorm2d) put the assigns that update
  // them while training; compile them with the optimizer's (CompileOptions::updates).
  std::vector<Value>* updates = nullptr;
};

// Builds `make()` inside the scope `name`, at the user's line `where`: a layer uses it in its
// member initializer list, which runs before its constructor body could open either scope, so
// that its sub-layers declare their parameters under the layer's own scope and report a mistake
// at the line that built the layer.
template <typename F>
auto in_scope(Graph& g, const std::string& name, SourceLoc where, F&& make) {
  auto at = g.at(where);
  auto scope = g.scope(name);
  return std::forward<F>(make)();
}

// --- Embedding ------------------------------------------------------------------------------
// out[p.., :] = table[ids[p..], :]: a gather along the table's rows. Its gradient is a
// scatter_add of the output gradient into the rows that were picked (gather's rule).
struct Embedding {
  Value table;  // [vocab, dim]

  // Declares `<name>/table`, drawn from `initializer` (N(0, 0.02) by default, as GPT-2).
  Embedding(Graph& g, const std::string& name, std::int64_t vocab, std::int64_t dim, DType dtype = DType::f32,
            const Initializer& initializer = init::normal(0.0, 0.02),
            std::source_location where = std::source_location::current());

  // ids [...] (i32 or i64) → [..., dim]. An id outside [0, vocab) fails when the graph runs.
  Value operator()(Value ids, std::source_location where = std::source_location::current()) const;

  std::string name;
};

// --- LayerNorm ------------------------------------------------------------------------------
// Ba, Kiros & Hinton (2016), over the last axis:
//   μ = mean(x),  σ² = mean((x - μ)²),  y = (x - μ) · (σ² + ε)^(-1/2) · γ + β
// The variance is taken of the centred values, which is stable where E[x²] - μ² is not.
Value layer_norm(Value x, Value gamma, Value beta, double eps = 1e-5,
                 std::source_location where = std::source_location::current());

struct LayerNorm {
  Value gamma;  // [dim], ones
  Value beta;   // [dim], zeros
  double eps = 1e-5;

  LayerNorm(Graph& g, const std::string& name, std::int64_t dim, double eps = 1e-5, DType dtype = DType::f32,
            std::source_location where = std::source_location::current());

  // x [..., dim] → [..., dim]
  Value operator()(Value x, std::source_location where = std::source_location::current()) const;

  std::string name;
};

// --- Dropout --------------------------------------------------------------------------------
// Srivastava et al. (2014), inverted: during training each element is kept with probability
// 1 - p and scaled by 1/(1 - p), so that the expected value is unchanged and evaluation needs
// no rescaling:
//   keep[i] = U[i] >= p,   y[i] = keep[i] ? x[i] / (1 - p) : 0
// U comes from random_uniform keyed by the node's scoped name and `mode.step`. The identity when
// p == 0 or when not training. p must lie in [0, 1).
Value dropout(Value x, double p, const Mode& mode, std::source_location where = std::source_location::current());

struct Dropout {
  double p = 0.0;

  explicit Dropout(double p, std::string name = "dropout",
                   std::source_location where = std::source_location::current());

  Value operator()(Value x, const Mode& mode, std::source_location where = std::source_location::current()) const;

  std::string name;
};

// --- Activations ----------------------------------------------------------------------------
// GELU (Hendrycks & Gimpel, 2016), in the tanh approximation GPT-2 and BERT use:
//   gelu(x) = ½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))
Value gelu(Value x, std::source_location where = std::source_location::current());

enum class Activation { relu, gelu };

// --- FeedForward ----------------------------------------------------------------------------
// The position-wise feed-forward network of a Transformer block:
//   y = dropout(act(x·W₁ + b₁))·W₂ + b₂,   W₁ [d_model, d_ff] (`up`), W₂ [d_ff, d_model] (`down`)
struct FeedForward {
  Linear up;    // d_model → d_ff
  Linear down;  // d_ff → d_model
  Activation activation = Activation::relu;
  double dropout = 0.0;

  FeedForward(Graph& g, const std::string& name, std::int64_t d_model, std::int64_t d_ff,
              Activation activation = Activation::relu, double dropout = 0.0, DType dtype = DType::f32,
              std::source_location where = std::source_location::current());

  // x [..., d_model] → [..., d_model]
  Value operator()(Value x, const Mode& mode = {}, std::source_location where = std::source_location::current()) const;

  std::string name;
};

// --- Positional encodings -------------------------------------------------------------------
// Vaswani et al. (2017): a constant [length, dim] tensor with
//   PE[t, 2i] = sin(t / 10000^(2i/dim)),   PE[t, 2i+1] = cos(t / 10000^(2i/dim))
Value sinusoidal_positions(Graph& g, std::int64_t length, std::int64_t dim, DType dtype = DType::f32,
                           std::source_location where = std::source_location::current());

// Learned positions: an Embedding over the positions 0 .. max_length-1.
struct LearnedPositions {
  Embedding embedding;  // its table: [max_length, dim]
  std::int64_t max_length = 0;

  LearnedPositions(Graph& g, const std::string& name, std::int64_t max_length, std::int64_t dim,
                   DType dtype = DType::f32, std::source_location where = std::source_location::current());

  // The encodings of positions 0 .. length-1: [length, dim]. length must be <= max_length.
  Value operator()(std::int64_t length, std::source_location where = std::source_location::current()) const;
};

}  // namespace fovea::nn
