// CPU kernels for pooling and padding (ops/convolution.h): max_pool2d, avg_pool2d and their
// backward ops over NCHW images, and pad and pad_backward over tensors of any rank.
//
// A pool's channel planes are independent, forward and backward (a backward op's windows only
// ever add into their own plane), so planes are the unit of parallelism and every plane is one
// task's, accumulating without races. Max pooling's backward finds each window's winner again
// from x with the same function the forward uses (window_argmax), so the two always agree on
// which element won, ties and NaNs included.
//
// Padding works on rows along the last dim: an output row copies one input row (found by
// mapping every other dim's index back) into its middle and fills or mirrors its two ends, or
// is all `value` when some other dim's index falls in the constant padding. Its backward, the
// adjoint, gathers for each row of dx every row of dy that copies it (one per dim in constant
// mode; up to three per dim in reflect mode, the row itself and its mirror images), so that each
// row of dx is one task's.
#include <algorithm>
#include <array>
#include <limits>
#include <type_traits>
#include <vector>

#include "fovea/backends/cpu/kernels.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

namespace {

using Index = std::int64_t;

// Planes per parallel chunk: enough work in each (about kElementwiseGrain outputs) to pay for
// waking a thread.
Index plane_grain(Index plane) { return std::max<Index>(1, kElementwiseGrain / std::max<Index>(1, plane)); }

// A pool's column stride as a compile-time constant where it is a common one (1, 2 or 3), so
// that the loops over output columns read and write with a fixed stride and vectorise; 0 for
// any other stride, read at run time.
template <typename F>
void with_column_stride(Index stride, F&& f) {
  if (stride == 1) return f(std::integral_constant<Index, 1>{});
  if (stride == 2) return f(std::integral_constant<Index, 2>{});
  if (stride == 3) return f(std::integral_constant<Index, 3>{});
  f(std::integral_constant<Index, 0>{});
}

// Calls f(std::integral_constant<Index, Count>, i) over [0, n) in blocks of 8, then of 4, then
// one by one: a loop over a block of fixed length unrolls into whole vectors, where a loop of n
// iterations, n being as small as a row of a small image, would run mostly in its scalar tail.
template <typename F>
void in_blocks(Index n, F&& f) {
  Index i = 0;
  for (; i + 8 <= n; i += 8) f(std::integral_constant<Index, 8>{}, i);
  for (; i + 4 <= n; i += 4) f(std::integral_constant<Index, 4>{}, i);
  for (; i < n; ++i) f(std::integral_constant<Index, 1>{}, i);
}

// The output columns [first, last) whose windows lie wholly inside the image's width: the
// vectorised loops handle them, and the few columns either side (windows over the padding) go
// window by window.
struct Columns {
  Index first, last;
};

Columns interior_columns(const Pool2dParams& p) {
  const Index span = p.dilation_w * (p.kernel_w - 1) + 1, room = p.width + p.pad_left - span;
  const Index first = std::min(p.out_width, (p.pad_left + p.stride_w - 1) / p.stride_w);
  const Index last = room < 0 ? 0 : std::min(p.out_width, room / p.stride_w + 1);
  return {first, std::max(first, last)};
}

// Whether every in-image element lies in at most one window and the windows sit side by side
// with no gaps (stride equal to kernel, no dilation): the backward ops then write each element of
// dx once, from its own window, instead of clearing dx and accumulating into it.
bool windows_tile(const Pool2dParams& p) {
  return p.stride_h == p.kernel_h && p.stride_w == p.kernel_w && p.dilation_h == 1 && p.dilation_w == 1;
}

// The first maximal in-image element of window (oh, ow) of plane `x`, in row-major order of its
// taps (r, then s): its index in the plane, or -1 when the window holds no pixel of the image.
// A NaN is larger than everything: the first NaN wins.
template <typename T>
Index window_argmax(const Pool2dParams& p, const T* x, Index oh, Index ow) {
  Index best = -1;
  T largest{};
  for (Index r = 0; r < p.kernel_h; ++r) {
    const Index ih = oh * p.stride_h - p.pad_top + r * p.dilation_h;
    if (ih < 0 || ih >= p.height) continue;
    for (Index s = 0; s < p.kernel_w; ++s) {
      const Index iw = ow * p.stride_w - p.pad_left + s * p.dilation_w;
      if (iw < 0 || iw >= p.width) continue;
      const Index at = ih * p.width + iw;
      const T v = x[at];
      if (v != v) return at;
      if (best < 0 || v > largest) best = at, largest = v;
    }
  }
  return best;
}

// The number r * kernel_w + s of the tap of window (oh, ow) at plane index `at` (-1 stays -1).
Index tap_of(const Pool2dParams& p, Index oh, Index ow, Index at) {
  if (at < 0) return -1;
  const Index r = (at / p.width - (oh * p.stride_h - p.pad_top)) / p.dilation_h;
  const Index s = (at % p.width - (ow * p.stride_w - p.pad_left)) / p.dilation_w;
  return r * p.kernel_w + s;
}

// A tap number as an integer as wide as T, so that it rides in the same vector lanes as the
// values it is chosen with.
template <typename T>
using TapNumber = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;

// One tap of n neighbouring windows folded into their running maxima `best` (and, with Track,
// the running winners' tap numbers): the tap replaces the maximum only when strictly larger, or
// when it is the first NaN, so the first maximal tap in the fold's (row-major) order wins.
// `row` is the tap's element in the first window; the next window's is `stride` further on.
template <Index Stride, bool Track, typename T>
void fold_max_tap(const T* row, Index stride, Index n, T* best, TapNumber<T>* winner, TapNumber<T> tap, bool first) {
  const Index step = Stride ? Stride : stride;
  if (first) {
    for (Index i = 0; i < n; ++i) best[i] = row[i * step];
    if constexpr (Track) std::fill(winner, winner + n, tap);
    return;
  }
  for (Index i = 0; i < n; ++i) {
    const T v = row[i * step], b = best[i];
    const bool take = v > b || (v != v && b == b);
    best[i] = take ? v : b;
    if constexpr (Track) winner[i] = take ? tap : winner[i];
  }
}

// The maxima (and with Track the winners' tap numbers) of Count neighbouring square windows of
// a fixed size, whose rows all lie in the image, the first starting at `top`: all taps of a
// window in one pass, in row-major order. Count is fixed too, so that the compiler unrolls the
// windows into whole vectors even for the short rows of small images.
template <Index Stride, Index Kernel, bool Track, Index Count, typename T>
void max_windows_fixed(const T* top, Index width, T* best, TapNumber<T>* winner) {
  for (Index i = 0; i < Count; ++i) {
    const T* window = top + i * Stride;
    T b = window[0];
    TapNumber<T> w = 0;
    for (Index r = 0; r < Kernel; ++r)
      for (Index s = 0; s < Kernel; ++s) {
        if (r == 0 && s == 0) continue;
        const T v = window[r * width + s];
        const bool take = v > b || (v != v && b == b);
        b = take ? v : b;
        w = take ? TapNumber<T>(r * Kernel + s) : w;
      }
    best[i] = b;
    if constexpr (Track) winner[i] = w;
  }
}

// n neighbouring windows as above.
template <Index Stride, Index Kernel, bool Track, typename T>
void max_row_fixed(const T* top, Index width, Index n, T* best, TapNumber<T>* winner) {
  in_blocks(n, [&]<Index Count>(std::integral_constant<Index, Count>, Index i) {
    max_windows_fixed<Stride, Kernel, Track, Count>(top + i * Stride, width, best + i, Track ? winner + i : nullptr);
  });
}

// The maxima of output row oh's interior windows (Columns), written to best[first, last), and
// with Track their winners' tap numbers to winner[first, last).
template <Index Stride, bool Track, typename T>
void max_row_interior(const Pool2dParams& p, const T* in, Index oh, Columns cols, T* best, TapNumber<T>* winner) {
  const Index n = cols.last - cols.first, top = oh * p.stride_h - p.pad_top;
  if (n <= 0) return;
  const bool square = p.kernel_h == p.kernel_w && p.dilation_h == 1 && p.dilation_w == 1;
  if constexpr (Stride != 0) {
    if (square && top >= 0 && top + p.kernel_h <= p.height) {
      const T* window = in + top * p.width + cols.first * Stride - p.pad_left;
      TapNumber<T>* winners = Track ? winner + cols.first : nullptr;
      if (p.kernel_w == 2) return max_row_fixed<Stride, 2, Track>(window, p.width, n, best + cols.first, winners);
      if (p.kernel_w == 3) return max_row_fixed<Stride, 3, Track>(window, p.width, n, best + cols.first, winners);
    }
  }
  // Any other window: one pass over the row per tap.
  bool first = true;
  for (Index r = 0; r < p.kernel_h; ++r) {
    const Index ih = oh * p.stride_h - p.pad_top + r * p.dilation_h;
    if (ih < 0 || ih >= p.height) continue;
    const T* row = in + ih * p.width + cols.first * p.stride_w - p.pad_left;
    for (Index s = 0; s < p.kernel_w; ++s, first = false)
      fold_max_tap<Stride, Track>(row + s * p.dilation_w, p.stride_w, n, best + cols.first,
                                  Track ? winner + cols.first : nullptr, TapNumber<T>(r * p.kernel_w + s), first);
  }
  if (first) {  // no row of the window in the image
    std::fill(best + cols.first, best + cols.last, -std::numeric_limits<T>::infinity());
    if constexpr (Track) std::fill(winner + cols.first, winner + cols.last, TapNumber<T>(-1));
  }
}

// Calls f(ow) for the output columns outside Columns: the windows that reach into the padding.
template <typename F>
void for_each_edge_column(const Pool2dParams& p, Columns cols, F&& f) {
  for (Index ow = 0; ow < cols.first; ++ow) f(ow);
  for (Index ow = cols.last; ow < p.out_width; ++ow) f(ow);
}

// The forward pools' loop: row(stride, in, oh, out) for every output row `out` (row oh of a plane
// whose input plane is `in`), planes split over the pool, with the column stride as a
// compile-time constant where with_column_stride makes it one.
template <typename T, typename Row>
void for_each_output_row(const KernelContext& ctx, const Pool2dParams& p, Row&& row) {
  const T* x = ctx.in(0).as<T>();
  T* y = ctx.out().as<T>();
  const Index plane_in = p.height * p.width, plane_out = p.out_height * p.out_width;
  with_column_stride(p.stride_w, [&](auto stride) {
    ctx.pool->parallel_for(p.batch * p.channels, plane_grain(plane_out), [&](Index first, Index last) {
      for (Index plane = first; plane < last; ++plane)
        for (Index oh = 0; oh < p.out_height; ++oh)
          row(stride, x + plane * plane_in, oh, y + plane * plane_out + oh * p.out_width);
    });
  });
}

template <typename T>
void max_pool2d_kernel(const KernelContext& ctx) {
  const Pool2dParams& p = ctx.params<Pool2dParams>();
  const Columns cols = interior_columns(p);
  for_each_output_row<T>(ctx, p, [&](auto stride, const T* in, Index oh, T* out) {
    max_row_interior<decltype(stride)::value, false>(p, in, oh, cols, out, nullptr);
    for_each_edge_column(p, cols, [&](Index ow) {
      const Index at = window_argmax(p, in, oh, ow);
      out[ow] = at < 0 ? -std::numeric_limits<T>::infinity() : in[at];
    });
  });
}

// Input row ih of dx, which row r of the windows of output row oh covers, for windows that tile
// the image (windows_tile): each element takes value(ow, s) from the window (ow) and the column
// of the window (s) it lies in, or 0 when it lies in no window (the columns past the last one).
template <Index Kernel, typename T, typename F>
void write_tiled_row(const Pool2dParams& p, Columns cols, T* dx_row, F&& value, bool interior_written = false) {
  const Index k = Kernel ? Kernel : p.kernel_w;
  T* interior = dx_row + cols.first * k - p.pad_left;
  if (!interior_written)
    for (Index ow = cols.first; ow < cols.last; ++ow)
      for (Index s = 0; s < k; ++s) interior[(ow - cols.first) * k + s] = value(ow, s);
  const Index left_end = std::min(cols.first * k - p.pad_left, p.width);
  auto edge = [&](Index iw) {
    const Index ow = (iw + p.pad_left) / k;
    dx_row[iw] = ow < p.out_width ? value(ow, (iw + p.pad_left) % k) : T(0);
  };
  for (Index iw = 0; iw < left_end; ++iw) edge(iw);
  for (Index iw = std::max(cols.last * k - p.pad_left, left_end); iw < p.width; ++iw) edge(iw);
}

// The gradients of Count neighbouring square windows of a fixed size that tile the image, the
// first starting at `top` of dx: each window's gradient onto its winner, 0 onto its other taps,
// all of its rows at once (the fixed sizes unroll into vector stores).
template <Index Kernel, Index Count, typename T>
void scatter_windows_fixed(T* top, Index width, const TapNumber<T>* winner, const T* grad) {
  for (Index r = 0; r < Kernel; ++r)
    for (Index i = 0; i < Count; ++i)
      for (Index s = 0; s < Kernel; ++s)
        top[r * width + i * Kernel + s] = winner[i] == TapNumber<T>(r * Kernel + s) ? grad[i] : T(0);
}

// Calls row(ih, r, oh) for every in-image row ih of a plane whose windows tile it, r being the
// row's place in its windows (output row oh), and clears the rows below the last window.
template <typename T, typename F>
void for_each_tiled_row(const Pool2dParams& p, T* dx, F&& row) {
  for (Index oh = 0; oh < p.out_height; ++oh) {
    const Index top = oh * p.stride_h - p.pad_top;
    for (Index ih = std::max<Index>(top, 0); ih < std::min(top + p.kernel_h, p.height); ++ih) row(ih, ih - top, oh);
  }
  const Index covered = std::clamp<Index>(p.out_height * p.stride_h - p.pad_top, 0, p.height);
  std::fill(dx + covered * p.width, dx + p.height * p.width, T(0));
}

// max_pool2d_backward for windows that tile the image: per output row, each window's winner
// found once, then every dx element under the row's windows written from it.
template <typename T>
void max_pool2d_backward_tiled(const KernelContext& ctx) {
  const Pool2dParams& p = ctx.params<Pool2dParams>();
  const T* x = ctx.in(0).as<T>();
  const T* dy = ctx.in(1).as<T>();
  T* dx = ctx.out().as<T>();
  const Index plane_in = p.height * p.width, plane_out = p.out_height * p.out_width;
  const Columns cols = interior_columns(p);
  with_column_stride(p.stride_w, [&](auto stride) {
    constexpr Index kStride = decltype(stride)::value;
    ctx.pool->parallel_for(p.batch * p.channels, plane_grain(plane_in + plane_out), [&](Index first, Index last) {
      std::vector<T> best(static_cast<std::size_t>(p.out_width));
      std::vector<TapNumber<T>> winner(static_cast<std::size_t>(p.out_width));
      for (Index plane = first; plane < last; ++plane) {
        const T* in = x + plane * plane_in;
        T* out = dx + plane * plane_in;
        Index found = -1;  // the output row whose winners `winner` holds
        for_each_tiled_row(p, out, [&](Index ih, Index r, Index oh) {
          const T* grad = dy + plane * plane_out + oh * p.out_width;
          // Square 2x2 or 3x3 windows wholly inside the image's rows: their interiors written at once.
          const Index top = oh * p.stride_h - p.pad_top;
          const bool fixed =
              (kStride == 2 || kStride == 3) && p.kernel_h == p.kernel_w && top >= 0 && top + p.kernel_h <= p.height;
          const TapNumber<T>* won = winner.data();
          if (found != oh) {
            max_row_interior<kStride, true>(p, in, oh, cols, best.data(), winner.data());
            for_each_edge_column(p, cols, [&](Index ow) {
              winner[static_cast<std::size_t>(ow)] = TapNumber<T>(tap_of(p, oh, ow, window_argmax(p, in, oh, ow)));
            });
            if constexpr (kStride == 2 || kStride == 3)
              if (fixed)
                in_blocks(cols.last - cols.first, [&]<Index Count>(std::integral_constant<Index, Count>, Index i) {
                  const Index ow = cols.first + i;
                  scatter_windows_fixed<kStride, Count>(out + top * p.width + ow * kStride - p.pad_left, p.width,
                                                        won + ow, grad + ow);
                });
            found = oh;
          }
          write_tiled_row<kStride>(
              p, cols, out + ih * p.width,
              [&](Index ow, Index s) { return won[ow] == TapNumber<T>(r * p.kernel_w + s) ? grad[ow] : T(0); }, fixed);
        });
      }
    });
  });
}

// (x, dy) -> dx: each output's gradient added onto its window's winner.
template <typename T>
void max_pool2d_backward_kernel(const KernelContext& ctx) {
  const Pool2dParams& p = ctx.params<Pool2dParams>();
  if (windows_tile(p)) return max_pool2d_backward_tiled<T>(ctx);
  // Overlapping (or gapped, or dilated) windows: clear dx, then add each gradient onto its winner.
  const T* x = ctx.in(0).as<T>();
  const T* dy = ctx.in(1).as<T>();
  T* dx = ctx.out().as<T>();
  const Index plane_in = p.height * p.width, plane_out = p.out_height * p.out_width;
  ctx.pool->parallel_for(p.batch * p.channels, plane_grain(plane_in + plane_out), [&](Index first, Index last) {
    for (Index plane = first; plane < last; ++plane) {
      const T* in = x + plane * plane_in;
      const T* grad = dy + plane * plane_out;
      T* out = dx + plane * plane_in;
      std::fill(out, out + plane_in, T(0));
      for (Index oh = 0; oh < p.out_height; ++oh)
        for (Index ow = 0; ow < p.out_width; ++ow) {
          const Index at = window_argmax(p, in, oh, ow);
          if (at >= 0) out[at] += grad[oh * p.out_width + ow];
        }
    }
  });
}

// The in-image rows [ih0, ih1) and columns [iw0, iw1) of average-pooling window (oh, ow), and
// what its sum is divided by: the whole window, or its in-image part (never zero: a window
// wholly over the padding of an empty image averages to 0).
struct Window {
  Index ih0, ih1, iw0, iw1;
  double divisor;
};

Window average_window(const Pool2dParams& p, Index oh, Index ow) {
  const Index top = oh * p.stride_h - p.pad_top, left = ow * p.stride_w - p.pad_left;
  Window w{std::max<Index>(top, 0), std::min(top + p.kernel_h, p.height), std::max<Index>(left, 0),
           std::min(left + p.kernel_w, p.width), 0.0};
  const Index inside = std::max<Index>(w.ih1 - w.ih0, 0) * std::max<Index>(w.iw1 - w.iw0, 0);
  w.divisor = static_cast<double>(p.count_include_pad ? p.kernel_h * p.kernel_w : std::max<Index>(inside, 1));
  return w;
}

// The divisor of the interior windows (Columns) of output row oh: all of them cover the same
// in-image rows and every column of their width.
double interior_divisor(const Pool2dParams& p, Index oh) {
  return average_window(p, oh, interior_columns(p).first).divisor;
}

// The averages of output row oh's interior windows, written to out[first, last): the taps summed
// in row-major order, as the window-by-window sum adds them.
template <Index Stride, typename T>
void average_row_interior(const Pool2dParams& p, const T* in, Index oh, Columns cols, T* out) {
  const Index n = cols.last - cols.first, step = Stride ? Stride : p.stride_w;
  if (n <= 0) return;
  T* sums = out + cols.first;
  std::fill(sums, sums + n, T(0));
  const Window w = average_window(p, oh, cols.first);
  for (Index ih = w.ih0; ih < w.ih1; ++ih) {
    const T* row = in + ih * p.width + cols.first * p.stride_w - p.pad_left;
    for (Index s = 0; s < p.kernel_w; ++s)
      for (Index i = 0; i < n; ++i) sums[i] += row[i * step + s];
  }
  const T divisor = static_cast<T>(w.divisor);
  for (Index i = 0; i < n; ++i) sums[i] /= divisor;
}

template <typename T>
void avg_pool2d_kernel(const KernelContext& ctx) {
  const Pool2dParams& p = ctx.params<Pool2dParams>();
  const Columns cols = interior_columns(p);
  for_each_output_row<T>(ctx, p, [&](auto stride, const T* in, Index oh, T* out) {
    average_row_interior<decltype(stride)::value>(p, in, oh, cols, out);
    for_each_edge_column(p, cols, [&](Index ow) {
      const Window w = average_window(p, oh, ow);
      T sum = 0;
      for (Index ih = w.ih0; ih < w.ih1; ++ih)
        for (Index iw = w.iw0; iw < w.iw1; ++iw) sum += in[ih * p.width + iw];
      out[ow] = sum / static_cast<T>(w.divisor);
    });
  });
}

// avg_pool2d_backward for windows that tile the image: each dx element is its window's share.
template <typename T>
void avg_pool2d_backward_tiled(const KernelContext& ctx) {
  const Pool2dParams& p = ctx.params<Pool2dParams>();
  const T* dy = ctx.in(0).as<T>();
  T* dx = ctx.out().as<T>();
  const Index plane_in = p.height * p.width, plane_out = p.out_height * p.out_width;
  const Columns cols = interior_columns(p);
  with_column_stride(p.stride_w, [&](auto stride) {
    constexpr Index kStride = decltype(stride)::value;
    ctx.pool->parallel_for(p.batch * p.channels, plane_grain(plane_in + plane_out), [&](Index first, Index last) {
      std::vector<T> shares(static_cast<std::size_t>(p.out_width));
      for (Index plane = first; plane < last; ++plane) {
        T* out = dx + plane * plane_in;
        Index found = -1;  // the output row whose shares `shares` holds
        for_each_tiled_row(p, out, [&](Index ih, Index, Index oh) {
          if (found != oh) {
            const T* grad = dy + plane * plane_out + oh * p.out_width;
            const T divisor = static_cast<T>(interior_divisor(p, oh));
            for (Index ow = cols.first; ow < cols.last; ++ow) shares[static_cast<std::size_t>(ow)] = grad[ow] / divisor;
            for_each_edge_column(p, cols, [&](Index ow) {
              shares[static_cast<std::size_t>(ow)] = grad[ow] / static_cast<T>(average_window(p, oh, ow).divisor);
            });
            found = oh;
          }
          const T* share = shares.data();
          write_tiled_row<kStride>(p, cols, out + ih * p.width, [&](Index ow, Index) { return share[ow]; });
        });
      }
    });
  });
}

// (dy) -> dx: each output's gradient, divided as the forward divides, added onto its window.
template <typename T>
void avg_pool2d_backward_kernel(const KernelContext& ctx) {
  const Pool2dParams& p = ctx.params<Pool2dParams>();
  if (windows_tile(p)) return avg_pool2d_backward_tiled<T>(ctx);
  // Overlapping or gapped windows: clear dx, then add each window's share onto its elements.
  const T* dy = ctx.in(0).as<T>();
  T* dx = ctx.out().as<T>();
  const Index plane_in = p.height * p.width, plane_out = p.out_height * p.out_width;
  ctx.pool->parallel_for(p.batch * p.channels, plane_grain(plane_in + plane_out), [&](Index first, Index last) {
    for (Index plane = first; plane < last; ++plane) {
      const T* grad = dy + plane * plane_out;
      T* out = dx + plane * plane_in;
      std::fill(out, out + plane_in, T(0));
      for (Index oh = 0; oh < p.out_height; ++oh)
        for (Index ow = 0; ow < p.out_width; ++ow) {
          const Window w = average_window(p, oh, ow);
          const T share = grad[oh * p.out_width + ow] / static_cast<T>(w.divisor);
          for (Index ih = w.ih0; ih < w.ih1; ++ih)
            for (Index iw = w.iw0; iw < w.iw1; ++iw) out[ih * p.width + iw] += share;
        }
    }
  });
}

// --- Padding -------------------------------------------------------------------------------

// Along one dim of `size` padded by `before`: the index of x that output index `o` copies, or -1
// where it is constant padding. Reflect pads are smaller than the size, so one mirror suffices.
Index source_index(Index o, Index before, Index size, bool reflect) {
  const Index i = o - before;
  if (i >= 0 && i < size) return i;
  if (!reflect) return -1;
  return i < 0 ? -i : 2 * (size - 1) - i;
}

template <typename T>
void pad_kernel(const KernelContext& ctx) {
  const PadParams& p = ctx.params<PadParams>();
  const Shape &xs = ctx.in(0).shape(), &ys = ctx.out().shape();
  const T* x = ctx.in(0).as<T>();
  T* y = ctx.out().as<T>();
  if (ctx.out().numel() == 0) return;
  if (ys.rank() == 0) {
    y[0] = x[0];
    return;
  }
  const int last_dim = ys.rank() - 1;
  const bool reflect = p.mode == PadMode::reflect;
  const T value = static_cast<T>(p.value);
  const Index size = xs[last_dim], length = ys[last_dim], before = p.before.back();
  ctx.pool->parallel_for(ctx.out().numel() / length, plane_grain(length), [&](Index first, Index last) {
    for (Index row = first; row < last; ++row) {
      T* out = y + row * length;
      // The input row this output row copies, found dim by dim from the last but one.
      Index rest = row, source = 0, stride = 1;
      bool inside = true;
      for (int d = last_dim - 1; d >= 0; --d) {
        const Index i = source_index(rest % ys[d], p.before[static_cast<std::size_t>(d)], xs[d], reflect);
        rest /= ys[d];
        inside = inside && i >= 0;
        source += i * stride;
        stride *= xs[d];
      }
      if (!inside) {
        std::fill(out, out + length, value);
        continue;
      }
      const T* in = x + source * size;
      std::copy(in, in + size, out + before);
      for (Index o = 0; o < before; ++o) out[o] = reflect ? in[before - o] : value;
      for (Index o = before + size; o < length; ++o) out[o] = reflect ? in[2 * (size - 1) - (o - before)] : value;
    }
  });
}

// Along one dim of `size` padded by `before` and `after`: the output indices that copy x's
// index i, written to `out` (i + before, then in reflect mode its mirror images); returns how many.
int preimages(Index i, Index before, Index after, Index size, bool reflect, Index* out) {
  int count = 0;
  out[count++] = i + before;
  if (reflect && i >= 1 && i <= before) out[count++] = before - i;
  if (reflect && i <= size - 2 && i >= size - 1 - after) out[count++] = before + 2 * (size - 1) - i;
  return count;
}

// (dy) -> dx: the crop, plus in reflect mode every mirrored copy added back onto its original.
template <typename T>
void pad_backward_kernel(const KernelContext& ctx) {
  const PadParams& p = ctx.params<PadParams>();
  const Shape &ys = ctx.in(0).shape(), &xs = ctx.out().shape();
  const T* dy = ctx.in(0).as<T>();
  T* dx = ctx.out().as<T>();
  if (ctx.out().numel() == 0) return;
  if (xs.rank() == 0) {
    dx[0] = dy[0];
    return;
  }
  const int last_dim = xs.rank() - 1;
  const bool reflect = p.mode == PadMode::reflect;
  const Index size = xs[last_dim], length = ys[last_dim], before = p.before.back();
  ctx.pool->parallel_for(ctx.out().numel() / size, plane_grain(length), [&](Index first, Index last) {
    // Per dim but the last: the dy indices that copy this row's index along it, and which of
    // them the walk below is at.
    std::vector<std::array<Index, 3>> choices(static_cast<std::size_t>(last_dim));
    std::vector<int> counts(static_cast<std::size_t>(last_dim)), picks(static_cast<std::size_t>(last_dim));
    for (Index row = first; row < last; ++row) {
      T* out = dx + row * size;
      std::fill(out, out + size, T(0));
      Index rest = row;
      for (int d = last_dim - 1; d >= 0; --d) {
        const auto k = static_cast<std::size_t>(d);
        counts[k] = preimages(rest % xs[d], p.before[k], p.after[k], xs[d], reflect, choices[k].data());
        rest /= xs[d];
        picks[k] = 0;
      }
      // Every combination of one choice per dim is a row of dy that copies this row.
      while (true) {
        Index source = 0;
        for (int d = 0; d < last_dim; ++d) {
          const auto k = static_cast<std::size_t>(d);
          source = source * ys[d] + choices[k][static_cast<std::size_t>(picks[k])];
        }
        const T* in = dy + source * length;
        for (Index i = 0; i < size; ++i) out[i] += in[i + before];
        if (reflect) {
          for (Index o = 0; o < before; ++o) out[before - o] += in[o];
          for (Index o = before + size; o < length; ++o) out[2 * (size - 1) - (o - before)] += in[o];
        }
        int d = last_dim - 1;
        for (; d >= 0; --d) {
          const auto k = static_cast<std::size_t>(d);
          if (++picks[k] < counts[k]) break;
          picks[k] = 0;
        }
        if (d < 0) break;
      }
    }
  });
}

}  // namespace

void register_pooling_kernels(KernelRegistry& registry) {
  registry.add(ops::max_pool2d, DType::f32, &max_pool2d_kernel<float>);
  registry.add(ops::max_pool2d, DType::f64, &max_pool2d_kernel<double>);
  registry.add(ops::max_pool2d_backward, DType::f32, &max_pool2d_backward_kernel<float>);
  registry.add(ops::max_pool2d_backward, DType::f64, &max_pool2d_backward_kernel<double>);
  registry.add(ops::avg_pool2d, DType::f32, &avg_pool2d_kernel<float>);
  registry.add(ops::avg_pool2d, DType::f64, &avg_pool2d_kernel<double>);
  registry.add(ops::avg_pool2d_backward, DType::f32, &avg_pool2d_backward_kernel<float>);
  registry.add(ops::avg_pool2d_backward, DType::f64, &avg_pool2d_backward_kernel<double>);
  registry.add(ops::pad, DType::f32, &pad_kernel<float>);
  registry.add(ops::pad, DType::f64, &pad_kernel<double>);
  registry.add(ops::pad, DType::i32, &pad_kernel<std::int32_t>);
  registry.add(ops::pad, DType::i64, &pad_kernel<std::int64_t>);
  registry.add(ops::pad_backward, DType::f32, &pad_backward_kernel<float>);
  registry.add(ops::pad_backward, DType::f64, &pad_backward_kernel<double>);
}

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE
