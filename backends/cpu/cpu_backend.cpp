// The CPU backend: host memory, the default thread pool, and the kernel families.
#include <cstring>

#include "fovea/backends/cpu/kernels.h"

namespace fovea {

namespace {

class CpuBackend final : public Backend {
 public:
  CpuBackend() : pool_(default_thread_pool()) {
    // OpenBLAS on one thread: matmul spreads its calls over the pool (matmul_kernels.cpp).
    cpu_backend::set_blas_threads(1);
    cpu_backend::register_elementwise_kernels(kernels_);
    cpu_backend::register_reduce_kernels(kernels_);
    cpu_backend::register_matmul_kernels(kernels_);
    cpu_backend::register_shape_kernels(kernels_);
    cpu_backend::register_indexing_kernels(kernels_);
    cpu_backend::register_creation_kernels(kernels_);
    cpu_backend::register_state_kernels(kernels_);
    cpu_backend::register_attention_kernels(kernels_);
    cpu_backend::register_normalization_kernels(kernels_);
    cpu_backend::register_fused_elementwise_kernels(kernels_);
    cpu_backend::register_convolution_kernels(kernels_);
    cpu_backend::register_pooling_kernels(kernels_);
  }

  std::string_view name() const override { return "cpu"; }
  Device device() const override { return Device::cpu; }
  const KernelRegistry& kernels() const override { return kernels_; }
  ThreadPool& pool() override { return pool_; }
  std::shared_ptr<std::byte[]> allocate(std::size_t bytes) override { return allocate_aligned(bytes); }
  void copy_from_host(std::byte* dst, const std::byte* src, std::size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void copy_to_host(std::byte* dst, const std::byte* src, std::size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
  }

 private:
  ThreadPool& pool_;
  KernelRegistry kernels_;
};

}  // namespace

std::shared_ptr<Backend> cpu() {
  static std::shared_ptr<Backend> backend = std::make_shared<CpuBackend>();
  return backend;
}

}  // namespace fovea
