// CUDA kernels for the shape ops (ops/shape_ops.h), host side. Each is one strided copy
// (shape.cu), y[y_base + offset_y(i)] = x[x_base + offset_x(i)], with these strides:
//
//   permute       box = y's dims; x's stride along output dim i is x's row-major stride of
//                 axis axes[i]
//   broadcast_to  box = y's dims; x's stride 0 along the dims it broadcasts
//   slice         box = [outer, len, inner]; x's strides [dim·inner, step·inner, 1] from
//                 x_base = start·inner
//   concat        per input i, box = [outer, dim_i, inner], y's strides [Σdim·inner, inner, 1]
//                 from y_base = (Σ_{h<i} dim_h)·inner
//
// and y's strides row-major otherwise. A walk that merges into one contiguous run is a plain
// device-to-device memcpy. reshape copies only when the planner could not alias it.
#include "fovea/backends/cuda/kernels.h"
#include "fovea/ops/shape_ops.h"

namespace fovea::cuda_backend {

namespace {

std::int64_t product(const std::vector<std::int64_t>& dims, std::size_t begin, std::size_t end) {
  std::int64_t p = 1;
  for (std::size_t i = begin; i < end; ++i) p *= dims[i];
  return p;
}

// y[y_base + ...] = x[x_base + ...] over the walk, or one memcpy when it is contiguous.
void strided_copy(const KernelContext& ctx, CudaBackend& gpu, const TensorArg& x, std::int64_t x_base, std::byte* y,
                  std::int64_t y_base, std::int64_t n, const Walk<2>& walk) {
  const auto size = static_cast<std::int64_t>(dtype_size(x.type.dtype));
  if (is_contiguous(walk))
    return copy_on_device(ctx, gpu, y + y_base * size, x.data + x_base * size, static_cast<std::size_t>(n * size));
  check_launch(ctx, launch_copy(static_cast<int>(size), x.data, x_base, y, y_base, n, walk, gpu.stream()),
               ctx.node->op->name);
}

// y = x under another shape: nothing to do when the planner gave y x's buffer.
void reshape_kernel(const KernelContext& ctx) {
  if (ctx.out().numel() == 0 || ctx.out().data == ctx.in(0).data) return;
  copy_on_device(ctx, CudaBackend::of(ctx), ctx.out().data, ctx.in(0).data, ctx.out().type.nbytes());
}

// y[i_0, .., i_{n-1}] = x[j] with j[axes[k]] = i_k
void permute_kernel(const KernelContext& ctx) {
  const TensorArg &x = ctx.in(0), &y = ctx.out();
  if (y.numel() == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const std::vector<std::int64_t> x_strides = row_major_strides(x.shape().dims());
  std::vector<std::int64_t> in_strides;
  for (std::int64_t a : ctx.params<PermuteParams>().axes) in_strides.push_back(x_strides[static_cast<std::size_t>(a)]);
  const Walk<2> walk = make_walk<2>(ctx, y.shape().dims(), {in_strides, row_major_strides(y.shape().dims())});
  strided_copy(ctx, gpu, x, 0, y.data, 0, y.numel(), walk);
}

// y[i] = x[i with x's broadcast dims pinned to 0]
void broadcast_to_kernel(const KernelContext& ctx) {
  const TensorArg &x = ctx.in(0), &y = ctx.out();
  if (y.numel() == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const Walk<2> walk = make_walk<2>(ctx, y.shape().dims(),
                                    {broadcast_strides(x.shape(), y.shape()), row_major_strides(y.shape().dims())});
  strided_copy(ctx, gpu, x, 0, y.data, 0, y.numel(), walk);
}

// y[o, j, i] = x[o, start + j·step, i]
void slice_kernel(const KernelContext& ctx) {
  const TensorArg &x = ctx.in(0), &y = ctx.out();
  if (y.numel() == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const std::vector<std::int64_t>& dims = x.shape().dims();
  const SliceParams& params = ctx.params<SliceParams>();
  const auto axis = static_cast<std::size_t>(params.axis);
  const std::int64_t dim = dims[axis], len = y.shape().dims()[axis];
  const std::int64_t outer = product(dims, 0, axis), inner = product(dims, axis + 1, dims.size());
  const std::int64_t start = params.start, step = params.step;
  const Walk<2> walk = make_walk<2>(
      ctx, {outer, len, inner},
      {std::vector<std::int64_t>{dim * inner, step * inner, 1}, std::vector<std::int64_t>{len * inner, inner, 1}});
  strided_copy(ctx, gpu, x, start * inner, y.data, 0, y.numel(), walk);
}

// y[o, offset_i + j, i] = x_i[o, j, i]
void concat_kernel(const KernelContext& ctx) {
  const TensorArg& y = ctx.out();
  if (y.numel() == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const std::vector<std::int64_t>& dims = y.shape().dims();
  const auto axis = static_cast<std::size_t>(ctx.params<AxisParams>().axis);
  const std::int64_t total = dims[axis];
  const std::int64_t outer = product(dims, 0, axis), inner = product(dims, axis + 1, dims.size());
  std::int64_t offset = 0;
  for (const TensorArg& x : ctx.inputs) {
    const std::int64_t dim = x.shape().dims()[axis];
    if (x.numel() > 0) {
      const Walk<2> walk = make_walk<2>(
          ctx, {outer, dim, inner},
          {std::vector<std::int64_t>{dim * inner, inner, 1}, std::vector<std::int64_t>{total * inner, inner, 1}});
      strided_copy(ctx, gpu, x, 0, y.data, offset * inner, x.numel(), walk);
    }
    offset += dim;
  }
}

}  // namespace

void register_shape_kernels(KernelRegistry& r) {
  for (DType t : {DType::f32, DType::f64, DType::i32, DType::i64, DType::boolean, DType::bf16, DType::f16}) {
    r.add(ops::reshape, t, &reshape_kernel);
    r.add(ops::permute, t, &permute_kernel);
    r.add(ops::broadcast_to, t, &broadcast_to_kernel);
    r.add(ops::slice, t, &slice_kernel);
    r.add(ops::concat, t, &concat_kernel);
  }
}

}  // namespace fovea::cuda_backend
