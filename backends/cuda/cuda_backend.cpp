// The CUDA backend's memory, stream, cuBLAS handle and persistent copies (cuda_backend.h).
#include "fovea/backends/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <iterator>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "fovea/backends/cuda/kernels.h"

namespace fovea {

namespace {

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// Throws fovea::Error when a CUDA runtime call failed.
void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw Error(fmt::format("CUDA: {} failed: {}", what, cudaGetErrorString(status)));
}

void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw Error(fmt::format("cuBLAS: {} failed: {}", what, cublasGetStatusString(status)));
}

// Every device buffer the backends hand out, by address: how a kernel, which is told nothing
// but pointers, finds the backend (and so the stream) that owns its memory. It is never
// destroyed, so that buffers freed during the process's exit still find it.
class Regions {
 public:
  static Regions& instance() {
    static Regions* regions = new Regions;
    return *regions;
  }
  void add(const std::byte* begin, std::size_t bytes, CudaBackend* owner) {
    const std::lock_guard lock(mutex_);
    regions_[begin] = {begin + bytes, owner};
  }
  void remove(const std::byte* begin) {
    const std::lock_guard lock(mutex_);
    regions_.erase(begin);
  }
  CudaBackend* owner(const std::byte* p) {
    const std::lock_guard lock(mutex_);
    auto it = regions_.upper_bound(p);
    if (it == regions_.begin()) return nullptr;
    --it;
    return p < it->second.end ? it->second.owner : nullptr;
  }

 private:
  struct Region {
    const std::byte* end;
    CudaBackend* owner;
  };
  std::mutex mutex_;
  std::map<const std::byte*, Region> regions_;
};

// cuBLAS's recommended workspace: 32 MiB on Hopper (compute capability 9) and later, 4 MiB before.
std::size_t blas_workspace_bytes(int device) {
  int major = 0;
  check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "cudaDeviceGetAttribute");
  return (major >= 9 ? 32u : 4u) << 20;
}

// A recorded run: an instantiated CUDA Graph, with the scratch its launches point at (the
// arena and the persistent copies are kept alive by the executable that owns this).
class CudaGraphRun final : public RecordedRun {
 public:
  CudaGraphRun(CudaBackend& backend, cudaGraphExec_t graph, std::shared_ptr<std::byte[]> workspace)
      : backend_(backend), graph_(graph), workspace_(std::move(workspace)), allow_tf32_(backend.allow_tf32()) {}
  ~CudaGraphRun() override { cudaGraphExecDestroy(graph_); }  // an error here cannot be reported
  CudaGraphRun(const CudaGraphRun&) = delete;
  CudaGraphRun& operator=(const CudaGraphRun&) = delete;

  bool replay(std::string& reason) override {
    // The recorded gemms are the kernels cuBLAS chose under the math mode of the time.
    if (backend_.allow_tf32() != allow_tf32_) {
      reason = fmt::format("TF32 was {} since the recording", allow_tf32_ ? "disallowed" : "allowed");
      return false;
    }
    check(cudaSetDevice(backend_.ordinal()), "cudaSetDevice");
    check(cudaGraphLaunch(graph_, as_stream(backend_.stream())), "launching the recorded step (cudaGraphLaunch)");
    return true;
  }

 private:
  CudaBackend& backend_;
  cudaGraphExec_t graph_;
  std::shared_ptr<std::byte[]> workspace_;
  bool allow_tf32_;
};

}  // namespace

CudaBackend::CudaBackend(int device) : ordinal_(device) {
  make_current();
  cudaStream_t stream = nullptr;
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  stream_ = stream;
  cublasHandle_t handle = nullptr;
  check(cublasCreate(&handle), "cublasCreate");
  blas_ = handle;
  check(cublasSetStream(handle, stream), "cublasSetStream");
  // After cublasSetStream, which resets it to cuBLAS's own (see the header).
  const std::size_t blas_bytes = blas_workspace_bytes(device);
  blas_workspace_ = allocate(blas_bytes);
  check(cublasSetWorkspace(handle, blas_workspace_.get(), blas_bytes), "cublasSetWorkspace");
  set_allow_tf32(false);
  cuda_backend::register_elementwise_kernels(kernels_);
  cuda_backend::register_reduce_kernels(kernels_);
  cuda_backend::register_matmul_kernels(kernels_);
  cuda_backend::register_shape_kernels(kernels_);
  cuda_backend::register_indexing_kernels(kernels_);
  cuda_backend::register_creation_kernels(kernels_);
  cuda_backend::register_state_kernels(kernels_);
  cuda_backend::register_collective_kernels(kernels_);
  cuda_backend::register_attention_kernels(kernels_);
  cuda_backend::register_normalization_kernels(kernels_);
  cuda_backend::register_transfer_kernels(kernels_);
  cuda_backend::register_convolution_kernels(kernels_);
}

