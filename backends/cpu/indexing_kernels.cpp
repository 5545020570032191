// CPU kernels for gather, scatter_add and where.
//
// gather and scatter_add see their tensors as three-dimensional: x is [outer, n, inner] with
// outer the product of the dims before the axis, n the axis and inner the product of the dims
// after it; the indices are a flat list of m entries. Every index is checked before any
// element is read or written, so a bad index raises fovea::Error and never reads out of bounds.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "fovea/backends/cpu/broadcast.h"
#include "fovea/backends/cpu/kernels.h"
#include "fovea/ops/indexing.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

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

// Reads the indices as i64 and checks each lies in [0, n); fails on the first that does not.
template <typename I>
std::vector<std::int64_t> checked_indices(const KernelContext& ctx, const TensorArg& indices, std::int64_t n, int axis,
                                          const char* what) {
  const I* ids = indices.as<I>();
  const std::int64_t m = indices.numel();
  std::vector<std::int64_t> out(m);
  for (std::int64_t p = 0; p < m; ++p) {
    const auto id = static_cast<std::int64_t>(ids[p]);
    if (id < 0 || id >= n) ctx.fail(gather_index_message(ctx.in(0).type, indices.type, axis, p, id, what));
    out[p] = id;
  }
  return out;
}

std::vector<std::int64_t> read_indices(const KernelContext& ctx, const TensorArg& indices, std::int64_t n, int axis,
                                       const char* what) {
  if (indices.type.dtype == DType::i32) return checked_indices<std::int32_t>(ctx, indices, n, axis, what);
  return checked_indices<std::int64_t>(ctx, indices, n, axis, what);
}

// a + b, where integer sums wrap modulo 2^bits (as NumPy's do) instead of overflowing into
// undefined behaviour.
template <typename T>
T add_wrapping(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
  } else {
    return a + b;
  }
}

// gather: out[o, p, j] = x[o, ids[p], j]
// Each (o, p) row is `inner` contiguous elements, copied whole with memcpy: for an embedding
// lookup (table [V,D], ids [B,T], axis 0) that is one D-wide copy per token.
template <typename T>
void gather_kernel(const KernelContext& ctx) {
  const TensorArg &X = ctx.in(0), &Y = ctx.out();
  const int axis = ctx.params<AxisParams>().axis;
  const AxisSplit x(X.shape(), axis);
  const std::vector<std::int64_t> ids = read_indices(ctx, ctx.in(1), x.n, axis, "x");
  const auto m = static_cast<std::int64_t>(ids.size());
  const T* src = X.as<T>();
  T* dst = Y.as<T>();
  const std::int64_t inner = x.inner;
  const std::size_t row_bytes = static_cast<std::size_t>(inner) * sizeof(T);
  const std::int64_t rows = x.outer * m;
  if (rows == 0 || inner == 0) return;
  const std::int64_t grain = std::max<std::int64_t>(1, kElementwiseGrain / inner);
  ctx.pool->parallel_for(rows, grain, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t o = r / m, p = r % m;
      std::memcpy(dst + r * inner, src + (o * x.n + ids[p]) * inner, row_bytes);
    }
  });
}

// scatter_add: out = target;  out[o, ids[p], j] += u[o, p, j]   for p = 0, 1, ..., m-1
// To stay deterministic on any thread count, work is split by output row (o, r): the
// positions p with ids[p] == r are listed first (a counting sort that keeps them in
// ascending order), then each row adds its updates in that order, so every element sums
// exactly as the serial loop over p does, and no two threads touch one element.
template <typename T>
void scatter_add_kernel(const KernelContext& ctx) {
  const TensorArg &target = ctx.in(0), &updates = ctx.in(2), &Y = ctx.out();
  const int axis = ctx.params<AxisParams>().axis;
  const AxisSplit t(target.shape(), axis);
  const std::vector<std::int64_t> ids = read_indices(ctx, ctx.in(1), t.n, axis, "target");
  const auto m = static_cast<std::int64_t>(ids.size());
  T* out = Y.as<T>();
  if (Y.data != target.data) std::memcpy(out, target.data, Y.type.nbytes());
  if (m == 0 || t.outer == 0 || t.inner == 0) return;

  // first[r] .. first[r+1]: the slice of `order` listing the positions p with ids[p] == r.
  std::vector<std::int64_t> first(t.n + 1, 0);
  for (std::int64_t id : ids) ++first[id + 1];
  for (std::int64_t r = 0; r < t.n; ++r) first[r + 1] += first[r];
  std::vector<std::int64_t> order(m);
  std::vector<std::int64_t> next(first.begin(), first.end() - 1);
  for (std::int64_t p = 0; p < m; ++p) order[next[ids[p]]++] = p;

  const T* u = updates.as<T>();
  const std::int64_t inner = t.inner;
  const std::int64_t rows = t.outer * t.n;
  // A row costs inner additions per update it receives, m / n updates on average.
  const std::int64_t row_cost = inner * std::max<std::int64_t>(1, m / std::max<std::int64_t>(t.n, 1));
  const std::int64_t grain = std::max<std::int64_t>(1, kElementwiseGrain / row_cost);
  ctx.pool->parallel_for(rows, grain, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t row = r0; row < r1; ++row) {
      const std::int64_t o = row / t.n, r = row % t.n;
      T* y = out + row * inner;
      for (std::int64_t k = first[r]; k < first[r + 1]; ++k) {
        const T* src = u + (o * m + order[k]) * inner;
        for (std::int64_t j = 0; j < inner; ++j) y[j] = add_wrapping(y[j], src[j]);
      }
    }
  });
}

// where: y[i] = cond[i] ? a[i] : b[i], each operand read at its broadcast index.
template <typename T>
void where_kernel(const KernelContext& ctx) {
  const TensorArg &C = ctx.in(0), &A = ctx.in(1), &B = ctx.in(2), &Y = ctx.out();
  const auto* cond = C.as<std::uint8_t>();
  const T* a = A.as<T>();
  const T* b = B.as<T>();
  T* y = Y.as<T>();
  const std::int64_t n = Y.numel();
  if (C.numel() == n && A.numel() == n && B.numel() == n) {  // no broadcasting: one flat loop
    ctx.pool->parallel_for(n, kElementwiseGrain, [&](std::int64_t s, std::int64_t e) {
      for (std::int64_t i = s; i < e; ++i) y[i] = cond[i] ? a[i] : b[i];
    });
    return;
  }
  const BroadcastLayout<3> layout(Y.shape(), {&C.shape(), &A.shape(), &B.shape()});
  const std::int64_t inner = layout.inner(), rows = layout.rows();
  const std::int64_t sc = layout.inner_stride(0), sa = layout.inner_stride(1), sb = layout.inner_stride(2);
  const std::int64_t grain = std::max<std::int64_t>(1, kElementwiseGrain / std::max<std::int64_t>(inner, 1));
  ctx.pool->parallel_for(rows, grain, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const auto off = layout.row_offsets(r);
      const std::uint8_t* c_row = cond + off[0];
      const T* a_row = a + off[1];
      const T* b_row = b + off[2];
      T* y_row = y + r * inner;
      for (std::int64_t i = 0; i < inner; ++i) y_row[i] = c_row[i * sc] ? a_row[i * sa] : b_row[i * sb];
    }
  });
}

// check_indices: y = ids, after checking every ids[p] ∈ [0, count) or ids[p] = allowed. The
// planner gives y ids' buffer (a view); the copy is for when it could not (ids is a feed).
template <typename I>
void check_indices_kernel(const KernelContext& ctx) {
  const TensorArg &ids = ctx.in(0), &y = ctx.out();
  const auto& params = ctx.params<CheckIndicesParams>();
  const std::int64_t count = params.count;
  const bool has_allowed = params.allowed.has_value();
  const std::int64_t allowed = params.allowed.value_or(0);
  const I* values = ids.as<I>();
  for (std::int64_t p = 0; p < ids.numel(); ++p) {
    const auto value = static_cast<std::int64_t>(values[p]);
    if ((value < 0 || value >= count) && !(has_allowed && value == allowed))
      ctx.fail(check_indices_message(params, ids.type, p, value));
  }
  if (y.data != ids.data) std::memcpy(y.data, ids.data, ids.type.nbytes());
}

template <typename... Ts>
void add_all(KernelRegistry& r, const OpDef& op, auto kernel_of) {
  (r.add(op, dtype_of<Ts>, kernel_of(Ts{})), ...);
}

}  // namespace

void register_indexing_kernels(KernelRegistry& r) {
  auto gather = [](auto zero) { return &gather_kernel<decltype(zero)>; };
  auto scatter_add = [](auto zero) { return &scatter_add_kernel<decltype(zero)>; };
  auto where = [](auto zero) { return &where_kernel<decltype(zero)>; };
  add_all<float, double, std::int32_t, std::int64_t, std::uint8_t>(r, ops::gather, gather);
  add_all<float, double, std::int32_t, std::int64_t>(r, ops::scatter_add, scatter_add);
  add_all<float, double, std::int32_t, std::int64_t, std::uint8_t>(r, ops::where, where);
  r.add(ops::check_indices, DType::i32, &check_indices_kernel<std::int32_t>);
  r.add(ops::check_indices, DType::i64, &check_indices_kernel<std::int64_t>);
}

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE
