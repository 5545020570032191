// The Backend interface: what a device must provide to run a compiled graph.
//
// Backends are dumb and fast (DESIGN.md, decision 10): they allocate, copy and run kernels
// looked up by (op name, dtype). Which kernels run in what order, and where every value lives
// inside one arena, is decided once, above them, by the runtime.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "fovea/core/graph.h"
#include "fovea/runtime/thread_pool.h"

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

struct KernelContext {
  const Node* node = nullptr;  // attributes, and the name to report errors with
  std::span<const TensorArg> inputs;
  std::span<const TensorArg> outputs;
  ThreadPool* pool = nullptr;

  const TensorArg& in(std::size_t i) const { return inputs[i]; }
  const TensorArg& out(std::size_t i = 0) const { return outputs[i]; }
  const Attributes& attrs() const { return node->attrs; }
  // For data-dependent errors (an index out of range): names the node and the user's line.
  [[noreturn]] void fail(const std::string& message) const { node->fail(message); }
};

using Kernel = void (*)(const KernelContext&);

// Kernels keyed by op name and a dtype: that of the op's first input, or of its output for
// ops with no inputs or with OpDef::key_on_output (see kernel_dtype).
class KernelRegistry {
 public:
  void add(std::string_view op, DType dtype, Kernel kernel);
  Kernel find(std::string_view op, DType dtype) const;  // nullptr when absent
  std::size_t size() const { return kernels_.size(); }

 private:
  std::map<std::pair<std::string, DType>, Kernel, std::less<>> kernels_;
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
  // Copies between host memory and this backend's memory.
  virtual void copy_from_host(std::byte* dst, const std::byte* src, std::size_t bytes) = 0;
  virtual void copy_to_host(std::byte* dst, const std::byte* src, std::size_t bytes) = 0;
  // Waits until all launched work has finished.
  virtual void synchronize() {}

  // --- Persistent buffers ------------------------------------------------------------------
  // Parameters, state and constants live in host Tensors owned by the graph. A backend whose
  // kernels read host memory (the CPU) uses them in place. A device backend keeps one device
  // copy per host buffer, made on first use and shared by every executable on it, so that a
  // training step and an evaluation see the same weights.
  virtual bool uses_host_memory() const { return true; }
  // The backend's copy of `host` (the host buffer itself on the CPU).
  virtual std::byte* persistent_copy(const Tensor& host) { return const_cast<std::byte*>(host.raw()); }
  // Copies the device copy back into `host` (after training), or `host` into the device copy
  // (after loading a checkpoint). No-ops on the CPU.
  virtual void pull(const Tensor& host) { (void)host; }
  virtual void push(const Tensor& host) { (void)host; }

  // --- Recording a run (CompileOptions::capture_graph) ---------------------------------------
  // A backend that can record the kernel launches of a run and replay them with one call says
  // so here; the defaults record nothing. Between begin_capture() and end_capture() kernels are
  // recorded, not run, so nothing may wait for the device or read a result back.
  virtual bool supports_capture() const { return false; }
  // Whether the kernel of `op` for `dtype` may be recorded; if not, `reason` says why (it waits
  // for the device mid-run, say). Asked at compile time for every step of an executable.
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

// The CPU backend: OpenBLAS for matmul, the engine's own kernels on the default thread pool.
std::shared_ptr<Backend> cpu();

// Whether this build includes the CUDA backend and a GPU is visible; `reason` says why not.
bool cuda_available(std::string* reason = nullptr);

// The CUDA backend on GPU `device` (backends/cuda/cuda_backend.h), one per device for the
// process; throws fovea::Error saying why when there is none (cuda_available's reason).
std::shared_ptr<Backend> cuda(int device = 0);

}  // namespace fovea