CudaBackend::~CudaBackend() {
  // Errors are ignored: there is nobody to report them to.
  cudaSetDevice(ordinal_);
  cudaStreamSynchronize(as_stream(stream_));
  persistent_.clear();
  workspace_.reset();
  cublasDestroy(static_cast<cublasHandle_t>(blas_));
  blas_workspace_.reset();
  cudaStreamDestroy(as_stream(stream_));
}

void CudaBackend::make_current() const {
  int current = -1;
  check(cudaGetDevice(&current), "cudaGetDevice");
  if (current != ordinal_) check(cudaSetDevice(ordinal_), "cudaSetDevice");
}

std::shared_ptr<std::byte[]> CudaBackend::allocate(std::size_t bytes) {
  make_current();
  // At least one byte, so that every buffer has an address of its own in the region map.
  // cudaMalloc aligns to 256 bytes, more than the 64 the interface promises.
  void* p = nullptr;
  check(cudaMalloc(&p, bytes == 0 ? 1 : bytes), "cudaMalloc");
  auto* begin = static_cast<std::byte*>(p);
  Regions::instance().add(begin, bytes == 0 ? 1 : bytes, this);
  return std::shared_ptr<std::byte[]>(begin, [](std::byte* q) {
    Regions::instance().remove(q);
    cudaFree(q);  // an error here (the runtime already unloaded at exit) cannot be reported
  });
}

std::shared_ptr<std::byte[]> CudaBackend::allocate_host_staging(std::size_t bytes) {
  make_current();
  // Page-aligned, and registered like device memory, so that a to_host kernel, whose output is
  // staging, finds its backend (of()).
  void* p = nullptr;
  check(cudaMallocHost(&p, bytes == 0 ? 1 : bytes), "cudaMallocHost");
  auto* begin = static_cast<std::byte*>(p);
  Regions::instance().add(begin, bytes == 0 ? 1 : bytes, this);
  return std::shared_ptr<std::byte[]>(begin, [](std::byte* q) {
    Regions::instance().remove(q);
    cudaFreeHost(q);  // as in allocate(): an error here cannot be reported
  });
}

void CudaBackend::clear_verdicts(Verdict* verdicts, std::size_t count) {
  if (count == 0) return;
  make_current();
  check(cudaMemsetAsync(verdicts, 0xFF, count * sizeof(Verdict), as_stream(stream_)),
        "cudaMemsetAsync (resetting the verdicts)");
}

void CudaBackend::copy_from_host(std::byte* dst, const std::byte* src, std::size_t bytes) {
  if (bytes == 0) return;
  make_current();
  // From pageable memory this returns once `src` has been staged: the caller may free it.
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, as_stream(stream_)), "cudaMemcpyAsync to the device");
}

void CudaBackend::copy_to_host(std::byte* dst, const std::byte* src, std::size_t bytes) {
  if (bytes == 0) return;
  make_current();
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, as_stream(stream_)), "cudaMemcpyAsync to the host");
  synchronize();
}

void CudaBackend::synchronize() {
  if (capturing_)
    throw Error("CUDA: a kernel waited for the GPU while its launches were being recorded into a CUDA Graph");
  make_current();
  check(cudaStreamSynchronize(as_stream(stream_)), "running the kernels (cudaStreamSynchronize)");
}

std::byte* CudaBackend::persistent_copy(const Tensor& host) { return persistent_.copy_of(host); }
void CudaBackend::pull(const Tensor& host) { persistent_.pull(host); }
void CudaBackend::push(const Tensor& host) { persistent_.push(host); }

void CudaBackend::set_allow_tf32(bool allow) {
  make_current();
  check(cublasSetMathMode(static_cast<cublasHandle_t>(blas_), allow ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
        "cublasSetMathMode");
  allow_tf32_ = allow;
}

CudaBackend& CudaBackend::of(const KernelContext& ctx) {
  const TensorArg* memory = nullptr;
  for (auto args : {ctx.outputs, ctx.inputs})
    for (const TensorArg& arg : args)
      if (!memory && arg.numel() > 0) memory = &arg;
  CudaBackend* owner = memory ? Regions::instance().owner(memory->data) : nullptr;
  if (!owner) ctx.fail("internal error: a CUDA kernel's operands are not in memory allocated by a CUDA backend");
  owner->make_current();
  return *owner;
}

void* CudaBackend::workspace(std::size_t bytes) {
  if (bytes > workspace_bytes_) {
    synchronize();  // kernels still running may use the old one
    workspace_.reset();
    workspace_ = allocate(bytes);
    workspace_bytes_ = bytes;
  }
  return workspace_.get();
}

bool CudaBackend::can_capture(std::string_view op, DType, std::string& reason) const {
  // Every kernel of this backend can be recorded but the collectives': none other waits for
  // the stream mid-run, while a collective's communicator is called from the host at every run
  // (and may stage its data through host memory).
  for (std::string_view collective : {"all_reduce", "broadcast_from", "reduce_to", "all_gather", "reduce_scatter",
                                      "all_reduce_start", "all_reduce_wait"})
    if (op == collective) {
      reason = fmt::format("{} calls its communicator from the host at every run", op);
      return false;
    }
  return true;
}

bool CudaBackend::begin_capture(std::string& reason) {
  make_current();
  const cudaError_t status = cudaStreamBeginCapture(as_stream(stream_), cudaStreamCaptureModeThreadLocal);
  if (status != cudaSuccess) {
    cudaGetLastError();  // not sticky: clear it, so later calls do not report it
    reason = fmt::format("cudaStreamBeginCapture failed: {}", cudaGetErrorString(status));
    return false;
  }
  capturing_ = true;
  return true;
}

std::unique_ptr<RecordedRun> CudaBackend::end_capture(std::string& reason) {
  if (!capturing_) {
    reason = "no recording was in progress";
    return nullptr;
  }
  capturing_ = false;
  make_current();
  cudaGraph_t graph = nullptr;
  cudaError_t status = cudaStreamEndCapture(as_stream(stream_), &graph);
  if (status != cudaSuccess || graph == nullptr) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    reason = fmt::format("cudaStreamEndCapture failed: {}", cudaGetErrorString(status));
    return nullptr;
  }
  cudaGraphExec_t exec = nullptr;
  status = cudaGraphInstantiateWithFlags(&exec, graph, 0);
  cudaGraphDestroy(graph);  // the instantiated graph does not need it
  if (status != cudaSuccess) {
    cudaGetLastError();
    reason = fmt::format("cudaGraphInstantiate failed: {}", cudaGetErrorString(status));
    return nullptr;
  }
  return std::make_unique<CudaGraphRun>(*this, exec, workspace_);
}

void CudaBackend::discard_capture() {
  if (!capturing_) return;
  capturing_ = false;
  make_current();
  cudaGraph_t graph = nullptr;
  cudaStreamEndCapture(as_stream(stream_), &graph);  // fails if the capture was invalidated: fine
  if (graph) cudaGraphDestroy(graph);
  cudaGetLastError();
}

std::shared_ptr<Backend> cuda(int device) {
  std::string reason;
  if (!cuda_available(&reason)) throw Error("fovea::cuda(): no CUDA backend: " + reason);
  int count = 0;
  check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (device < 0 || device >= count)
    throw Error(fmt::format("fovea::cuda({}): no such device ({} CUDA device{} visible)", device, count,
                            count == 1 ? " is" : "s are"));
  // One backend per device for the whole process, never destroyed: buffers freed at exit
  // still find it, and no CUDA call runs after the runtime has shut down.
  static std::mutex mutex;
  static auto* backends = new std::vector<std::shared_ptr<Backend>>();
  const std::lock_guard lock(mutex);
  if (backends->size() < static_cast<std::size_t>(count)) backends->resize(static_cast<std::size_t>(count));
  auto& backend = (*backends)[static_cast<std::size_t>(device)];
  if (!backend) backend = std::make_shared<CudaBackend>(device);
  return backend;
}

}  // namespace fovea
