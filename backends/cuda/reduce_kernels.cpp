// CUDA kernels for the reductions, host side (the device side is reduce.cu):
//
//   reduce_sum:   y[k] = Σ_r x[k, r]       (f32 accumulated in f64; integers wrap around)
//   reduce_max:   y[k] = max_r x[k, r]     (NaN if any x[k, r] is NaN)
//   reduce_min:   y[k] = min_r x[k, r]     (NaN if any x[k, r] is NaN)
//   reduce_prod:  y[k] = Π_r x[k, r]       (f32 accumulated in f64; integers wrap around)
//
// After dropping size-1 axes and merging neighbours of one kind (kept or reduced), a
// reduction of one block of axes is x [outer, count, inner] and goes to the contiguous
// kernels; any other set of axes to the general one, with the kept and the reduced axes as
// two walks over x. argmax, argmin and cumsum see x as [outer, count, inner] around their axis.
#include "fovea/backends/cuda/kernels.h"

namespace fovea::cuda_backend {

namespace {

// The input's dims with size-1 ones dropped and neighbours of one kind merged, each marked
// reduced or kept.
struct ReduceLayout {
  std::vector<std::int64_t> dims;
  std::vector<bool> reduced;

  ReduceLayout(const Shape& shape, const std::vector<std::int64_t>& axes) {
    std::vector<bool> is_reduced(static_cast<std::size_t>(shape.rank()), false);
    for (std::int64_t a : axes) is_reduced[static_cast<std::size_t>(a < 0 ? a + shape.rank() : a)] = true;
    for (int i = 0; i < shape.rank(); ++i) {
      if (shape[i] == 1) continue;
      if (!dims.empty() && reduced.back() == is_reduced[static_cast<std::size_t>(i)]) {
        dims.back() *= shape[i];
      } else {
        dims.push_back(shape[i]);
        reduced.push_back(is_reduced[static_cast<std::size_t>(i)]);
      }
    }
  }

  // [outer, count, inner] when the layout is one of (nothing), K, R, KR, RK, KRK.
  bool contiguous(std::int64_t& outer, std::int64_t& count, std::int64_t& inner) const {
    outer = count = inner = 1;
    const std::size_t n = dims.size();
    if (n == 0) return true;
    if (n == 1) {
      (reduced[0] ? count : inner) = dims[0];
      return true;
    }
    if (n == 2) {
      if (reduced[1])
        outer = dims[0], count = dims[1];
      else
        count = dims[0], inner = dims[1];
      return true;
    }
    if (n == 3 && reduced[1]) {
      outer = dims[0], count = dims[1], inner = dims[2];
      return true;
    }
    return false;
  }
};

template <ReduceOp Op>
void reduce_kernel(const KernelContext& ctx) {
  const TensorArg &x = ctx.in(0), &y = ctx.out();
  const std::int64_t outputs = y.numel();
  if (outputs == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const Element type = element(x.type.dtype);
  if (x.numel() == 0) {
    // A zero-size reduced axis: every output reduces no elements (shape inference rejects
    // this for max and min, whose empty results have no value).
    if (Op == ReduceOp::max) ctx.fail("the maximum of an empty set is undefined");
    if (Op == ReduceOp::min) ctx.fail("the minimum of an empty set is undefined");
    check_launch(ctx, launch_reduce_contiguous(Op, type, x.data, y.data, outputs, 0, 1, nullptr, gpu.stream()),
                 ctx.node->op->name);
    return;
  }
  const ReduceLayout layout(x.shape(), ctx.params<ReduceParams>().axes);
  std::int64_t outer = 1, count = 1, inner = 1;
  if (layout.contiguous(outer, count, inner)) {
    const std::int64_t bytes = reduce_workspace_bytes(Op, type, outer, count, inner);
    void* workspace = bytes > 0 ? gpu.workspace(static_cast<std::size_t>(bytes)) : nullptr;
    check_launch(ctx, launch_reduce_contiguous(Op, type, x.data, y.data, outer, count, inner, workspace, gpu.stream()),
                 ctx.node->op->name);
    return;
  }
  // General: split the merged dims into kept and reduced, each with its strides in x.
  const std::vector<std::int64_t> strides = row_major_strides(layout.dims);
  std::vector<std::int64_t> kept_dims, kept_strides, reduced_dims, reduced_strides;
  std::int64_t reduced_count = 1;
  for (std::size_t d = 0; d < layout.dims.size(); ++d) {
    (layout.reduced[d] ? reduced_dims : kept_dims).push_back(layout.dims[d]);
    (layout.reduced[d] ? reduced_strides : kept_strides).push_back(strides[d]);
    if (layout.reduced[d]) reduced_count *= layout.dims[d];
  }
  const Walk<1> kept = make_walk<1>(ctx, kept_dims, {kept_strides});
  const Walk<1> reduced = make_walk<1>(ctx, reduced_dims, {reduced_strides});
  check_launch(ctx,
               launch_reduce_general(Op, type, x.data, y.data, outputs, kept, reduced_count, reduced, gpu.stream()),
               ctx.node->op->name);
}

// x [outer, count, inner] around `axis`.
void split_at_axis(const Shape& shape, int axis, std::int64_t& outer, std::int64_t& count, std::int64_t& inner) {
  outer = inner = 1;
  for (int d = 0; d < axis; ++d) outer *= shape[d];
  count = shape[axis];
  for (int d = axis + 1; d < shape.rank(); ++d) inner *= shape[d];
}

template <bool Min>
void arg_reduce_kernel(const KernelContext& ctx) {
  const TensorArg &x = ctx.in(0), &y = ctx.out();
  if (y.numel() == 0) return;
  const ArgReduceParams& p = ctx.params<ArgReduceParams>();
  std::int64_t outer = 1, count = 1, inner = 1;
  split_at_axis(x.shape(), p.axis, outer, count, inner);
  // Shape inference rejects a zero-size axis when there are outputs.
  if (count == 0)
    ctx.fail(Min ? "the minimum of an empty set is undefined" : "the maximum of an empty set is undefined");
  check_launch(ctx,
               launch_arg_reduce(Min, element(x.type.dtype), x.data, y.as<std::int64_t>(), outer, count, inner,
                                 p.select_last_index, CudaBackend::of(ctx).stream()),
               ctx.node->op->name);
}

void cumsum_kernel(const KernelContext& ctx) {
  const TensorArg &x = ctx.in(0), &y = ctx.out();
  const CumsumParams& p = ctx.params<CumsumParams>();
  std::int64_t outer = 1, count = 1, inner = 1;
  split_at_axis(x.shape(), p.axis, outer, count, inner);
  check_launch(ctx,
               launch_cumsum(element(x.type.dtype), x.data, y.data, outer, count, inner, p.exclusive, p.reverse,
                             CudaBackend::of(ctx).stream()),
               ctx.node->op->name);
}

}  // namespace

void register_reduce_kernels(KernelRegistry& r) {
  for (DType t : {DType::f32, DType::f64, DType::i32, DType::i64}) {
    r.add(ops::reduce_sum, t, &reduce_kernel<ReduceOp::sum>);
    r.add(ops::reduce_max, t, &reduce_kernel<ReduceOp::max>);
    r.add(ops::reduce_min, t, &reduce_kernel<ReduceOp::min>);
    r.add(ops::reduce_prod, t, &reduce_kernel<ReduceOp::prod>);
    r.add(ops::argmax, t, &arg_reduce_kernel<false>);
    r.add(ops::argmin, t, &arg_reduce_kernel<true>);
    r.add(ops::cumsum, t, &cumsum_kernel);
  }
}

}  // namespace fovea::cuda_backend
