// Recording a run and replaying it (CompileOptions::capture_graph; on the CUDA backend, a CUDA
// Graph): whether an executable may be recorded, recording its steps after an eager run, and
// replaying the recording instead of launching the steps one by one (runtime/executable.h).
#include "fovea/runtime/executable.h"

#include <fmt/format.h>

namespace fovea {

// Whether the step may be recorded, decided once: the backend must be able to record, every
// kernel must be recordable (none waits for the device mid-run), and no kernel argument may
// change between runs (direct outputs are re-pointed when the caller holds the last result).
void Executable::decide_capture(const CompileOptions& options) {
  if (!options.capture_graph) {
    capture_status_ = "off (CompileOptions::capture_graph is false)";
    return;
  }
  if (!backend_->supports_capture()) {
    capture_status_ =
        fmt::format("ignored: the {} backend cannot record runs; every run runs eagerly", backend_->name());
    return;
  }
  if (check_finite_) {
    capture_status_ =
        "refused: anomaly mode (CompileOptions::check_finite) scans every step's outputs as it runs; every run runs "
        "eagerly";
    return;
  }
  if (!direct_outputs_.empty()) {
    capture_status_ =
        "refused: outputs are written into Tensors that a run may replace, which would move kernel arguments "
        "between runs; every run runs eagerly";
    return;
  }
  if (steps_.empty()) {
    capture_status_ = "refused: there are no steps to record; every run only copies";
    return;
  }
  for (const Step& step : steps_) {
    const Node& node = *step.context.node;
    std::string reason;
    if (!backend_->can_capture(node.op->name, kernel_dtype(*graph_, node), reason)) {
      capture_status_ =
          fmt::format("refused: node '{}' ({}, built at {}) cannot be recorded: {}; every run runs eagerly", node.name,
                      node.op->name, node.where.to_string(), reason);
      return;
    }
  }
  capture_pending_ = true;
  capture_status_ = "pending: the first run runs eagerly, then records its kernel launches";
}

// Launches the recording, if there is one and it is still valid; false means "run eagerly".
// A stale recording is dropped and made again after this run.
bool Executable::replay_recording() {
  if (!recorded_) return false;
  std::string reason;
  if (recorded_->replay(reason)) return true;
  recorded_.reset();
  capture_pending_ = true;
  stale_reason_ = reason;
  capture_status_ = fmt::format("pending: recording again after this run ({})", reason);
  return false;
}

// Calls every kernel again with the backend recording instead of running, right after an
// eager run: its results are already out, the scratch it needs is already allocated, and
// nothing recorded runs now, so the arena is left as it is. The recording holds what an eager
// run launches (run_steps): the verdicts' reset, then every step, transfers included. Any
// failure leaves the step eager.
void Executable::record_steps() {
  capture_pending_ = false;
  std::string reason;
  if (!backend_->begin_capture(reason)) {
    capture_status_ = fmt::format("abandoned: {}; every run runs eagerly", reason);
    return;
  }
  try {
    if (verdict_count_ > 0) backend_->clear_verdicts(verdicts_, verdict_count_);
  } catch (const std::exception& e) {
    backend_->discard_capture();
    capture_status_ =
        fmt::format("abandoned: recording the verdicts' reset failed: {}; every run runs eagerly", e.what());
    return;
  }
  for (const Step& step : steps_) {
    try {
      step.kernel(step.context);
    } catch (const std::exception& e) {
      backend_->discard_capture();
      const Node& node = *step.context.node;
      capture_status_ =
          fmt::format("abandoned: recording node '{}' ({}, built at {}) failed: {}; every run runs eagerly", node.name,
                      node.op->name, node.where.to_string(), e.what());
      return;
    }
  }
  recorded_ = backend_->end_capture(reason);
  if (!recorded_) {
    capture_status_ = fmt::format("abandoned: {}; every run runs eagerly", reason);
    return;
  }
  capture_status_ = fmt::format("recorded: {} steps, replayed with one launch per run", steps_.size());
  if (!stale_reason_.empty()) capture_status_ += fmt::format(" (recorded again: {})", stale_reason_);
}

}  // namespace fovea
