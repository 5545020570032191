// CPU kernels for the convolutions (ops/convolution.h): conv2d, conv2d_backward_data and
// conv2d_backward_filter, NCHW, in f32 and f64.
//
// With G groups of Cg = C/G input and Kg = K/G output channels, a kernel of R·S taps and
// P = OH·OW output positions, one image's group is a matrix product over its im2col matrix
// col [Cg·R·S, P], whose row (c, r, s) holds the input pixel under tap (r, s) of channel c for
// every output position (zero where the window hangs over the padding):
//
//   forward          y[n,g]  [Kg, P]      = w[g] [Kg, Cg·R·S] · col(x[n,g])
//   backward data    col     [Cg·R·S, P]  = w[g]ᵀ · dy[n,g],   then col2im: each column entry
//                                           ADDED back onto the pixel it was copied from
//   backward filter  dw[g]   [Kg, Cg·R·S] = Σ_n dy[n,g] [Kg, P] · col(x[n,g])ᵀ
//
// each product one single-threaded OpenBLAS gemm on one of the pool's threads (see
// matmul_kernels.cpp for why BLAS never threads itself). The columns are built a block of output
// rows at a time, sized to stay in L2 between im2col writing them and the gemm reading them
// (kColumnBudget). Parallelism:
//   - forward: tasks (image, group, block of output rows), each with its own column scratch;
//   - backward data: tasks (image, group, block of input channels), whose col2im targets are
//     disjoint; each walks its output-row blocks in order, accumulating into dx;
//   - backward filter: the (image, output-row block) pairs split into one fixed part per pool
//     thread, each part accumulating its own partial dw, the partials summed in part order at
//     the end (so the result depends on the pool's size, never on which thread ran what).
// A 1x1 kernel with stride 1 and no padding needs no im2col: x [Cg, H·W] is its own column
// matrix, and dx comes straight out of the gemm.
//
// fused_conv2d runs the forward kernel with an epilogue: each task, right after its gemm (or its
// direct loops) wrote a block of output rows, adds the bias and applies the ReLU to that block
// while it is still in cache, instead of two more passes over the whole output.
//
// With several groups of one input channel each (depthwise, Cg = 1, with Kg = 1 or a channel
// multiplier) each gemm would be a few rows by R·S: those convolutions run direct loops instead,
// one output plane (forward), input plane (backward data) or filter (backward filter) per task,
// whose innermost loop runs along a row of the image, contiguous when the stride is 1, so the
// compiler vectorises it. The common 3-wide kernel at stride 1 gathers its taps so that each
// output is loaded and stored once per three rows of taps (gather_taps), and the 3x3 'same'
// convolution runs as one flat stencil over each plane's interior rows (stencil_3x3). A single
// group of one channel (a network's first layer on grey images) stays with the gemm, whose one
// product per image covers all K filters: measured on the Fashion-MNIST shape (128 images 28x28,
// 1 -> 32 channels, 3x3), 0.8 ms forward against 15 ms for the direct loops over 28-element rows.
//
// Measured on this project's 2-core AVX-512 machine, f32, two threads, each kernel alone on
// fixed buffers (best of 15), against PyTorch 2 (oneDNN, two threads) on the same machine:
//   3x3, 64 -> 64 channels, 8 images 56x56:   forward 10.9 ms (PyTorch 8.5), data gradient 10.8
//                                             (9.3), filter gradient 11.2 (10.0)
//   depthwise 3x3, 32 channels, 8 x 56x56:    0.25 (0.24), 0.27 (0.33), 0.49 (0.27)
//   1x1, 32 -> 64 channels, 8 x 56x56:        0.62 (0.71), 0.64 (0.76), 0.66 (0.77)
// The gemm-based kernels run within 15% of OpenBLAS's own time for the same products.
#include <cblas.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "fovea/backends/cpu/kernels.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

namespace {

using Index = std::int64_t;

// Elements of im2col columns per block: 512 KiB of f32, half this machine's L2 per core.
constexpr Index kColumnBudget = Index{1} << 17;
// Partial sums per dot product of the direct filter gradient: independent lanes the compiler
// turns into vector registers (one running sum would be a chain it must keep in order).
constexpr int kLanes = 16;
// Partial sums of one long dot product: four f32 vector registers, so that four multiply-adds
// are in flight at once instead of each waiting for the last (measured: the depthwise filter
// gradient's flat runs 3x faster than with kLanes).
constexpr int kDotLanes = 64;

// c = op(a)·op(b) + beta·c, row-major, on the calling thread.
template <typename T>
void gemm(bool transpose_a, bool transpose_b, Index m, Index n, Index k, const T* a, Index lda, const T* b, Index ldb,
          T beta, T* c, Index ldc) {
  const CBLAS_TRANSPOSE ta = transpose_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = transpose_b ? CblasTrans : CblasNoTrans;
  const auto i = [](Index v) { return static_cast<blasint>(v); };
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta, tb, i(m), i(n), i(k), 1.0f, a, i(lda), b, i(ldb), beta, c, i(ldc));
  else
    cblas_dgemm(CblasRowMajor, ta, tb, i(m), i(n), i(k), 1.0, a, i(lda), b, i(ldb), beta, c, i(ldc));
}

// Scratch memory of the calling thread, kept for its life and grown as needed: the column
// buffers are overwritten whole on every use, so a warm call neither allocates nor clears.
template <typename T>
T* scratch(std::size_t count) {
  thread_local std::unique_ptr<T[]> buffer;
  thread_local std::size_t capacity = 0;
  if (count > capacity) {
    buffer = std::make_unique_for_overwrite<T[]>(count);
    capacity = count;
  }
  return buffer.get();
}

// What the forward kernel does to each block of output it has just computed: y += bias[k], then
// the activation. Without a bias and an activation (plain conv2d) it does nothing.
template <typename T>
struct Epilogue {
  const T* bias = nullptr;
  bool relu = false;

  bool empty() const { return bias == nullptr && !relu; }
  // The `count` outputs of channel k at `y`.
  void apply(Index k, T* __restrict y, Index count) const {
    const T b = bias ? bias[k] : T(0);
    if (relu)
      for (Index i = 0; i < count; ++i) y[i] = std::max(y[i] + b, T(0));
    else
      for (Index i = 0; i < count; ++i) y[i] += b;
  }
};

// The first and one-past-last i in [0, count) with 0 <= i·stride + offset < size.
std::pair<Index, Index> valid_range(Index count, Index stride, Index offset, Index size) {
  const Index first = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  const Index last = size - offset <= 0 ? 0 : (size - offset + stride - 1) / stride;
  const Index end = std::min(count, last);
  return {std::min(first, end), end};
}

bool is_pointwise(const Conv2dParams& p) {
  return p.kernel_h == 1 && p.kernel_w == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_top == 0 &&
         p.pad_left == 0 && p.out_height == p.height && p.out_width == p.width;
}

// Groups of one input channel each: direct loops rather than gemms (see the top).
bool depthwise(const Conv2dParams& p) { return p.group_in() == 1 && p.groups > 1; }

Index im2col_rows(const Conv2dParams& p) { return p.group_in() * p.kernel_h * p.kernel_w; }

// Output rows per block of columns: as many as fit kColumnBudget, at least one.
Index block_rows(const Conv2dParams& p) {
  return std::clamp<Index>(kColumnBudget / std::max<Index>(1, im2col_rows(p) * p.out_width), 1, p.out_height);
}

// BLAS indexes with blasint; refuse what it cannot index rather than overflow.
void check_blas_dims(const KernelContext& ctx, const Conv2dParams& p) {
  constexpr Index most = std::numeric_limits<blasint>::max();
  const Index plane = std::max(p.height * p.width, p.out_height * p.out_width);
  if (plane > most || im2col_rows(p) * p.out_width > most || p.group_out() > most)
    ctx.fail(fmt::format("a convolution of {}x{} images by {} rows of weights exceeds what this BLAS can index ({})",
                         p.height, p.width, im2col_rows(p), most));
}

// The im2col columns of output rows [oh0, oh1) of one image's group of Cg channel planes `x`:
// col[(c·R + r)·S + s, (oh - oh0)·OW + ow] = x[c, oh·sh - pt + r·dh, ow·sw - pl + s·dw], zero
// outside the image.
template <typename T>
void im2col(const Conv2dParams& p, const T* x, Index oh0, Index oh1, T* col) {
  const Index ow_count = p.out_width, width = (oh1 - oh0) * ow_count, plane = p.height * p.width;
  T* row = col;
  for (Index c = 0; c < p.group_in(); ++c)
    for (Index r = 0; r < p.kernel_h; ++r)
      for (Index s = 0; s < p.kernel_w; ++s, row += width) {
        const Index offset = s * p.dilation_w - p.pad_left;
        const auto [ow0, ow1] = valid_range(ow_count, p.stride_w, offset, p.width);
        for (Index oh = oh0; oh < oh1; ++oh) {
          T* out = row + (oh - oh0) * ow_count;
          const Index ih = oh * p.stride_h - p.pad_top + r * p.dilation_h;
          if (ih < 0 || ih >= p.height) {
            std::fill(out, out + ow_count, T(0));
            continue;
          }
          const T* in = x + c * plane + ih * p.width + offset;
          std::fill(out, out + ow0, T(0));
          if (p.stride_w == 1)
            std::copy(in + ow0, in + ow1, out + ow0);
          else
            for (Index ow = ow0; ow < ow1; ++ow) out[ow] = in[ow * p.stride_w];
          std::fill(out + ow1, out + ow_count, T(0));
        }
      }
}

// The adjoint of im2col: adds every column entry of output rows [oh0, oh1) onto the pixel of
// channel planes `dx` it was copied from; entries over the padding are dropped.
template <typename T>
void col2im(const Conv2dParams& p, const T* col, Index channels, Index oh0, Index oh1, T* dx) {
  const Index ow_count = p.out_width, width = (oh1 - oh0) * ow_count, plane = p.height * p.width;
  const T* row = col;
  for (Index c = 0; c < channels; ++c)
    for (Index r = 0; r < p.kernel_h; ++r)
      for (Index s = 0; s < p.kernel_w; ++s, row += width) {
        const Index offset = s * p.dilation_w - p.pad_left;
        const auto [ow0, ow1] = valid_range(ow_count, p.stride_w, offset, p.width);
        for (Index oh = oh0; oh < oh1; ++oh) {
          const Index ih = oh * p.stride_h - p.pad_top + r * p.dilation_h;
          if (ih < 0 || ih >= p.height) continue;
          const T* in = row + (oh - oh0) * ow_count;
          T* out = dx + c * plane + ih * p.width + offset;
          if (p.stride_w == 1)
            for (Index ow = ow0; ow < ow1; ++ow) out[ow] += in[ow];
          else
            for (Index ow = ow0; ow < ow1; ++ow) out[ow * p.stride_w] += in[ow];
        }
      }
}

