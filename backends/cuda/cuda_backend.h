// The CUDA backend: device memory, one stream, cuBLAS, and a kernel for every op the CPU
// backend runs (same ops, dtypes and attributes; same results up to summation order).
//
//   auto gpu = fovea::cuda();                     // device 0; throws fovea::Error without a GPU
//   auto train = fovea::compile(g, {loss}, gpu, {.updates = step.updates});
//   train.run(feeds);                             // feeds in, outputs out: copied over PCIe
//   train.pull_state();                           // trained weights back into the graph
//
// Everything a run does happens on the backend's one stream, in order: the to_device steps copy
// the feeds from page-locked host staging into the arena, the kernels run, the to_host steps
// copy the outputs (and the verdicts of the checks) back into staging, and run() waits for the
// stream once, at the end (runtime/executable.h). Parameters, state and constants get one
// device copy each, made on first use and shared by every executable on this backend (see
// Backend::persistent_copy).
//
// Kernels are plain functions of a KernelContext, which names no backend: a kernel finds its
// backend from the memory it touches, since every device buffer and every staging block is
// allocated by one backend and recorded (CudaBackend::of). One backend runs one executable at
// a time.
//
// No kernel waits for the stream mid-run. The checks that must fail a run (gather's and
// scatter_add's indices, integer division's divisors) record the first failing position into
// the step's Verdict on the device, the data kernel skips the bad data, and the executable
// raises the CPU's error after the run (backends/backend.h). So every step can be recorded:
// with CompileOptions::capture_graph the whole step (verdicts' reset, transfers, kernels) is
// recorded once into a CUDA Graph (stream capture on the backend's stream, thread-local mode)
// and each later run is one cudaGraphLaunch. cuBLAS gets a workspace of the backend's own,
// since one it allocated by itself could not be part of a recording.
//
// This header is plain C++ (no CUDA headers): CUDA handles are kept as void*.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fovea/backends/backend.h"
#include "fovea/backends/device_copies.h"

namespace fovea {

class CudaBackend final : public Backend {
 public:
  // Use fovea::cuda(device) instead: it hands out one backend per device for the process.
  explicit CudaBackend(int device);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string_view name() const override { return "cuda"; }
  Device device() const override { return Device::cuda; }
  const KernelRegistry& kernels() const override { return kernels_; }
  // The GPU kernels use no host threads; the interface asks for a pool, so this is the default one.
  ThreadPool& pool() override { return default_thread_pool(); }

  std::shared_ptr<std::byte[]> allocate(std::size_t bytes) override;
  // Page-locked host memory (cudaMallocHost), freed with cudaFreeHost.
  std::shared_ptr<std::byte[]> allocate_host_staging(std::size_t bytes) override;
  void copy_from_host(std::byte* dst, const std::byte* src, std::size_t bytes) override;
  void copy_to_host(std::byte* dst, const std::byte* src, std::size_t bytes) override;
  // One cudaMemsetAsync on the stream.
  void clear_verdicts(Verdict* verdicts, std::size_t count) override;
  void synchronize() override;

  bool uses_host_memory() const override { return false; }
  std::byte* persistent_copy(const Tensor& host) override;
  void pull(const Tensor& host) override;
  void push(const Tensor& host) override;

  bool supports_capture() const override { return true; }
  bool can_capture(std::string_view op, DType dtype, std::string& reason) const override;
  bool begin_capture(std::string& reason) override;
  std::unique_ptr<RecordedRun> end_capture(std::string& reason) override;
  void discard_capture() override;
  // Whether launches on the stream are being recorded rather than run.
  bool capturing() const { return capturing_; }

  // The CUDA device number this backend runs on.
  int ordinal() const { return ordinal_; }

  // Whether f32 matmuls may use TF32 tensor cores (products with 10-bit mantissas: about 1e-3
  // relative error, several times faster). Off by default, so that f32 means f32.
  void set_allow_tf32(bool allow);
  bool allow_tf32() const { return allow_tf32_; }

  // --- For the kernels (backends/cuda/*_kernels.cpp) -----------------------------------------
  // The backend owning the memory of ctx's first non-empty output (or input, when every output
  // is empty), made the current device.
  static CudaBackend& of(const KernelContext& ctx);
  void* stream() const { return stream_; }  // cudaStream_t
  void* blas() const { return blas_; }      // cublasHandle_t
  // Device scratch of at least `bytes`, valid until the next call. Work on the stream runs in
  // order, so each kernel may reuse it; growing it waits for the stream first (and so fails
  // while recording; a recording keeps the buffer it was made with alive).
  void* workspace(std::size_t bytes);

 private:
  void make_current() const;

  int ordinal_;
  void* stream_ = nullptr;
  void* blas_ = nullptr;
  bool allow_tf32_ = false;
  bool capturing_ = false;
  std::shared_ptr<std::byte[]> blas_workspace_;
  KernelRegistry kernels_;
  std::shared_ptr<std::byte[]> workspace_;
  std::size_t workspace_bytes_ = 0;
  DeviceCopies persistent_{*this};
};

}  // namespace fovea
