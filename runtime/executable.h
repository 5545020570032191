// compile() and Executable: a graph lowered for one backend and one set of shapes.
//
// Compiling picks the nodes the requested outputs need (the schedule), plans their memory in
// one arena, and looks up a kernel for every node. Running copies the feeds in, calls the
// kernels in order with pre-computed arguments, and hands the outputs out. All decisions are
// made at compile time, so a run costs one indirect call per step.
//
// On the CPU (Backend::uses_host_memory()) the feeds are copied straight into the arena and
// computed outputs are written straight into the Tensors run() returns. On a device the copies
// are steps too (ops/transfer.h): compile() lowers the schedule to
//
//   to_device for every fed placeholder      host staging → arena
//   the kernels of the schedule
//   to_host for every requested output       arena (or a parameter's device copy) → host staging
//   to_host for the verdicts, if any step defers its checks (backends/backend.h, Verdict)
//
// with one block of host staging planned at compile time (runtime/staging.h), so that
// to_string() lists the transfers, profiling times them, and a recording (capture_graph)
// includes them: a recorded step is one launch, and run() waits for the device once.
//
// The transfer steps live in the executable only, not in the graph: each has a Node of its own,
// owned by the executable and named after the value it moves ("x/to_device"), that no graph
// holds. The user's graph is not changed by compiling it, the user's Values stay the keys of
// feeds and outputs, and the memory plan needs nothing new: a to_device step writes exactly
// its placeholder's buffer before any kernel runs, a to_host step reads exactly its output's
// buffer after every kernel has run, so neither changes a buffer's lifetime. (A lowered copy
// of the graph would have to remap every Value the user holds and the parameters' buffers,
// which the graph keys by node.)
//
// Threads (docs/runtime.md): different executables may run at the same time from different
// threads, of one graph or of several. An executable's arena, output Tensors and profile are
// its own, so one executable serves one run at a time: a second thread calling run() while it
// runs gets a fovea::Error at once (compile one executable per serving thread instead). Runs
// share their graph's persistent buffers through Graph::state_mutex(): runs with updates hold
// it alone, so an evaluation runs before or after a training step, never during one.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <source_location>
#include <string>
#include <utility>
#include <vector>

#include "fovea/backends/backend.h"
#include "fovea/core/graph.h"
#include "fovea/runtime/finite.h"
#include "fovea/runtime/memory_plan.h"
#include "fovea/runtime/staging.h"

