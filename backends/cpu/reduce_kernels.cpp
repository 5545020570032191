// CPU kernels for the reductions over axes:
//
//   reduce_sum:   y[k] = Σ_r x[k, r]       (f32 accumulated in f64; integers wrap around)
//   reduce_max:   y[k] = max_r x[k, r]     (NaN if any x[k, r] is NaN)
//   reduce_min:   y[k] = min_r x[k, r]     (NaN if any x[k, r] is NaN)
//   reduce_prod:  y[k] = Π_r x[k, r]       (f32 accumulated in f64; integers wrap around)
//
// where k runs over the kept axes and r over the reduced ones; and for the ops along one axis,
// argmax, argmin and cumsum, at the end of the file.
//
// Most reductions reduce one contiguous block of axes: the last ones (row sums, softmax's
// max), the leading ones (a bias gradient's column sums), or a middle block. After dropping
// size-1 axes and merging neighbours of the same kind, such an input is [outer, reduced,
// inner], and
//
//   y[o, i] = Σ_r x[o, r, i].
//
// inner == 1 is a row reduction: each output is a reduction of one contiguous run. inner > 1
// accumulates whole rows x[o, r, :] into an accumulator row, which vectorises across i. The
// work is cut into tiles (o, a block of i, a block of r) whose sizes depend only on the shape,
// and partial results of r-blocks are combined in a fixed order: the result does not depend
// on the number of threads. Any other set of axes takes a general path: for each output
// element, walk the reduced multi-index with strides.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "fovea/backends/cpu/kernels.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

namespace {

// Σ: identity 0; f32 and f64 accumulate in double. Integers accumulate in uint64_t, whose
// wrap-around is defined, and store back modulo 2^bits: the same as a wrapping i32/i64 sum.
template <typename T>
struct SumOp {
  using Acc = std::conditional_t<std::is_floating_point_v<T>, double, std::uint64_t>;
  static Acc identity() { return 0; }
  static Acc load(T v) { return static_cast<Acc>(v); }
  static Acc combine(Acc a, Acc b) { return a + b; }
  static T store(Acc a) { return static_cast<T>(a); }
};

// max: identity -inf (the lowest integer). A NaN b wins, and then stays: `v > NaN` is false.
template <typename T>
struct MaxOp {
  using Acc = T;
  static Acc identity() {
    if constexpr (std::is_floating_point_v<T>)
      return -std::numeric_limits<T>::infinity();
    else
      return std::numeric_limits<T>::lowest();
  }
  static Acc load(T v) { return v; }
  static Acc combine(Acc a, Acc b) {
    if constexpr (std::is_floating_point_v<T>)
      return (b > a || std::isnan(b)) ? b : a;
    else
      return b > a ? b : a;
  }
  static T store(Acc a) { return a; }
};

// min: identity +inf (the largest integer). A NaN b wins, and then stays: `v < NaN` is false.
template <typename T>
struct MinOp {
  using Acc = T;
  static Acc identity() {
    if constexpr (std::is_floating_point_v<T>)
      return std::numeric_limits<T>::infinity();
    else
      return std::numeric_limits<T>::max();
  }
  static Acc load(T v) { return v; }
  static Acc combine(Acc a, Acc b) {
    if constexpr (std::is_floating_point_v<T>)
      return (b < a || std::isnan(b)) ? b : a;
    else
      return b < a ? b : a;
  }
  static T store(Acc a) { return a; }
};

// Π: identity 1; f32 and f64 multiply in double. Integers multiply in uint64_t, whose
// wrap-around is defined; the product modulo 2^64, stored back modulo 2^bits, is the wrapping
// i32/i64 product.
template <typename T>
struct ProdOp {
  using Acc = std::conditional_t<std::is_floating_point_v<T>, double, std::uint64_t>;
  static Acc identity() { return 1; }
  static Acc load(T v) { return static_cast<Acc>(v); }
  static Acc combine(Acc a, Acc b) { return a * b; }
  static T store(Acc a) { return static_cast<T>(a); }
};

// Elements per parallel tile: below this a tile is not worth handing to another thread.
constexpr std::int64_t kReduceGrain = 1 << 15;
// Accumulator row length of a column tile (16 KiB of doubles: stays in L1).
constexpr std::int64_t kInnerBlock = 2048;
// Most elements one tile reduces before its partial result is set aside: lets a single long
// reduction (a full sum) run on every thread.
constexpr std::int64_t kSplit = 1 << 18;

// acc[i] = combine(acc[i], x[i]) for i < n: the loop every path is built from. It is
// independent across i, so the compiler vectorises it.
template <typename Op, typename T>
inline void accumulate(typename Op::Acc* acc, const T* x, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) acc[i] = Op::combine(acc[i], Op::load(x[i]));
}

