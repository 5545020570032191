// CUDA kernels for cast, fill, iota and the random ops (ops/creation.h), host side (the
// device side, with the conversion rules and the Philox draws, is creation.cu).
#include "fovea/backends/cuda/kernels.h"

namespace fovea::cuda_backend {

namespace {

// cast: y[i] = convert<to>(x[i]); one kernel for every input dtype, the launcher picks the pair.
void cast_kernel(const KernelContext& ctx) {
  const std::int64_t n = ctx.out().numel();
  if (n == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  check_launch(ctx,
               launch_cast(element(ctx.in(0).type.dtype), element(ctx.out().type.dtype), ctx.in(0).data, ctx.out().data,
                           n, gpu.stream()),
               "cast");
}

// fill: y[i] = convert<T>(value)
void fill_kernel(const KernelContext& ctx) {
  const std::int64_t n = ctx.out().numel();
  if (n == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  check_launch(
      ctx, launch_fill(element(ctx.out().type.dtype), ctx.params<FillParams>().value, ctx.out().data, n, gpu.stream()),
      "fill");
}

// iota: y[o, k, j] = k along the axis
void iota_kernel(const KernelContext& ctx) {
  const std::int64_t n = ctx.out().numel();
  if (n == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const Shape& shape = ctx.out().shape();
  const int axis = ctx.params<AxisParams>().axis;
  std::int64_t inner = 1;
  for (int i = axis + 1; i < shape.rank(); ++i) inner *= shape[i];
  check_launch(ctx, launch_iota(element(ctx.out().type.dtype), ctx.out().data, n, shape[axis], inner, gpu.stream()),
               "iota");
}

// The seed and stream a random node draws from, and its optional step input (an i64 on the
// device, added to the stream by the kernel).
struct RandomKey {
  std::uint64_t seed, stream;
  const std::int64_t* step;
  template <typename Params>
  RandomKey(const KernelContext& ctx, const Params& params)
      : seed(params.seed), stream(params.stream), step(ctx.inputs.empty() ? nullptr : ctx.in(0).as<std::int64_t>()) {}
};

// random_uniform: y[i] = low + (high - low)·U(seed, stream + step, i)
void random_uniform_kernel(const KernelContext& ctx) {
  const std::int64_t n = ctx.out().numel();
  if (n == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const auto& params = ctx.params<UniformParams>();
  const RandomKey key(ctx, params);
  check_launch(ctx,
               launch_random_uniform(element(ctx.out().type.dtype), ctx.out().data, n, key.seed, key.stream, key.step,
                                     params.low, params.high, gpu.stream()),
               "random_uniform");
}

// random_normal: y[i] = mean + stddev·N(seed, stream + step, i)
void random_normal_kernel(const KernelContext& ctx) {
  const std::int64_t n = ctx.out().numel();
  if (n == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const auto& params = ctx.params<NormalParams>();
  const RandomKey key(ctx, params);
  check_launch(ctx,
               launch_random_normal(element(ctx.out().type.dtype), ctx.out().data, n, key.seed, key.stream, key.step,
                                    params.mean, params.stddev, gpu.stream()),
               "random_normal");
}

}  // namespace

void register_creation_kernels(KernelRegistry& r) {
  for (DType t : {DType::f32, DType::f64, DType::i32, DType::i64, DType::boolean}) {
    r.add(ops::cast, t, &cast_kernel);
    r.add(ops::fill, t, &fill_kernel);
  }
  r.add(ops::cast, DType::bf16, &cast_kernel);
  r.add(ops::cast, DType::f16, &cast_kernel);
  for (DType t : {DType::f32, DType::f64, DType::i32, DType::i64}) r.add(ops::iota, t, &iota_kernel);
  for (DType t : {DType::f32, DType::f64}) {
    r.add(ops::random_uniform, t, &random_uniform_kernel);
    r.add(ops::random_normal, t, &random_normal_kernel);
  }
}

}  // namespace fovea::cuda_backend
