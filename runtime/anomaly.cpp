// Anomaly mode (CompileOptions::check_finite): every step's floating outputs are scanned right
// after it runs, and the first node that makes a NaN or an infinity out of finite inputs stops
// the run with an error naming it (runtime/executable.h). Value statistics take the same
// step-by-step path (runtime/statistics.cpp).
//
// Only a node that made the value itself is reported: one whose floating inputs were all
// finite. Many graphs carry infinities on purpose (an attention mask of -inf, built from a
// constant), and everything computed from one may hold infinities too; reporting those would
// stop every such run at its mask. A value that turns non-finite because of a bad number in
// a feed or a parameter is therefore not reported here (check_finite_feeds catches the feeds).
#include "fovea/runtime/executable.h"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "fovea/ops/attention.h"
#include "fovea/ops/transfer.h"

namespace fovea {

namespace {

constexpr char input_finite = 1, input_non_finite = 0;

// Whether a step can make a non-finite value out of finite inputs. The transfers only move
// values and an assign only copies one that an earlier step computed (and was checked at);
// a node without floating inputs (fill, iota, a cast from integers, a random draw) is a source
// of values, like a constant: a fill of -inf is a mask, not an accident.
bool checked(const KernelContext& context) {
  const OpDef* op = context.node->op;
  if (op == &ops::to_device || op == &ops::to_host || op->assigns) return false;
  return std::any_of(context.inputs.begin(), context.inputs.end(),
                     [](const TensorArg& in) { return is_floating(in.type.dtype); });
}

// fused_attention defines the log-sum-exp of a fully masked row as -inf (ops/attention.h).
bool negative_infinity_allowed(const Node& node, std::size_t output) {
  return node.op == &ops::fused_attention && output == 1;
}

// A step writing an output over one of its inputs ("in place", runtime/memory_plan.h): its
// inputs must be scanned before it runs, since afterwards they are gone. A view writes nothing.
bool overwrites_input(const KernelContext& context) {
  if (context.node->op->view) return false;
  for (const TensorArg& out : context.outputs)
    for (const TensorArg& in : context.inputs)
      if (out.data == in.data && out.numel() > 0) return true;
  return false;
}

// An input as the error names it: the node's name, with ".k" for its output k > 0.
std::string input_name(const Graph& graph, ValueRef value) {
  const Node& node = graph.node(value.node);
  return value.output == 0 ? node.name : fmt::format("{}.{}", node.name, value.output);
}

}  // namespace

void Executable::run_checked_steps() {
  if (verdict_count_ > 0) backend_->clear_verdicts(verdicts_, verdict_count_);
  for (const Step& step : steps_) run_checked_step(step);
}

// One step, with its outputs summarised when statistics are on (runtime/statistics.cpp) and
// scanned in anomaly mode. The summary comes first, so that a run stopped here still has the
// statistics of the node it names.
void Executable::run_checked_step(const Step& step, double* kernel_seconds) {
  const bool scanned = check_finite_ && checked(step.context);
  const std::vector<char> before =
      (scanned || value_statistics_on_) && overwrites_input(step.context) ? inputs_finite(step) : std::vector<char>{};
  const auto start = std::chrono::steady_clock::now();
  step.kernel(step.context);
  if (kernel_seconds) {
    backend_->synchronize();
    *kernel_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  if (value_statistics_on_) {
    const std::size_t first = value_statistics_.size();
    summarise_step_outputs(step);
    mark_made_non_finite(step, first, before);
  }
  if (scanned) check_step_finite(step, before);
}

// ValueStatistics::made_non_finite of the step's summaries from `first` on, by anomaly mode's
// rule: the node made the NaN or infinity when its floating inputs were all finite.
void Executable::mark_made_non_finite(const Step& step, std::size_t first,
                                      const std::vector<char>& inputs_finite_before) {
  if (!checked(step.context)) return;
  std::vector<char> finite;
  for (std::size_t i = first; i < value_statistics_.size(); ++i) {
    ValueStatistics& s = value_statistics_[i];
    if (s.nan_count == 0 && s.inf_count == 0) continue;
    const TensorArg& out = step.context.outputs[s.value.output];
    if (!first_non_finite_in(out, negative_infinity_allowed(*step.context.node, s.value.output)).found()) continue;
    if (finite.empty()) finite = inputs_finite_before.empty() ? inputs_finite(step) : inputs_finite_before;
    s.made_non_finite = std::find(finite.begin(), finite.end(), input_non_finite) == finite.end();
  }
}

// After the step: the first non-finite element of its floating outputs, if its floating
// inputs (scanned now, or before the step when it ran in place) were all finite, raises the
// error. Otherwise the value came from an input, and the run goes on.
void Executable::check_step_finite(const Step& step, const std::vector<char>& inputs_finite_before) {
  const KernelContext& context = step.context;
  const Node& node = *context.node;
  for (std::size_t k = 0; k < context.outputs.size(); ++k) {
    const TensorArg& out = context.outputs[k];
    if (!is_floating(out.type.dtype)) continue;
    const NonFinite bad = first_non_finite_in(out, negative_infinity_allowed(node, k));
    if (!bad.found()) continue;
    const std::vector<char> finite = inputs_finite_before.empty() ? inputs_finite(step) : inputs_finite_before;
    if (std::find(finite.begin(), finite.end(), input_non_finite) != finite.end()) return;
    std::string inputs;
    for (std::size_t i = 0; i < context.inputs.size(); ++i) {
      const TensorArg& in = context.inputs[i];
      inputs += fmt::format("{}'{}' {}: {}", i == 0 ? "" : ", ", input_name(*graph_, node.inputs[i]),
                            in.type.to_string(), is_floating(in.type.dtype) ? "all finite" : "not floating");
    }
    context.fail(fmt::format(
        "check_finite: output {} ({}) of this node holds {} at element {} (index {}), the first non-finite value "
        "of this run that a node made{}; its inputs were {}",
        k, out.type.to_string(), describe_non_finite(bad.value), bad.index, index_string(out.shape(), bad.index),
        node.scope.empty() ? std::string() : fmt::format(" (in scope '{}')", node.scope), inputs));
  }
}

// Per input of the step: input_finite for a floating input without NaN or infinity and for
// any other, input_non_finite otherwise.
std::vector<char> Executable::inputs_finite(const Step& step) {
  std::vector<char> finite;
  for (const TensorArg& in : step.context.inputs)
    finite.push_back(is_floating(in.type.dtype) && first_non_finite_in(in, false).found() ? input_non_finite
                                                                                          : input_finite);
  return finite;
}

NonFinite Executable::first_non_finite_in(const TensorArg& arg, bool negative_infinity_allowed) {
  if (arg.numel() == 0) return {};
  return first_non_finite(arg.type.dtype, on_host(arg), arg.numel(), negative_infinity_allowed);
}

// An argument's bytes where the host can read them: in place on the CPU, a copy on a device
// (which waits for the step to finish), valid until the next call.
const std::byte* Executable::on_host(const TensorArg& arg) {
  if (backend_->uses_host_memory()) return arg.data;
  const std::size_t bytes = static_cast<std::size_t>(arg.numel()) * dtype_size(arg.type.dtype);
  finite_scratch_.resize(bytes);
  if (bytes > 0) backend_->copy_to_host(finite_scratch_.data(), arg.data, bytes);
  return finite_scratch_.data();
}

}  // namespace fovea