// --- Depthwise (one input channel per group): direct loops -----------------------------------

// Rows three taps wide, gathered into one output row: out[i] += Σ_{j < Rows, s < 3}
// weights[j][s] · in[j][i + shift[s]], tap s over its own range [first[s], last[s]). Where all
// three taps reach, each output is loaded and stored once for all its 3·Rows products, the loop
// the compiler vectorises; the ends that only some taps reach go tap by tap.
template <int Rows, typename T>
void gather_taps(T* __restrict out, const std::array<const T*, 3>& in, const std::array<const T*, 3>& weights,
                 const std::array<Index, 3>& shift, const std::array<Index, 3>& first,
                 const std::array<Index, 3>& last) {
  const Index lo = std::max({first[0], first[1], first[2]});
  const Index hi = std::max(lo, std::min({last[0], last[1], last[2]}));
  for (int j = 0; j < Rows; ++j)
    for (int s = 0; s < 3; ++s) {
      const T weight = weights[j][s];
      const T* tap = in[j] + shift[s];
      for (Index i = first[s]; i < std::min(lo, last[s]); ++i) out[i] += weight * tap[i];
      for (Index i = std::max(hi, first[s]); i < last[s]; ++i) out[i] += weight * tap[i];
    }
  T w[Rows][3];
  const T* tap[Rows][3];
  for (int j = 0; j < Rows; ++j)
    for (int s = 0; s < 3; ++s) w[j][s] = weights[j][s], tap[j][s] = in[j] + shift[s];
      // The output row is never one of the input rows: no iteration depends on another.
#pragma GCC ivdep
  for (Index i = lo; i < hi; ++i) {
    T sum = out[i];
    for (int j = 0; j < Rows; ++j)
      for (int s = 0; s < 3; ++s) sum += w[j][s] * tap[j][s][i];
    out[i] = sum;
  }
}

// Adds the `count` rows of three taps gathered in `in` and `weights` onto `out`, three at a time.
template <typename T>
void gather_rows(T* out, int count, const std::array<const T*, 3>& in, const std::array<const T*, 3>& weights,
                 const std::array<Index, 3>& shift, const std::array<Index, 3>& first,
                 const std::array<Index, 3>& last) {
  if (count == 3) gather_taps<3>(out, in, weights, shift, first, last);
  if (count == 2) gather_taps<2>(out, in, weights, shift, first, last);
  if (count == 1) gather_taps<1>(out, in, weights, shift, first, last);
}

// Collects rows of three taps for gather_rows, flushing every third into `out`.
template <typename T>
struct RowGatherer {
  T* out;
  const std::array<Index, 3>&shift, &first, &last;
  std::array<const T*, 3> in{}, weights{};
  int count = 0;

  void add(const T* row, const T* row_weights) {
    in[count] = row, weights[count] = row_weights;
    if (++count == 3) flush();
  }
  void flush() {
    gather_rows(out, count, in, weights, shift, first, last);
    count = 0;
  }
};

// A 3x3 stencil between two planes of the same width: out[o, i] = Σ_{r,s} weights[r·3 + s] ·
// in[o + row_shift[r], i + shift[s]], terms outside `in` dropped (tap s reaches the output
// columns [first[s], last[s])). On the rows where all three taps' rows lie inside `in`, every
// term's index in the flat plane is the output's plus a constant, row_shift[r]·width + shift[s]:
// those rows are one long vectorised loop over the flat plane, which wraps round at their ends
// (a tap off the row's left end reads the previous row's last element), and the few columns
// where some tap falls off the row are then computed again tap by tap. The other rows go
// through RowGatherer.
template <typename T>
void stencil_3x3(const T* in, Index in_rows, T* out, Index out_rows, Index width, const T* weights,
                 const std::array<Index, 3>& row_shift, const std::array<Index, 3>& shift,
                 const std::array<Index, 3>& first, const std::array<Index, 3>& last) {
  const Index lo = std::max({first[0], first[1], first[2]});
  const Index hi = std::min({last[0], last[1], last[2]});
  Index o0 = 0, o1 = out_rows;
  for (int r = 0; r < 3; ++r) o0 = std::max(o0, -row_shift[r]), o1 = std::min(o1, in_rows - row_shift[r]);
  if (hi <= lo || o1 <= o0) o0 = o1 = 0;  // no interior: every row tap by tap
  for (Index o = 0; o < out_rows; ++o) {
    if (o >= o0 && o < o1) continue;
    T* row = out + o * width;
    std::fill(row, row + width, T(0));
    RowGatherer<T> rows{row, shift, first, last};
    for (int r = 0; r < 3; ++r)
      if (o + row_shift[r] >= 0 && o + row_shift[r] < in_rows)
        rows.add(in + (o + row_shift[r]) * width, weights + r * 3);
    rows.flush();
  }
  if (o0 == o1) return;
  std::array<Index, 9> offset{};
  std::array<T, 9> w{};
  for (int t = 0; t < 9; ++t) offset[t] = row_shift[t / 3] * width + shift[t % 3], w[t] = weights[t];
#pragma GCC ivdep
  for (Index q = o0 * width + lo; q < (o1 - 1) * width + hi; ++q) {
    T sum = 0;
    for (int t = 0; t < 9; ++t) sum += w[t] * in[q + offset[t]];
    out[q] = sum;
  }
  auto edge = [&](Index o, Index i) {
    T sum = 0;
    for (int t = 0; t < 9; ++t)
      if (i >= first[t % 3] && i < last[t % 3]) sum += w[t] * in[o * width + i + offset[t]];
    out[o * width + i] = sum;
  };
  for (Index o = o0; o < o1; ++o) {
    for (Index i = 0; i < lo; ++i) edge(o, i);
    for (Index i = hi; i < width; ++i) edge(o, i);
  }
}

