// CPU kernels for assign and for identity ops whose output the planner may or may not alias
// onto the input (stop_gradient).
#include <cstring>

#include "fovea/backends/cpu/kernels.h"
#include "fovea/ops/state.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

namespace {

// out ← in, unless the planner already made them the same bytes.
void copy_kernel(const KernelContext& ctx) {
  const std::size_t bytes = ctx.out().type.nbytes();
  if (ctx.out().data != ctx.in(0).data && bytes) std::memmove(ctx.out().data, ctx.in(0).data, bytes);
}

// target ← value: input 1 copied into input 0's persistent buffer (which output 0 also is).
void assign_kernel(const KernelContext& ctx) {
  const std::size_t bytes = ctx.in(0).type.nbytes();
  if (ctx.in(0).data != ctx.in(1).data && bytes) std::memmove(ctx.in(0).data, ctx.in(1).data, bytes);
}

}  // namespace

void register_state_kernels(KernelRegistry& registry) {
  for (DType t : {DType::f32, DType::f64, DType::i32, DType::i64, DType::boolean}) {
    registry.add(ops::assign, t, &assign_kernel);
    registry.add(ops::stop_gradient, t, &copy_kernel);
  }
}

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE
