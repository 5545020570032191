// CUDA kernels for fused_attention and fused_attention_backward (ops/attention.h), host
// side: the sizes, the mask's strides, and the launches (the math is in attention.cu).
#include <fmt/format.h>

#include "fovea/backends/cuda/kernels.h"

namespace fovea::cuda_backend {

namespace {

// The node's sizes, scale and causality, and where the mask (input 3, when there is one)
// reads: its strides along the scores [..., Tq, Tk] it broadcasts to, 0 along broadcast dims.
AttentionShape shape_of(const KernelContext& ctx, bool has_mask) {
  const Shape &sq = ctx.in(0).shape(), &sv = ctx.in(2).shape();
  const int rank = sq.rank();
  AttentionShape a;
  a.tq = sq[rank - 2];
  a.d = sq[rank - 1];
  a.tk = sv[rank - 2];
  a.dv = sv[rank - 1];
  a.scale = ctx.attrs().get_float("scale");
  a.causal = ctx.attrs().get_bool("causal");
  a.batch_rank = rank - 2;
  if (a.batch_rank > kMaxDims)
    ctx.fail(fmt::format("the CUDA fused attention takes at most {} batch dims, got {}", kMaxDims, a.batch_rank));
  for (int i = 0; i < a.batch_rank; ++i) {
    a.batch_dims[i] = sq[i];
    a.batch *= sq[i];
  }
  const Element type = element(ctx.in(0).type.dtype);
  const std::int64_t shared = attention_shared_bytes_per_warp(type, a.d, a.dv);
  if (shared > 48 * 1024)
    ctx.fail(
        fmt::format("head dims D={} and Dv={} need {} bytes of shared memory per warp in the CUDA fused "
                    "attention, more than the 48 KiB a block may have",
                    a.d, a.dv, shared));
  if (!has_mask) return a;
  std::vector<std::int64_t> score_dims(sq.begin(), sq.end() - 1);  // the scores: [..., Tq, Tk]
  score_dims.push_back(a.tk);
  const std::vector<std::int64_t> strides = broadcast_strides(ctx.in(3).shape(), Shape(score_dims));
  for (int i = 0; i < a.batch_rank; ++i) a.mask_batch_strides[i] = strides[static_cast<std::size_t>(i)];
  a.mask_row_stride = strides[static_cast<std::size_t>(rank - 2)];
  a.mask_column_stride = strides[static_cast<std::size_t>(rank - 1)];
  return a;
}

// Inputs (q, k, v, [mask]); outputs (o, lse).
void fused_attention_kernel(const KernelContext& ctx) {
  if (ctx.out(0).numel() == 0 && ctx.out(1).numel() == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const bool has_mask = ctx.inputs.size() == 4;
  const AttentionShape a = shape_of(ctx, has_mask);
  check_launch(
      ctx,
      launch_attention_forward(element(ctx.in(0).type.dtype), a, ctx.in(0).data, ctx.in(1).data, ctx.in(2).data,
                               has_mask ? ctx.in(3).data : nullptr, ctx.out(0).data, ctx.out(1).data, gpu.stream()),
      "fused_attention");
}

// Inputs (q, k, v, [mask], o, lse, d_o); outputs (dq, dk, dv).
void fused_attention_backward_kernel(const KernelContext& ctx) {
  if (ctx.out(0).numel() == 0 && ctx.out(1).numel() == 0 && ctx.out(2).numel() == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const bool has_mask = ctx.inputs.size() == 7;
  const AttentionShape a = shape_of(ctx, has_mask);
  const std::size_t first = has_mask ? 4 : 3;
  const std::size_t delta_bytes = static_cast<std::size_t>(a.batch * a.tq) * dtype_size(ctx.in(0).type.dtype);
  void* delta = gpu.workspace(delta_bytes > 0 ? delta_bytes : 1);
  check_launch(ctx,
               launch_attention_backward(element(ctx.in(0).type.dtype), a, ctx.in(0).data, ctx.in(1).data,
                                         ctx.in(2).data, has_mask ? ctx.in(3).data : nullptr, ctx.in(first).data,
                                         ctx.in(first + 1).data, ctx.in(first + 2).data, delta, ctx.out(0).data,
                                         ctx.out(1).data, ctx.out(2).data, gpu.stream()),
               "fused_attention_backward");
}

}  // namespace

void register_attention_kernels(KernelRegistry& r) {
  for (DType t : {DType::f32, DType::f64}) {
    r.add("fused_attention", t, &fused_attention_kernel);
    r.add("fused_attention_backward", t, &fused_attention_backward_kernel);
  }
}

}  // namespace fovea::cuda_backend
