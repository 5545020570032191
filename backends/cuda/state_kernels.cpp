// CUDA kernels for assign and stop_gradient: device-to-device copies, skipped where the
// planner already made input and output the same bytes.
#include "fovea/backends/cuda/kernels.h"
#include "fovea/ops/state.h"

namespace fovea::cuda_backend {

namespace {

// out ← in
void copy_kernel(const KernelContext& ctx) {
  if (ctx.out().numel() == 0) return;
  copy_on_device(ctx, CudaBackend::of(ctx), ctx.out().data, ctx.in(0).data, ctx.out().type.nbytes());
}

// target ← value: input 1 copied into input 0's persistent buffer (which output 0 also is).
void assign_kernel(const KernelContext& ctx) {
  if (ctx.in(0).numel() == 0) return;
  copy_on_device(ctx, CudaBackend::of(ctx), ctx.in(0).data, ctx.in(1).data, ctx.in(0).type.nbytes());
}

}  // namespace

void register_state_kernels(KernelRegistry& r) {
  for (DType t : {DType::f32, DType::f64, DType::i32, DType::i64, DType::boolean}) {
    r.add(ops::assign, t, &assign_kernel);
    r.add(ops::stop_gradient, t, &copy_kernel);
  }
}

}  // namespace fovea::cuda_backend