namespace fovea {

// Tensors to feed placeholders with, for one run: {{x, batch}, {labels, y}}.
using Feeds = std::vector<std::pair<Value, Tensor>>;

// A summary of one floating value a run computed (Executable::set_value_statistics): how many
// elements it has, how many are NaN or ±inf, and the spread of the finite ones.
struct ValueStatistics {
  ValueRef value;
  std::size_t count = 0, nan_count = 0, inf_count = 0;  // elements; NaN; ±inf
  // Over the finite elements; all 0 when there are none. std is the population's (divided by
  // the number of finite elements, not one less).
  double min = 0, max = 0, mean = 0, std = 0;
  // The finite elements counted in 24 equal bins over [min, max], the last bin closed (max lands
  // in it); every element lands in bin 0 when min == max. Empty when no element is finite.
  std::vector<std::uint32_t> histogram;
  static constexpr std::size_t bins = 24;
  // The node made the NaN or infinity here itself: its floating inputs were all finite (anomaly
  // mode's rule, runtime/anomaly.cpp; a fused_attention's -inf log-sum-exp of a fully masked row
  // does not count). A non-finite value computed from a non-finite input (an attention mask of
  // -inf, say) is not made here.
  bool made_non_finite = false;
};

struct CompileOptions {
  // assign nodes (ops/state.h) to run after everything else at every run: the optimizer's
  // updates of a training step. Their outputs are not returned.
  std::vector<Value> updates = {};
  // Reject floating-point feeds that hold NaN or ±inf (a corrupt batch) with an error naming
  // the placeholder and the first bad element, before anything runs. Costs one pass over
  // each feed per run; turn it off for the last few percent of speed.
  bool check_finite_feeds = true;
  // Anomaly mode: stop a run at the first node that makes a NaN or an infinity, with a
  // fovea::Error naming the node, its op, its scope, the user's file:line, the output and
  // element, and each input with whether it was all finite (runtime/anomaly.cpp). A node is
  // reported only when it made the value itself: when all its floating inputs were finite.
  // Non-finite values that come from constants, placeholders or parameters (an attention
  // mask of -inf) flow on unreported, and so does whatever is computed from them; nodes
  // without floating inputs (fill, iota, casts from integers) are sources, not checked; and
  // fused_attention's log-sum-exp may be -inf (a fully masked row). After every step its
  // floating outputs are scanned (on a device: copied to the host first, a wait per step): the
  // small GPT step took 1.03x as long on the CPU (docs/runtime.md); capture_graph is refused.
  // Off, runs do no extra work. FOVEA_CHECK_FINITE=1, read by every compile(), turns it on.
  bool check_finite = false;
  // Launch the whole step with one call from the host (on the CUDA backend: a CUDA Graph).
  // The first run runs eagerly, then records the same launches without running them again:
  // the verdicts' reset, the transfers in, the kernels, the transfers out. Every later run
  // copies the feeds into host staging, replays the recording, waits once, and copies the
  // outputs out of staging. Checks on the device (gather's and scatter_add's indices, integer
  // division's divisors) do not stop a recording: they report after the run (Verdict, in
  // backends/backend.h). Backends that cannot record (the CPU) ignore it. An executable with a
  // kernel the backend cannot record, or whose recording fails, keeps running eagerly, and
  // Executable::capture_status() says why. Profiled runs (set_profiling) always run eagerly, and
  // so does every run in anomaly mode (check_finite).
  bool capture_graph = false;
  // Write the explorer of this executable (explore/explorer.h: one HTML page of its graph, memory
  // plan, profile and values) to this path after its first run, which is then profiled and
  // observed (set_profiling, set_value_statistics) and so slower; a run stopped by anomaly mode
  // writes it too, with the error on top. nullopt: FOVEA_EXPLORE=path decides (the first
  // executable compiled writes to path, the next to path-2.html, and so on); "": never.
  // The page is written by the explorer, a layer above the runtime, which a program links by
  // including <fovea/fovea.h>; without it a warning says so.
  std::optional<std::string> explore = std::nullopt;
};

class Executable;
// How the runtime reaches the explorer, which lives above it (explore/explorer.h installs the
// writer when a program includes it): writes the page of `executable` to `path`, with
// `anomaly`, when not empty, the message of the error that stopped the run.
using ExploreWriter = void (*)(const Executable& executable, const std::string& path, const std::string& anomaly);
void set_explore_writer(ExploreWriter writer);
ExploreWriter explore_writer();
// The path FOVEA_EXPLORE gives the next program part that asks (compile(), compile_training_step):
// "" when it is not set; the path itself the first time, then "<stem>-2.html", "-3", ...
std::string next_explore_path_from_environment();
// The run that writes an explorer (CompileOptions::explore, TrainingStepOptions::explore):
// calls `run` with `exe` profiled and observed, puts profiling and value statistics back as they
// were, then calls `write` with "" or, when the run threw a fovea::Error (anomaly mode), with its
// message before rethrowing it. Returns what `run` returned.
std::vector<Tensor> run_observed_for_explorer(Executable& exe, const std::function<std::vector<Tensor>()>& run,
                                              const std::function<void(const std::string& anomaly)>& write);
// Says on stderr that no page is written to `path` because the program lacks the explorer.
void warn_explorer_missing(const std::string& path);

class Executable {
 public:
  // Runs the graph once. Every placeholder the outputs depend on must be fed exactly once
  // with a tensor of its declared dtype and shape (placeholders they do not need may be fed
  // too, and are ignored after the same checks); anything else raises fovea::Error naming
  // the placeholder and the line that called run(). A kernel's check that fails (an index out
  // of range) raises fovea::Error naming its node: on the CPU at once, on a device after the
  // step has run to its end (with bad indices skipped), since the device is not waited for
  // mid-run; the updates of that step have then been applied. A call while another thread
  // runs this executable raises fovea::Error at once (see the top of this file).
  std::vector<Tensor> run(const Feeds& feeds, std::source_location where = std::source_location::current());
  // The path the next run writes the explorer to (CompileOptions::explore), "" when none.
  const std::string& pending_explore_path() const { return explore_path_; }

  // For device backends: copy the parameters, state and constants this executable uses
  // from the device back into the graph's host Tensors (before saving a checkpoint), or from
  // the host to the device (after loading one). No-ops on the CPU, which uses them in place.
  // They take the graph's state_mutex() like a run does, but must not overlap a run of this
  // executable; nor may set_profiling or reset_profile.
  void pull_state();
  void push_state();

  const MemoryPlan& memory_plan() const { return plan_; }
  std::size_t planned_peak_bytes() const { return plan_.peak_bytes; }
  // The host staging block of a device executable; empty (no slots, 0 bytes) on the CPU.
  const StagingPlan& staging_plan() const { return staging_; }
  // Node ids of the graph in execution order (the transfer steps have none: see the top).
  const std::vector<std::uint32_t>& schedule() const { return schedule_; }
  // The steps a run executes, in order: the schedule's kernels and, on a device, the transfers
  // (whose nodes belong to no graph). step_seconds() has one entry per step.
  std::size_t step_count() const { return steps_.size(); }
  const Node& step_node(std::size_t step) const { return *steps_[step].context.node; }
  const Graph& graph() const { return *graph_; }
  Backend& backend() const { return *backend_; }
  // The schedule with each node's kernel and output buffer, the transfer steps where they
  // run, and the host staging block, for reading and debugging.
  std::string to_string() const;

  // --- Profiling -------------------------------------------------------------------------------
  // While on, every run times each step, transfers included (synchronizing a device backend
  // after each, so the figures are real but the run is slower) and adds the times up until
  // reset_profile().
  void set_profiling(bool on) { profiling_ = on; }
  bool profiling() const { return profiling_; }
  void reset_profile();
  // Where the time went, summed over the profiled runs: a table by op (calls, total, share),
  // then the `top_nodes` most expensive nodes with their scope and the user's file:line.
  std::string profile_report(std::size_t top_nodes = 15) const;
  // Seconds spent in each step's kernel (execution order, transfers included), summed over
  // profiled_runs() runs.
  const std::vector<double>& step_seconds() const { return step_seconds_; }
  int profiled_runs() const { return profiled_runs_; }

  // --- Value statistics ----------------------------------------------------------------------
  // While on, every run summarises each floating output (f32, f64, f16, bf16) of every step it
  // runs, after the step; integer and bool outputs are left out, and so are the transfer steps
  // of a device executable, which only move values. Runs then take the step-by-step path of
  // anomaly mode (eagerly, never replaying a recording; on a device each output is copied to the
  // host first, a wait per step). Off, runs do no extra work.
  void set_value_statistics(bool on) { value_statistics_on_ = on; }
  bool value_statistics_on() const { return value_statistics_on_; }
  // The summaries of the last run with statistics on, in step order. In anomaly mode a run that
  // stopped at a node with an error still leaves them here, up to and including that node's.
  const std::vector<ValueStatistics>& value_statistics() const { return value_statistics_; }

  // --- Recording (CompileOptions::capture_graph) -----------------------------------------------
  // Whether runs now replay a recording of the whole step.
  bool captured() const { return recorded_ != nullptr; }
  // One line on the recording: "off", "ignored", "refused", "pending", "recorded" or
  // "abandoned", and why (the node and line of the user's that prevent it, say).
  const std::string& capture_status() const { return capture_status_; }

 private:
  // A run, phase by phase (runtime/executable.cpp).
  std::vector<Tensor> run_alone(const Feeds& feeds, const SourceLoc& call);
  std::vector<const Tensor*> check_feeds(const Feeds& feeds, const SourceLoc& call) const;
  void renew_held_outputs();
  void copy_feeds_in(const std::vector<const Tensor*>& fed);
  bool launch();
  void run_steps();
  void raise_failed_verdict() const;
  std::vector<Tensor> collect_outputs() const;
  // Profiled runs (runtime/profile.cpp).
  void run_profiled_steps();
  // Recording and replaying (runtime/capture.cpp).
  void decide_capture(const CompileOptions& options);
  bool replay_recording();
  void record_steps();
  friend struct ExecutableLowering;  // compile()'s phases (runtime/executable.cpp)
  friend Executable compile(Graph&, const std::vector<Value>&, std::shared_ptr<Backend>, const CompileOptions&);
  Executable() = default;

