// CPU kernels for the shape ops (ops/shape_ops.h). They move elements and compute nothing, so
// each is written once per element size (1, 2, 4 or 8 bytes) over raw bytes and registered for
// every dtype of that size: f32 and i32 share a kernel, as do f64 and i64, and bf16 and f16.
//
// Elements are moved with memcpy, which is defined whatever the element's type and, for a
// constant size, compiles to one load and one store.
#include <algorithm>
#include <cstring>
#include <vector>

#include "fovea/backends/cpu/broadcast.h"
#include "fovea/backends/cpu/kernels.h"
#include "fovea/ops/shape_ops.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

namespace {

// Copies `bytes` bytes; nothing (and no pointer is touched) when there are none.
inline void copy_bytes(std::byte* dst, const std::byte* src, std::int64_t bytes) {
  if (bytes > 0) std::memcpy(dst, src, static_cast<std::size_t>(bytes));
}

// Copies one element of `Size` bytes.
template <std::int64_t Size>
inline void copy_element(std::byte* dst, const std::byte* src) {
  std::memcpy(dst, src, Size);
}

// A large copy split over the pool.
void parallel_copy(const KernelContext& ctx, std::byte* dst, const std::byte* src, std::int64_t bytes) {
  ctx.pool->parallel_for(bytes, 8 * kElementwiseGrain, [&](std::int64_t begin, std::int64_t end) {
    copy_bytes(dst + begin, src + begin, end - begin);
  });
}

std::int64_t product(const std::vector<std::int64_t>& dims, std::size_t begin, std::size_t end) {
  std::int64_t p = 1;
  for (std::size_t i = begin; i < end; ++i) p *= dims[i];
  return p;
}

// --- reshape ------------------------------------------------------------------------------

// y[i] = x[i]: the same row-major elements under another shape. The memory planner usually
// gives y x's buffer (the op is a view), leaving nothing to do. When it could not (x is a
// parameter or a constant, whose buffers live outside the arena), the bytes are copied.
void reshape_kernel(const KernelContext& ctx) {
  const TensorArg &x = ctx.in(0), &y = ctx.out();
  if (y.data == x.data) return;
  parallel_copy(ctx, y.data, x.data, static_cast<std::int64_t>(y.type.nbytes()));
}

// --- permute ------------------------------------------------------------------------------

// A permutation reduced to its essentials: size-1 dims dropped, and runs of input axes that
// stay adjacent and in order in the output merged into one. Permuting [2,3,4,5] by (2,3,0,1)
// is permuting [6,20] by (1,0); permuting [8,1,3] by (1,0,2) is the identity on [24].
struct Permutation {
  std::vector<std::int64_t> dims;  // input dims
  std::vector<int> axes;           // output dim i is input dim axes[i]
};

Permutation simplify(const Shape& shape, const std::vector<std::int64_t>& axes) {
  const int rank = shape.rank();
  // Drop size-1 dims, renumbering the axes that remain.
  std::vector<int> renumbered(static_cast<std::size_t>(rank), -1);
  std::vector<std::int64_t> dims;
  for (int k = 0; k < rank; ++k) {
    if (shape[k] == 1) continue;
    renumbered[static_cast<std::size_t>(k)] = static_cast<int>(dims.size());
    dims.push_back(shape[k]);
  }
  std::vector<int> order;
  for (std::int64_t a : axes) {
    const int k = renumbered[static_cast<std::size_t>(a < 0 ? a + rank : a)];
    if (k >= 0) order.push_back(k);
  }
  // Group output positions whose input axes are consecutive: (first input axis, count).
  std::vector<std::pair<int, int>> groups;
  for (int k : order) {
    if (!groups.empty() && groups.back().first + groups.back().second == k)
      ++groups.back().second;
    else
      groups.push_back({k, 1});
  }
  // The merged input dims are the groups in input order; the permutation maps between orders.
  std::vector<std::size_t> by_input(groups.size());
  for (std::size_t g = 0; g < groups.size(); ++g) by_input[g] = g;
  std::sort(by_input.begin(), by_input.end(),
            [&](std::size_t a, std::size_t b) { return groups[a].first < groups[b].first; });
  Permutation p;
  p.dims.resize(groups.size());
  p.axes.resize(groups.size());
  for (std::size_t j = 0; j < by_input.size(); ++j) {
    const auto [first, count] = groups[by_input[j]];
    p.dims[j] = product(dims, static_cast<std::size_t>(first), static_cast<std::size_t>(first + count));
    p.axes[by_input[j]] = static_cast<int>(j);
  }
  return p;
}

std::vector<std::int64_t> row_major_strides(const std::vector<std::int64_t>& dims) {
  std::vector<std::int64_t> strides(dims.size(), 1);
  for (std::size_t i = dims.size(); i-- > 1;) strides[i - 1] = strides[i] * dims[i];
  return strides;
}

// A row-major loop over a box of indices that tracks one offset into the input and one into
// the output, each dim having its own stride in both: an odometer that adds strides instead
// of recomputing offsets from the index.
struct StridedLoop {
  std::vector<std::int64_t> extent, in_stride, out_stride;

  void add(std::int64_t e, std::int64_t in, std::int64_t out) {
    extent.push_back(e), in_stride.push_back(in), out_stride.push_back(out);
  }
  std::int64_t count() const { return product(extent, 0, extent.size()); }

  // Calls body(in_offset, out_offset, index) for the flat indices [begin, end).
  template <typename F>
  void run(std::int64_t begin, std::int64_t end, F&& body) const {
    const std::size_t n = extent.size();
    std::vector<std::int64_t> index(n);
    std::int64_t in = 0, out = 0, rest = begin;
    for (std::size_t k = n; k-- > 0;) {
      index[k] = rest % extent[k];
      rest /= extent[k];
      in += index[k] * in_stride[k];
      out += index[k] * out_stride[k];
    }
    for (std::int64_t i = begin; i < end; ++i) {
      body(in, out, index);
      for (std::size_t k = n; k-- > 0;) {  // advance the odometer
        in += in_stride[k], out += out_stride[k];
        if (++index[k] < extent[k]) break;
        in -= extent[k] * in_stride[k], out -= extent[k] * out_stride[k], index[k] = 0;
      }
    }
  }
};

// Side of the square tiles a transpose moves through the cache: 32 rows of 32 elements, read
// and written a cache line at a time.
constexpr std::int64_t kTile = 32;

// out[a·out_stride + b] = in[b·in_stride + a] for a < rows, b < cols: one tile of a transpose.
// The tile goes through a small local buffer so that x is read and y written a row at a time:
// were both walked by column, a power-of-two stride would map the tile's 32 cache lines onto
// a few cache sets, evicting each other (a 4096x4096 transpose ran 3x slower).
template <std::int64_t Size>
inline void transpose_tile(const std::byte* in, std::int64_t in_stride, std::byte* out, std::int64_t out_stride,
                           std::int64_t rows, std::int64_t cols) {
  std::byte tile[kTile * kTile * Size];
  for (std::int64_t b = 0; b < cols; ++b)
    for (std::int64_t a = 0; a < rows; ++a)
      copy_element<Size>(tile + (a * kTile + b) * Size, in + (b * in_stride + a) * Size);
  for (std::int64_t a = 0; a < rows; ++a) copy_bytes(out + a * out_stride * Size, tile + a * kTile * Size, cols * Size);
}

// y[i_0, .., i_{n-1}] = x[j] with j[axes[k]] = i_k.
//
// After simplify(), two cases remain:
//  - the input's last dim stays last: every output row is a contiguous run of the input,
//    copied with memcpy;
//  - it moves: call A the input's last dim (contiguous in x) and B the output's last dim
//    (contiguous in y). For every index of the other dims, the [B, A] plane of x is
//    transposed into y in kTile x kTile tiles, so that both sides are read and written a
//    cache line at a time. A batched matrix transpose ([.., R, C] -> [.., C, R]) is this
//    case with the batch as the other dims.
// Both loops are split over the pool by rows (or by tile rows).
template <std::int64_t Size>
void permute_kernel(const KernelContext& ctx) {
  const TensorArg &x = ctx.in(0), &y = ctx.out();
  if (y.numel() == 0) return;
  const Permutation p = simplify(x.shape(), ctx.params<PermuteParams>().axes);
  const auto rank = static_cast<int>(p.dims.size());
  if (rank <= 1) return parallel_copy(ctx, y.data, x.data, y.numel() * Size);

  const std::vector<std::int64_t> in_stride = row_major_strides(p.dims);
  std::vector<std::int64_t> out_dims(p.dims.size());
  for (int i = 0; i < rank; ++i) out_dims[i] = p.dims[p.axes[i]];
  const std::vector<std::int64_t> out_stride = row_major_strides(out_dims);
  const std::byte* in = x.data;
  std::byte* out = y.data;

  if (p.axes[rank - 1] == rank - 1) {
    const std::int64_t row = p.dims[rank - 1];
    StridedLoop rows;
    for (int i = 0; i + 1 < rank; ++i) rows.add(out_dims[i], in_stride[p.axes[i]], out_stride[i]);
    const std::int64_t grain = std::max<std::int64_t>(1, kElementwiseGrain / row);
    ctx.pool->parallel_for(rows.count(), grain, [&](std::int64_t begin, std::int64_t end) {
      rows.run(begin, end, [&](std::int64_t i, std::int64_t o, const std::vector<std::int64_t>&) {
        copy_bytes(out + o * Size, in + i * Size, row * Size);
      });
    });
    return;
  }

  const int a_axis = rank - 1, b_axis = p.axes[rank - 1];
  const std::int64_t a_extent = p.dims[a_axis], b_extent = p.dims[b_axis];
  const std::int64_t b_in_stride = in_stride[b_axis];
  std::int64_t a_out_stride = 0;
  StridedLoop tiles;  // the other dims in output order, then A and B in steps of kTile
  for (int i = 0; i < rank; ++i) {
    if (p.axes[i] == a_axis) a_out_stride = out_stride[i];
    if (p.axes[i] != a_axis && p.axes[i] != b_axis) tiles.add(out_dims[i], in_stride[p.axes[i]], out_stride[i]);
  }
  tiles.add((a_extent + kTile - 1) / kTile, kTile, kTile * a_out_stride);
  tiles.add((b_extent + kTile - 1) / kTile, kTile * b_in_stride, kTile);
  const std::size_t a_tile = tiles.extent.size() - 2, b_tile = a_tile + 1;
  const std::int64_t per_tile = std::min(kTile, a_extent) * std::min(kTile, b_extent);
  const std::int64_t grain = std::max<std::int64_t>(1, kElementwiseGrain / per_tile);
  ctx.pool->parallel_for(tiles.count(), grain, [&](std::int64_t begin, std::int64_t end) {
    tiles.run(begin, end, [&](std::int64_t i, std::int64_t o, const std::vector<std::int64_t>& index) {
      transpose_tile<Size>(in + i * Size, b_in_stride, out + o * Size, a_out_stride,
                           std::min(kTile, a_extent - index[a_tile] * kTile),
                           std::min(kTile, b_extent - index[b_tile] * kTile));
    });
  });
}

// --- broadcast_to -------------------------------------------------------------------------

// y[i_0, .., i_{n-1}] = x[j_{n-m}, .., j_{n-1}] with j_k = i_k where x's dim equals y's and 0
// where it is 1 (x's m dims aligned to the right of y's n). Walked as rows of y's collapsed
// inner dim: a row is either a copy of a row of x or one element of x repeated.
template <std::int64_t Size>
void broadcast_to_kernel(const KernelContext& ctx) {
  const TensorArg &x = ctx.in(0), &y = ctx.out();
  if (y.numel() == 0) return;
  const BroadcastLayout<1> layout(y.shape(), {&x.shape()});
  const std::int64_t inner = layout.inner(), stride = layout.inner_stride(0);
  const std::byte* in = x.data;
  std::byte* out = y.data;
  const std::int64_t grain = std::max<std::int64_t>(1, kElementwiseGrain / inner);
  ctx.pool->parallel_for(layout.rows(), grain, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      const std::byte* src = in + layout.row_offsets(r)[0] * Size;
      std::byte* dst = out + r * inner * Size;
      if (stride == 1)
        copy_bytes(dst, src, inner * Size);
      else
        for (std::int64_t i = 0; i < inner; ++i) copy_element<Size>(dst + i * Size, src);
    }
  });
}

