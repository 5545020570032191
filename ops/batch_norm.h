// Batch normalization in training: one op that computes the batch's statistics and normalizes
// with them, and its backward. nn::batch_norm (nn/convolution.h) builds it in training mode and
// keeps the running statistics; in inference it is the plain composition with the running ones,
// which the optimizer folds into the convolution before it (passes/conv_fusion.h).
//
// Over x [N, C, ...], per channel c, with n = N·Π(the dims after C) values each:
//
//   batch_norm(x, γ [C], β [C]) {eps}
//     μ_c = (1/n) Σ x[:,c,...],   σ²_c = (1/n) Σ (x[:,c,...] - μ_c)²   (biased: the batch's own)
//     y = (x - μ_c)·r_c·γ_c + β_c,   r_c = 1/√(σ²_c + eps)
//     outputs (y [N,C,...], μ [C], σ² [C])
//
//   batch_norm_backward(ḡ, x, γ, μ, σ²) {eps} -> (dx, dγ, dβ), with x̂ = (x - μ)·r:
//     dβ_c = Σ ḡ,   dγ_c = Σ ḡ·x̂,   dx = γ_c·r_c·(ḡ - dβ_c/n - x̂·dγ_c/n)
//
// Why one op rather than a chain: written with primitives, the statistics, the normalization and
// their gradients are about a dozen passes over the activations; these kernels make two passes
// forward and two backward, and the gradient flows through the statistics exactly. Gradients
// into μ and σ² (outputs 1 and 2) are supported too: ∂μ/∂x = 1/n and ∂σ²/∂x = 2(x - μ)/n are
// added with ordinary ops. batch_norm_backward has no gradient rule: a second derivative through
// a training batch norm raises fovea::Error.
#pragma once

#include "fovea/ops/elementwise.h"

namespace fovea {

struct BatchNormOutputs {
  Value y;         // [N, C, ...]
  Value mean;      // [C]
  Value variance;  // [C], biased
};

struct BatchNormGradients {
  Value dx, dgamma, dbeta;
};

// x [N, C, ...] (rank >= 2), gamma and beta [C], one float dtype.
BatchNormOutputs batch_norm_training(Value x, Value gamma, Value beta, double eps, Loc where = Loc::current());
BatchNormGradients batch_norm_backward(Value dy, Value x, Value gamma, Value mean, Value variance, double eps,
                                       Loc where = Loc::current());

struct BatchNormParams {
  double eps = 0;
  std::int64_t batch = 0, channels = 0, inner = 0;  // x as [N, C, inner]
  static BatchNormParams decode(const DecodeContext& context);
};

namespace ops {
extern const OpDef batch_norm, batch_norm_backward;
}  // namespace ops

}  // namespace fovea