// Rows three taps wide at stride 1, the common depthwise kernel: gather_taps applies.
bool three_taps(const Conv2dParams& p) { return p.kernel_w == 3 && p.stride_w == 1; }

// 3x3 at stride 1 with the output as wide as the input ('same' padding): stencil_3x3 applies.
bool flat_stencil(const Conv2dParams& p) {
  return three_taps(p) && p.kernel_h == 3 && p.stride_h == 1 && p.out_width == p.width;
}

// y[n,k] = Σ_{r,s} w[k,r,s] · x[n, k / Kg] shifted by the tap, one output plane per task.
template <typename T>
void direct_forward(ThreadPool& pool, const Conv2dParams& p, const T* x, const T* w, T* y,
                    const Epilogue<T>& epilogue) {
  const Index plane_in = p.height * p.width, plane_out = p.out_height * p.out_width, taps = p.kernel_h * p.kernel_w;
  // Three taps at stride 1: output ow reads input column ow + shift[s], for ow in [reach_begin,
  // reach_end).
  const bool fused = three_taps(p);
  std::array<Index, 3> shift{}, reach_begin{}, reach_end{};
  for (Index s = 0; fused && s < 3; ++s) {
    shift[s] = s * p.dilation_w - p.pad_left;
    std::tie(reach_begin[s], reach_end[s]) = valid_range(p.out_width, 1, shift[s], p.width);
  }
  // Output row oh reads input row oh + row_shift[r].
  const bool flat = flat_stencil(p);
  const std::array<Index, 3> row_shift{-p.pad_top, p.dilation_h - p.pad_top, 2 * p.dilation_h - p.pad_top};
  pool.parallel_for(p.batch * p.out_channels, 1, [&](Index first, Index last) {
    for (Index task = first; task < last; ++task) {
      const Index n = task / p.out_channels, k = task % p.out_channels, c = k / p.group_out();
      const T* in = x + (n * p.in_channels + c) * plane_in;
      const T* weights = w + k * taps;
      T* out = y + task * plane_out;
      if (flat) {
        stencil_3x3(in, p.height, out, p.out_height, p.width, weights, row_shift, shift, reach_begin, reach_end);
        if (!epilogue.empty()) epilogue.apply(k, out, plane_out);
        continue;
      }
      std::fill(out, out + plane_out, T(0));
      for (Index oh = 0; oh < p.out_height; ++oh) {
        T* __restrict out_row = out + oh * p.out_width;
        if (fused) {
          RowGatherer<T> rows{out_row, shift, reach_begin, reach_end};
          for (Index r = 0; r < p.kernel_h; ++r) {
            const Index ih = oh * p.stride_h - p.pad_top + r * p.dilation_h;
            if (ih >= 0 && ih < p.height) rows.add(in + ih * p.width, weights + r * 3);
          }
          rows.flush();
          continue;
        }
        for (Index r = 0; r < p.kernel_h; ++r) {
          const Index ih = oh * p.stride_h - p.pad_top + r * p.dilation_h;
          if (ih < 0 || ih >= p.height) continue;
          for (Index s = 0; s < p.kernel_w; ++s) {
            const T weight = weights[r * p.kernel_w + s];
            const Index offset = s * p.dilation_w - p.pad_left;
            const auto [ow0, ow1] = valid_range(p.out_width, p.stride_w, offset, p.width);
            const T* __restrict in_row = in + ih * p.width + offset;
            if (p.stride_w == 1)
              for (Index ow = ow0; ow < ow1; ++ow) out_row[ow] += weight * in_row[ow];
            else
              for (Index ow = ow0; ow < ow1; ++ow) out_row[ow] += weight * in_row[ow * p.stride_w];
          }
        }
      }
      if (!epilogue.empty()) epilogue.apply(k, out, plane_out);
    }
  });
}

// One input plane of a depthwise data gradient three taps wide at stride 1, row by row: dx row
// ih gathers, from each of the Kg output planes of its channel (dy, weights w, consecutive), the
// dy rows oh whose window row r lands on it (ih = oh·sh - pt + r·dh).
template <typename T>
void gather_backward_data_plane(const Conv2dParams& p, const T* dy, const T* w, T* dx,
                                const std::array<Index, 3>& shift, const std::array<Index, 3>& first,
                                const std::array<Index, 3>& last) {
  const Index plane_out = p.out_height * p.out_width, taps = p.kernel_h * 3;
  for (Index ih = 0; ih < p.height; ++ih) {
    RowGatherer<T> rows{dx + ih * p.width, shift, first, last};
    for (Index k = 0; k < p.group_out(); ++k)
      for (Index r = 0; r < p.kernel_h; ++r) {
        const Index reach = ih + p.pad_top - r * p.dilation_h;
        if (reach < 0 || reach % p.stride_h != 0 || reach / p.stride_h >= p.out_height) continue;
        rows.add(dy + k * plane_out + reach / p.stride_h * p.out_width, w + k * taps + r * 3);
      }
    rows.flush();
  }
}

// dx[n,c] = Σ over c's Kg output channels k and taps of w[k,r,s] · dy[n,k] scattered back
// through the tap, one input plane per task.
template <typename T>
void direct_backward_data(ThreadPool& pool, const Conv2dParams& p, const T* dy, const T* w, T* dx) {
  const Index plane_in = p.height * p.width, plane_out = p.out_height * p.out_width, taps = p.kernel_h * p.kernel_w;
  // Three taps at stride 1, gathered: input column iw takes output column iw - offset, for iw
  // in [reach_begin, reach_end).
  const bool fused = three_taps(p);
  std::array<Index, 3> shift{}, reach_begin{}, reach_end{};
  for (Index s = 0; fused && s < 3; ++s) {
    const Index offset = s * p.dilation_w - p.pad_left;
    const auto [ow0, ow1] = valid_range(p.out_width, 1, offset, p.width);
    shift[s] = -offset, reach_begin[s] = ow0 + offset, reach_end[s] = ow1 + offset;
  }
  // With one output channel per input channel, input row ih takes output row ih + row_shift[r].
  const bool flat = flat_stencil(p);
  const std::array<Index, 3> row_shift{p.pad_top, p.pad_top - p.dilation_h, p.pad_top - 2 * p.dilation_h};
  pool.parallel_for(p.batch * p.in_channels, 1, [&](Index first, Index last) {
    for (Index task = first; task < last; ++task) {
      const Index n = task / p.in_channels, c = task % p.in_channels;
      T* out = dx + task * plane_in;
      std::fill(out, out + plane_in, T(0));
      if (flat && p.group_out() == 1) {
        stencil_3x3(dy + (n * p.out_channels + c) * plane_out, p.out_height, out, p.height, p.width, w + c * taps,
                    row_shift, shift, reach_begin, reach_end);
        continue;
      }
      if (fused) {
        gather_backward_data_plane(p, dy + (n * p.out_channels + c * p.group_out()) * plane_out,
                                   w + c * p.group_out() * taps, out, shift, reach_begin, reach_end);
        continue;
      }
      for (Index k = c * p.group_out(); k < (c + 1) * p.group_out(); ++k) {
        const T* in = dy + (n * p.out_channels + k) * plane_out;
        const T* weights = w + k * taps;
        for (Index oh = 0; oh < p.out_height; ++oh) {
          const T* __restrict in_row = in + oh * p.out_width;
          for (Index r = 0; r < p.kernel_h; ++r) {
            const Index ih = oh * p.stride_h - p.pad_top + r * p.dilation_h;
            if (ih < 0 || ih >= p.height) continue;
            for (Index s = 0; s < p.kernel_w; ++s) {
              const T weight = weights[r * p.kernel_w + s];
              const Index offset = s * p.dilation_w - p.pad_left;
              const auto [ow0, ow1] = valid_range(p.out_width, p.stride_w, offset, p.width);
              T* __restrict out_row = out + ih * p.width + offset;
              if (p.stride_w == 1)
                for (Index ow = ow0; ow < ow1; ++ow) out_row[ow] += weight * in_row[ow];
              else
                for (Index ow = ow0; ow < ow1; ++ow) out_row[ow * p.stride_w] += weight * in_row[ow];
            }
          }
        }
      }
    }
  });
}

// Σ_i a[i]·b[i·stride] in kDotLanes independent partial sums, combined in a fixed order.
template <typename T>
T strided_dot(const T* __restrict a, const T* __restrict b, Index count, Index stride) {
  T lanes[kDotLanes] = {};
  Index i = 0;
  if (stride == 1)
    for (; i + kDotLanes <= count; i += kDotLanes)
      for (int l = 0; l < kDotLanes; ++l) lanes[l] += a[i + l] * b[i + l];
  for (; i < count; ++i) lanes[i % kDotLanes] += a[i] * b[i * stride];
  T sum = 0;
  for (T lane : lanes) sum += lane;
  return sum;
}

// Three dot products along a row at once: sums[s·kLanes + l] += Σ a[i] · in[i + shift[s]] over
// tap s's range [begin[s], end[s]), term i going to lane i mod kLanes. Where all three taps
// reach, each a[i] is loaded once for the three products and the lanes become vector registers.
template <typename T>
void add_three_dots(T* __restrict sums, const T* __restrict a, const T* in, const std::array<Index, 3>& shift,
                    const std::array<Index, 3>& begin, const std::array<Index, 3>& end) {
  const Index lo = std::max({begin[0], begin[1], begin[2]});
  const Index hi = std::max(lo, std::min({end[0], end[1], end[2]}));
  for (int s = 0; s < 3; ++s) {
    const T* tap = in + shift[s];
    T* lanes = sums + s * kLanes;
    for (Index i = begin[s]; i < std::min(lo, end[s]); ++i) lanes[i % kLanes] += a[i] * tap[i];
    for (Index i = std::max(hi, begin[s]); i < end[s]; ++i) lanes[i % kLanes] += a[i] * tap[i];
  }
  const T* __restrict tap0 = in + shift[0];
  const T* __restrict tap1 = in + shift[1];
  const T* __restrict tap2 = in + shift[2];
  Index i = lo;
  for (; i + kLanes <= hi; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      sums[l] += a[i + l] * tap0[i + l];
      sums[kLanes + l] += a[i + l] * tap1[i + l];
      sums[2 * kLanes + l] += a[i + l] * tap2[i + l];
    }
  for (; i < hi; ++i) {
    sums[i % kLanes] += a[i] * tap0[i];
    sums[kLanes + i % kLanes] += a[i] * tap1[i];
    sums[2 * kLanes + i % kLanes] += a[i] * tap2[i];
  }
}

// The filter gradient of a depthwise convolution three taps wide at stride 1, one filter k per
// task, its taps' products added into lanes per tap and summed in lane order at the end. Each
// image's rows go through add_three_dots, one row of dy against three rows of x; or, for a 3x3
// 'same' convolution (stencil_3x3's case), the rows where all three taps' rows lie in the image
// are one flat run, a long dot product per tap (strided_dot), with dy's columns where some tap
// falls off the row zeroed (in a copy) so that the run's wrapped terms vanish, and those columns
// added tap by tap. A
// wrapped term is 0·x, exactly 0 unless x there is infinite or NaN: a filter whose flat sums
// come out non-finite is computed again row by row, which never reads a wrapped x.
template <typename T>
void three_tap_backward_filter(ThreadPool& pool, const Conv2dParams& p, const T* x, const T* dy, T* dw) {
  const Index plane_in = p.height * p.width, plane_out = p.out_height * p.out_width, taps = p.kernel_h * 3;
  std::array<Index, 3> shift{}, reach_begin{}, reach_end{};
  for (Index s = 0; s < 3; ++s) {
    shift[s] = s * p.dilation_w - p.pad_left;
    std::tie(reach_begin[s], reach_end[s]) = valid_range(p.out_width, 1, shift[s], p.width);
  }
  // The flat run: output rows [o0, o1), columns [lo, hi) where every tap reaches.
  const Index lo = std::max({reach_begin[0], reach_begin[1], reach_begin[2]});
  const Index hi = std::min({reach_end[0], reach_end[1], reach_end[2]});
  Index o0 = 0, o1 = 0;
  std::array<Index, 9> offset{};
  if (flat_stencil(p) && hi > lo) {
    o0 = std::max<Index>(0, p.pad_top);
    o1 = std::min(p.out_height, p.height + p.pad_top - 2 * p.dilation_h);
    for (int t = 0; t < 9; ++t) offset[t] = (t / 3 * p.dilation_h - p.pad_top) * p.width + shift[t % 3];
  }
  if (o1 <= o0) o0 = o1 = 0;
  const Index run_begin = o0 * p.width + lo, run_count = o1 > o0 ? (o1 - 1) * p.width + hi - run_begin : 0;
  auto add_rows = [&](T* sums, const T* in, const T* grad, bool all_rows) {
    for (Index oh = 0; oh < p.out_height; ++oh) {
      if (!all_rows && oh >= o0 && oh < o1) continue;
      for (Index r = 0; r < p.kernel_h; ++r) {
        const Index ih = oh * p.stride_h - p.pad_top + r * p.dilation_h;
        if (ih < 0 || ih >= p.height) continue;
        add_three_dots(sums + r * 3 * kLanes, grad + oh * p.out_width, in + ih * p.width, shift, reach_begin,
                       reach_end);
      }
    }
  };
  auto add_flat = [&](T* sums, const T* in, const T* grad) {
    // Rows [o0, o1) of dy, their columns outside [lo, hi) zeroed; the run starts at column lo.
    T* masked = scratch<T>(static_cast<std::size_t>((o1 - o0) * p.width));
    std::copy(grad + o0 * p.width, grad + o1 * p.width, masked);
    for (Index o = o0; o < o1; ++o) {
      T* row = masked + (o - o0) * p.width;
      std::fill(row, row + lo, T(0));
      std::fill(row + hi, row + p.width, T(0));
    }
    for (int t = 0; t < 9; ++t) sums[t * kLanes] += strided_dot(masked + lo, in + run_begin + offset[t], run_count, 1);
    for (Index o = o0; o < o1; ++o)
      for (Index i = 0; i < p.width; ++i) {
        if (i == lo) i = std::max(hi, lo);
        if (i >= p.width) break;
        for (int t = 0; t < 9; ++t)
          if (i >= reach_begin[t % 3] && i < reach_end[t % 3])
            sums[t * kLanes] += grad[o * p.width + i] * in[o * p.width + i + offset[t]];
      }
  };
  pool.parallel_for(p.out_channels, 1, [&](Index first, Index last) {
    std::vector<T> sums(static_cast<std::size_t>(taps * kLanes));
    for (Index k = first; k < last; ++k) {
      const Index c = k / p.group_out();
      auto sum_filter = [&](bool flat) {
        std::fill(sums.begin(), sums.end(), T(0));
        for (Index n = 0; n < p.batch; ++n) {
          const T* in = x + (n * p.in_channels + c) * plane_in;
          const T* grad = dy + (n * p.out_channels + k) * plane_out;
          add_rows(sums.data(), in, grad, !flat);
          if (flat) add_flat(sums.data(), in, grad);
        }
        bool finite = true;
        for (Index tap = 0; tap < taps; ++tap) {
          T sum = 0;
          for (int l = 0; l < kLanes; ++l) sum += sums[static_cast<std::size_t>(tap * kLanes + l)];
          dw[k * taps + tap] = sum;
          finite = finite && std::isfinite(sum);
        }
        return finite;
      };
      if (!sum_filter(run_count > 0) && run_count > 0) sum_filter(false);
    }
  });
}

// dw[k,r,s] = Σ_{n, oh, ow} dy[n,k,oh,ow] · x[n, k / Kg, under tap (r, s)], one filter per task.
template <typename T>
void direct_backward_filter(ThreadPool& pool, const Conv2dParams& p, const T* x, const T* dy, T* dw) {
  if (three_taps(p)) return three_tap_backward_filter(pool, p, x, dy, dw);
  const Index plane_in = p.height * p.width, plane_out = p.out_height * p.out_width, taps = p.kernel_h * p.kernel_w;
  pool.parallel_for(p.out_channels, 1, [&](Index first, Index last) {
    for (Index k = first; k < last; ++k) {
      const Index c = k / p.group_out();
      T* weights = dw + k * taps;
      std::fill(weights, weights + taps, T(0));
      for (Index n = 0; n < p.batch; ++n) {
        const T* in = x + (n * p.in_channels + c) * plane_in;
        const T* grad = dy + (n * p.out_channels + k) * plane_out;
        for (Index r = 0; r < p.kernel_h; ++r)
          for (Index s = 0; s < p.kernel_w; ++s) {
            const Index offset = s * p.dilation_w - p.pad_left;
            const auto [ow0, ow1] = valid_range(p.out_width, p.stride_w, offset, p.width);
            T sum = 0;
            for (Index oh = 0; oh < p.out_height; ++oh) {
              const Index ih = oh * p.stride_h - p.pad_top + r * p.dilation_h;
              if (ih < 0 || ih >= p.height) continue;
              sum += strided_dot(grad + oh * p.out_width + ow0, in + ih * p.width + offset + ow0 * p.stride_w,
                                 ow1 - ow0, p.stride_w);
            }
            weights[r * p.kernel_w + s] += sum;
          }
      }
    }
  });
}

// --- The kernels ---------------------------------------------------------------------------

// y = conv2d(x, w), each block of it then put through `epilogue`.
template <typename T>
void conv2d_forward(const KernelContext& ctx, const Conv2dParams& p, const Epilogue<T>& epilogue) {
  const T* x = ctx.in(0).as<T>();
  const T* w = ctx.in(1).as<T>();
  T* y = ctx.out().as<T>();
  if (ctx.out().numel() == 0) return;
  if (im2col_rows(p) == 0) {  // no input channels: sums of nothing
    std::fill(y, y + ctx.out().numel(), T(0));
    const Index plane_out = p.out_height * p.out_width;
    if (!epilogue.empty())
      for (Index image = 0; image < p.batch * p.out_channels; ++image)
        epilogue.apply(image % p.out_channels, y + image * plane_out, plane_out);
    return;
  }
  if (depthwise(p)) return direct_forward(*ctx.pool, p, x, w, y, epilogue);
  check_blas_dims(ctx, p);
  const bool pointwise = is_pointwise(p);
  const Index rows = im2col_rows(p), plane_in = p.height * p.width, plane_out = p.out_height * p.out_width;
  // Enough row blocks to give every thread a task, each within the column budget.
  const Index images = p.batch * p.groups;
  const Index spread = (ctx.pool->size() + images - 1) / images;
  const Index per_block =
      std::max<Index>(1, std::min(pointwise ? p.out_height : block_rows(p), (p.out_height + spread - 1) / spread));
  const Index blocks = (p.out_height + per_block - 1) / per_block;
  ctx.pool->parallel_for(images * blocks, 1, [&](Index first, Index last) {
    for (Index task = first; task < last; ++task) {
      const Index image = task / blocks, n = image / p.groups, g = image % p.groups;
      const Index oh0 = task % blocks * per_block, oh1 = std::min(p.out_height, oh0 + per_block);
      const Index width = (oh1 - oh0) * p.out_width, column = oh0 * p.out_width;
      const T* x_group = x + (n * p.in_channels + g * p.group_in()) * plane_in;
      T* y_block = y + (n * p.out_channels + g * p.group_out()) * plane_out + column;
      const T* w_group = w + g * p.group_out() * rows;
      if (pointwise) {
        gemm<T>(false, false, p.group_out(), width, rows, w_group, rows, x_group + column, plane_in, T(0), y_block,
                plane_out);
      } else {
        T* col = scratch<T>(static_cast<std::size_t>(rows * width));
        im2col(p, x_group, oh0, oh1, col);
        gemm<T>(false, false, p.group_out(), width, rows, w_group, rows, col, width, T(0), y_block, plane_out);
      }
      if (epilogue.empty()) continue;
      for (Index k = 0; k < p.group_out(); ++k) epilogue.apply(g * p.group_out() + k, y_block + k * plane_out, width);
    }
  });
}

template <typename T>
void conv2d_kernel(const KernelContext& ctx) {
  conv2d_forward<T>(ctx, ctx.params<Conv2dParams>(), Epilogue<T>{});
}

// Inputs (x, w, bias).
template <typename T>
void fused_conv2d_kernel(const KernelContext& ctx) {
  const FusedConv2dParams& p = ctx.params<FusedConv2dParams>();
  conv2d_forward<T>(ctx, p.conv, Epilogue<T>{ctx.in(2).as<T>(), p.activation == ConvActivation::relu});
}

template <typename T>
void conv2d_backward_data_kernel(const KernelContext& ctx) {
  const Conv2dParams& p = ctx.params<Conv2dParams>();
  const T* dy = ctx.in(0).as<T>();
  const T* w = ctx.in(1).as<T>();
  T* dx = ctx.out().as<T>();
  if (ctx.out().numel() == 0) return;
  if (p.group_out() == 0 || p.out_height * p.out_width == 0) {  // no output reads any pixel
    std::fill(dx, dx + ctx.out().numel(), T(0));
    return;
  }
  if (depthwise(p)) return direct_backward_data(*ctx.pool, p, dy, w, dx);
  check_blas_dims(ctx, p);
  const bool pointwise = is_pointwise(p);
  const Index rows = im2col_rows(p), taps = p.kernel_h * p.kernel_w;
  const Index plane_in = p.height * p.width, plane_out = p.out_height * p.out_width;
  // Enough channel blocks to give every thread a task; a block's col2im writes only its channels.
  const Index images = p.batch * p.groups;
  const Index splits = std::min(p.group_in(), (ctx.pool->size() + images - 1) / images);
  const Index per_block = block_rows(p);
  ctx.pool->parallel_for(images * splits, 1, [&](Index first, Index last) {
    for (Index task = first; task < last; ++task) {
      const Index image = task / splits, n = image / p.groups, g = image % p.groups, split = task % splits;
      const Index c0 = p.group_in() * split / splits, c1 = p.group_in() * (split + 1) / splits;
      const T* dy_group = dy + (n * p.out_channels + g * p.group_out()) * plane_out;
      const T* w_block = w + g * p.group_out() * rows + c0 * taps;  // rows c0·R·S.. of w[g]ᵀ
      T* dx_block = dx + (n * p.in_channels + g * p.group_in() + c0) * plane_in;
      const Index block_rows_of_col = (c1 - c0) * taps;
      if (pointwise) {
        gemm<T>(true, false, block_rows_of_col, plane_out, p.group_out(), w_block, rows, dy_group, plane_out, T(0),
                dx_block, plane_in);
        continue;
      }
      std::fill(dx_block, dx_block + (c1 - c0) * plane_in, T(0));
      for (Index oh0 = 0; oh0 < p.out_height; oh0 += per_block) {
        const Index oh1 = std::min(p.out_height, oh0 + per_block), width = (oh1 - oh0) * p.out_width;
        T* col = scratch<T>(static_cast<std::size_t>(block_rows_of_col * width));
        gemm<T>(true, false, block_rows_of_col, width, p.group_out(), w_block, rows, dy_group + oh0 * p.out_width,
                plane_out, T(0), col, width);
        col2im(p, col, c1 - c0, oh0, oh1, dx_block);
      }
    }
  });
}

template <typename T>
void conv2d_backward_filter_kernel(const KernelContext& ctx) {
  const Conv2dParams& p = ctx.params<Conv2dParams>();
  const T* x = ctx.in(0).as<T>();
  const T* dy = ctx.in(1).as<T>();
  T* dw = ctx.out().as<T>();
  const Index size = ctx.out().numel();
  if (size == 0) return;
  if (p.batch == 0 || p.out_height * p.out_width == 0) {  // sums of nothing
    std::fill(dw, dw + size, T(0));
    return;
  }
  if (depthwise(p)) return direct_backward_filter(*ctx.pool, p, x, dy, dw);
  check_blas_dims(ctx, p);
  const bool pointwise = is_pointwise(p);
  const Index rows = im2col_rows(p), plane_in = p.height * p.width, plane_out = p.out_height * p.out_width;
  const Index per_block = pointwise ? p.out_height : block_rows(p);
  const Index blocks = (p.out_height + per_block - 1) / per_block, units = p.batch * blocks;
  // Part 0 accumulates into dw itself, the others into partials added to it at the end.
  const Index parts = std::min<Index>(ctx.pool->size(), units);
  std::vector<T> partials(static_cast<std::size_t>((parts - 1) * size));
  std::fill(dw, dw + size, T(0));
  ctx.pool->parallel_for(parts, 1, [&](Index first, Index last) {
    for (Index part = first; part < last; ++part) {
      T* sums = part == 0 ? dw : partials.data() + (part - 1) * size;
      for (Index unit = units * part / parts; unit < units * (part + 1) / parts; ++unit) {
        const Index n = unit / blocks, oh0 = unit % blocks * per_block;
        const Index oh1 = std::min(p.out_height, oh0 + per_block), width = (oh1 - oh0) * p.out_width;
        for (Index g = 0; g < p.groups; ++g) {
          const T* x_group = x + (n * p.in_channels + g * p.group_in()) * plane_in;
          const T* dy_block = dy + (n * p.out_channels + g * p.group_out()) * plane_out + oh0 * p.out_width;
          T* dw_group = sums + g * p.group_out() * rows;
          const T* col = x_group + oh0 * p.out_width;
          Index ld = plane_in;
          if (!pointwise) {
            T* buffer = scratch<T>(static_cast<std::size_t>(rows * width));
            im2col(p, x_group, oh0, oh1, buffer);
            col = buffer, ld = width;
          }
          gemm<T>(false, true, p.group_out(), rows, width, dy_block, plane_out, col, ld, T(1), dw_group, rows);
        }
      }
    }
  });
  for (Index part = 1; part < parts; ++part) {
    const T* partial = partials.data() + (part - 1) * size;
    for (Index i = 0; i < size; ++i) dw[i] += partial[i];
  }
}

}  // namespace

void register_convolution_kernels(KernelRegistry& registry) {
  registry.add(ops::conv2d, DType::f32, &conv2d_kernel<float>);
  registry.add(ops::conv2d, DType::f64, &conv2d_kernel<double>);
  registry.add(ops::fused_conv2d, DType::f32, &fused_conv2d_kernel<float>);
  registry.add(ops::fused_conv2d, DType::f64, &fused_conv2d_kernel<double>);
  registry.add(ops::conv2d_backward_data, DType::f32, &conv2d_backward_data_kernel<float>);
  registry.add(ops::conv2d_backward_data, DType::f64, &conv2d_backward_data_kernel<double>);
  registry.add(ops::conv2d_backward_filter, DType::f32, &conv2d_backward_filter_kernel<float>);
  registry.add(ops::conv2d_backward_filter, DType::f64, &conv2d_backward_filter_kernel<double>);
}

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE
