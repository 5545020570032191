// compile() and Executable: a graph lowered for one backend and one set of shapes.
//
// Compiling picks the nodes the requested outputs need (the schedule), plans their memory in
// one arena, and looks up a kernel for every node. Running copies the feeds into the arena,
// calls the kernels in order with pre-computed arguments, and copies the outputs out. All
// decisions are made at compile time, so a run costs one indirect call per node.
#pragma once

#include <cstddef>
#include <memory>
#include <source_location>
#include <string>
#include <utility>
#include <vector>

#include "fovea/backends/backend.h"
#include "fovea/core/graph.h"
#include "fovea/runtime/memory_plan.h"

namespace fovea {

// Tensors to feed placeholders with, for one run: {{x, batch}, {labels, y}}.
using Feeds = std::vector<std::pair<Value, Tensor>>;

struct CompileOptions {
  // assign nodes (ops/state.h) to run after everything else at every run: the optimizer's
  // updates of a training step. Their outputs are not returned.
  std::vector<Value> updates = {};
  // Reject floating-point feeds that hold NaN or ±inf (a corrupt batch) with an error naming
  // the placeholder and the first bad element, before anything runs. Costs one pass over
  // each feed per run; turn it off for the last few percent of speed.
  bool check_finite_feeds = true;
  // Launch the whole step with one call from the host (on the CUDA backend: a CUDA Graph).
  // The first run runs eagerly, then records the same kernel launches without running them
  // again; every later run copies the feeds in, replays the recording and copies the outputs
  // out. Backends that cannot record (the CPU) ignore it. An executable with a kernel that
  // waits for the device mid-run (gather's and scatter_add's index checks, integer division's
  // zero check) is not recorded, nor one whose recording fails: it keeps running eagerly, and
  // Executable::capture_status() says why. Profiled runs (set_profiling) always run eagerly.
  bool capture_graph = false;
};

class Executable {
 public:
  // Runs the graph once. Every placeholder the outputs depend on must be fed exactly once
  // with a tensor of its declared dtype and shape (placeholders they do not need may be fed
  // too, and are ignored after the same checks); anything else raises fovea::Error naming
  // the placeholder and the line that called run().
  std::vector<Tensor> run(const Feeds& feeds, std::source_location where = std::source_location::current());

  // For device backends: copy the parameters, state and constants this executable uses
  // from the device back into the graph's host Tensors (before saving a checkpoint), or from
  // the host to the device (after loading one). No-ops on the CPU, which uses them in place.
  void pull_state();
  void push_state();

  const MemoryPlan& memory_plan() const { return plan_; }
  std::size_t planned_peak_bytes() const { return plan_.peak_bytes; }
  // Node ids in execution order.
  const std::vector<std::uint32_t>& schedule() const { return schedule_; }
  const Graph& graph() const { return *graph_; }
  Backend& backend() const { return *backend_; }
  // The schedule with each node's kernel and output buffer, for reading and debugging.
  std::string to_string() const;

  // --- Profiling -------------------------------------------------------------------------------
  // While on, every run times each kernel (synchronizing a device backend after each, so the
  // figures are real but the run is slower) and adds the times up until reset_profile().
  void set_profiling(bool on) { profiling_ = on; }
  void reset_profile();
  // Where the time went, summed over the profiled runs: a table by op (calls, total, share),
  // then the `top_nodes` most expensive nodes with their scope and the user's file:line.
  std::string profile_report(std::size_t top_nodes = 15) const;
  // Seconds spent in each step's kernel (schedule order), summed over profiled_runs() runs.
  const std::vector<double>& step_seconds() const { return step_seconds_; }
  int profiled_runs() const { return profiled_runs_; }

  // --- Recording (CompileOptions::capture_graph) -----------------------------------------------
  // Whether runs now replay a recording of the whole step.
  bool captured() const { return recorded_ != nullptr; }
  // One line on the recording: "off", "ignored", "refused", "pending", "recorded" or
  // "abandoned", and why (the node and line of the user's that prevent it, say).
  const std::string& capture_status() const { return capture_status_; }

 private:
  void run_profiled_steps();
  void decide_capture(const CompileOptions& options);
  bool replay_recording();
  void record_steps();
  friend Executable compile(Graph&, const std::vector<Value>&, std::shared_ptr<Backend>, const CompileOptions&);
  Executable() = default;

  struct Step {
    Kernel kernel;
    KernelContext context;
  };
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
  // placeholder, parameter or constant, or an assign) that is copied out.
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
  std::vector<std::pair<ValueRef, std::byte*>> feed_slots_;  // placeholder -> arena address
  bool check_finite_feeds_ = true;
  std::vector<DirectOutput> direct_outputs_;
  std::vector<Tensor> persistent_;  // host Tensors of the parameters, state and constants used
  std::vector<Output> outputs_;
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
