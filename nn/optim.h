// Optimizers as graph builders (docs/architecture.md, decision 5: the training step is one graph).
//
//   auto step = fovea::nn::adamw(loss, g.parameters(), {.lr = nn::warmup_cosine(1e-3, 100, 1400)});
//   auto train = fovea::compile(g, {loss, step.learning_rate}, fovea::cpu(), {.updates = step.updates});
//   for (...) train.run({{x, images}, {y, labels}});   // forward, backward and update, one run
//
// Each optimizer differentiates the loss (autograd/grad.h), optionally clips the gradients
// by their global norm, and appends the update rule as ordinary ops ending in assign nodes
// that overwrite the parameters and the optimizer's state in place. Its state (moments, the
// step counter) is Graph::state, so checkpoints save it and a resumed run continues exactly.
// All update nodes carry NodeRole::update and live under the scope "optimizer/".
#pragma once

#include <optional>
#include <vector>

#include "fovea/core/graph.h"
#include "fovea/nn/data_parallel.h"
#include "fovea/nn/schedule.h"

namespace fovea::nn {

// What an optimizer appended: the assigns to compile as updates, and values worth logging.
struct TrainStep {
  std::vector<Value> updates;  // pass as CompileOptions::updates
  Value learning_rate;         // lr(t) of the step being taken
  Value grad_norm;             // global L2 norm of the gradients before clipping
  Value step;                  // the step counter after this step (i64 state, "optimizer/step")
  // ∂loss/∂param, in the order of the parameters (never clipped); with data_parallel, averaged
  // over the ranks.
  std::vector<Value> grads;
  // The gradients the update rule uses: grads scaled by clip_by_global_norm when clip_norm > 0,
  // grads themselves otherwise.
  std::vector<Value> applied_grads;
};

struct SgdOptions {
  Schedule lr = constant_lr(0.01);
  double momentum = 0.0;      // v ← μv + g;  classic heavy ball
  bool nesterov = false;      // step along g + μv instead of v
  double weight_decay = 0.0;  // L2 penalty: g ← g + λp (coupled, as in torch.optim.SGD)
  double clip_norm = 0.0;     // > 0: scale gradients so their global norm is at most this
  // Average the gradients over the ranks of a communicator before anything reads them (the
  // norm, the clipping and the update see the same values on every rank): nn/data_parallel.h.
  std::optional<DataParallelOptions> data_parallel = std::nullopt;
};

struct AdamOptions {
  Schedule lr = constant_lr(1e-3);
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;  // Adam: added to the gradient; AdamW: decoupled, p ← p - lr·λp
  double clip_norm = 0.0;
  std::optional<DataParallelOptions> data_parallel = std::nullopt;  // as SgdOptions::data_parallel
};

// Stochastic gradient descent (with momentum and Nesterov momentum).
TrainStep sgd(Value loss, const std::vector<Value>& parameters, const SgdOptions& options = {});
// Adam (Kingma & Ba, 2015) with bias correction; weight decay as an L2 term on the gradient.
TrainStep adam(Value loss, const std::vector<Value>& parameters, const AdamOptions& options = {});
// AdamW (Loshchilov & Hutter, 2019): Adam with weight decay decoupled from the gradient.
TrainStep adamw(Value loss, const std::vector<Value>& parameters, const AdamOptions& options = {});

// Global L2 norm √(Σ_i Σ g_i²) of a list of gradients, and the gradients scaled by
// min(1, max_norm / (norm + 1e-6)).
Value global_norm(const std::vector<Value>& grads);
std::vector<Value> clip_by_global_norm(const std::vector<Value>& grads, Value norm, double max_norm);

}  // namespace fovea::nn
