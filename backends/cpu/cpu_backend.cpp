// The CPU backend: host memory, the default thread pool, and the kernel families of one
// instruction set (backends/cpu/isa_kernels.h).
#include <array>
#include <cstring>
#include <mutex>

#include "fovea/backends/collectives.h"
#include "fovea/backends/cpu/isa_kernels.h"

namespace fovea {

namespace {

void register_kernels(Isa isa, bool compiled_programs, KernelRegistry& registry) {
  switch (isa) {
#if defined(FOVEA_ISA_VARIANTS)
    case Isa::avx512:
      cpu_backend::avx512::register_all_kernels(registry, compiled_programs);
      return;
    case Isa::avx2:
      cpu_backend::avx2::register_all_kernels(registry, compiled_programs);
      return;
#endif
    default:
      cpu_backend::portable::register_all_kernels(registry, compiled_programs);
      return;
  }
}

// The collectives exchange host memory as it is.
void collective_kernel(const KernelContext& ctx) { run_collective(ctx, host_collective_memory()); }

class CpuBackend final : public Backend {
 public:
  CpuBackend(Isa isa, bool compiled_programs) : pool_(default_thread_pool()) {
    // OpenBLAS on one thread: matmul spreads its calls over the pool (matmul_kernels.cpp).
    cpu_backend::set_blas_threads(1);
    register_kernels(isa, compiled_programs, kernels_);
    register_collective_kernels(kernels_, &collective_kernel);
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

std::shared_ptr<Backend> cpu(const CpuOptions& options) {
  const Isa isa = options.isa.value_or(active_isa());
  require_isa(isa);
  static std::mutex mutex;
  static std::array<std::array<std::shared_ptr<Backend>, 2>, std::size(kAllIsas)> backends;
  const std::lock_guard lock(mutex);
  std::shared_ptr<Backend>& backend = backends[static_cast<std::size_t>(isa)][options.compiled_programs ? 1 : 0];
  if (!backend) backend = std::make_shared<CpuBackend>(isa, options.compiled_programs);
  return backend;
}

std::shared_ptr<Backend> cpu() {
  static std::shared_ptr<Backend> backend = cpu(CpuOptions{});
  return backend;
}

}  // namespace fovea