// --- slice --------------------------------------------------------------------------------

// y[.., j, ..] = x[.., start + j·step, ..] for j < len, along `axis`. With the dims before
// the axis collapsed into `outer` and those after it into `inner`, x is [outer, dim, inner]
// and y is [outer, len, inner]; each (o, j) pair is a run of `inner` elements, and with step 1
// the runs of one o are contiguous in x too.
template <std::int64_t Size>
void slice_kernel(const KernelContext& ctx) {
  const TensorArg &x = ctx.in(0), &y = ctx.out();
  if (y.numel() == 0) return;
  const std::vector<std::int64_t>& dims = x.shape().dims();
  const SliceParams& params = ctx.params<SliceParams>();
  const auto k = static_cast<std::size_t>(params.axis);
  const std::int64_t dim = dims[k], len = y.shape()[params.axis];
  const std::int64_t outer = product(dims, 0, k), inner = product(dims, k + 1, dims.size());
  const std::int64_t start = params.start, step = params.step;
  const std::byte* in = x.data;
  std::byte* out = y.data;
  const std::int64_t grain = std::max<std::int64_t>(1, kElementwiseGrain / inner);
  ctx.pool->parallel_for(outer * len, grain, [&](std::int64_t begin, std::int64_t end) {
    std::int64_t o = begin / len, j = begin % len;
    for (std::int64_t run = begin; run < end; ++o, j = 0) {
      const std::int64_t count = std::min(len - j, end - run);  // runs of this o within the chunk
      const std::byte* src = in + (o * dim + start + j * step) * inner * Size;
      std::byte* dst = out + run * inner * Size;
      if (step == 1)
        copy_bytes(dst, src, count * inner * Size);
      else if (inner == 1)
        for (std::int64_t c = 0; c < count; ++c) copy_element<Size>(dst + c * Size, src + c * step * Size);
      else
        for (std::int64_t c = 0; c < count; ++c)
          copy_bytes(dst + c * inner * Size, src + c * step * inner * Size, inner * Size);
      run += count;
    }
  });
}

// --- concat -------------------------------------------------------------------------------

// y[.., offset_i + j, ..] = x_i[.., j, ..] along `axis`, offset_i = Σ_{h<i} dim_h. With the dims
// before the axis collapsed into `outer`, each x_i is [outer, dim_i·inner] and each row of y is
// the inputs' rows side by side: one memcpy per input per row. Any element size.
void concat_kernel(const KernelContext& ctx) {
  const TensorArg& y = ctx.out();
  if (y.numel() == 0) return;
  const std::vector<std::int64_t>& dims = y.shape().dims();
  const auto k = static_cast<std::size_t>(ctx.params<AxisParams>().axis);
  const auto size = static_cast<std::int64_t>(dtype_size(y.type.dtype));
  const std::int64_t outer = product(dims, 0, k), inner = product(dims, k + 1, dims.size());
  if (outer == 1) {  // along the first non-trivial axis: each input is one block of y
    std::byte* dst = y.data;
    for (const TensorArg& x : ctx.inputs) {
      const auto bytes = static_cast<std::int64_t>(x.type.nbytes());
      parallel_copy(ctx, dst, x.data, bytes);
      dst += bytes;
    }
    return;
  }
  const std::int64_t out_row = dims[k] * inner * size;  // bytes
  const std::int64_t grain = std::max<std::int64_t>(1, kElementwiseGrain / (dims[k] * inner));
  ctx.pool->parallel_for(outer, grain, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t o = begin; o < end; ++o) {
      std::byte* dst = y.data + o * out_row;
      for (const TensorArg& x : ctx.inputs) {
        const std::int64_t row = x.shape()[static_cast<int>(k)] * inner * size;
        copy_bytes(dst, x.data + o * row, row);
        dst += row;
      }
    }
  });
}

// --- registration -------------------------------------------------------------------------

constexpr DType kAllDTypes[] = {DType::f32,     DType::f64,  DType::i32, DType::i64,
                                DType::boolean, DType::bf16, DType::f16};

// Registers, for every dtype, the kernel written for its element size.
void add_by_element_size(KernelRegistry& r, const OpDef& op, Kernel one_byte, Kernel two_bytes, Kernel four_bytes,
                         Kernel eight_bytes) {
  for (DType t : kAllDTypes) {
    const std::size_t size = dtype_size(t);
    r.add(op, t, size == 1 ? one_byte : size == 2 ? two_bytes : size == 4 ? four_bytes : eight_bytes);
  }
}

}  // namespace

void register_shape_kernels(KernelRegistry& r) {
  for (DType t : kAllDTypes) {
    r.add(ops::reshape, t, &reshape_kernel);
    r.add(ops::concat, t, &concat_kernel);
  }
  add_by_element_size(r, ops::permute, &permute_kernel<1>, &permute_kernel<2>, &permute_kernel<4>, &permute_kernel<8>);
  add_by_element_size(r, ops::broadcast_to, &broadcast_to_kernel<1>, &broadcast_to_kernel<2>, &broadcast_to_kernel<4>,
                      &broadcast_to_kernel<8>);
  add_by_element_size(r, ops::slice, &slice_kernel<1>, &slice_kernel<2>, &slice_kernel<4>, &slice_kernel<8>);
}

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE
