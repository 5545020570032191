// CUDA kernels of the collective ops (ops/collective.h): backends/collectives.h does the work,
// given device memory. With a device communicator (NCCL) the exchange is ordered on the
// backend's stream like any kernel. With a host communicator (MPI) the data is staged through
// host memory: the stream is waited for, the input copied out, the collective run on the host,
// and the output copied back; an all_reduce_start then runs to completion at once, so nothing
// overlaps, but the step computes the same values.
#include <vector>

#include "fovea/backends/collectives.h"
#include "fovea/backends/cuda/kernels.h"
#include "fovea/ops/collective.h"

namespace fovea::cuda_backend {

namespace {

void device_copy_rows(void* target, std::size_t target_pitch, const void* source, std::size_t source_pitch,
                      std::size_t row_bytes, std::size_t rows, void* stream) {
  if (row_bytes == 0 || rows == 0) return;
  const cudaError_t status = cudaMemcpy2DAsync(target, target_pitch, source, source_pitch, row_bytes, rows,
                                               cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(stream));
  if (status != cudaSuccess) throw Error(fmt::format("CUDA: cudaMemcpy2DAsync failed: {}", cudaGetErrorString(status)));
}

void device_zero(void* data, std::size_t bytes, void* stream) {
  if (bytes == 0) return;
  const cudaError_t status = cudaMemsetAsync(data, 0, bytes, static_cast<cudaStream_t>(stream));
  if (status != cudaSuccess) throw Error(fmt::format("CUDA: cudaMemsetAsync failed: {}", cudaGetErrorString(status)));
}

// The node run on host copies of its input and output.
void staged(const KernelContext& ctx, CudaBackend& gpu, Communicator& communicator) {
  const TensorArg &in = ctx.in(0), &out = ctx.out();
  if (ctx.node->op == &ops::all_reduce_wait) {  // its start has finished: the bytes are there
    copy_on_device(ctx, gpu, out.data, in.data, out.type.nbytes());
    return;
  }
  const auto stream = static_cast<cudaStream_t>(gpu.stream());
  std::vector<std::byte> host_in(in.type.nbytes()), host_out(out.type.nbytes());
  check(ctx, cudaMemcpyAsync(host_in.data(), in.data, host_in.size(), cudaMemcpyDeviceToHost, stream),
        "copying a collective's input to the host");
  check(ctx, cudaStreamSynchronize(stream), "waiting for a collective's input");
  const TensorArg host_inputs[] = {{host_in.data(), in.type}};
  const TensorArg host_outputs[] = {{host_out.data(), out.type}};
  KernelContext host = ctx;
  host.inputs = host_inputs;
  host.outputs = host_outputs;
  if (ctx.node->op == &ops::all_reduce_start) {
    std::copy(host_in.begin(), host_in.end(), host_out.begin());
    const CollectiveParams& p = ctx.params<CollectiveParams>();
    communicator.all_reduce(host_out.data(), out.numel(), out.type.dtype, p.reduction);
    remember_finished_all_reduce(out.data);
  } else {
    run_collective(host, host_collective_memory());
  }
  check(ctx, cudaMemcpyAsync(out.data, host_out.data(), host_out.size(), cudaMemcpyHostToDevice, stream),
        "copying a collective's output to the device");
  check(ctx, cudaStreamSynchronize(stream), "waiting for a collective's output");
}

void collective_kernel(const KernelContext& ctx) {
  CudaBackend& gpu = CudaBackend::of(ctx);
  Communicator& communicator = *ctx.params<CollectiveParams>().communicator;
  if (!communicator.uses_device_memory()) return staged(ctx, gpu, communicator);
  CollectiveMemory memory{&device_copy_rows, &device_zero, [&gpu](std::size_t bytes) { return gpu.workspace(bytes); },
                          gpu.stream()};
  run_collective(ctx, memory);
}

}  // namespace

void register_collective_kernels(KernelRegistry& registry) {
  fovea::register_collective_kernels(registry, &collective_kernel);
}

}  // namespace fovea::cuda_backend
