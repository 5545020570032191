// CUDA kernels for the fused normalizations (ops/normalization.h), host side: the rows and row
// length of each node, its attributes, and the launches (the math is in normalization.cu).
#include "fovea/backends/cuda/kernels.h"
#include "fovea/ops/batch_norm.h"

namespace fovea::cuda_backend {

namespace {

// x [..., n]: `rows` rows of n elements.
struct Rows {
  std::int64_t rows = 1, n = 0;
  explicit Rows(const Shape& s) : n(s[s.rank() - 1]) {
    for (int i = 0; i + 1 < s.rank(); ++i) rows *= s[i];
  }
};

Element type_of(const KernelContext& ctx, std::size_t input) { return element(ctx.in(input).type.dtype); }

template <bool Log>
void softmax_kernel(const KernelContext& ctx) {
  const Rows shape(ctx.in(0).shape());
  check_launch(ctx,
               launch_softmax(type_of(ctx, 0), Log, ctx.in(0).data, ctx.out().data, shape.rows, shape.n,
                              CudaBackend::of(ctx).stream()),
               Log ? "fused_log_softmax" : "fused_softmax");
}

// Inputs (y, dy).
template <bool Log>
void softmax_backward_kernel(const KernelContext& ctx) {
  const Rows shape(ctx.in(0).shape());
  check_launch(ctx,
               launch_softmax_backward(type_of(ctx, 0), Log, ctx.in(0).data, ctx.in(1).data, ctx.out().data, shape.rows,
                                       shape.n, CudaBackend::of(ctx).stream()),
               Log ? "fused_log_softmax_backward" : "fused_softmax_backward");
}

// Inputs (x, gamma, beta); outputs (y, mean, rstd).
void layer_norm_kernel(const KernelContext& ctx) {
  const Rows shape(ctx.in(0).shape());
  check_launch(ctx,
               launch_layer_norm(type_of(ctx, 0), ctx.in(0).data, ctx.in(1).data, ctx.in(2).data, ctx.out(0).data,
                                 ctx.out(1).data, ctx.out(2).data, shape.rows, shape.n,
                                 ctx.params<LayerNormParams>().eps, CudaBackend::of(ctx).stream()),
               "fused_layer_norm");
}

// Inputs (dy, x, gamma, mean, rstd); outputs (dx, dgamma, dbeta).
void layer_norm_backward_kernel(const KernelContext& ctx) {
  const Rows shape(ctx.in(0).shape());
  check_launch(ctx,
               launch_layer_norm_backward(type_of(ctx, 0), ctx.in(0).data, ctx.in(1).data, ctx.in(2).data,
                                          ctx.in(3).data, ctx.in(4).data, ctx.out(0).data, ctx.out(1).data,
                                          ctx.out(2).data, shape.rows, shape.n, CudaBackend::of(ctx).stream()),
               "fused_layer_norm_backward");
}

// Inputs (logits, targets); outputs (loss, lse).
void cross_entropy_kernel(const KernelContext& ctx) {
  const Rows shape(ctx.in(0).shape());
  check_launch(ctx,
               launch_cross_entropy(type_of(ctx, 0), type_of(ctx, 1), ctx.in(0).data, ctx.in(1).data, ctx.out(0).data,
                                    ctx.out(1).data, shape.rows, shape.n,
                                    ctx.params<CrossEntropyParams>().label_smoothing, CudaBackend::of(ctx).stream()),
               "fused_softmax_cross_entropy");
}

// Inputs (logits, targets, lse, dloss); output dlogits.
void cross_entropy_backward_kernel(const KernelContext& ctx) {
  const Rows shape(ctx.in(0).shape());
  check_launch(
      ctx,
      launch_cross_entropy_backward(type_of(ctx, 0), type_of(ctx, 1), ctx.in(0).data, ctx.in(1).data, ctx.in(2).data,
                                    ctx.in(3).data, ctx.out().data, shape.rows, shape.n,
                                    ctx.params<CrossEntropyParams>().label_smoothing, CudaBackend::of(ctx).stream()),
      "fused_softmax_cross_entropy_backward");
}

// Inputs (x, gamma, beta); outputs (y, mean, variance).
void batch_norm_kernel(const KernelContext& ctx) {
  const BatchNormParams& p = ctx.params<BatchNormParams>();
  check_launch(ctx,
               launch_batch_norm(type_of(ctx, 0), ctx.in(0).data, ctx.in(1).data, ctx.in(2).data, ctx.out(0).data,
                                 ctx.out(1).data, ctx.out(2).data, p.batch, p.channels, p.inner, p.eps,
                                 CudaBackend::of(ctx).stream()),
               "batch_norm");
}

// Inputs (dy, x, gamma, mean, variance); outputs (dx, dgamma, dbeta).
void batch_norm_backward_kernel(const KernelContext& ctx) {
  const BatchNormParams& p = ctx.params<BatchNormParams>();
  check_launch(
      ctx,
      launch_batch_norm_backward(type_of(ctx, 0), ctx.in(0).data, ctx.in(1).data, ctx.in(2).data, ctx.in(3).data,
                                 ctx.in(4).data, ctx.out(0).data, ctx.out(1).data, ctx.out(2).data, p.batch, p.channels,
                                 p.inner, p.eps, CudaBackend::of(ctx).stream()),
      "batch_norm_backward");
}

}  // namespace

void register_normalization_kernels(KernelRegistry& r) {
  for (DType t : {DType::f32, DType::f64}) {
    r.add(ops::fused_softmax, t, &softmax_kernel<false>);
    r.add(ops::fused_log_softmax, t, &softmax_kernel<true>);
    r.add(ops::fused_softmax_backward, t, &softmax_backward_kernel<false>);
    r.add(ops::fused_log_softmax_backward, t, &softmax_backward_kernel<true>);
    r.add(ops::fused_layer_norm, t, &layer_norm_kernel);
    r.add(ops::fused_layer_norm_backward, t, &layer_norm_backward_kernel);
    r.add(ops::fused_softmax_cross_entropy, t, &cross_entropy_kernel);
    r.add(ops::fused_softmax_cross_entropy_backward, t, &cross_entropy_backward_kernel);
    r.add(ops::batch_norm, t, &batch_norm_kernel);
    r.add(ops::batch_norm_backward, t, &batch_norm_backward_kernel);
  }
}

}  // namespace fovea::cuda_backend
