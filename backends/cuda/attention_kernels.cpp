// CUDA kernels for fused_attention and fused_attention_backward (ops/attention.h), host
// side: the sizes, the mask's strides, the dropout's key, and the launches (the math is in
// attention.cu, and in attention_tiled.cu for the opt-in tiled kernels).
//
// Half inputs (bf16, f16: mixed precision) compute in f32. Where no kernel takes them as they
// are, they are widened to f32 copies in the backend's scratch, the f32 kernels run, and the
// half outputs are rounded back: correct for every size, at f32 speed plus the conversions.
#include <fmt/format.h>

#include <cstdlib>
#include <string_view>

#include "fovea/backends/cuda/kernels.h"
#include "fovea/ops/attention.h"

namespace fovea::cuda_backend {

namespace {

// The element type the scores are computed in: q's, or f32 for half q.
Element compute_element(const KernelContext& ctx) {
  const DType t = ctx.in(0).type.dtype;
  return element(is_half(t) ? DType::f32 : t);
}

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
  const AttentionParams& params = ctx.params<AttentionParams>();
  a.scale = params.scale;
  a.causal = params.causal;
  a.batch_rank = rank - 2;
  if (a.batch_rank > kMaxDims)
    ctx.fail(fmt::format("the CUDA fused attention takes at most {} batch dims, got {}", kMaxDims, a.batch_rank));
  for (int i = 0; i < a.batch_rank; ++i) {
    a.batch_dims[i] = sq[i];
    a.batch *= sq[i];
  }
  const Element type = compute_element(ctx);
  const std::int64_t shared = attention_shared_bytes_per_warp(type, a.d, a.dv);
  if (shared > 48 * 1024)
    ctx.fail(
        fmt::format("head dims D={} and Dv={} need {} bytes of shared memory per warp in the CUDA fused "
                    "attention, more than the 48 KiB a block may have",
                    a.d, a.dv, shared));
  const AttentionDropout& dropout = params.dropout;
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

// Which kernels run, from the environment variable FOVEA_CUDA_ATTENTION, read once per launch
// (one getenv) so that a test or a benchmark can switch within one process:
//   unset or empty  the default: f32/f64 on the one-warp-per-row kernels (attention.cu); bf16/f16
//                   forward and backward on the tensor cores (attention_mma.cu,
//                   attention_mma_backward.cu) where they take the sizes
//   "simple"        the one-warp-per-row kernels for everything (half inputs through f32 copies)
//   "tiled"         the FlashAttention-2-style CUDA-core kernels (attention_tiled.cu) where they
//                   take the head dims, else the simple ones (half inputs through f32 copies)
enum class Path { automatic, simple, tiled };

Path chosen_path(const KernelContext& ctx) {
  const char* value = std::getenv("FOVEA_CUDA_ATTENTION");
  const std::string_view choice = value ? value : "";
  if (choice.empty()) return Path::automatic;
  if (choice == "simple") return Path::simple;
  if (choice == "tiled") return Path::tiled;
  ctx.fail(fmt::format("the environment variable FOVEA_CUDA_ATTENTION is '{}'; expected 'simple' or 'tiled'", choice));
}

bool use_tiled_kernels(Path path, const KernelContext& ctx, const AttentionShape& a) {
  return path == Path::tiled && tiled_attention_supports(compute_element(ctx), a.d, a.dv);
}

// f32 copies of a node's half tensors, carved from the backend's one scratch buffer (256-byte
// aligned pieces), so that nothing is allocated per run.
class WideCopies {
 public:
  // Reserves room for `count` floats and returns the piece's index.
  std::size_t add(std::int64_t count) {
    offsets_.push_back(bytes_);
    bytes_ += (static_cast<std::size_t>(count) * sizeof(float) + 255) / 256 * 256;
    return offsets_.size() - 1;
  }
  // Takes the scratch (one call: the pieces stay valid until the backend's next workspace()).
  void allocate(CudaBackend& gpu) { base_ = static_cast<std::byte*>(gpu.workspace(bytes_ > 0 ? bytes_ : 1)); }
  void* operator[](std::size_t piece) const { return base_ + offsets_[piece]; }

 private:
  std::vector<std::size_t> offsets_;
  std::size_t bytes_ = 0;
  std::byte* base_ = nullptr;
};

// y ← x converted, n elements, on the backend's stream.
void convert(const KernelContext& ctx, CudaBackend& gpu, DType from, DType to, const void* x, void* y, std::int64_t n) {
  check_launch(ctx, launch_cast(element(from), element(to), x, y, n, gpu.stream()), "fused attention's conversion");
}

// The forward for half q, k, v: on the tensor cores when attention_mma.cu takes the sizes (and
// the default path is chosen), else through f32 copies.
void half_forward(const KernelContext& ctx, CudaBackend& gpu, const FusedAttentionInputs& in, const AttentionShape& a,
                  Path path) {
  const DType half = ctx.in(0).type.dtype;
  const void* mask = in.has_mask ? ctx.in(in.mask).data : nullptr;
  if (path == Path::automatic && mma_attention_supports(element(half), a.d, a.dv) &&
      launch_attention_forward_mma(element(half), a, ctx.in(0).data, ctx.in(1).data, ctx.in(2).data,
                                   static_cast<const float*>(mask), ctx.out(0).data, ctx.out(1).as<float>(),
                                   gpu.stream())) {
    check(ctx, cudaGetLastError(), "launching the tensor-core fused_attention kernel");
    return;
  }
  WideCopies wide;
  const std::size_t q = wide.add(ctx.in(0).numel()), k = wide.add(ctx.in(1).numel()), v = wide.add(ctx.in(2).numel()),
                    o = wide.add(ctx.out(0).numel());
  wide.allocate(gpu);
  for (std::size_t i : {q, k, v}) convert(ctx, gpu, half, DType::f32, ctx.in(i).data, wide[i], ctx.in(i).numel());
  const auto launch = use_tiled_kernels(path, ctx, a) ? &launch_attention_forward_tiled : &launch_attention_forward;
  check_launch(ctx, launch(Element::f32, a, wide[q], wide[k], wide[v], mask, wide[o], ctx.out(1).data, gpu.stream()),
               "fused_attention");
  convert(ctx, gpu, DType::f32, half, wide[o], ctx.out(0).data, ctx.out(0).numel());
}

// The backward for half q, k, v (o and d_o half too, lse f32): on the tensor cores when
// attention_mma_backward.cu takes the sizes (and the default path is chosen), else through f32
// copies.
void half_backward(const KernelContext& ctx, CudaBackend& gpu, const FusedAttentionInputs& in, const AttentionShape& a,
                   Path path) {
  const DType half = ctx.in(0).type.dtype;
  const std::size_t first = in.saved;  // o, then lse, then d_o
  if (path == Path::automatic && mma_attention_supports(element(half), a.d, a.dv)) {
    const std::size_t scratch_bytes = mma_attention_backward_scratch_bytes(a);
    void* scratch = gpu.workspace(scratch_bytes > 0 ? scratch_bytes : 1);
    if (launch_attention_backward_mma(element(half), a, ctx.in(0).data, ctx.in(1).data, ctx.in(2).data,
                                      in.has_mask ? ctx.in(in.mask).as<float>() : nullptr, ctx.in(first).data,
                                      ctx.in(first + 1).as<float>(), ctx.in(first + 2).data, scratch, ctx.out(0).data,
                                      ctx.out(1).data, ctx.out(2).data, gpu.stream())) {
      check(ctx, cudaGetLastError(), "launching the tensor-core fused_attention_backward kernels");
      return;
    }
  }
  const std::size_t half_inputs[] = {0, 1, 2, first, first + 2};
  WideCopies wide;
  std::size_t input_piece[5], output_piece[3];
  for (std::size_t i = 0; i < 5; ++i) input_piece[i] = wide.add(ctx.in(half_inputs[i]).numel());
  for (std::size_t i = 0; i < 3; ++i) output_piece[i] = wide.add(ctx.out(i).numel());
  const std::size_t delta = wide.add(a.batch * a.tq);
  wide.allocate(gpu);
  for (std::size_t i = 0; i < 5; ++i)
    convert(ctx, gpu, half, DType::f32, ctx.in(half_inputs[i]).data, wide[input_piece[i]],
            ctx.in(half_inputs[i]).numel());
  const auto launch = use_tiled_kernels(path, ctx, a) ? &launch_attention_backward_tiled : &launch_attention_backward;
  check_launch(ctx,
               launch(Element::f32, a, wide[input_piece[0]], wide[input_piece[1]], wide[input_piece[2]],
                      in.has_mask ? ctx.in(in.mask).data : nullptr, wide[input_piece[3]], ctx.in(first + 1).data,
                      wide[input_piece[4]], wide[delta], wide[output_piece[0]], wide[output_piece[1]],
                      wide[output_piece[2]], gpu.stream()),
               "fused_attention_backward");
  for (std::size_t i = 0; i < 3; ++i)
    convert(ctx, gpu, DType::f32, half, wide[output_piece[i]], ctx.out(i).data, ctx.out(i).numel());
}

// Inputs (q, k, v, [mask], [step]); outputs (o, lse).
void fused_attention_kernel(const KernelContext& ctx) {
  if (ctx.out(0).numel() == 0 && ctx.out(1).numel() == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const FusedAttentionInputs& in = ctx.params<AttentionParams>().inputs;
  const AttentionShape a = shape_of(ctx, in);
  const Path path = chosen_path(ctx);
  if (is_half(ctx.in(0).type.dtype)) return half_forward(ctx, gpu, in, a, path);
  const auto launch = use_tiled_kernels(path, ctx, a) ? &launch_attention_forward_tiled : &launch_attention_forward;
  check_launch(ctx,
               launch(element(ctx.in(0).type.dtype), a, ctx.in(0).data, ctx.in(1).data, ctx.in(2).data,
                      in.has_mask ? ctx.in(in.mask).data : nullptr, ctx.out(0).data, ctx.out(1).data, gpu.stream()),
               "fused_attention");
}

// Inputs (q, k, v, [mask], o, lse, d_o, [step]); outputs (dq, dk, dv).
void fused_attention_backward_kernel(const KernelContext& ctx) {
  if (ctx.out(0).numel() == 0 && ctx.out(1).numel() == 0 && ctx.out(2).numel() == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const FusedAttentionInputs& in = ctx.params<AttentionParams>().inputs;
  const AttentionShape a = shape_of(ctx, in);
  const Path path = chosen_path(ctx);
  if (is_half(ctx.in(0).type.dtype)) return half_backward(ctx, gpu, in, a, path);
  const std::size_t first = in.saved;
  const std::size_t delta_bytes = static_cast<std::size_t>(a.batch * a.tq) * dtype_size(ctx.in(0).type.dtype);
  void* delta = gpu.workspace(delta_bytes > 0 ? delta_bytes : 1);
  const auto launch = use_tiled_kernels(path, ctx, a) ? &launch_attention_backward_tiled : &launch_attention_backward;
  check_launch(ctx,
               launch(element(ctx.in(0).type.dtype), a, ctx.in(0).data, ctx.in(1).data, ctx.in(2).data,
                      in.has_mask ? ctx.in(in.mask).data : nullptr, ctx.in(first).data, ctx.in(first + 1).data,
                      ctx.in(first + 2).data, delta, ctx.out(0).data, ctx.out(1).data, ctx.out(2).data, gpu.stream()),
               "fused_attention_backward");
}

}  // namespace

void register_attention_kernels(KernelRegistry& r) {
  for (DType t : {DType::f32, DType::f64, DType::bf16, DType::f16}) {
    r.add(ops::fused_attention, t, &fused_attention_kernel);
    r.add(ops::fused_attention_backward, t, &fused_attention_backward_kernel);
  }
}

}  // namespace fovea::cuda_backend