// The same for four rows at once, x0..x3: a quarter of the accumulator loads and stores.
template <typename Op, typename T>
inline void accumulate4(typename Op::Acc* acc, const T* x0, const T* x1, const T* x2, const T* x3, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i)
    acc[i] = Op::combine(acc[i], Op::combine(Op::combine(Op::load(x0[i]), Op::load(x1[i])),
                                             Op::combine(Op::load(x2[i]), Op::load(x3[i]))));
}

// op over x[0..n). The plain loop, `for i: acc = combine(acc, x[i])`, is one chain of
// dependent steps that cannot be vectorised without reordering. Instead the run is cut into
// rows of kLanes elements, accumulated into kLanes partial results (a few vector registers)
// with the loop above, and the lanes are combined at the end, pairwise.
template <typename Op, typename T>
typename Op::Acc reduce_run(const T* x, std::int64_t n) {
  using Acc = typename Op::Acc;
  constexpr std::int64_t kLanes = 64;
  std::array<Acc, kLanes> lane;
  lane.fill(Op::identity());
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) accumulate<Op>(lane.data(), x + i, kLanes);
  accumulate<Op>(lane.data(), x + i, n - i);
  for (std::int64_t width = kLanes / 2; width >= 1; width /= 2)
    for (std::int64_t j = 0; j < width; ++j) lane[j] = Op::combine(lane[j], lane[j + width]);
  return lane[0];
}

// The input seen as [outer, reduced, inner] (contiguous) or as groups of kept and reduced
// axes (general), after dropping size-1 axes and merging neighbours of one kind.
struct ReduceLayout {
  std::vector<std::int64_t> dims;
  std::vector<bool> reduced;
  bool contiguous = false;
  std::int64_t outer = 1, count = 1, inner = 1;

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
    // Patterns K, R, KR, RK, KRK (and nothing at all) are [outer, reduced, inner].
    const std::size_t n = dims.size();
    if (n == 0) {
      contiguous = true;
    } else if (n == 1) {
      contiguous = true;
      (reduced[0] ? count : inner) = dims[0];
    } else if (n == 2) {
      contiguous = true;
      if (reduced[1])
        outer = dims[0], count = dims[1];
      else
        count = dims[0], inner = dims[1];
    } else if (n == 3 && reduced[1]) {
      contiguous = true;
      outer = dims[0], count = dims[1], inner = dims[2];
    }
  }
};

// The contiguous case, y[o, i] = op_r x[o, r, i], in tiles of (o, i-block, r-block).
template <typename Op, typename T>
void reduce_contiguous(const KernelContext& ctx, const ReduceLayout& layout, const T* x, T* y) {
  using Acc = typename Op::Acc;
  const std::int64_t outer = layout.outer, count = layout.count, inner = layout.inner;
  const std::int64_t inner_block = std::min(inner, kInnerBlock);
  const std::int64_t inner_blocks = (inner + inner_block - 1) / inner_block;
  const std::int64_t count_block = std::max<std::int64_t>(1, std::min(count, kSplit / inner_block));
  const std::int64_t count_blocks = (count + count_block - 1) / count_block;
  // With several r-blocks, tile results go to partial[o][r-block][i] and are combined after.
  std::vector<Acc> partial(count_blocks > 1 ? static_cast<std::size_t>(outer * count_blocks * inner) : 0);

  const std::int64_t tiles = outer * inner_blocks * count_blocks;
  const std::int64_t tile_elements = inner_block * count_block;
  ctx.pool->parallel_for(tiles, std::max<std::int64_t>(1, kReduceGrain / tile_elements),
                         [&](std::int64_t t0, std::int64_t t1) {
                           std::array<Acc, kInnerBlock> acc;
                           for (std::int64_t t = t0; t < t1; ++t) {
                             const std::int64_t rb = t % count_blocks;
                             const std::int64_t ib = (t / count_blocks) % inner_blocks;
                             const std::int64_t o = t / (count_blocks * inner_blocks);
                             const std::int64_t r0 = rb * count_block, r1 = std::min(count, r0 + count_block);
                             const std::int64_t i0 = ib * inner_block, n = std::min(inner, i0 + inner_block) - i0;
                             if (inner == 1) {
                               acc[0] = reduce_run<Op>(x + o * count + r0, r1 - r0);
                             } else {
                               std::fill(acc.begin(), acc.begin() + n, Op::identity());
                               const T* row = x + (o * count + r0) * inner + i0;
                               std::int64_t r = r0;
                               for (; r + 4 <= r1; r += 4, row += 4 * inner)
                                 accumulate4<Op>(acc.data(), row, row + inner, row + 2 * inner, row + 3 * inner, n);
                               for (; r < r1; ++r, row += inner) accumulate<Op>(acc.data(), row, n);
                             }
                             if (count_blocks == 1) {
                               for (std::int64_t i = 0; i < n; ++i) y[o * inner + i0 + i] = Op::store(acc[i]);
                             } else {
                               Acc* p = partial.data() + (o * count_blocks + rb) * inner + i0;
                               std::copy(acc.begin(), acc.begin() + n, p);
                             }
                           }
                         });
  if (count_blocks == 1) return;
  // y[o, i] = op over r-blocks of partial[o][rb][i], in r-block order.
  ctx.pool->parallel_for(outer * inner, std::max<std::int64_t>(1, kReduceGrain / count_blocks),
                         [&](std::int64_t k0, std::int64_t k1) {
                           for (std::int64_t k = k0; k < k1; ++k) {
                             const std::int64_t o = k / inner, i = k % inner;
                             Acc acc = Op::identity();
                             for (std::int64_t rb = 0; rb < count_blocks; ++rb)
                               acc = Op::combine(acc, partial[(o * count_blocks + rb) * inner + i]);
                             y[k] = Op::store(acc);
                           }
                         });
}

// Any set of axes: y[k] = op over the reduced multi-index r of x[offset(k) + Σ_d r_d·stride_d].
template <typename Op, typename T>
void reduce_general(const KernelContext& ctx, const ReduceLayout& layout, const T* x, T* y) {
  using Acc = typename Op::Acc;
  // Row-major strides of the collapsed input, split into kept and reduced axes.
  const int rank = static_cast<int>(layout.dims.size());
  std::vector<std::int64_t> stride(static_cast<std::size_t>(rank), 1);
  for (int d = rank - 2; d >= 0; --d) stride[d] = stride[d + 1] * layout.dims[d + 1];
  std::vector<std::int64_t> kept_dims, kept_strides, reduced_dims, reduced_strides;
  for (int d = 0; d < rank; ++d) {
    (layout.reduced[d] ? reduced_dims : kept_dims).push_back(layout.dims[d]);
    (layout.reduced[d] ? reduced_strides : kept_strides).push_back(stride[d]);
  }
  std::int64_t outputs = 1, count = 1;
  for (std::int64_t d : kept_dims) outputs *= d;
  for (std::int64_t d : reduced_dims) count *= d;
  const std::int64_t last = reduced_dims.back(), last_stride = reduced_strides.back();
  const int outer_reduced = static_cast<int>(reduced_dims.size()) - 1;

  ctx.pool->parallel_for(
      outputs, std::max<std::int64_t>(1, kReduceGrain / count), [&](std::int64_t k0, std::int64_t k1) {
        std::vector<std::int64_t> index(static_cast<std::size_t>(outer_reduced), 0);
        for (std::int64_t k = k0; k < k1; ++k) {
          std::int64_t base = 0;
          for (std::int64_t d = static_cast<std::int64_t>(kept_dims.size()) - 1, rest = k; d >= 0; --d) {
            base += (rest % kept_dims[d]) * kept_strides[d];
            rest /= kept_dims[d];
          }
          // An odometer over all reduced axes but the last; the last one is the inner loop.
          Acc acc = Op::identity();
          std::fill(index.begin(), index.end(), 0);
          std::int64_t offset = base;
          for (;;) {
            const T* run = x + offset;
            if (last_stride == 1)
              acc = Op::combine(acc, reduce_run<Op>(run, last));
            else
              for (std::int64_t r = 0; r < last; ++r) acc = Op::combine(acc, Op::load(run[r * last_stride]));
            int d = outer_reduced - 1;
            for (; d >= 0; --d) {
              offset += reduced_strides[d];
              if (++index[d] < reduced_dims[d]) break;
              offset -= reduced_strides[d] * reduced_dims[d];
              index[d] = 0;
            }
            if (d < 0) break;
          }
          y[k] = Op::store(acc);
        }
      });
}

template <typename T, template <typename> typename Op>
void reduce_kernel(const KernelContext& ctx) {
  const T* x = ctx.in(0).as<T>();
  T* y = ctx.out().as<T>();
  const std::int64_t outputs = ctx.out().numel();
  if (outputs == 0) return;
  if (ctx.in(0).numel() == 0) {
    // A zero-size reduced axis: every output reduces no elements. Shape inference rejects
    // this for max and min, whose empty results have no value.
    if constexpr (std::is_same_v<Op<T>, MaxOp<T>>) ctx.fail("the maximum of an empty set is undefined");
    if constexpr (std::is_same_v<Op<T>, MinOp<T>>) ctx.fail("the minimum of an empty set is undefined");
    std::fill(y, y + outputs, Op<T>::store(Op<T>::identity()));
    return;
  }
  const ReduceLayout layout(ctx.in(0).shape(), ctx.params<ReduceParams>().axes);
  if (layout.contiguous)
    reduce_contiguous<Op<T>>(ctx, layout, x, y);
  else
    reduce_general<Op<T>>(ctx, layout, x, y);
}

// --- argmax, argmin and cumsum: along one axis -------------------------------------------------
// x is seen as [outer, count, inner] around the axis. The work is cut into tiles of (o, a block
// of i), each walking r and updating a row of kInnerBlock running results, which vectorises
// across i as the reductions above do.

struct AxisLayout {
  std::int64_t outer = 1, count = 1, inner = 1;
  AxisLayout(const Shape& shape, int axis) {
    for (int d = 0; d < axis; ++d) outer *= shape[d];
    count = shape[axis];
    for (int d = axis + 1; d < shape.rank(); ++d) inner *= shape[d];
  }
};

// Calls f(o, i0, n) for every tile: o an outer index, [i0, i0 + n) a block of inner indices.
template <typename F>
void for_each_tile(const KernelContext& ctx, const AxisLayout& layout, F&& f) {
  const std::int64_t inner_block = std::min(layout.inner, kInnerBlock);
  const std::int64_t inner_blocks = (layout.inner + inner_block - 1) / inner_block;
  const std::int64_t tile_elements = std::max<std::int64_t>(1, inner_block * layout.count);
  ctx.pool->parallel_for(layout.outer * inner_blocks, std::max<std::int64_t>(1, kReduceGrain / tile_elements),
                         [&](std::int64_t t0, std::int64_t t1) {
                           for (std::int64_t t = t0; t < t1; ++t) {
                             const std::int64_t i0 = (t % inner_blocks) * inner_block;
                             f(t / inner_blocks, i0, std::min(layout.inner, i0 + inner_block) - i0);
                           }
                         });
}

// Whether v takes the place of `best` as the running maximum (Min: minimum). A NaN counts as
// beyond every number and equal to another NaN; an equal v wins only with `last` (the
// select_last_index of ops/reduce.h).
template <bool Min, typename T>
inline bool replaces(T v, T best, bool last) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(best)) return last && std::isnan(v);
    if (std::isnan(v)) return true;
  }
  return (Min ? v < best : v > best) || (last && v == best);
}

// y[o, i] = the r of the largest (Min: smallest) x[o, r, i], as i64.
template <typename T, bool Min>
void arg_reduce_kernel(const KernelContext& ctx) {
  const T* x = ctx.in(0).as<T>();
  auto* y = ctx.out().as<std::int64_t>();
  if (ctx.out().numel() == 0) return;
  const ArgReduceParams& p = ctx.params<ArgReduceParams>();
  const AxisLayout layout(ctx.in(0).shape(), p.axis);
  // Shape inference rejects a zero-size axis when there are outputs.
  if (layout.count == 0)
    ctx.fail(Min ? "the minimum of an empty set is undefined" : "the maximum of an empty set is undefined");
  const std::int64_t count = layout.count, inner = layout.inner;
  const bool last = p.select_last_index;
  for_each_tile(ctx, layout, [&](std::int64_t o, std::int64_t i0, std::int64_t n) {
    std::array<T, kInnerBlock> best;
    std::array<std::int64_t, kInnerBlock> index{};
    const T* row = x + o * count * inner + i0;
    std::copy(row, row + n, best.begin());
    for (std::int64_t r = 1; r < count; ++r) {
      row += inner;
      for (std::int64_t i = 0; i < n; ++i)
        if (replaces<Min>(row[i], best[i], last)) best[i] = row[i], index[i] = r;
    }
    std::copy(index.begin(), index.begin() + n, y + o * inner + i0);
  });
}

// y[o, r, i] = Σ x[o, r', i] over r' ≤ r (exclusive: r' < r; reverse: r' ≥ r, or r' > r),
// accumulated as reduce_sum accumulates (SumOp).
template <typename T>
void cumsum_kernel(const KernelContext& ctx) {
  using Acc = typename SumOp<T>::Acc;
  const T* x = ctx.in(0).as<T>();
  T* y = ctx.out().as<T>();
  if (ctx.out().numel() == 0) return;
  const CumsumParams& p = ctx.params<CumsumParams>();
  const AxisLayout layout(ctx.in(0).shape(), p.axis);
  const std::int64_t count = layout.count, inner = layout.inner;
  // Walking r backwards for reverse: the step between consecutive rows, and the first row.
  const std::int64_t step = p.reverse ? -inner : inner;
  const std::int64_t first = p.reverse ? (count - 1) * inner : 0;
  for_each_tile(ctx, layout, [&](std::int64_t o, std::int64_t i0, std::int64_t n) {
    std::array<Acc, kInnerBlock> acc;
    std::fill(acc.begin(), acc.begin() + n, SumOp<T>::identity());
    const std::int64_t base = o * count * inner + i0 + first;
    for (std::int64_t r = 0; r < count; ++r) {
      const T* in = x + base + r * step;
      T* out = y + base + r * step;
      if (p.exclusive)
        for (std::int64_t i = 0; i < n; ++i) out[i] = SumOp<T>::store(acc[i]), acc[i] += SumOp<T>::load(in[i]);
      else
        for (std::int64_t i = 0; i < n; ++i) acc[i] += SumOp<T>::load(in[i]), out[i] = SumOp<T>::store(acc[i]);
    }
  });
}

template <typename... Ts>
void add_reductions(KernelRegistry& r) {
  (r.add(ops::reduce_sum, dtype_of<Ts>, &reduce_kernel<Ts, SumOp>), ...);
  (r.add(ops::reduce_max, dtype_of<Ts>, &reduce_kernel<Ts, MaxOp>), ...);
  (r.add(ops::reduce_min, dtype_of<Ts>, &reduce_kernel<Ts, MinOp>), ...);
  (r.add(ops::reduce_prod, dtype_of<Ts>, &reduce_kernel<Ts, ProdOp>), ...);
  (r.add(ops::argmax, dtype_of<Ts>, &arg_reduce_kernel<Ts, false>), ...);
  (r.add(ops::argmin, dtype_of<Ts>, &arg_reduce_kernel<Ts, true>), ...);
  (r.add(ops::cumsum, dtype_of<Ts>, &cumsum_kernel<Ts>), ...);
}

}  // namespace

void register_reduce_kernels(KernelRegistry& registry) {
  add_reductions<float, double, std::int32_t, std::int64_t>(registry);
}

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE
