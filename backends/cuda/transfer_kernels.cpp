// CUDA kernels for to_device and to_host (ops/transfer.h): the copies between host staging and
// device memory that compile() puts at both ends of a device schedule.
//
//   to_device:  y ← x,  x in page-locked host staging, y in the arena
//   to_host:    y ← x,  x in the arena (or a persistent copy), y in page-locked host staging
//
// Each is one cudaMemcpyAsync on the backend's stream: in order with the kernels, and, since
// the host side is page-locked (CudaBackend::allocate_host_staging), truly asynchronous and
// recordable into a CUDA Graph. The dtype does not matter: bytes are bytes.
#include "fovea/backends/cuda/kernels.h"

namespace fovea::cuda_backend {

namespace {

void copy_bytes(const KernelContext& ctx, cudaMemcpyKind kind, std::string_view what) {
  const std::size_t bytes = ctx.out().type.nbytes();
  if (bytes == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);  // staging is the backend's memory too
  check(ctx, cudaMemcpyAsync(ctx.out().data, ctx.in(0).data, bytes, kind, static_cast<cudaStream_t>(gpu.stream())),
        what);
}

// y ← x, host to device
void to_device_kernel(const KernelContext& ctx) {
  copy_bytes(ctx, cudaMemcpyHostToDevice, "cudaMemcpyAsync from host staging to the device");
}

// y ← x, device to host
void to_host_kernel(const KernelContext& ctx) {
  copy_bytes(ctx, cudaMemcpyDeviceToHost, "cudaMemcpyAsync from the device to host staging");
}

}  // namespace

void register_transfer_kernels(KernelRegistry& r) {
  for (DType t : {DType::f32, DType::f64, DType::i32, DType::i64, DType::boolean, DType::bf16, DType::f16}) {
    r.add(ops::to_device, t, &to_device_kernel);
    r.add(ops::to_host, t, &to_host_kernel);
  }
}

}  // namespace fovea::cuda_backend
