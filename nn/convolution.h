// Image layers as compositions of the convolution ops (ops/convolution.h): Conv2d, BatchNorm2d
// and MaxPool2d, declared and called like the other layers (nn/layers.h): parameters under the
// layer's name, forward ops under the same scope, the user's line on every node.
//
//   nn::Conv2d conv(g, "conv1", 1, 32, {3, 3}, {.padding = 1});
//   nn::BatchNorm2d norm(g, "norm1", 32);
//   nn::MaxPool2d pool({2, 2});
//   std::vector<Value> running;  // the batch norms' running-statistics updates
//   Value h = pool(relu(norm(conv(x), {.training = true, .updates = &running})));
#pragma once

#include <array>
#include <cstdint>
#include <source_location>
#include <string>
#include <vector>

#include "fovea/core/graph.h"
#include "fovea/nn/layers.h"
#include "fovea/ops/convolution.h"

namespace fovea::nn {

// --- Conv2d ---------------------------------------------------------------------------------
// y = conv2d(x, W) + b, W [out, in/groups, R, S] drawn He-uniform, U(±√(6 / fan_in)) with
// fan_in = in/groups·R·S (the ReLU networks convolutions usually feed); b [out], zeros.
struct Conv2d {
  Value weight;
  Value bias;  // undefined without a bias
  Conv2dOptions options;
  Conv2d(Graph& g, const std::string& name, std::int64_t in_channels, std::int64_t out_channels,
         std::array<std::int64_t, 2> kernel, const Conv2dOptions& options = {}, bool with_bias = true,
         DType dtype = DType::f32, std::source_location where = std::source_location::current());
  // x [N, in, H, W] → [N, out, OH, OW]
  Value operator()(Value x, std::source_location where = std::source_location::current()) const;
  std::string name;
};

// --- BatchNorm ------------------------------------------------------------------------------
// Ioffe & Szegedy (2015), per channel (axis 1) over every other axis of x [N, C, ...]:
//
//   training:   μ, σ² = mean and biased variance of this batch;  y = (x - μ)·(σ² + ε)^(-1/2)·γ + β
//               running_mean ← (1 - m)·running_mean + m·μ
//               running_var  ← (1 - m)·running_var  + m·σ²·n/(n - 1)   (n values per channel)
//   inference:  y = (x - running_mean)·(running_var + ε)^(-1/2)·γ + β
//
// as PyTorch's BatchNorm2d defines them (momentum m = 0.1). The running statistics are
// Graph::state, so checkpoints keep them; in training the two assigns that update them are
// appended to *mode.updates, to be compiled with the optimizer's updates (a training Mode
// without `updates` is an error: the statistics would silently never move). The gradient
// flows through μ and σ², as it must for training to see the normalisation. Training builds
// the batch_norm op (ops/batch_norm.h: two passes over x forward, two backward); inference is
// the composition above, which the optimizer folds into a convolution before it.
struct BatchNormState {
  Value gamma, beta;                // [C] parameters: ones, zeros
  Value running_mean, running_var;  // [C] state: zeros, ones
  double momentum = 0.1, eps = 1e-5;
};
Value batch_norm(Value x, const BatchNormState& state, const Mode& mode,
                 std::source_location where = std::source_location::current());

struct BatchNorm2d {
  BatchNormState state;
  BatchNorm2d(Graph& g, const std::string& name, std::int64_t channels, double momentum = 0.1, double eps = 1e-5,
              DType dtype = DType::f32, std::source_location where = std::source_location::current());
  // x [N, C, H, W] (or [N, C] or [N, C, L]) → the same shape
  Value operator()(Value x, const Mode& mode, std::source_location where = std::source_location::current()) const;
  std::string name;
};

// --- MaxPool2d ------------------------------------------------------------------------------
struct MaxPool2d {
  std::array<std::int64_t, 2> kernel;
  Pool2dOptions options;
  explicit MaxPool2d(std::array<std::int64_t, 2> kernel, const Pool2dOptions& options = {}, std::string name = "pool");
  Value operator()(Value x, std::source_location where = std::source_location::current()) const;
  std::string name;
};

}  // namespace fovea::nn
