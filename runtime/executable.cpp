#include "fovea/runtime/executable.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string_view>

#include <fmt/format.h>

#include "fovea/ops/transfer.h"
#include "fovea/runtime/finite.h"
#include "fovea/runtime/schedule.h"

namespace fovea {

namespace {

// The node of a transfer step: `op` applied to `value`, named after it, with its scope and the
// user's line, so that a profile or an error reads like one about the value itself. It belongs
// to no graph; its input names the value it moves.
std::unique_ptr<Node> transfer_node(const OpDef& op, const Graph& graph, ValueRef value) {
  const Node& from = graph.node(value.node);
  auto node = std::make_unique<Node>();
  node->op = &op;
  node->inputs = {value};
  node->outputs = {graph.type(value)};
  const std::string name = from.outputs.size() > 1 ? fmt::format("{}.{}", from.name, value.output) : from.name;
  node->name = fmt::format("{}/{}", name, op.name);
  node->scope = from.scope;
  node->where = from.where;
  node->role = from.role;
  node->gradient_of = from.gradient_of;
  return node;
}

// The node of the step that copies the verdicts back: a to_host of `count` verdicts, seen as
// i64 words. It moves no value of the graph, so it has no input.
std::unique_ptr<Node> verdicts_node(std::size_t count) {
  auto node = std::make_unique<Node>();
  node->op = &ops::to_host;
  node->outputs = {TensorType{DType::i64, Shape{static_cast<std::int64_t>(count * sizeof(Verdict) / 8)}}};
  node->name = "verdicts/to_host";
  return node;
}

// The lock that runs on one device backend take turns with. Everything a device run does goes
// through the backend's one stream and its one scratch buffer (backends/cuda/cuda_backend.h),
// so two runs at once would share both; the device would serialize their kernels anyway. The
// CPU backend keeps nothing per run, and its runs overlap freely.
std::mutex& device_turn(const Backend& backend) {
  static std::mutex registry_mutex;
  static std::map<const Backend*, std::unique_ptr<std::mutex>> turns;
  std::lock_guard lock(registry_mutex);
  std::unique_ptr<std::mutex>& turn = turns[&backend];
  if (!turn) turn = std::make_unique<std::mutex>();
  return *turn;
}

// An allocation for the executable that failed, as an error about the node whose buffer is the
// largest of the plan (the likeliest one to shrink): its shape, its bytes, and the bytes asked.
[[noreturn]] void fail_allocation(const Graph& graph, const MemoryPlan& plan, const std::string& what,
                                  std::size_t bytes, const std::exception& cause) {
  const ValueRef* largest = nullptr;
  std::size_t largest_bytes = 0;
  for (const auto& [value, buffer] : plan.buffer_of)
    if (!largest || plan.buffers[buffer].bytes > largest_bytes) {
      largest = &value;
      largest_bytes = plan.buffers[buffer].bytes;
    }
  const double gib = static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0);
  if (!largest)
    throw Error(fmt::format("compile: cannot allocate {} of {} bytes ({:.1f} GiB) for graph '{}': {}", what, bytes, gib,
                            graph.name(), cause.what()));
  const Node& node = graph.node(largest->node);
  node.fail(
      fmt::format("compile: cannot allocate {} of {} bytes ({:.1f} GiB) for graph '{}': {}. Its largest "
                  "buffer holds this node's {} ({} bytes); make it smaller (a smaller batch, say)",
                  what, bytes, gib, graph.name(), cause.what(), graph.type(*largest).to_string(), largest_bytes));
}

// FOVEA_CHECK_FINITE=1 turns anomaly mode on for every compile (CompileOptions::check_finite).
bool check_finite_from_environment() {
  const char* value = std::getenv("FOVEA_CHECK_FINITE");
  return value && std::string_view(value) == "1";
}

// Rejects what compile() cannot lower: a null backend, an update that is no assign of this
// graph, an output that is undefined, of another graph, or made from a raw ValueRef.
void check_compile_arguments(const Graph& graph, const std::vector<Value>& outputs, const Backend* backend,
                             const CompileOptions& options) {
  if (!backend) throw Error("compile: the backend is null");
  for (const Value& u : options.updates)
    if (!u.defined() || &u.graph() != &graph || !graph.contains(u.ref()) || !u.node().op->assigns)
      throw Error(fmt::format("compile: update '{}' is not an assign node of graph '{}'",
                              u.defined() && u.graph().contains(u.ref()) ? u.name() : std::string("<undefined>"),
                              graph.name()));
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    if (!outputs[i].defined()) throw Error(fmt::format("compile: output {} is an undefined Value", i));
    if (&outputs[i].graph() != &graph)
      throw Error(fmt::format("compile: output {} ('{}') belongs to graph '{}', not '{}'", i,
                              outputs[i].graph().contains(outputs[i].ref()) ? outputs[i].name() : "?",
                              outputs[i].graph().name(), graph.name()));
    if (!graph.contains(outputs[i].ref()))
      throw Error(
          fmt::format("compile: output {} (%{}.{}) is no node output of graph '{}', which has {} nodes (a "
                      "Value made from a raw ValueRef)",
                      i, outputs[i].ref().node, outputs[i].ref().output, graph.name(), graph.size()));
  }
}

}  // namespace

// The work of compile(), one phase per member function, in the order compile() calls them.
// It fills in an Executable, whose privates it may touch (a friend).
struct ExecutableLowering {
  Graph& graph;
  const std::vector<Value>& outputs;
  Backend& backend;
  Executable exe;
  // Computed outputs on the CPU → their index in exe.direct_outputs_.
  std::map<ValueRef, int> direct_index;

  ExecutableLowering(Graph& g, const std::vector<Value>& outs, std::shared_ptr<Backend> b,
                     const CompileOptions& options)
      : graph(g), outputs(outs), backend(*b) {
    exe.graph_ = &graph;
    exe.check_finite_feeds_ = options.check_finite_feeds;
    exe.check_finite_ = options.check_finite || check_finite_from_environment();
    exe.explore_path_ = options.explore ? *options.explore : next_explore_path_from_environment();
    exe.backend_ = std::move(b);
  }

  // The schedule of the outputs and updates, the memory plan of its values, and how many of
  // its steps defer their checks to a verdict.
  void plan(const CompileOptions& options) {
    std::vector<Value> roots = outputs;
    roots.insert(roots.end(), options.updates.begin(), options.updates.end());
    exe.schedule_ = schedule_for(graph, roots);
    exe.writes_state_ = std::any_of(exe.schedule_.begin(), exe.schedule_.end(),
                                    [&](std::uint32_t id) { return graph.node(id).op->assigns; });
    const bool host = backend.uses_host_memory();
    exe.staged_ = !host;
    exe.plan_ = plan_memory(graph, exe.schedule_, output_refs(), /*outputs_in_arena=*/!host);
    for (std::uint32_t id : exe.schedule_) {
      const Node& node = graph.node(id);
      if (!node.op->source && backend.kernels().verdict_message(*node.op, kernel_dtype(graph, node)))
        ++exe.verdict_count_;
    }
  }

  std::vector<ValueRef> output_refs() const {
    std::vector<ValueRef> refs;
    for (const Value& v : outputs) refs.push_back(v.ref());
    return refs;
  }

  // The arena: the planned buffers, then a verdict for each step that defers its checks.
  void allocate_arena() {
    const std::size_t verdicts_offset = MemoryPlan::align_up(exe.plan_.peak_bytes);
    const std::size_t arena_bytes =
        exe.verdict_count_ > 0 ? verdicts_offset + exe.verdict_count_ * sizeof(Verdict) : exe.plan_.peak_bytes;
    try {
      exe.arena_ = backend.allocate(arena_bytes);
    } catch (const std::exception& e) {
      fail_allocation(graph, exe.plan_, "the arena", arena_bytes, e);
    }
    if (exe.verdict_count_ > 0) {
      exe.verdicts_ = reinterpret_cast<Verdict*>(exe.arena_.get() + verdicts_offset);
      exe.verdicts_read_ = reinterpret_cast<const std::byte*>(exe.verdicts_);
    }
  }

  // On a device: the host staging block that feeds, outputs and verdicts pass through.
  void allocate_staging() {
    if (!exe.staged_) return;
    exe.staging_ = plan_staging(graph, exe.schedule_, output_refs(), exe.verdict_count_);
    try {
      exe.staging_block_ = backend.allocate_host_staging(exe.staging_.bytes);
    } catch (const std::exception& e) {
      fail_allocation(graph, exe.plan_, "the host staging", exe.staging_.bytes, e);
    }
    if (exe.verdict_count_ > 0) exe.verdicts_read_ = exe.staging_block_.get() + exe.staging_.verdicts_offset;
  }

  // On the CPU, computed outputs get Tensors of their own (see DirectOutput).
  void make_direct_outputs() {
    const bool host = backend.uses_host_memory();
    for (const Value& v : outputs) {
      const Node& n = v.node();
      if (!host || n.op->source || n.op->assigns || exe.plan_.buffer_of.contains(v.ref()) ||
          direct_index.contains(v.ref()))
        continue;
      direct_index[v.ref()] = static_cast<int>(exe.direct_outputs_.size());
      Tensor tensor;
      try {
        tensor = Tensor::empty(v.dtype(), v.shape());
      } catch (const Error& e) {
        n.fail(fmt::format("compile: cannot allocate the output tensor: {}", e.message()));
      }
      exe.direct_outputs_.push_back({v.ref(), std::move(tensor), {}});
    }
  }

  // Where a value lives: an arena offset, an output's Tensor, or a parameter's or constant's
  // own buffer (on a device, its device copy).
  std::byte* address(ValueRef v) {
    if (auto it = exe.plan_.buffer_of.find(v); it != exe.plan_.buffer_of.end())
      return exe.arena_.get() + exe.plan_.buffers[it->second].offset;
    if (auto it = direct_index.find(v); it != direct_index.end()) return exe.direct_outputs_[it->second].tensor.raw();
    const Node& n = graph.node(v.node);
    const Tensor* persistent = nullptr;
    if (n.op == &parameter_op) persistent = &graph.parameter_value(v);
    if (n.op->assigns) persistent = &graph.parameter_value(n.inputs[0]);
    if (n.op == &constant_op) persistent = &n.attrs.get_tensor("value");
    if (persistent) {
      if (std::none_of(exe.persistent_.begin(), exe.persistent_.end(),
                       [&](const Tensor& t) { return t.shares_storage_with(*persistent); }))
        exe.persistent_.push_back(*persistent);
      return backend.persistent_copy(*persistent);
    }
    throw Error(fmt::format("compile: value {}.{} has no storage", n.name, v.output));
  }

  // The backend's kernel for the node's op and dtype, or an error naming the node.
  Kernel find_kernel(const Node& node) const {
    const DType dtype = kernel_dtype(graph, node);
    const Kernel kernel = backend.kernels().find(*node.op, dtype);
    if (!kernel)
      node.fail(fmt::format("the {} backend has no kernel for op '{}' with dtype {}", backend.name(), node.op->name,
                            dtype_name(dtype)));
    return kernel;
  }

  // A step copying a value of the node's type from `from` to `to` (ops/transfer.h).
  void add_transfer(std::unique_ptr<Node> node, std::byte* from, std::byte* to) {
    const TensorType& type = node->outputs[0];
    auto args = std::make_unique<TensorArg[]>(2);
    args[0] = {from, type};
    args[1] = {to, type};
    const KernelContext ctx{node.get(), {args.get(), 1}, {args.get() + 1, 1}, &backend.pool()};
    exe.steps_.push_back({find_kernel(*node), ctx, nullptr, nullptr});
    exe.args_.push_back(std::move(args));
    exe.transfer_nodes_.push_back(std::move(node));
  }

  // On a device: the feeds arrive first, each from its staging slot into its arena buffer.
  void add_feed_transfers() {
    std::byte* const staging = exe.staging_block_.get();
    for (const StagingPlan::Slot& slot : exe.staging_.feeds) {
      exe.feed_slots_.emplace_back(slot.value, staging + slot.offset);
      add_transfer(transfer_node(ops::to_device, graph, slot.value), staging + slot.offset, address(slot.value));
    }
  }

  // A step for every scheduled node that computes, with its arguments bound to their buffers;
  // on the CPU, each placeholder's buffer becomes its feed's destination.
  void add_kernel_steps() {
    std::size_t next_verdict = 0;
    for (std::uint32_t id : exe.schedule_) {
      const Node& node = graph.node(id);
      if (node.op == &placeholder_op && !exe.staged_) exe.feed_slots_.emplace_back(ValueRef{id, 0}, address({id, 0}));
      if (!node.op->source) add_kernel_step(id, node, next_verdict);
    }
  }

  void add_kernel_step(std::uint32_t id, const Node& node, std::size_t& next_verdict) {
    const Kernel kernel = find_kernel(node);
    const std::size_t n_in = node.inputs.size(), n_out = node.outputs.size();
    auto args = std::make_unique<TensorArg[]>(n_in + n_out);
    auto bind = [&](std::size_t slot, ValueRef v, const TensorType& type) {
      args[slot] = {address(v), type};
      if (auto it = direct_index.find(v); it != direct_index.end())
        exe.direct_outputs_[it->second].sites.push_back(&args[slot].data);
    };
    for (std::size_t i = 0; i < n_in; ++i) bind(i, node.inputs[i], graph.type(node.inputs[i]));
    for (std::size_t k = 0; k < n_out; ++k) bind(n_in + k, {id, static_cast<std::uint32_t>(k)}, node.outputs[k]);
    KernelContext ctx{&node, {args.get(), n_in}, {args.get() + n_in, n_out}, &backend.pool()};
    const VerdictMessage verdict_message = backend.kernels().verdict_message(*node.op, kernel_dtype(graph, node));
    if (verdict_message) ctx.verdict = exe.verdicts_ + next_verdict++;
    std::unique_ptr<const DecodedParams> params = decode_params(graph, node);
    ctx.decoded = params.get();
    exe.steps_.push_back({kernel, ctx, verdict_message, std::move(params), id});
    exe.args_.push_back(std::move(args));
  }

  // On a device: every output leaves last, after the updates, from its buffer into its staging
  // slot; then the verdicts.
  void add_output_transfers() {
    std::byte* const staging = exe.staging_block_.get();
    for (const StagingPlan::Slot& slot : exe.staging_.outputs)
      add_transfer(transfer_node(ops::to_host, graph, slot.value), address(slot.value), staging + slot.offset);
    if (exe.staged_ && exe.verdict_count_ > 0)
      add_transfer(verdicts_node(exe.verdict_count_), reinterpret_cast<std::byte*>(exe.verdicts_),
                   staging + exe.staging_.verdicts_offset);
  }

  // Where run() finds each requested output: its direct Tensor, its staging slot, or its buffer.
  void locate_outputs() {
    std::byte* const staging = exe.staging_block_.get();
    for (const Value& v : outputs) {
      auto it = direct_index.find(v.ref());
      if (exe.staged_)
        exe.outputs_.push_back({v.ref(), -1, staging + exe.staging_.output(v.ref()).offset});
      else
        exe.outputs_.push_back(it != direct_index.end() ? Executable::Output{v.ref(), it->second, nullptr}
                                                        : Executable::Output{v.ref(), -1, address(v.ref())});
    }
  }
};

Executable compile(Graph& graph, const std::vector<Value>& outputs, std::shared_ptr<Backend> backend,
                   const CompileOptions& options) {
  check_compile_arguments(graph, outputs, backend.get(), options);
  ExecutableLowering lowering(graph, outputs, std::move(backend), options);
  lowering.plan(options);                // what runs, in which order, in which buffers
  lowering.allocate_arena();             // the buffers and the verdicts
  lowering.allocate_staging();           // on a device: the host staging block
  lowering.make_direct_outputs();        // on the CPU: the outputs' own Tensors
  lowering.add_feed_transfers();         // on a device: staging → arena
  lowering.add_kernel_steps();           // one step per computing node
  lowering.add_output_transfers();       // on a device: arena → staging, then the verdicts
  lowering.locate_outputs();             // where run() finds each output
  lowering.exe.decide_capture(options);  // whether runs may be recorded (runtime/capture.cpp)
  return std::move(lowering.exe);
}

std::vector<Tensor> Executable::run(const Feeds& feeds, std::source_location where) {
  const SourceLoc call(where);
  if (!running_) throw Error("run: this executable was moved from; run the one it was moved into", "run", "", call);
  if (!explore_path_.empty()) return run_and_explore(feeds, where);
  // One run at a time: a second thread would overwrite the arena and the outputs under the first.
  if (running_->test_and_set(std::memory_order_acquire))
    throw Error(fmt::format("run: this executable of graph '{}' is already running on another thread; an executable "
                            "serves one run at a time, so compile one executable per thread (they may share the "
                            "graph and its parameters)",
                            graph_->name()),
                "run", "", call);
  struct Finish {
    std::atomic_flag& running;
    ~Finish() { running.clear(std::memory_order_release); }
  } finish{*running_};
  std::unique_lock device(device_turn(*backend_), std::defer_lock);
  if (!backend_->uses_host_memory()) device.lock();
  // The graph's persistent buffers: shared with other readers, or all ours while we update them.
  std::shared_lock reading(graph_->state_mutex(), std::defer_lock);
  std::unique_lock writing(graph_->state_mutex(), std::defer_lock);
  if (writes_state_)
    writing.lock();
  else
    reading.lock();
  return run_alone(feeds, call);
}

std::vector<Tensor> Executable::run_alone(const Feeds& feeds, const SourceLoc& call) {
  const std::vector<const Tensor*> fed = check_feeds(feeds, call);  // before touching the arena
  renew_held_outputs();
  copy_feeds_in(fed);
  const bool replayed = launch();
  std::vector<Tensor> results = collect_outputs();
  if (capture_pending_ && !profiling_ && !replayed) record_steps();
  return results;
}

namespace {

// Rejects a feed that names no placeholder of `graph`, or holds a tensor of another type.
const Node& check_feed(const Graph& graph, const Value& value, const Tensor& tensor, const SourceLoc& call) {
  if (!value.defined()) throw Error("run: a feed names an undefined Value", "run", "", call);
  if (!value.graph().contains(value.ref()))
    throw Error(fmt::format("run: a feed names %{}.{}, which is no node output of graph '{}' (a Value made from a "
                            "raw ValueRef)",
                            value.ref().node, value.ref().output, value.graph().name()),
                "run", "", call);
  const Node& node = value.node();
  if (&value.graph() != &graph || node.op != &placeholder_op)
    throw Error(fmt::format("'{}' is not a placeholder of graph '{}' (it is a {} node)", node.name, graph.name(),
                            node.op->name),
                "run", node.name, call);
  const TensorType& want = node.outputs[0];
  if (!tensor.defined() || tensor.dtype() != want.dtype || tensor.shape() != want.shape)
    throw Error(fmt::format("placeholder '{}' (built at {}) expects {}, but was fed {}", node.name,
                            node.where.to_string(), want.to_string(),
                            tensor.defined() ? TensorType{tensor.dtype(), tensor.shape()}.to_string()
                                             : std::string("an undefined tensor")),
                "run", node.name, call);
  return node;
}

// Rejects a floating feed holding a NaN or an infinity, naming the first one.
void check_finite_feed(const Node& node, const Tensor& tensor, const SourceLoc& call) {
  if (!is_floating(tensor.dtype())) return;
  const NonFinite bad = first_non_finite(tensor.dtype(), tensor.raw(), tensor.numel());
  if (bad.found())
    throw Error(fmt::format("placeholder '{}' was fed {} at element {} (index {} of {}); the batch is "
                            "corrupt or a preprocessing step overflowed",
                            node.name, describe_non_finite(bad.value), bad.index,
                            index_string(tensor.shape(), bad.index), node.outputs[0].to_string()),
                "run", node.name, call);
}

}  // namespace

