// CUDA kernels for the elementwise ops, host side (the device side is elementwise.cu):
//
//   unary:   y[i] = f(x[i])
//   binary:  y[i] = f(a[i'], b[i''])   with NumPy broadcasting: i', i'' walk a and b with
//                                      stride 0 along their broadcast dims (kernels.h, make_walk)
//
// The same (op, dtype) pairs as the CPU backend, over the same functors (ops/functors.h).
#include "fovea/backends/cuda/kernels.h"
#include "fovea/ops/fused_elementwise.h"

namespace fovea::cuda_backend {

namespace {

template <UnaryOp Op>
void unary_kernel(const KernelContext& ctx) {
  const std::int64_t n = ctx.out().numel();
  if (n == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  check_launch(ctx, launch_unary(Op, element(ctx.in(0).type.dtype), ctx.in(0).data, ctx.out().data, n, gpu.stream()),
               ctx.node->op->name);
}

void launch_binary_on(const KernelContext& ctx, CudaBackend& gpu, BinaryOp op) {
  const TensorArg &a = ctx.in(0), &b = ctx.in(1), &y = ctx.out();
  const Walk<2> walk = make_walk<2>(ctx, y.shape().dims(),
                                    {broadcast_strides(a.shape(), y.shape()), broadcast_strides(b.shape(), y.shape())});
  check_launch(ctx, launch_binary(op, element(a.type.dtype), a.data, b.data, y.data, y.numel(), walk, gpu.stream()),
               ctx.node->op->name);
}

template <BinaryOp Op>
void binary_kernel(const KernelContext& ctx) {
  if (ctx.out().numel() == 0) return;
  launch_binary_on(ctx, CudaBackend::of(ctx), Op);
}

// Integer division (and remainder) by zero is an error, as on the CPU, but one the GPU reports
// after the run (Verdict, in backends/backend.h) instead of waiting for it: every divisor is
// checked on the device, the first zero's position lowers the step's verdict, and the division
// itself gives 0 for it (fn::Div, fn::Mod, fn::Fmod), so the run can finish. Every divisor is
// checked, even when the quotient is empty, as the CPU does.
template <BinaryOp Op>
void checked_integer_div_kernel(const KernelContext& ctx) {
  const TensorArg& b = ctx.in(1);
  if (ctx.out().numel() == 0 && b.numel() == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  check_launch(ctx, launch_find_zero(element(b.type.dtype), b.data, b.numel(), verdict_words(ctx), gpu.stream()),
               fmt::format("{}'s divisor check", ctx.node->op->name));
  if (ctx.out().numel() > 0) launch_binary_on(ctx, gpu, Op);
}

std::string division_by_zero(const KernelContext&, const Verdict&) { return "integer division by zero"; }
std::string modulo_by_zero(const KernelContext&, const Verdict&) { return "integer modulo by zero"; }

// fused_elementwise: the program travels to the device as the kernel's parameter block
// (launch.h, FusedProgram); each input gets a one-operand walk for its broadcast.
void fused_elementwise_kernel(const KernelContext& ctx) {
  const fused::Program& program = ctx.params<FusedElementwiseParams>().program;
  const Shape out(program.shape);
  if (out.numel() == 0) return;
  if (program.inputs > kFusedMaxInputs || static_cast<int>(program.immediates.size()) > kFusedMaxImmediates ||
      static_cast<int>(program.code.size()) > kFusedMaxCode ||
      static_cast<int>(program.outputs.size()) > kFusedMaxOutputs ||
      static_cast<int>(program.randoms.size()) > kFusedMaxRandoms)
    ctx.fail(fmt::format(
        "the program ({} inputs, {} instructions, {} outputs) exceeds the CUDA kernel's limits "
        "({} inputs, {} instructions, {} outputs); lower ElementwiseFusionOptions' limits",
        program.inputs, program.code.size(), program.outputs.size(), kFusedMaxInputs, kFusedMaxCode, kFusedMaxOutputs));
  auto p = std::make_unique<FusedProgram>();
  p->inputs = program.inputs;
  for (int k = 0; k < program.inputs; ++k) {
    const TensorArg& in = ctx.in(static_cast<std::size_t>(k));
    FusedInput& f = p->input[k];
    f.data = in.data;
    f.kind = in.type.dtype == DType::i64 ? 2 : in.type.dtype == DType::boolean ? 1 : 0;
    if (f.kind != 2) f.walk = make_walk<1>(ctx, out.dims(), {broadcast_strides(in.shape(), out)});
  }
  p->immediates = static_cast<int>(program.immediates.size());
  for (std::size_t j = 0; j < program.immediates.size(); ++j) p->immediate[j] = program.immediates[j];
  p->code = static_cast<int>(program.code.size());
  for (std::size_t j = 0; j < program.code.size(); ++j) {
    p->op[j] = static_cast<int>(program.code[j].op);
    p->a[j] = program.code[j].a;
    p->b[j] = program.code[j].b;
    p->c[j] = program.code[j].c;
  }
  p->outputs = static_cast<int>(program.outputs.size());
  for (std::size_t k = 0; k < program.outputs.size(); ++k) {
    p->output_register[k] = program.outputs[k];
    p->output_is_bool[k] = program.output_is_bool[k];
    p->output[k] = ctx.out(k).data;
  }
  p->randoms = static_cast<int>(program.randoms.size());
  for (std::size_t r = 0; r < program.randoms.size(); ++r) {
    p->random_seed[r] = static_cast<std::uint64_t>(program.randoms[r].seed);
    p->random_stream[r] = static_cast<std::uint64_t>(program.randoms[r].stream);
    p->random_step_input[r] = program.randoms[r].step_input;
  }
  const DType t = ctx.params<FusedElementwiseParams>().dtype;
  check_launch(ctx, launch_fused_elementwise(element(t), *p, out.numel(), CudaBackend::of(ctx).stream()),
               "fused_elementwise");
}

// The dtypes each kind of op (ops/elementwise_table.h) has kernels for, as on the CPU.
constexpr DType kNumeric[] = {DType::f32, DType::f64, DType::i32, DType::i64};
constexpr DType kFloating[] = {DType::f32, DType::f64};
constexpr DType kLogical[] = {DType::boolean};
constexpr DType kAll[] = {DType::f32, DType::f64, DType::i32, DType::i64, DType::boolean};
std::span<const DType> dtypes_of(ElementwiseKind kind) {
  switch (kind) {
    case ElementwiseKind::numeric:
      return kNumeric;
    case ElementwiseKind::floating:
    case ElementwiseKind::classify:
      return kFloating;
    case ElementwiseKind::logical:
      return kLogical;
    case ElementwiseKind::comparison:
      return kAll;
  }
  return {};
}

}  // namespace

// One registration per row of the table; then integer division and remainders, which check
// their divisors, and fused_elementwise.
void register_elementwise_kernels(KernelRegistry& r) {
#define FOVEA_ADD_UNARY(name, functor, kind, ...) \
  for (DType t : dtypes_of(ElementwiseKind::kind)) r.add(ops::name, t, &unary_kernel<UnaryOp::name>);
#define FOVEA_ADD_BINARY(name, functor, kind, ...) \
  for (DType t : dtypes_of(ElementwiseKind::kind)) r.add(ops::name, t, &binary_kernel<BinaryOp::name>);
  FOVEA_UNARY_OPS(FOVEA_ADD_UNARY)
  FOVEA_BINARY_OPS(FOVEA_ADD_BINARY)
#undef FOVEA_ADD_UNARY
#undef FOVEA_ADD_BINARY
  for (DType t : {DType::i32, DType::i64}) {
    r.add(ops::div, t, &checked_integer_div_kernel<BinaryOp::div>, &division_by_zero);
    r.add(ops::mod, t, &checked_integer_div_kernel<BinaryOp::mod>, &modulo_by_zero);
    r.add(ops::fmod, t, &checked_integer_div_kernel<BinaryOp::fmod>, &modulo_by_zero);
  }
  for (DType t : {DType::f32, DType::f64, DType::boolean}) r.add(ops::fused_elementwise, t, &fused_elementwise_kernel);
}

}  // namespace fovea::cuda_backend
