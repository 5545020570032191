// The CUDA backend: device memory, one stream, cuBLAS, and a kernel for every op the CPU
// backend runs (same ops, dtypes and attributes; same results up to summation order).
//
//   auto gpu = fovea::cuda();                     // device 0; throws fovea::Error without a GPU
//   auto train = fovea::compile(g, {loss}, gpu, {.updates = step.updates});
//   train.run(feeds);                             // feeds in, outputs out: copied over PCIe
//   train.pull_state();                           // trained weights back into the graph
//
// Everything a backend does happens on its one stream, in order: feeds are copied in, kernels
// launched, outputs copied out, and run() returns after the stream has drained. Parameters,
// state and constants get one device copy each, made on first use and shared by every
// executable on this backend (see Backend::persistent_copy).
//
// Kernels are plain functions of a KernelContext, which names no backend: a kernel finds its
// backend from the memory it writes to, since every device buffer is allocated by one backend
// and recorded (CudaBackend::of). One backend runs one executable at a time.
//
// With CompileOptions::capture_graph, an executable's kernel launches are recorded once into a
// CUDA Graph (stream capture on the backend's stream, thread-local mode) and each later run is
// one cudaGraphLaunch. Kernels that wait for the stream mid-run (the index and divisor checks
// that read a verdict back) cannot be recorded: can_capture() names them, and the executable
// runs eagerly. cuBLAS gets a workspace of the backend's own, since one it allocated by itself
// could not be part of a recording.
//
// This header is plain C++ (no CUDA headers): CUDA handles are kept as void*.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "fovea/backends/backend.h"

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
  void copy_from_host(std::byte* dst, const std::byte* src, std::size_t bytes) override;
  void copy_to_host(std::byte* dst, const std::byte* src, std::size_t bytes) override;
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
  // A device word for check kernels, set to ~0 on the stream (see read_failure).
  unsigned long long* reset_failure();
  // Waits for the stream and returns the word as a position, or -1 if still ~0. Not while
  // recording: kernels that call it are refused by can_capture().
  std::int64_t read_failure();

 private:
  void make_current() const;

  struct Persistent {
    Tensor host;  // keeps the host buffer, and so its address, alive while the copy exists
    std::shared_ptr<std::byte[]> copy;
  };

  int ordinal_;
  void* stream_ = nullptr;
  void* blas_ = nullptr;
  bool allow_tf32_ = false;
  bool capturing_ = false;
  std::shared_ptr<std::byte[]> blas_workspace_;
  KernelRegistry kernels_;
  std::shared_ptr<std::byte[]> workspace_;
  std::size_t workspace_bytes_ = 0;
  std::shared_ptr<std::byte[]> failure_;
  std::mutex persistent_mutex_;
  std::map<const std::byte*, Persistent> persistent_;  // by host buffer address
};

}  // namespace fovea