  static constexpr std::uint32_t no_node = ~std::uint32_t{0};
  struct Step {
    Kernel kernel;
    KernelContext context;
    // For a kernel that defers its checks: the message for its failed verdict.
    VerdictMessage verdict_message = nullptr;
    // The node's attributes, decoded once for every run (context.decoded points here).
    std::unique_ptr<const DecodedParams> params;
    // The graph's id of the node; no_node for a transfer step, whose node no graph holds.
    std::uint32_t node = no_node;
  };
  // Anomaly mode (runtime/anomaly.cpp): the steps, each one's outputs scanned after it runs.
  void run_checked_steps();
  // With `kernel_seconds`, adds the time of the step's kernel alone (the device waited for), not
  // of the scans around it: a profiled, observed run reports what the kernels cost.
  void run_checked_step(const Step& step, double* kernel_seconds = nullptr);
  void check_step_finite(const Step& step, const std::vector<char>& inputs_finite_before);
  std::vector<char> inputs_finite(const Step& step);
  NonFinite first_non_finite_in(const TensorArg& arg, bool negative_infinity_allowed);
  const std::byte* on_host(const TensorArg& arg);
  // Whether runs take the step-by-step path above: in anomaly mode or with statistics on.
  bool steps_observed() const { return check_finite_ || value_statistics_on_; }
  // Value statistics (runtime/statistics.cpp): the floating outputs of one step, summarised.
  void summarise_step_outputs(const Step& step);
  void mark_made_non_finite(const Step& step, std::size_t first, const std::vector<char>& inputs_finite_before);
  // A computed output lives in a Tensor of its own that its kernel writes into directly; the
  // run hands that Tensor out. If the caller still holds it at the next run, a fresh one is
  // allocated and the kernel arguments that point at it are re-pointed (`sites`), so results
  // are never overwritten behind the caller's back and never copied.
  struct DirectOutput {
    ValueRef value;
    Tensor tensor;
    std::vector<std::byte**> sites;
  };
  // Every requested output: either one of the direct ones, or a value living elsewhere (a
  // placeholder, parameter or constant, or an assign; on a device, its host staging slot) that
  // is copied out.
  struct Output {
    ValueRef value;
    int direct = -1;  // index into direct_outputs_, or -1
    const std::byte* data = nullptr;
  };

  Graph* graph_ = nullptr;
  std::shared_ptr<Backend> backend_;
  std::vector<std::uint32_t> schedule_;
  MemoryPlan plan_;
  std::shared_ptr<std::byte[]> arena_;
  std::vector<Step> steps_;
  // Per step, its inputs' and outputs' TensorArgs (the contexts' spans point into these).
  std::vector<std::unique_ptr<TensorArg[]>> args_;
  // The nodes of the transfer steps, which belong to no graph (see the top of this file).
  std::vector<std::unique_ptr<Node>> transfer_nodes_;
  // Placeholder -> where run() copies its feed: its arena buffer on the CPU, its host staging
  // slot on a device.
  std::vector<std::pair<ValueRef, std::byte*>> feed_slots_;
  bool staged_ = false;  // feeds and outputs go through host staging and transfer steps
  StagingPlan staging_;
  std::shared_ptr<std::byte[]> staging_block_;
  // The verdicts of the steps that defer their checks, in step order: in the backend's memory
  // (after the planned buffers in the arena), and where run() reads them after the run (their
  // copy in host staging on a device, the same bytes on the CPU).
  Verdict* verdicts_ = nullptr;
  const std::byte* verdicts_read_ = nullptr;
  std::size_t verdict_count_ = 0;
  bool unfinished_run_ = false;  // the last run threw before waiting for the device
  bool check_finite_feeds_ = true;
  bool check_finite_ = false;              // anomaly mode (CompileOptions::check_finite)
  std::vector<std::byte> finite_scratch_;  // on a device: one value copied to the host (on_host)
  bool value_statistics_on_ = false;       // set_value_statistics
  std::vector<ValueStatistics> value_statistics_;
  // Set while a run is in progress, so that a second thread's run() fails instead of
  // overwriting the arena under the first (held by pointer: an Executable is movable).
  std::unique_ptr<std::atomic_flag> running_ = std::make_unique<std::atomic_flag>();
  bool writes_state_ = false;  // some step assigns a persistent buffer (the updates)
  std::vector<DirectOutput> direct_outputs_;
  std::vector<Tensor> persistent_;  // host Tensors of the parameters, state and constants used
  std::vector<Output> outputs_;
  // CompileOptions::explore, until the run that writes it (runtime/explore.cpp).
  std::string explore_path_;
  std::vector<Tensor> run_and_explore(const Feeds& feeds, std::source_location where);
  bool profiling_ = false;
  int profiled_runs_ = 0;
  std::vector<double> step_seconds_;
  bool capture_pending_ = false;  // record after the next eager run
  std::string capture_status_;
  std::string stale_reason_;  // why the last recording had to be made again, if it had
  // Last, so that it is destroyed first: its launches point into the arena and the backend.
  std::unique_ptr<RecordedRun> recorded_;
};

// Compiles the part of `graph` that `outputs` (and `options.updates`) depend on for `backend`.
// The graph must outlive the executable; parameters are used in place from the graph's
// persistent buffers.
Executable compile(Graph& graph, const std::vector<Value>& outputs, std::shared_ptr<Backend> backend = cpu(),
                   const CompileOptions& options = {});

}  // namespace fovea
