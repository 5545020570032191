// CUDA kernels for gather, scatter_add and where (ops/indexing.h), host side (the device side
// is indexing.cu).
//
// gather and scatter_add see x as [outer, n, inner] around the axis. Their indices are checked
// on the device without waiting for the answer, so that a step with them can be recorded and
// the stream never stalls mid-run: a check kernel lowers the step's verdict (Verdict, in
// backends/backend.h) to the first position whose index is outside [0, n); the data kernel
// after it skips such indices (gather writes 0, scatter_add adds nothing) and notes the index
// found at that position. After the run, the executable raises fovea::Error with the CPU's
// message (bad_index_in_x, bad_index_in_target) naming the node, the index and its position.
//
// scatter_add adds with atomics, so floating sums over repeated indices come in no fixed
// order: the GPU's result may differ from the CPU's in the last bits, and between runs.
#include <fmt/format.h>

#include "fovea/backends/cuda/kernels.h"
#include "fovea/ops/indexing.h"

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

// The CPU backend's message for an index outside [0, n), from a failed verdict: `position` is
// the flat position in the indices, `detail` the index found there (as an i64's bits).
std::string bad_index_message(const KernelContext& ctx, const Verdict& verdict, const char* what) {
  return gather_index_message(ctx.in(0).type, ctx.in(1).type, ctx.params<AxisParams>().axis,
                              static_cast<std::int64_t>(verdict.position), static_cast<std::int64_t>(verdict.detail),
                              what);
}
std::string bad_index_in_x(const KernelContext& ctx, const Verdict& verdict) {
  return bad_index_message(ctx, verdict, "x");
}
std::string bad_index_in_target(const KernelContext& ctx, const Verdict& verdict) {
  return bad_index_message(ctx, verdict, "target");
}

// Lowers the verdict's position to the first index outside [0, n); waits for nothing.
void check_indices(const KernelContext& ctx, CudaBackend& gpu, const TensorArg& indices, std::int64_t n) {
  check_launch(ctx,
               launch_check_indices(element(indices.type.dtype), indices.data, indices.numel(), n, verdict_words(ctx),
                                    gpu.stream()),
               "index check");
}

// gather: y[o, p, j] = x[o, ids[p], j]   (0 where ids[p] is out of range: see the top)
void gather_kernel(const KernelContext& ctx) {
  const TensorArg &x = ctx.in(0), &ids = ctx.in(1), &y = ctx.out();
  if (ids.numel() == 0) return;  // (an empty output still has its indices checked)
  CudaBackend& gpu = CudaBackend::of(ctx);
  const int axis = ctx.params<AxisParams>().axis;
  const AxisSplit split(x.shape(), axis);
  check_indices(ctx, gpu, ids, split.n);
  check_launch(ctx,
               launch_gather(static_cast<int>(dtype_size(x.type.dtype)), element(ids.type.dtype), x.data, ids.data,
                             y.data, split.outer, split.n, ids.numel(), split.inner, verdict_words(ctx), gpu.stream()),
               "gather");
}

// scatter_add: y = target;  y[o, ids[p], j] += u[o, p, j]   (nothing where ids[p] is out of range)
void scatter_add_kernel(const KernelContext& ctx) {
  const TensorArg &target = ctx.in(0), &ids = ctx.in(1), &updates = ctx.in(2), &y = ctx.out();
  if (y.numel() == 0 && ids.numel() == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const int axis = ctx.params<AxisParams>().axis;
  const AxisSplit split(target.shape(), axis);
  if (ids.numel() > 0) check_indices(ctx, gpu, ids, split.n);
  copy_on_device(ctx, gpu, y.data, target.data, y.type.nbytes());
  check_launch(ctx,
               launch_scatter_add(element(y.type.dtype), element(ids.type.dtype), ids.data, updates.data, y.data,
                                  split.outer, split.n, ids.numel(), split.inner, verdict_words(ctx), gpu.stream()),
               "scatter_add");
}

// check_indices: y = ids (usually the same buffer: a view), with every ids[p] outside
// [0, count) that is not the allowed value reported after the run, with the CPU's message.
std::string bad_checked_index(const KernelContext& ctx, const Verdict& verdict) {
  return check_indices_message(ctx.params<CheckIndicesParams>(), ctx.in(0).type,
                               static_cast<std::int64_t>(verdict.position), static_cast<std::int64_t>(verdict.detail));
}

void check_indices_kernel(const KernelContext& ctx) {
  const TensorArg &ids = ctx.in(0), &y = ctx.out();
  if (ids.numel() == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const auto& params = ctx.params<CheckIndicesParams>();
  if (y.data != ids.data) copy_on_device(ctx, gpu, y.data, ids.data, ids.type.nbytes());
  check_launch(ctx,
               launch_check_indices(element(ids.type.dtype), ids.data, ids.numel(), params.count, verdict_words(ctx),
                                    gpu.stream(), params.allowed.has_value(), params.allowed.value_or(0)),
               "index check");
  check_launch(ctx,
               launch_note_bad_index(element(ids.type.dtype), ids.data, ids.numel(), verdict_words(ctx), gpu.stream()),
               "index check");
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
    r.add(ops::gather, t, &gather_kernel, &bad_index_in_x);
    r.add(ops::where, t, &where_kernel);
  }
  for (DType t : {DType::f32, DType::f64, DType::i32, DType::i64})
    r.add(ops::scatter_add, t, &scatter_add_kernel, &bad_index_in_target);
  for (DType t : {DType::i32, DType::i64}) r.add(ops::check_indices, t, &check_indices_kernel, &bad_checked_index);
}

}  // namespace fovea::cuda_backend
