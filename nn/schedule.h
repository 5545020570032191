// Learning-rate schedules, built as graph ops from the optimizer's step counter, so the whole
// training step (schedule included) is one graph and a resumed run continues the schedule.
#pragma once

#include <functional>
#include <string>

#include "fovea/core/graph.h"

namespace fovea::nn {

struct Schedule {
  // Builds lr(t) from t, the number of the step being taken (1 for the first), as a scalar
  // of the model's floating dtype.
  std::function<Value(Value t)> build;
  std::string description;
};

// lr(t) = lr
Schedule constant_lr(double lr);
// Linear warmup from 0 to `peak` over `warmup` steps, then cosine decay to `final_lr` at
// `total` steps (and `final_lr` after).
Schedule warmup_cosine(double peak, double warmup, double total, double final_lr = 0.0);
// lr(t) = lr · γ^⌊(t-1)/every⌋
Schedule step_decay(double lr, double every, double gamma);
// Linear warmup to `peak` over `warmup` steps, then constant.
Schedule warmup_constant(double peak, double warmup);

}  // namespace fovea::nn
