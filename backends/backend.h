// The Backend interface: what a device must provide to run a compiled graph.
//
// Backends are dumb and fast (docs/architecture.md, decision 10): they allocate, copy and run kernels
// looked up by (op definition, dtype). Which kernels run in what order, and where every value lives
// inside one arena, is decided once, above them, by the runtime.
//
// A device backend (uses_host_memory() false) also serves two kernels the runtime inserts
// into every schedule it compiles for it, to_device and to_host (ops/transfer.h): the copies
// between the host staging buffers (allocate_host_staging) and the arena. And a kernel that
// checks data on a device it cannot wait for mid-run (gather's indices on a GPU) defers its
// verdict to the end of the run: see Verdict.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fovea/core/cpu_features.h"
#include "fovea/core/graph.h"
#include "fovea/core/thread_pool.h"

namespace fovea {

// A kernel's view of one input or output: a pointer into the arena (or a parameter's buffer)
// and its type.
struct TensorArg {
  std::byte* data = nullptr;
  TensorType type;

  template <typename T>
  T* as() const {
    return reinterpret_cast<T*>(data);
  }
  std::int64_t numel() const { return type.shape.numel(); }
  const Shape& shape() const { return type.shape; }
};

// The outcome of one deferred check, in the backend's memory: two 8-byte words that the
// executable sets to all ones before every run and copies back after it, with the outputs.
//
// A kernel that checks its data on a device without waiting for the answer (so that the step
// can be recorded and replayed as one launch) lowers `position` to the first failing position
// it finds and may leave in `detail` what it found there (the bad index); its data kernel must
// then be safe with the bad data (skip the index, define x / 0 as 0) so that the run can
// finish. After the run, the executable raises fovea::Error for the first step, in schedule
// order, whose verdict failed, with the message the kernel's registration gives (see
// VerdictMessage): the same error, naming the same node and line, as an immediate check.
struct Verdict {
  static constexpr std::uint64_t all_clear = ~std::uint64_t{0};
  std::uint64_t position = all_clear;  // the first failing position, or all_clear
  std::uint64_t detail = all_clear;    // what the kernel found there, in its own encoding
  bool failed() const { return position != all_clear; }
};

// What a kernel is given for one step. Its attributes come decoded (OpDef::decode, core/op.h):
// a kernel reads params<P>(), never the node's attribute list, so nothing is parsed per run.
struct KernelContext {
  const Node* node = nullptr;  // the name to report errors with
  std::span<const TensorArg> inputs;
  std::span<const TensorArg> outputs;
  ThreadPool* pool = nullptr;
  // This step's verdict, in the backend's memory, for kernels registered with a
  // VerdictMessage; nullptr for all others.
  Verdict* verdict = nullptr;
  // The node's attributes as its op's decode made them; nullptr for ops without a decoder.
  const DecodedParams* decoded = nullptr;

  const TensorArg& in(std::size_t i) const { return inputs[i]; }
  const TensorArg& out(std::size_t i = 0) const { return outputs[i]; }
  // The decoded attributes; P must be the struct the op's OpDef::decode names.
  template <typename P>
  const P& params() const {
    assert(dynamic_cast<const Decoded<P>*>(decoded) != nullptr && "params<P>() of the wrong type");
    return static_cast<const Decoded<P>*>(decoded)->value;
  }
  // For data-dependent errors (an index out of range): names the node and the user's line.
  [[noreturn]] void fail(const std::string& message) const { node->fail(message); }
};

using Kernel = void (*)(const KernelContext&);
// The error message for a failed verdict of a kernel that defers its checks, in the words an
// immediate check would use ("index 7 at position [1,0] of indices i32[2,4] is out of range
// ..."). Called after the run, with the step's context: its types and attributes are valid,
// the data its pointers point at is not.
using VerdictMessage = std::string (*)(const KernelContext& ctx, const Verdict& verdict);

// Kernels keyed by the op's definition (its OpDef, by address: one per op for the process) and
// a dtype: that of the op's first input, or of its output for ops with no inputs or with
// OpDef::key_on_output (see kernel_dtype). A kernel registered with a VerdictMessage defers its
// checks: each of its steps gets a Verdict (KernelContext::verdict).
class KernelRegistry {
 public:
  void add(const OpDef& op, DType dtype, Kernel kernel, VerdictMessage verdict_message = nullptr);
  Kernel find(const OpDef& op, DType dtype) const;  // nullptr when absent
  // The message of a kernel that defers its checks; nullptr for every other kernel.
  VerdictMessage verdict_message(const OpDef& op, DType dtype) const;
  std::size_t size() const { return kernels_.size(); }
  // Every (op, dtype) registered, by op name then dtype: for comparing backends, or wrapping
  // one's kernels.
  std::vector<std::pair<const OpDef*, DType>> keys() const;

 private:
  struct Entry {
    Kernel kernel = nullptr;
    VerdictMessage verdict_message = nullptr;
  };
  using Key = std::pair<const OpDef*, DType>;
  // Orders by name then dtype, so that keys() does not depend on where the OpDefs were placed.
  struct ByName {
    bool operator()(const Key& a, const Key& b) const {
      if (a.first->name != b.first->name) return a.first->name < b.first->name;
      if (a.first != b.first) return a.first < b.first;  // two ops of one name: still distinct
      return a.second < b.second;
    }
  };
  const Entry* entry(const OpDef& op, DType dtype) const;
  std::map<Key, Entry, ByName> kernels_;
};

// The dtype a node's kernel is looked up with.
DType kernel_dtype(const Graph& graph, const Node& node);

// A run's kernel launches, recorded once and launched again as a whole (on the CUDA backend,
// an instantiated CUDA Graph). See Backend::begin_capture. It keeps alive whatever its launches
// point at besides the executable's own buffers (the backend's scratch, say).
class RecordedRun {
 public:
  virtual ~RecordedRun() = default;
  // Launches the recorded work again, on the same buffers, in order after what was launched
  // before. Returns false, launching nothing, when something the recording depends on has
  // changed since it was made (then `reason` says what, and the run must be recorded again).
  virtual bool replay(std::string& reason) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual Device device() const = 0;
  virtual const KernelRegistry& kernels() const = 0;
  virtual ThreadPool& pool() = 0;

  // Device memory for an arena or a persistent buffer, 64-byte aligned.
  virtual std::shared_ptr<std::byte[]> allocate(std::size_t bytes) = 0;
  // Host memory that this backend's to_device and to_host kernels copy from and into, 64-byte
  // aligned: page-locked on the CUDA backend (so copies run asynchronously and can be recorded),
  // plain host memory by default. The executable plans one block at compile time.
  virtual std::shared_ptr<std::byte[]> allocate_host_staging(std::size_t bytes) { return allocate_aligned(bytes); }
  // Copies between host memory and this backend's memory, outside any run (persistent copies,
  // and the CPU's feeds and outputs); copy_to_host returns once the bytes have arrived.
  virtual void copy_from_host(std::byte* dst, const std::byte* src, std::size_t bytes) = 0;
  virtual void copy_to_host(std::byte* dst, const std::byte* src, std::size_t bytes) = 0;
  // Sets `count` verdicts in this backend's memory to all clear, in order with the kernels
  // (and recorded with them). The default writes host memory; a device backend that registers
  // kernels with a VerdictMessage overrides it.
  virtual void clear_verdicts(Verdict* verdicts, std::size_t count);
  // Waits until all launched work has finished.
  virtual void synchronize() {}

  // --- Persistent buffers ------------------------------------------------------------------
  // Parameters, state and constants live in host Tensors owned by the graph. A backend whose
  // kernels read host memory (the CPU) uses them in place. A device backend keeps one device
  // copy per host buffer, made on first use and shared by every executable on it, so that a
  // training step and an evaluation see the same weights. A device backend must also register
  // to_device and to_host kernels (ops/transfer.h) for every dtype: out ← in, bytes copied
  // between host staging and its memory, in order with its other kernels.
  virtual bool uses_host_memory() const { return true; }
  // The backend's copy of `host` (the host buffer itself on the CPU).
  virtual std::byte* persistent_copy(const Tensor& host) { return const_cast<std::byte*>(host.raw()); }
  // Copies the device copy back into `host` (after training), or `host` into the device copy
  // (after loading a checkpoint). No-ops on the CPU.
  virtual void pull(const Tensor& host) { (void)host; }
  virtual void push(const Tensor& host) { (void)host; }

  // --- Recording a run (CompileOptions::capture_graph) ---------------------------------------
  // A backend that can record the kernel launches of a run and replay them with one call says
  // so here; the defaults record nothing. Between begin_capture() and end_capture() kernels,
  // transfers and clear_verdicts() are recorded, not run, so nothing may wait for the device or
  // read a result back.
  virtual bool supports_capture() const { return false; }
  // Whether the kernel of `op` for `dtype` may be recorded; if not, `reason` says why (it would
  // wait for the device mid-run, say: a check that must stop the run defers its verdict
  // instead, see Verdict). Asked at compile time for every step of an executable, the
  // transfers included.
  virtual bool can_capture(std::string_view op, DType dtype, std::string& reason) const {
    (void)op, (void)dtype;
    reason = std::string("the ") + std::string(name()) + " backend cannot record runs";
    return false;
  }
  // Starts recording the launches made from this thread; false, with `reason`, if it cannot.
  virtual bool begin_capture(std::string& reason) {
    reason = std::string("the ") + std::string(name()) + " backend cannot record runs";
    return false;
  }
  // Stops recording and returns what was recorded, ready to replay; nullptr, with `reason`, when
  // the recording failed (nothing is kept then).
  virtual std::unique_ptr<RecordedRun> end_capture(std::string& reason) {
    reason = "no recording was in progress";
    return nullptr;
  }
  // Abandons a recording begun by begin_capture() (after a kernel threw while being recorded).
  virtual void discard_capture() {}
};

// The CPU backend: OpenBLAS for matmul, the engine's own kernels on the default thread pool,
// compiled for the instruction set active_isa() chooses (core/cpu_features.h).
std::shared_ptr<Backend> cpu();

struct CpuOptions {
  // The instruction set whose kernels run; unset: active_isa() (FOVEA_ISA, or the CPU's best).
  std::optional<Isa> isa = std::nullopt;
  // Whether a fused_elementwise node whose program is one of the backend's compiled programs
  // (backends/cpu/compiled_programs.h: GELU and dropout as the nn layers fuse them) runs that
  // loop; false: every program is interpreted. Both give the same bits; the tests compare them.
  bool compiled_programs = true;
};
// The CPU backend with the kernels of `options`: one per Isa and setting for the process, all on
// the default thread pool. Throws fovea::Error when this CPU cannot run that Isa.
std::shared_ptr<Backend> cpu(const CpuOptions& options);

// Whether this build includes the CUDA backend and a GPU is visible; `reason` says why not.
bool cuda_available(std::string* reason = nullptr);

// The CUDA backend on GPU `device` (backends/cuda/cuda_backend.h), one per device for the
// process; throws fovea::Error saying why when there is none (cuda_available's reason).
std::shared_ptr<Backend> cuda(int device = 0);

}  // namespace fovea
