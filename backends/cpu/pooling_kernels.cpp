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
#include <vector>

#include "fovea/backends/cpu/kernels.h"

namespace fovea::cpu_backend {

namespace {

using Index = std::int64_t;

// Planes per parallel chunk: enough work in each (about kElementwiseGrain outputs) to pay for
// waking a thread.
Index plane_grain(Index plane) { return std::max<Index>(1, kElementwiseGrain / std::max<Index>(1, plane)); }

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

template <typename T>
void max_pool2d_kernel(const KernelContext& ctx) {
  const Pool2dParams& p = ctx.params<Pool2dParams>();
  const T* x = ctx.in(0).as<T>();
  T* y = ctx.out().as<T>();
  const Index plane_in = p.height * p.width, plane_out = p.out_height * p.out_width;
  ctx.pool->parallel_for(p.batch * p.channels, plane_grain(plane_out), [&](Index first, Index last) {
    for (Index plane = first; plane < last; ++plane) {
      const T* in = x + plane * plane_in;
      T* out = y + plane * plane_out;
      for (Index oh = 0; oh < p.out_height; ++oh)
        for (Index ow = 0; ow < p.out_width; ++ow) {
          const Index at = window_argmax(p, in, oh, ow);
          out[oh * p.out_width + ow] = at < 0 ? -std::numeric_limits<T>::infinity() : in[at];
        }
    }
  });
}

// (x, dy) -> dx: each output's gradient added onto its window's winner.
template <typename T>
void max_pool2d_backward_kernel(const KernelContext& ctx) {
  const Pool2dParams& p = ctx.params<Pool2dParams>();
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

template <typename T>
void avg_pool2d_kernel(const KernelContext& ctx) {
  const Pool2dParams& p = ctx.params<Pool2dParams>();
  const T* x = ctx.in(0).as<T>();
  T* y = ctx.out().as<T>();
  const Index plane_in = p.height * p.width, plane_out = p.out_height * p.out_width;
  ctx.pool->parallel_for(p.batch * p.channels, plane_grain(plane_out), [&](Index first, Index last) {
    for (Index plane = first; plane < last; ++plane) {
      const T* in = x + plane * plane_in;
      T* out = y + plane * plane_out;
      for (Index oh = 0; oh < p.out_height; ++oh)
        for (Index ow = 0; ow < p.out_width; ++ow) {
          const Window w = average_window(p, oh, ow);
          T sum = 0;
          for (Index ih = w.ih0; ih < w.ih1; ++ih)
            for (Index iw = w.iw0; iw < w.iw1; ++iw) sum += in[ih * p.width + iw];
          out[oh * p.out_width + ow] = sum / static_cast<T>(w.divisor);
        }
    }
  });
}

// (dy) -> dx: each output's gradient, divided as the forward divides, added onto its window.
template <typename T>
void avg_pool2d_backward_kernel(const KernelContext& ctx) {
  const Pool2dParams& p = ctx.params<Pool2dParams>();
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

}  // namespace fovea::cpu_backend
