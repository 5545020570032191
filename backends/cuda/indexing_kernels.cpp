// CUDA kernels for gather, scatter_add and where (ops/indexing.h), host side (the device side
// is indexing.cu).
//
// gather and scatter_add see x as [outer, n, inner] around the axis. Their indices are checked
// on the device before anything else runs: a check kernel records the first position whose
// index is outside [0, n), the host waits for the verdict (one small copy back, which stalls
// the stream: the price of raising fovea::Error with the same message as the CPU instead of
// reading out of bounds), and on failure reads that one index back to name it.
//
// scatter_add adds with atomics, so floating sums over repeated indices come in no fixed
// order: the GPU's result may differ from the CPU's in the last bits, and between runs.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "fovea/backends/cuda/kernels.h"

namespace fovea::cuda_backend {

namespace {

// [outer, n, inner] around `axis` of `shape`.
struct AxisSplit {
  std::int64_t outer = 1, n = 1, inner = 1;
  AxisSplit(const Shape& shape, int axis) {
    for (int i = 0; i < axis; ++i) outer *= shape[i];
    n = shape[axis];
    for (int i = axis + 1; i < shape.rank(); ++i) inner *= shape[i];
  }
};

int axis_of(const KernelContext& ctx, const Shape& shape) {
  return normalize_axis(static_cast<int>(ctx.attrs().get_int("axis")), shape.rank());
}

// "[1,2]": the multi-index of flat position p in `shape`.
std::string position_of(std::int64_t p, const Shape& shape) {
  std::vector<std::int64_t> idx(static_cast<std::size_t>(shape.rank()));
  for (int i = shape.rank() - 1; i >= 0; --i) {
    idx[static_cast<std::size_t>(i)] = p % shape[i];
    p /= shape[i];
  }
  return fmt::format("[{}]", fmt::join(idx, ","));
}

// Fails, with the CPU backend's message, when an index lies outside [0, n).
void check_indices(const KernelContext& ctx, CudaBackend& gpu, const TensorArg& indices, std::int64_t n, int axis,
                   const char* what) {
  const std::int64_t m = indices.numel();
  if (m == 0) return;
  check_launch(ctx,
               launch_check_indices(element(indices.type.dtype), indices.data, m, n, gpu.reset_failure(), gpu.stream()),
               "index check");
  const std::int64_t p = gpu.read_failure();
  if (p < 0) return;
  std::int64_t id = 0;
  if (indices.type.dtype == DType::i32) {
    std::int32_t value = 0;
    gpu.copy_to_host(reinterpret_cast<std::byte*>(&value), indices.data + p * 4, 4);
    id = value;
  } else {
    gpu.copy_to_host(reinterpret_cast<std::byte*>(&id), indices.data + p * 8, 8);
  }
  ctx.fail(fmt::format(
      "index {} at position {} of indices {} is out of range for axis {} of {} {}: "
      "valid indices are [0, {})",
      id, position_of(p, indices.shape()), indices.type.to_string(), axis, what, ctx.in(0).type.to_string(), n));
}

// gather: y[o, p, j] = x[o, ids[p], j]
void gather_kernel(const KernelContext& ctx) {
  const TensorArg &x = ctx.in(0), &ids = ctx.in(1), &y = ctx.out();
  if (y.numel() == 0 && ids.numel() == 0) return;  // (an empty output still has its indices checked)
  CudaBackend& gpu = CudaBackend::of(ctx);
  const int axis = axis_of(ctx, x.shape());
  const AxisSplit split(x.shape(), axis);
  check_indices(ctx, gpu, ids, split.n, axis, "x");
  check_launch(ctx,
               launch_gather(static_cast<int>(dtype_size(x.type.dtype)), element(ids.type.dtype), x.data, ids.data,
                             y.data, split.outer, split.n, ids.numel(), split.inner, gpu.stream()),
               "gather");
}

// scatter_add: y = target;  y[o, ids[p], j] += u[o, p, j]
void scatter_add_kernel(const KernelContext& ctx) {
  const TensorArg &target = ctx.in(0), &ids = ctx.in(1), &updates = ctx.in(2), &y = ctx.out();
  if (y.numel() == 0 && ids.numel() == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const int axis = axis_of(ctx, target.shape());
  const AxisSplit split(target.shape(), axis);
  check_indices(ctx, gpu, ids, split.n, axis, "target");
  copy_on_device(ctx, gpu, y.data, target.data, y.type.nbytes());
  check_launch(ctx,
               launch_scatter_add(element(y.type.dtype), element(ids.type.dtype), ids.data, updates.data, y.data,
                                  split.outer, split.n, ids.numel(), split.inner, gpu.stream()),
               "scatter_add");
}

// where: y[i] = cond[i'] ? a[i''] : b[i'''], each operand read at its broadcast position.
void where_kernel(const KernelContext& ctx) {
  const TensorArg &cond = ctx.in(0), &a = ctx.in(1), &b = ctx.in(2), &y = ctx.out();
  if (y.numel() == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const Walk<3> walk = make_walk<3>(ctx, y.shape().dims(),
                                    {broadcast_strides(cond.shape(), y.shape()),
                                     broadcast_strides(a.shape(), y.shape()), broadcast_strides(b.shape(), y.shape())});
  check_launch(ctx,
               launch_where(static_cast<int>(dtype_size(y.type.dtype)), cond.data, a.data, b.data, y.data, y.numel(),
                            walk, gpu.stream()),
               "where");
}

}  // namespace

void register_indexing_kernels(KernelRegistry& r) {
  for (DType t : {DType::f32, DType::f64, DType::i32, DType::i64, DType::boolean}) {
    r.add("gather", t, &gather_kernel);
    r.add("where", t, &where_kernel);
  }
  for (DType t : {DType::f32, DType::f64, DType::i32, DType::i64}) r.add("scatter_add", t, &scatter_add_kernel);
}

}  // namespace fovea::cuda_backend
