// CUDA kernels for fused_attention and fused_attention_backward (ops/attention.h), host
// side: the sizes, the mask's strides, the dropout's key, and the launches (the math is in
// attention.cu, and in attention_tiled.cu for the opt-in tiled kernels).
#include <fmt/format.h>

#include <cstdlib>
#include <string_view>

#include "fovea/backends/cuda/kernels.h"
#include "fovea/ops/attention.h"

namespace fovea::cuda_backend {

namespace {

// The node's sizes, scale and causality, where the mask (when there is one) reads: its
// strides along the scores [..., Tq, Tk] it broadcasts to, 0 along broadcast dims, and the
// dropout (the step stays on the device: the kernels read it there).
AttentionShape shape_of(const KernelContext& ctx, const FusedAttentionInputs& in) {
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
  const AttentionDropout dropout = attention_dropout(ctx.attrs());
  if (dropout.enabled()) {
    a.dropout.p = dropout.p;
    a.dropout.scale = dropout.scale;
    a.dropout.seed = static_cast<std::uint64_t>(dropout.seed);
    a.dropout.stream = static_cast<std::uint64_t>(dropout.stream);
    if (in.has_step) a.dropout.step = ctx.in(in.step).as<std::int64_t>();
  }
  if (!in.has_mask) return a;
  std::vector<std::int64_t> score_dims(sq.begin(), sq.end() - 1);  // the scores: [..., Tq, Tk]
  score_dims.push_back(a.tk);
  const std::vector<std::int64_t> strides = broadcast_strides(ctx.in(in.mask).shape(), Shape(score_dims));
  for (int i = 0; i < a.batch_rank; ++i) a.mask_batch_strides[i] = strides[static_cast<std::size_t>(i)];
  a.mask_row_stride = strides[static_cast<std::size_t>(rank - 2)];
  a.mask_column_stride = strides[static_cast<std::size_t>(rank - 1)];
  return a;
}

// Whether this launch runs the tiled FlashAttention-2 kernels (attention_tiled.cu): when the
// environment variable FOVEA_CUDA_ATTENTION is "tiled" and they support the head dims. Unset,
// empty or "simple" keeps the one-warp-per-row kernels (attention.cu). Read at every launch
// (one getenv), so that a test or a benchmark can switch between them within one process.
bool use_tiled_kernels(const KernelContext& ctx, const AttentionShape& a) {
  const char* value = std::getenv("FOVEA_CUDA_ATTENTION");
  const std::string_view choice = value ? value : "";
  if (choice.empty() || choice == "simple") return false;
  if (choice != "tiled")
    ctx.fail(
        fmt::format("the environment variable FOVEA_CUDA_ATTENTION is '{}'; expected 'simple' or 'tiled'", choice));
  return tiled_attention_supports(element(ctx.in(0).type.dtype), a.d, a.dv);
}

// Inputs (q, k, v, [mask], [step]); outputs (o, lse).
void fused_attention_kernel(const KernelContext& ctx) {
  if (ctx.out(0).numel() == 0 && ctx.out(1).numel() == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const FusedAttentionInputs in = fused_attention_inputs(ctx.attrs(), ctx.inputs.size(), /*backward=*/false);
  const AttentionShape a = shape_of(ctx, in);
  const auto launch = use_tiled_kernels(ctx, a) ? &launch_attention_forward_tiled : &launch_attention_forward;
  check_launch(ctx,
               launch(element(ctx.in(0).type.dtype), a, ctx.in(0).data, ctx.in(1).data, ctx.in(2).data,
                      in.has_mask ? ctx.in(in.mask).data : nullptr, ctx.out(0).data, ctx.out(1).data, gpu.stream()),
               "fused_attention");
}

// Inputs (q, k, v, [mask], o, lse, d_o, [step]); outputs (dq, dk, dv).
void fused_attention_backward_kernel(const KernelContext& ctx) {
  if (ctx.out(0).numel() == 0 && ctx.out(1).numel() == 0 && ctx.out(2).numel() == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const FusedAttentionInputs in = fused_attention_inputs(ctx.attrs(), ctx.inputs.size(), /*backward=*/true);
  const AttentionShape a = shape_of(ctx, in);
  const std::size_t first = in.saved;
  const std::size_t delta_bytes = static_cast<std::size_t>(a.batch * a.tq) * dtype_size(ctx.in(0).type.dtype);
  void* delta = gpu.workspace(delta_bytes > 0 ? delta_bytes : 1);
  const auto launch = use_tiled_kernels(ctx, a) ? &launch_attention_backward_tiled : &launch_attention_backward;
  check_launch(ctx,
               launch(element(ctx.in(0).type.dtype), a, ctx.in(0).data, ctx.in(1).data, ctx.in(2).data,
                      in.has_mask ? ctx.in(in.mask).data : nullptr, ctx.in(first).data, ctx.in(first + 1).data,
                      ctx.in(first + 2).data, delta, ctx.out(0).data, ctx.out(1).data, ctx.out(2).data, gpu.stream()),
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
