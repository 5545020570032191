#include "fovea/nn/schedule.h"

#include <fmt/format.h>

#include "fovea/ops/creation.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/indexing.h"

namespace fovea::nn {

namespace {
// A scalar in t's graph and dtype.
Value c(Value t, double v) { return scalar_like(t, v); }
}  // namespace

Schedule constant_lr(double lr) {
  return {[lr](Value t) { return c(t, lr); }, fmt::format("constant({:g})", lr)};
}

Schedule warmup_constant(double peak, double warmup) {
  return {[=](Value t) { return c(t, peak) * minimum(t / c(t, std::max(warmup, 1.0)), c(t, 1.0)); },
          fmt::format("warmup_constant(peak={:g}, warmup={:g})", peak, warmup)};
}

Schedule warmup_cosine(double peak, double warmup, double total, double final_lr) {
  return {[=](Value t) {
            const double w = std::max(warmup, 1.0);
            const Value ramp = c(t, peak) * (t / c(t, w));
            // progress p in [0, 1] after warmup; lr = final + (peak - final)·(1 + cos πp)/2
            const Value p = minimum(maximum((t - c(t, w)) / c(t, std::max(total - w, 1.0)), c(t, 0.0)), c(t, 1.0));
            const Value decay = c(t, final_lr) + c(t, (peak - final_lr) / 2) * (c(t, 1.0) + cos(p * 3.141592653589793));
            return where(less(t, c(t, w)), ramp, decay);
          },
          fmt::format("warmup_cosine(peak={:g}, warmup={:g}, total={:g}, final={:g})", peak, warmup, total, final_lr)};
}

Schedule step_decay(double lr, double every, double gamma) {
  return {[=](Value t) {
            // k = ⌊(t-1)/every⌋ via a cast to an integer (t >= 1, so truncation is floor).
            const Value k = cast(cast((t - c(t, 1.0)) / c(t, every), DType::i64), t.dtype());
            return c(t, lr) * pow(c(t, gamma), k);
          },
          fmt::format("step_decay(lr={:g}, every={:g}, gamma={:g})", lr, every, gamma)};
}

}  // namespace fovea::nn
