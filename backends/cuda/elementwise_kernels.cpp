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

// Integer division by zero is an error, as on the CPU, but one the GPU reports after the run
// (Verdict, in backends/backend.h) instead of waiting for it: every divisor is checked on the
// device, the first zero's position lowers the step's verdict, and the division itself gives 0
// for it (fn::Div), so the run can finish. Every divisor is checked, even when the quotient is
// empty, as the CPU does.
void checked_integer_div_kernel(const KernelContext& ctx) {
  const TensorArg& b = ctx.in(1);
  if (ctx.out().numel() == 0 && b.numel() == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  check_launch(ctx, launch_find_zero(element(b.type.dtype), b.data, b.numel(), verdict_words(ctx), gpu.stream()),
               "div's divisor check");
  if (ctx.out().numel() > 0) launch_binary_on(ctx, gpu, BinaryOp::div);
}

std::string division_by_zero(const KernelContext&, const Verdict&) { return "integer division by zero"; }

// fused_elementwise: the program travels to the device as the kernel's parameter block
// (launch.h, FusedProgram); each input gets a one-operand walk for its broadcast.
void fused_elementwise_kernel(const KernelContext& ctx) {
  const fused::Program program = fused::Program::from_attributes(ctx.attrs());
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
  const DType t = ctx.attrs().get_dtype("dtype");
  check_launch(ctx, launch_fused_elementwise(element(t), *p, out.numel(), CudaBackend::of(ctx).stream()),
               "fused_elementwise");
}

template <UnaryOp Op>
void add_unary(KernelRegistry& r, std::string_view op, std::initializer_list<DType> dtypes) {
  for (DType t : dtypes) r.add(op, t, &unary_kernel<Op>);
}

template <BinaryOp Op>
void add_binary(KernelRegistry& r, std::string_view op, std::initializer_list<DType> dtypes) {
  for (DType t : dtypes) r.add(op, t, &binary_kernel<Op>);
}

constexpr auto kNumeric = {DType::f32, DType::f64, DType::i32, DType::i64};
constexpr auto kFloating = {DType::f32, DType::f64};
constexpr auto kAll = {DType::f32, DType::f64, DType::i32, DType::i64, DType::boolean};

}  // namespace

void register_elementwise_kernels(KernelRegistry& r) {
  add_unary<UnaryOp::neg>(r, "neg", kNumeric);
  add_unary<UnaryOp::abs>(r, "abs", kNumeric);
  add_unary<UnaryOp::relu>(r, "relu", kNumeric);
  add_unary<UnaryOp::exp>(r, "exp", kFloating);
  add_unary<UnaryOp::log>(r, "log", kFloating);
  add_unary<UnaryOp::sqrt>(r, "sqrt", kFloating);
  add_unary<UnaryOp::rsqrt>(r, "rsqrt", kFloating);
  add_unary<UnaryOp::tanh>(r, "tanh", kFloating);
  add_unary<UnaryOp::sigmoid>(r, "sigmoid", kFloating);
  add_unary<UnaryOp::sin>(r, "sin", kFloating);
  add_unary<UnaryOp::cos>(r, "cos", kFloating);
  add_unary<UnaryOp::logical_not>(r, "logical_not", {DType::boolean});

  add_binary<BinaryOp::add>(r, "add", kNumeric);
  add_binary<BinaryOp::sub>(r, "sub", kNumeric);
  add_binary<BinaryOp::mul>(r, "mul", kNumeric);
  add_binary<BinaryOp::div>(r, "div", kFloating);
  r.add("div", DType::i32, &checked_integer_div_kernel, &division_by_zero);
  r.add("div", DType::i64, &checked_integer_div_kernel, &division_by_zero);
  add_binary<BinaryOp::pow>(r, "pow", kFloating);
  add_binary<BinaryOp::maximum>(r, "maximum", kNumeric);
  add_binary<BinaryOp::minimum>(r, "minimum", kNumeric);
  add_binary<BinaryOp::equal>(r, "equal", kAll);
  add_binary<BinaryOp::not_equal>(r, "not_equal", kAll);
  add_binary<BinaryOp::less>(r, "less", kAll);
  add_binary<BinaryOp::less_equal>(r, "less_equal", kAll);
  add_binary<BinaryOp::greater>(r, "greater", kAll);
  add_binary<BinaryOp::greater_equal>(r, "greater_equal", kAll);
  add_binary<BinaryOp::logical_and>(r, "logical_and", {DType::boolean});
  add_binary<BinaryOp::logical_or>(r, "logical_or", {DType::boolean});
  for (DType t : {DType::f32, DType::f64, DType::boolean}) r.add("fused_elementwise", t, &fused_elementwise_kernel);
}

}  // namespace fovea::cuda_backend
