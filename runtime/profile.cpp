// Profiled runs (Executable::set_profiling): timing each step, and the report of where the time
// went, by op and by node (runtime/executable.h).
#include "fovea/runtime/executable.h"

#include <algorithm>
#include <chrono>
#include <map>

#include <fmt/format.h>

namespace fovea {

void Executable::run_profiled_steps() {
  if (step_seconds_.size() != steps_.size()) step_seconds_.assign(steps_.size(), 0.0);
  if (verdict_count_ > 0) backend_->clear_verdicts(verdicts_, verdict_count_);
  backend_->synchronize();
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    // A step whose outputs are scanned (anomaly mode, value statistics) is timed without the
    // scans: they cost about as much as a copy of the output, and would make a reshape, which
    // costs nothing, look as slow as a matmul.
    if (steps_observed()) {
      run_checked_step(steps_[i], &step_seconds_[i]);
      continue;
    }
    const auto start = std::chrono::steady_clock::now();
    steps_[i].kernel(steps_[i].context);
    backend_->synchronize();
    step_seconds_[i] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  ++profiled_runs_;
}

void Executable::reset_profile() {
  step_seconds_.assign(steps_.size(), 0.0);
  profiled_runs_ = 0;
}

std::string Executable::profile_report(std::size_t top_nodes) const {
  if (profiled_runs_ == 0) return "no profiled runs (call set_profiling(true), then run)\n";
  const double runs = profiled_runs_;
  double total = 0;
  for (double s : step_seconds_) total += s;
  struct OpTime {
    std::string op;
    std::size_t calls = 0;
    double seconds = 0;
  };
  std::map<std::string, OpTime> by_op;
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    OpTime& t = by_op[std::string(steps_[i].context.node->op->name)];
    t.op = steps_[i].context.node->op->name;
    t.calls += 1;
    t.seconds += step_seconds_[i];
  }
  std::vector<OpTime> ops;
  for (auto& [name, t] : by_op) ops.push_back(t);
  std::ranges::sort(ops, [](const OpTime& a, const OpTime& b) { return a.seconds > b.seconds; });

  std::string s = fmt::format("profile of '{}' on {}: {:.3f} ms per run in its steps, {} runs, {} steps\n",
                              graph_->name(), backend_->name(), 1e3 * total / runs, profiled_runs_, steps_.size());
  s += fmt::format("  {:<26} {:>6} {:>11} {:>7}\n", "op", "nodes", "ms/run", "share");
  for (const OpTime& t : ops)
    s += fmt::format("  {:<26} {:>6} {:>11.3f} {:>6.1f}%\n", t.op, t.calls, 1e3 * t.seconds / runs,
                     total > 0 ? 100.0 * t.seconds / total : 0.0);

  std::vector<std::size_t> order(steps_.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::ranges::sort(order, [&](std::size_t a, std::size_t b) { return step_seconds_[a] > step_seconds_[b]; });
  order.resize(std::min(top_nodes, order.size()));
  if (!order.empty()) s += fmt::format("  the {} most expensive nodes:\n", order.size());
  for (std::size_t i : order) {
    const Node& n = *steps_[i].context.node;
    s += fmt::format("  {:>9.3f} ms  {:<22} {:<24} {}  ({})\n", 1e3 * step_seconds_[i] / runs, n.op->name,
                     format_types(n.outputs), n.name, n.where.to_string());
  }
  return s;
}

}  // namespace fovea