// Every feed checked, then matched with its slot: fed[i] is the tensor for feed_slots_[i].
// A bad call throws here, having changed nothing.
std::vector<const Tensor*> Executable::check_feeds(const Feeds& feeds, const SourceLoc& call) const {
  std::vector<const Tensor*> fed(feed_slots_.size(), nullptr);
  for (const auto& [value, tensor] : feeds) {
    const Node& node = check_feed(*graph_, value, tensor, call);
    // A placeholder of this graph that the compiled outputs do not need is checked and then
    // ignored, so one set of feeds can serve several executables (train and eval).
    auto slot =
        std::find_if(feed_slots_.begin(), feed_slots_.end(), [&](const auto& s) { return s.first == value.ref(); });
    if (slot == feed_slots_.end()) continue;
    const auto index = static_cast<std::size_t>(slot - feed_slots_.begin());
    if (fed[index]) throw Error(fmt::format("placeholder '{}' is fed twice", node.name), "run", node.name, call);
    fed[index] = &tensor;
    if (check_finite_feeds_) check_finite_feed(node, tensor, call);
  }
  for (std::size_t i = 0; i < feed_slots_.size(); ++i) {
    if (!fed[i]) {
      const Node& node = graph_->node(feed_slots_[i].first.node);
      throw Error(fmt::format("placeholder '{}' ({}, built at {}) was not fed", node.name, node.outputs[0].to_string(),
                              node.where.to_string()),
                  "run", node.name, call);
    }
  }
  return fed;
}

// An output Tensor the caller still holds from an earlier run is left alone: this run writes
// a fresh one.
void Executable::renew_held_outputs() {
  for (DirectOutput& out : direct_outputs_) {
    if (out.tensor.is_unique()) continue;
    out.tensor = Tensor::empty(out.tensor.dtype(), out.tensor.shape());
    for (std::byte** site : out.sites) *site = out.tensor.raw();
  }
}

// On a device the feeds go into host staging, and the to_device steps take them from there;
// on the CPU straight into the arena.
void Executable::copy_feeds_in(const std::vector<const Tensor*>& fed) {
  // A run that threw between launching and waiting may have left copies from staging pending.
  if (unfinished_run_) backend_->synchronize();
  unfinished_run_ = false;
  for (std::size_t i = 0; i < feed_slots_.size(); ++i) {
    if (!staged_)
      backend_->copy_from_host(feed_slots_[i].second, fed[i]->raw(), fed[i]->nbytes());
    else if (fed[i]->nbytes() > 0)
      std::memcpy(feed_slots_[i].second, fed[i]->raw(), fed[i]->nbytes());
  }
}

// The steps: timed one by one, replayed from a recording, or launched eagerly; then the one
// wait of a run on a device, after which the outputs and verdicts are in staging. True when
// the run replayed a recording.
bool Executable::launch() {
  unfinished_run_ = true;
  // A recording cannot stop after each step to look at its outputs.
  const bool replayed = !profiling_ && !value_statistics_on_ && replay_recording();
  if (value_statistics_on_) value_statistics_.clear();
  if (profiling_) {
    run_profiled_steps();
  } else if (!replayed) {
    // Anomaly mode's and the statistics' branch is here, outside the loop over the steps, so
    // that it costs nothing when both are off.
    if (steps_observed())
      run_checked_steps();
    else
      run_steps();
  }
  backend_->synchronize();
  unfinished_run_ = false;
  raise_failed_verdict();
  return replayed;
}

// The requested outputs, in order: a direct output's Tensor itself, anything else copied out.
std::vector<Tensor> Executable::collect_outputs() const {
  std::vector<Tensor> results;
  results.reserve(outputs_.size());
  for (const Output& out : outputs_) {
    if (out.direct >= 0) {
      results.push_back(direct_outputs_[static_cast<std::size_t>(out.direct)].tensor);
      continue;
    }
    const TensorType& type = graph_->type(out.value);
    Tensor t = Tensor::empty(type.dtype, type.shape);
    if (!staged_)
      backend_->copy_to_host(t.raw(), out.data, t.nbytes());
    else if (t.nbytes() > 0)
      std::memcpy(t.raw(), out.data, t.nbytes());
    results.push_back(std::move(t));
  }
  return results;
}

void Executable::run_steps() {
  if (verdict_count_ > 0) backend_->clear_verdicts(verdicts_, verdict_count_);
  for (const Step& step : steps_) step.kernel(step.context);
}

// After the run: the first step, in execution order, whose deferred check failed raises the
// error its kernel would have raised at once on the CPU, naming its node and the user's line.
void Executable::raise_failed_verdict() const {
  if (verdict_count_ == 0) return;
  std::size_t index = 0;
  for (const Step& step : steps_) {
    if (!step.verdict_message) continue;
    Verdict verdict;
    std::memcpy(&verdict, verdicts_read_ + index++ * sizeof(Verdict), sizeof(Verdict));
    if (verdict.failed()) step.context.fail(step.verdict_message(step.context, verdict));
  }
}

void Executable::pull_state() {
  std::unique_lock writing(graph_->state_mutex());
  backend_->synchronize();
  for (const Tensor& t : persistent_) backend_->pull(t);
}

void Executable::push_state() {
  std::shared_lock reading(graph_->state_mutex());
  for (const Tensor& t : persistent_) backend_->push(t);
}

std::string Executable::to_string() const {
  std::string s = fmt::format("executable for graph '{}' on {}: {} steps, planned peak {} bytes\n", graph_->name(),
                              backend_->name(), steps_.size(), plan_.peak_bytes);
  auto buffer = [&](ValueRef v) {
    auto it = plan_.buffer_of.find(v);
    return it == plan_.buffer_of.end() ? std::string("external")
                                       : fmt::format("buffer #{} @ {}", it->second, plan_.buffers[it->second].offset);
  };
  // The sources first (they are not steps), then the steps in the order they run, each
  // transfer with where it copies from and to.
  std::size_t line = 0;
  std::vector<std::uint32_t> kernel_nodes;  // the schedule's nodes that are steps, in order
  for (std::uint32_t id : schedule_) {
    const Node& n = graph_->node(id);
    if (!n.op->source) {
      kernel_nodes.push_back(id);
      continue;
    }
    s += fmt::format("  {:>4}  %{:<5} {:<14} {:<22} {}\n", line++, id, n.op->name, format_types(n.outputs),
                     buffer({id, 0}));
  }
  std::size_t next_kernel = 0;
  for (const Step& step : steps_) {
    const Node& n = *step.context.node;
    // A transfer shows the value it moves (%3, or %3.1 for a second output) in the id column.
    auto moved = [&] {
      if (n.inputs.empty()) return std::string("-");
      const ValueRef v = n.inputs[0];
      return v.output == 0 ? fmt::format("%{}", v.node) : fmt::format("%{}.{}", v.node, v.output);
    };
    if (n.op == &ops::to_device) {
      s += fmt::format("  {:>4}  {:<6} {:<14} {:<22} staging @ {} -> {}\n", line++, moved(), n.op->name,
                       format_types(n.outputs), step.context.in(0).data - staging_block_.get(), buffer(n.inputs[0]));
    } else if (n.op == &ops::to_host) {
      const std::string from =
          n.inputs.empty() ? fmt::format("verdicts @ {}", step.context.in(0).data - arena_.get()) : buffer(n.inputs[0]);
      s += fmt::format("  {:>4}  {:<6} {:<14} {:<22} {} -> staging @ {}\n", line++, moved(), n.op->name,
                       format_types(n.outputs), from, step.context.out().data - staging_block_.get());
    } else {
      const std::uint32_t id = kernel_nodes[next_kernel++];
      s += fmt::format("  {:>4}  %{:<5} {:<14} {:<22} {}{}\n", line++, id, n.op->name, format_types(n.outputs),
                       buffer({id, 0}), step.verdict_message ? "  (checks: verdict after the run)" : "");
    }
  }
  if (staged_) s += staging_.to_string(*graph_);
  return s;
}

}  // namespace fovea
