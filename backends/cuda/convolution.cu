// CUDA kernels for convolutions, pooling and padding (ops/convolution.h), f32 and f64 (pad also
// i32 and i64); the host side is convolution_kernels.cpp. Every tensor is contiguous NCHW.
//
// --- Convolutions as implicit GEMMs -------------------------------------------------------------
//
// Per group g, each of the three conv ops is a matrix product whose operands are read straight
// from the tensors (an implicit im2col: no unfolded copy is ever made). With C/g = Cg, K/g = Kg,
//
//   conv2d                  y[k, (n,i,j)]   = Σ_(c',r,s) w[k, (c',r,s)] · X[(c',r,s), (n,i,j)]
//   conv2d_backward_data    dx[c', (n,h,w)] = Σ_(k,r,s)  w[k, c', r, s] · D[(k,r,s), (n,h,w)]
//   conv2d_backward_filter  dw[k, (c',r,s)] = Σ_(n,i,j)  dy[n, k, i, j] · X[(n,i,j), (c',r,s)]
//
// (channels counted within the group), where X is x at row i·sh - pt + r·dh, column
// j·sw - pl + s·dw (0 in the padding), and D[(k,r,s), (n,h,w)] is dy[n, k, i, j] for the whole
// i in [0, OH) with h = i·sh - pt + r·dh and j likewise, or 0 where there is none. D is the gather
// form of the transposed convolution: each dx element is summed by one thread, with no atomics.
// With a stride, most (k,r,s) give no whole i: of the taps r, only those with
// r·dh ≡ h + pt (mod sh) reach row h. So a strided backward_data is split into sh·sw products,
// one per phase ((h + pt) mod sh, (w + pl) mod sw), each over the dx pixels of its phase and
// reducing over only the taps that reach them: no multiplications by structural zeros.
//
// One kernel, implicit_gemm, computes all three, the Problem structs below supplying the index
// arithmetic. A block of 256 threads owns a 64 x 64 tile of one group's product and walks the
// reduction in steps of 16: it loads a 64 x 16 tile of the left operand and a 16 x 64 tile of the
// right into shared memory, and each thread accumulates a 4 x 4 sub-tile: rows 4·ty to 4·ty + 3,
// columns 4·tx to 4·tx + 3, so that per step of the reduction it reads its four left and four
// right elements with two 16-byte shared loads (four for f64) rather than eight scalar ones,
// which would make shared memory, not the FMAs, the limit. (Storing the transposed left tile,
// four threads share a bank; that is four stores per step against 128 loads made 32.) Each
// step's global loads are issued into registers during the previous step's FMAs. No element
// load divides: a thread loads the same left row and right column at every step, so what depends
// only on those (the image pixel of a column, the weight row of a row) is worked out once per
// tile, and what depends on the reduction index (a tap, or a pixel of dy) once per block and
// step, by 16 threads into shared memory. Indices within a product are 32-bit (the host checks
// they fit, see conv_fits_kernels); offsets into the tensors are 64-bit.
//
// conv2d_backward_filter reduces over N·OH·OW, which is often far longer than its output is
// wide. The reduction is then split into chunks, one block per (chunk, tile) writing its partial
// sums to the workspace, and a second kernel adds the chunks in order: no atomics, so the result
// depends on the shape only.
//
// Depthwise convolutions (groups = C = K) would use one row of each 64-row tile; they, and
// those with a small channel multiplier (groups = C, K ≤ 16·C), take direct kernels: one thread
// per y (or dx) element over its window, and for dw one block per weight element reducing over
// N·OH·OW in a fixed tree.
//
// --- Pools and padding ----------------------------------------------------------------------------
//
// One thread per output element (forward) or per input element (backward, the gather form: a
// dx element sums the windows that reach it, in the windows' row-major order, as a scatter over
// the windows would). max_pool2d_backward finds each window's first maximum again from x.
// pad_backward sums, for each dx element, the positions of y that copy it: itself and, in
// reflect mode, up to two mirror images per dim.
//
// Sums accumulate in the element type (f32 in f32: the GPU's f64 rate is low on most parts),
// so f32 results agree with the CPU's to rounding, not bit for bit.
//
// Not done: tensor cores (TF32 or 16-bit mma.sync, as attention_mma.cu does); cp.async copies
// straight to shared memory (two tile buffers, one barrier a step); tile shapes other than
// 64 x 64 (a conv with 16 output channels fills a quarter of each tile's rows); and the bias and
// ReLU of fused_conv2d applied as the GEMM stores its tile (they run as one more pass over y,
// bias_activation).
#include <limits>

#include "fovea/backends/cuda/device.cuh"
#include "fovea/backends/cuda/kernel_launch.cuh"

namespace fovea::cuda_backend {

namespace {

constexpr int kTileM = 64, kTileN = 64, kTileK = 16, kGemmThreads = 256;

// Shared memory of implicit_gemm: the left tile transposed, [kTileK][kTileM], the right tile,
// [kTileK][kTileN], and two steps' worth of Problem::Step, [2][kTileK].
template <typename T, typename Problem>
constexpr std::size_t gemm_shared_bytes() {
  return sizeof(T) * kTileK * (kTileM + kTileN) + 2 * kTileK * sizeof(typename Problem::Step);
}

// out[0..3] = p[0..3], p on a 16-byte boundary, in 16-byte loads.
__device__ inline void load4(const float* p, float (&out)[4]) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
}
__device__ inline void load4(const double* p, double (&out)[4]) {
  const double2 low = *reinterpret_cast<const double2*>(p), high = *reinterpret_cast<const double2*>(p + 2);
  out[0] = low.x, out[1] = low.y, out[2] = high.x, out[3] = high.y;
}

template <typename T>
__device__ inline T negative_infinity() {
  return -std::numeric_limits<T>::infinity();
}

// The sizes of one group's product [m x n] = [m x k]·[k x n], the number of groups, and the
// reduction's split into `splits` chunks of `chunk` (a multiple of kTileK when splits > 1).
struct GemmSize {
  int groups = 1, m = 0, n = 0, k = 0, splits = 1, chunk = 0;
};

// A product reduced whole, in one chunk.
GemmSize unsplit(int groups, int m, int n, int k) { return {groups, m, n, k, 1, k}; }

// A convolution's sizes as ints (each fits: conv_fits_kernels).
struct Conv {
  int batch, c, h, w, k, oh, ow, r, s, sh, sw, pt, pl, dh, dw, groups, cg, kg;
  explicit Conv(const ConvShape& a)
      : batch(static_cast<int>(a.batch)),
        c(static_cast<int>(a.in_channels)),
        h(static_cast<int>(a.height)),
        w(static_cast<int>(a.width)),
        k(static_cast<int>(a.out_channels)),
        oh(static_cast<int>(a.out_height)),
        ow(static_cast<int>(a.out_width)),
        r(static_cast<int>(a.kernel_h)),
        s(static_cast<int>(a.kernel_w)),
        sh(static_cast<int>(a.stride_h)),
        sw(static_cast<int>(a.stride_w)),
        pt(static_cast<int>(a.pad_top)),
        pl(static_cast<int>(a.pad_left)),
        dh(static_cast<int>(a.dilation_h)),
        dw(static_cast<int>(a.dilation_w)),
        groups(static_cast<int>(a.groups)),
        cg(static_cast<int>(a.in_channels / a.groups)),
        kg(static_cast<int>(a.out_channels / a.groups)) {}
  __host__ __device__ int window() const { return r * s; }
  __host__ __device__ int in_plane() const { return h * w; }
  __host__ __device__ int out_plane() const { return oh * ow; }
};

// --- The implicit GEMM ----------------------------------------------------------------------------

// Problem::Row row(g, m), Problem::Column column(g, p) and Problem::Step step(q) work out what
// a(row, step) and b(column, step) need of the left operand's row m, the right operand's column p
// (of group g) and the reduction index q: a thread computes its row and column once per tile,
// and at every step the first kTileK threads compute the next step's kTileK reduction indices
// into shared memory (two buffers: the next step's are written while this step's are read), so
// that no element load decomposes q itself. store(g, split, m, p, v) writes element (m, p) of
// the product (of chunk `split`).
template <typename T, typename Problem>
__global__ void __launch_bounds__(kGemmThreads) implicit_gemm(const Problem problem, const GemmSize size) {
  using Step = typename Problem::Step;
  extern __shared__ __align__(16) unsigned char shared[];
  T* left = reinterpret_cast<T*>(shared);                          // [kTileK][kTileM]
  T* right = left + kTileK * kTileM;                               // [kTileK][kTileN]
  Step* steps = reinterpret_cast<Step*>(right + kTileK * kTileN);  // [2][kTileK]
  const int t = static_cast<int>(threadIdx.x), tx = t % 16, ty = t / 16;
  // This thread loads left[a_col + u][a_row] and right[b_row + 4u][b_col], u < 4, at every step.
  const int a_row = t / 4, a_col = (t % 4) * 4, b_col = t % kTileN, b_row = t / kTileN;
  const std::int64_t tiles_m = (size.m + kTileM - 1) / kTileM, tiles_n = (size.n + kTileN - 1) / kTileN;
  const std::int64_t tiles = static_cast<std::int64_t>(size.groups) * size.splits * tiles_m * tiles_n;
  for (std::int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    std::int64_t rest = tile;
    const int m0 = static_cast<int>(rest % tiles_m) * kTileM;
    rest /= tiles_m;
    const int n0 = static_cast<int>(rest % tiles_n) * kTileN;
    rest /= tiles_n;
    const int split = static_cast<int>(rest % size.splits), g = static_cast<int>(rest / size.splits);
    const int k_begin = split * size.chunk;
    const int k_end = size.k - k_begin < size.chunk ? size.k : k_begin + size.chunk;
    const bool row_ok = m0 + a_row < size.m, column_ok = n0 + b_col < size.n;
    const typename Problem::Row row = row_ok ? problem.row(g, m0 + a_row) : typename Problem::Row{};
    const typename Problem::Column column = column_ok ? problem.column(g, n0 + b_col) : typename Problem::Column{};
    T acc[4][4];
#pragma unroll
    for (int u = 0; u < 4; ++u)
#pragma unroll
      for (int v = 0; v < 4; ++v) acc[u][v] = T(0);
    if (t < kTileK && k_begin + t < k_end) steps[t] = problem.step(k_begin + t);
    __syncthreads();
    // This thread's elements of the tiles of the step starting at k, read from global memory
    // into registers a step ahead, so that the loads are in flight during the FMAs.
    T next_left[4], next_right[4];
    auto fetch = [&](int k, const Step* table) {
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int qa = a_col + u, qb = b_row + 4 * u;
        next_left[u] = row_ok && k + qa < k_end ? problem.a(row, table[qa]) : T(0);
        next_right[u] = column_ok && k + qb < k_end ? problem.b(column, table[qb]) : T(0);
      }
    };
    fetch(k_begin, steps);
    for (int k0 = k_begin, buffer = 0; k0 < k_end; k0 += kTileK, buffer ^= 1) {
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        left[(a_col + u) * kTileM + a_row] = next_left[u];
        right[(b_row + 4 * u) * kTileN + b_col] = next_right[u];
      }
      // The other buffer was last read by the fetch two steps ago (or at the tile's start).
      Step* following = steps + (buffer ^ 1) * kTileK;
      if (t < kTileK && k0 + kTileK + t < k_end) following[t] = problem.step(k0 + kTileK + t);
      __syncthreads();
      if (k0 + kTileK < k_end) fetch(k0 + kTileK, following);
#pragma unroll
      for (int kk = 0; kk < kTileK; ++kk) {
        T a[4], b[4];
        load4(left + kk * kTileM + 4 * ty, a);
        load4(right + kk * kTileN + 4 * tx, b);
#pragma unroll
        for (int u = 0; u < 4; ++u)
#pragma unroll
          for (int v = 0; v < 4; ++v) acc[u][v] += a[u] * b[v];
      }
      __syncthreads();  // everyone is done with the tiles before the next step overwrites them
    }
#pragma unroll
    for (int u = 0; u < 4; ++u)
#pragma unroll
      for (int v = 0; v < 4; ++v) {
        const int m = m0 + 4 * ty + u, p = n0 + 4 * tx + v;
        if (m < size.m && p < size.n) problem.store(g, split, m, p, acc[u][v]);
      }
  }
}

// conv2d: left w [Kg, Cg·R·S] (contiguous rows), right X [Cg·R·S, N·OH·OW].
template <typename T>
struct ForwardProblem {
  Conv c;
  const T *x, *w;
  T* y;
  struct Row {
    const T* weights;
  };
  struct Column {
    const T* image;  // x[n, g·Cg]
    int h0, w0;      // the window's top left corner
  };
  struct Step {
    std::int64_t channel;  // c'·H·W
    int q, rh, rw;         // q, and the tap's offset r·dh, s·dw from the window's corner
  };
  __device__ Step step(int q) const {
    const int channel = q / c.window(), rs = q - channel * c.window(), r = rs / c.s;
    return {static_cast<std::int64_t>(channel) * c.in_plane(), q, r * c.dh, (rs - r * c.s) * c.dw};
  }
  __device__ Row row(int g, int m) const { return {w + (static_cast<std::int64_t>(g) * c.kg + m) * c.cg * c.window()}; }
  __device__ T a(const Row& row, const Step& step) const { return row.weights[step.q]; }
  __device__ Column column(int g, int p) const {
    const int n = p / c.out_plane(), ij = p - n * c.out_plane(), i = ij / c.ow, j = ij - i * c.ow;
    return {x + (static_cast<std::int64_t>(n) * c.c + static_cast<std::int64_t>(g) * c.cg) * c.in_plane(),
            i * c.sh - c.pt, j * c.sw - c.pl};
  }
  __device__ T b(const Column& column, const Step& step) const {
    const int h = column.h0 + step.rh, w_ = column.w0 + step.rw;
    if (h < 0 || h >= c.h || w_ < 0 || w_ >= c.w) return T(0);
    return column.image[step.channel + h * c.w + w_];
  }
  __device__ void store(int g, int, int m, int p, T value) const {
    const int n = p / c.out_plane(), ij = p - n * c.out_plane();
    y[(static_cast<std::int64_t>(n) * c.k + static_cast<std::int64_t>(g) * c.kg + m) * c.out_plane() + ij] = value;
  }
};

// A reduction index (k, r, s) of backward_data: its offsets in w (from w[g·Kg, c', 0, 0]) and
// in dy (from dy[n, g·Kg]), and the tap's offset r·dh, s·dw within a window.
struct TapStep {
  std::int64_t weight, gradient;
  int rh, rw;
};

__device__ inline TapStep tap_step(const Conv& c, int k, int r, int s) {
  return {static_cast<std::int64_t>(k) * c.cg * c.window() + r * c.s + s, static_cast<std::int64_t>(k) * c.out_plane(),
          r * c.dh, s * c.dw};
}

// conv2d_backward_data: left wᵀ [Cg, Kg·R·S], right D [Kg·R·S, N·H·W].
template <typename T>
struct BackwardDataProblem {
  Conv c;
  const T *dy, *w;
  T* dx;
  struct Row {
    const T* weights;  // w[g·Kg, c', 0, 0]; the next k is Cg·R·S further on
  };
  struct Column {
    const T* gradient;  // dy[n, g·Kg]
    int hp, wp;         // the pixel's position in the padded image
  };
  using Step = TapStep;
  __device__ Step step(int q) const {
    const int k = q / c.window(), rs = q - k * c.window(), r = rs / c.s;
    return tap_step(c, k, r, rs - r * c.s);
  }
  __device__ Row row(int g, int m) const { return {w + (static_cast<std::int64_t>(g) * c.kg * c.cg + m) * c.window()}; }
  __device__ T a(const Row& row, const Step& step) const { return row.weights[step.weight]; }
  __device__ Column column(int g, int p) const {
    const int n = p / c.in_plane(), hw = p - n * c.in_plane(), h = hw / c.w, w_ = hw - h * c.w;
    return {dy + (static_cast<std::int64_t>(n) * c.k + static_cast<std::int64_t>(g) * c.kg) * c.out_plane(), h + c.pt,
            w_ + c.pl};
  }
  __device__ T b(const Column& column, const Step& step) const {
    const int th = column.hp - step.rh, tw = column.wp - step.rw;
    if (th < 0 || tw < 0) return T(0);
    const int i = th / c.sh, j = tw / c.sw;
    if (i * c.sh != th || j * c.sw != tw || i >= c.oh || j >= c.ow) return T(0);
    return column.gradient[step.gradient + i * c.ow + j];
  }
  __device__ void store(int g, int, int m, int p, T value) const {
    const int n = p / c.in_plane(), hw = p - n * c.in_plane();
    dx[(static_cast<std::int64_t>(n) * c.c + static_cast<std::int64_t>(g) * c.cg + m) * c.in_plane() + hw] = value;
  }
};

// The most taps along an axis that a strided backward_data splits by phase; a kernel with more
// takes the unsplit product.
constexpr int kMaxPhaseTaps = 16;

// One phase of a strided backward_data: the dx rows h0, h0 + sh, ... (`rows` of them) and
// columns w0, w0 + sw, ..., reached by the taps tap_h[0..taps_h) and tap_w[0..taps_w).
struct Phase {
  int h0 = 0, w0 = 0, rows = 0, columns = 0, taps_h = 0, taps_w = 0;
  int tap_h[kMaxPhaseTaps] = {}, tap_w[kMaxPhaseTaps] = {};
};

// conv2d_backward_data over one phase: left wᵀ [Cg, Kg·taps_h·taps_w], right D over those taps
// [Kg·taps_h·taps_w, N·rows·columns], where every (k, tap, pixel) is a whole (i, j), in range
// or not.
template <typename T>
struct PhaseBackwardDataProblem {
  Conv c;
  Phase phase;
  const T *dy, *w;
  T* dx;
  struct Row {
    const T* weights;  // w[g·Kg, c', 0, 0]
  };
  struct Column {
    const T* gradient;  // dy[n, g·Kg]
    int hp, wp;         // the pixel's position in the padded image
  };
  using Step = TapStep;
  // Reduction index q is (k, the th-th tap r of the phase's rows, the tw-th tap s of its columns).
  __device__ Step step(int q) const {
    const int per_k = phase.taps_h * phase.taps_w, k = q / per_k, t = q - k * per_k, th = t / phase.taps_w;
    return tap_step(c, k, phase.tap_h[th], phase.tap_w[t - th * phase.taps_w]);
  }
  // dx's offset within one image plane of pixel p of the phase, and p's batch item.
  __device__ int pixel(int p, int& n) const {
    const int per_n = phase.rows * phase.columns;
    n = p / per_n;
    const int t = p - n * per_n, hi = t / phase.columns, wi = t - hi * phase.columns;
    return (phase.h0 + hi * c.sh) * c.w + phase.w0 + wi * c.sw;
  }
  __device__ Row row(int g, int m) const { return {w + (static_cast<std::int64_t>(g) * c.kg * c.cg + m) * c.window()}; }
  __device__ T a(const Row& row, const Step& step) const { return row.weights[step.weight]; }
  __device__ Column column(int g, int p) const {
    int n;
    const int hw = pixel(p, n), h = hw / c.w;
    return {dy + (static_cast<std::int64_t>(n) * c.k + static_cast<std::int64_t>(g) * c.kg) * c.out_plane(), h + c.pt,
            hw - h * c.w + c.pl};
  }
  __device__ T b(const Column& column, const Step& step) const {
    const int th = column.hp - step.rh, tw = column.wp - step.rw;
    if (th < 0 || tw < 0) return T(0);
    const int i = th / c.sh, j = tw / c.sw;  // whole: the taps are this phase's
    if (i >= c.oh || j >= c.ow) return T(0);
    return column.gradient[step.gradient + i * c.ow + j];
  }
  __device__ void store(int g, int, int m, int p, T value) const {
    int n;
    const int hw = pixel(p, n);
    dx[(static_cast<std::int64_t>(n) * c.c + static_cast<std::int64_t>(g) * c.cg + m) * c.in_plane() + hw] = value;
  }
};

// conv2d_backward_filter: left dy [Kg, N·OH·OW], right X [N·OH·OW, Cg·R·S]. Chunk `split` of
// the reduction writes to target + split·K·Cg·R·S (target is dw when there is one chunk).
template <typename T>
struct BackwardFilterProblem {
  Conv c;
  const T *x, *dy;
  T* target;
  struct Row {
    const T* gradient;  // dy[0, g·Kg + k]
  };
  struct Column {
    const T* image;  // x[0, g·Cg + c']
    int h0, w0;      // the offset of the tap (r, s) from a window's corner, less the padding
  };
  struct Step {
    std::int64_t gradient, image;  // offsets of (n, i, j) in dy from dy[0, k], and of x[n] from x[0]
    int ih, jw;                    // i·sh, j·sw
  };
  __device__ Step step(int q) const {
    const int n = q / c.out_plane(), ij = q - n * c.out_plane(), i = ij / c.ow;
    return {static_cast<std::int64_t>(n) * c.k * c.out_plane() + ij, static_cast<std::int64_t>(n) * c.c * c.in_plane(),
            i * c.sh, (ij - i * c.ow) * c.sw};
  }
  __device__ Row row(int g, int m) const { return {dy + (static_cast<std::int64_t>(g) * c.kg + m) * c.out_plane()}; }
  __device__ T a(const Row& row, const Step& step) const { return row.gradient[step.gradient]; }
  __device__ Column column(int g, int p) const {
    const int channel = p / c.window(), rs = p - channel * c.window(), r = rs / c.s, s = rs - r * c.s;
    return {x + (static_cast<std::int64_t>(g) * c.cg + channel) * c.in_plane(), r * c.dh - c.pt, s * c.dw - c.pl};
  }
  __device__ T b(const Column& column, const Step& step) const {
    const int h = step.ih + column.h0, w_ = step.jw + column.w0;
    if (h < 0 || h >= c.h || w_ < 0 || w_ >= c.w) return T(0);
    return column.image[step.image + h * c.w + w_];
  }
  __device__ void store(int g, int split, int m, int p, T value) const {
    const std::int64_t filter = static_cast<std::int64_t>(c.k) * c.cg * c.window();
    target[split * filter + (static_cast<std::int64_t>(g) * c.kg + m) * c.cg * c.window() + p] = value;
  }
};

// dw[e] = Σ_split partial[split·count + e], the chunks in order.
template <typename T>
__global__ void add_chunks(const T* partial, T* dw, std::int64_t count, int splits) {
  for (std::int64_t e = first_element(); e < count; e += grid_stride()) {
    T sum = T(0);
    for (int split = 0; split < splits; ++split) sum += partial[split * count + e];
    dw[e] = sum;
  }
}

template <typename T, typename Problem>
void run_gemm(const Problem& problem, const GemmSize& size, cudaStream_t stream) {
  const std::int64_t tiles = static_cast<std::int64_t>(size.groups) * size.splits * ((size.m + kTileM - 1) / kTileM) *
                             ((size.n + kTileN - 1) / kTileN);
  if (tiles == 0) return;
  constexpr std::size_t bytes = gemm_shared_bytes<T, Problem>();
  FOVEA_LAUNCH((implicit_gemm<T, Problem>), grid_for(tiles), kGemmThreads, bytes, stream)
  (problem, size);
}

// The taps t < taps of one axis with t·dilation ≡ phase (mod stride), into `out`; how many.
int phase_taps(int phase, int taps, int stride, int dilation, int (&out)[kMaxPhaseTaps]) {
  int count = 0;
  for (int t = 0; t < taps; ++t)
    if (t * dilation % stride == phase) out[count++] = t;
  return count;
}

// A strided backward_data as one product per phase; a phase no tap reaches gets zeros (a
// product with an empty reduction).
template <typename T>
void strided_backward_data(const Conv& c, const T* dy, const T* w, T* dx, cudaStream_t stream) {
  for (int ph = 0; ph < c.sh; ++ph)
    for (int pw = 0; pw < c.sw; ++pw) {
      Phase phase;
      phase.h0 = ((ph - c.pt) % c.sh + c.sh) % c.sh;
      phase.w0 = ((pw - c.pl) % c.sw + c.sw) % c.sw;
      phase.rows = phase.h0 < c.h ? (c.h - phase.h0 + c.sh - 1) / c.sh : 0;
      phase.columns = phase.w0 < c.w ? (c.w - phase.w0 + c.sw - 1) / c.sw : 0;
      phase.taps_h = phase_taps(ph, c.r, c.sh, c.dh, phase.tap_h);
      phase.taps_w = phase_taps(pw, c.s, c.sw, c.dw, phase.tap_w);
      const PhaseBackwardDataProblem<T> problem{c, phase, dy, w, dx};
      run_gemm<T>(problem,
                  unsplit(c.groups, c.cg, c.batch * phase.rows * phase.columns, c.kg * phase.taps_h * phase.taps_w),
                  stream);
    }
}

// The backward filter's product and its split: enough blocks to fill a large GPU (a few per
// SM), but chunks of at least 32 steps, so that the partial sums stay a small part of the work.
GemmSize filter_size(const Conv& c) {
  GemmSize size = unsplit(c.groups, c.kg, c.cg * c.window(), c.batch * c.out_plane());
  constexpr std::int64_t kTargetBlocks = 512, kMinChunk = 32 * kTileK;
  const std::int64_t tiles =
      static_cast<std::int64_t>(c.groups) * ((size.m + kTileM - 1) / kTileM) * ((size.n + kTileN - 1) / kTileN);
  if (size.k == 0 || tiles == 0) return size;
  std::int64_t splits = (kTargetBlocks + tiles - 1) / tiles;
  const std::int64_t most = (size.k + kMinChunk - 1) / kMinChunk;
  if (splits > most) splits = most;
  if (splits < 1) splits = 1;
  const std::int64_t chunk = ((size.k + splits - 1) / splits + kTileK - 1) / kTileK * kTileK;
  size.chunk = static_cast<int>(chunk);
  size.splits = static_cast<int>((size.k + chunk - 1) / chunk);
  return size;
}

// --- Depthwise convolutions -----------------------------------------------------------------------

// Here groups = C: output channel k reads input channel k / Kg alone (Kg = 1: depthwise; more:
// a channel multiplier).

// y[n,k,i,j] = Σ_(r,s) x[n, k / Kg, i·sh - pt + r·dh, j·sw - pl + s·dw]·w[k, 0, r, s]
template <typename T>
__global__ void depthwise_forward(Conv c, const T* x, const T* w, T* y) {
  const std::int64_t count = static_cast<std::int64_t>(c.batch) * c.k * c.out_plane();
  for (std::int64_t e = first_element(); e < count; e += grid_stride()) {
    const std::int64_t image = e / c.out_plane();  // n·K + k
    const int ij = static_cast<int>(e - image * c.out_plane()), i = ij / c.ow, j = ij - i * c.ow;
    const int k = static_cast<int>(image % c.k);
    const T* in = x + (image / c.k * c.c + k / c.kg) * c.in_plane();
    const T* weights = w + static_cast<std::int64_t>(k) * c.window();
    T sum = T(0);
    for (int r = 0; r < c.r; ++r) {
      const int h = i * c.sh - c.pt + r * c.dh;
      if (h < 0 || h >= c.h) continue;
      for (int s = 0; s < c.s; ++s) {
        const int w_ = j * c.sw - c.pl + s * c.dw;
        if (w_ >= 0 && w_ < c.w) sum += in[h * c.w + w_] * weights[r * c.s + s];
      }
    }
    y[e] = sum;
  }
}

// dx[n,c,h,w] = Σ dy[n,k,i,j]·w[k,0,r,s] over c's output channels k, and the taps (r, s) and
// windows (i, j) that read (h, w).
template <typename T>
__global__ void depthwise_backward_data(Conv c, const T* dy, const T* w, T* dx) {
  const std::int64_t count = static_cast<std::int64_t>(c.batch) * c.c * c.in_plane();
  for (std::int64_t e = first_element(); e < count; e += grid_stride()) {
    const std::int64_t image = e / c.in_plane();  // n·C + channel
    const int hw = static_cast<int>(e - image * c.in_plane()), h = hw / c.w, w_ = hw - h * c.w;
    const int channel = static_cast<int>(image % c.c);
    T sum = T(0);
    for (int k = channel * c.kg; k < (channel + 1) * c.kg; ++k) {
      const T* gradient = dy + (image / c.c * c.k + k) * c.out_plane();
      const T* weights = w + static_cast<std::int64_t>(k) * c.window();
      for (int r = 0; r < c.r; ++r) {
        const int th = h + c.pt - r * c.dh, i = th / c.sh;
        if (th < 0 || i * c.sh != th || i >= c.oh) continue;
        for (int s = 0; s < c.s; ++s) {
          const int tw = w_ + c.pl - s * c.dw, j = tw / c.sw;
          if (tw >= 0 && j * c.sw == tw && j < c.ow) sum += gradient[i * c.ow + j] * weights[r * c.s + s];
        }
      }
    }
    dx[e] = sum;
  }
}

// dw[k,0,r,s] = Σ_(n,i,j) dy[n,k,i,j]·x[n, k / Kg, i·sh - pt + r·dh, j·sw - pl + s·dw]: one
// block per weight, each thread summing every blockDim-th (n,i,j), then a tree over the threads.
template <typename T>
__global__ void __launch_bounds__(kThreads) depthwise_backward_filter(Conv c, const T* x, const T* dy, T* dw) {
  extern __shared__ __align__(16) unsigned char shared[];
  T* partial = reinterpret_cast<T*>(shared);
  const int t = static_cast<int>(threadIdx.x);
  const std::int64_t weights = static_cast<std::int64_t>(c.k) * c.window();
  const int reduced = c.batch * c.out_plane();
  for (std::int64_t e = blockIdx.x; e < weights; e += gridDim.x) {
    const int k = static_cast<int>(e / c.window()), rs = static_cast<int>(e % c.window()), channel = k / c.kg;
    const int r = rs / c.s, s = rs - r * c.s;
    T sum = T(0);
    for (int q = t; q < reduced; q += kThreads) {
      const int n = q / c.out_plane(), ij = q - n * c.out_plane(), i = ij / c.ow, j = ij - i * c.ow;
      const int h = i * c.sh - c.pt + r * c.dh, w_ = j * c.sw - c.pl + s * c.dw;
      if (h < 0 || h >= c.h || w_ < 0 || w_ >= c.w) continue;
      sum += dy[(static_cast<std::int64_t>(n) * c.k + k) * c.out_plane() + ij] *
             x[(static_cast<std::int64_t>(n) * c.c + channel) * c.in_plane() + h * c.w + w_];
    }
    partial[t] = sum;
    __syncthreads();
    for (int half = kThreads / 2; half > 0; half /= 2) {
      if (t < half) partial[t] += partial[t + half];
      __syncthreads();
    }
    if (t == 0) dw[e] = partial[0];
  }
}

// --- Pools -------------------------------------------------------------------------------------------

// A pool's sizes as ints (the host checks each fits).
struct Pool {
  int h, w, oh, ow, r, s, sh, sw, pt, pl, dh, dw;
  std::int64_t planes;  // N·C
  bool count_include_pad;
  explicit Pool(const PoolShape& a)
      : h(static_cast<int>(a.height)),
        w(static_cast<int>(a.width)),
        oh(static_cast<int>(a.out_height)),
        ow(static_cast<int>(a.out_width)),
        r(static_cast<int>(a.kernel_h)),
        s(static_cast<int>(a.kernel_w)),
        sh(static_cast<int>(a.stride_h)),
        sw(static_cast<int>(a.stride_w)),
        pt(static_cast<int>(a.pad_top)),
        pl(static_cast<int>(a.pad_left)),
        dh(static_cast<int>(a.dilation_h)),
        dw(static_cast<int>(a.dilation_w)),
        planes(a.batch * a.channels),
        count_include_pad(a.count_include_pad) {}
};

// The first maximal in-image element of window (i, j) of one image, in row-major order of the
// taps (a NaN is larger than everything, the first NaN the maximum): its tap r·S + s and value,
// or -1 and -inf when the window holds padding only.
template <typename T>
struct Maximum {
  int tap;
  T value;
};

template <typename T>
__device__ inline Maximum<T> window_maximum(const Pool& p, const T* image, int i, int j) {
  Maximum<T> best{-1, negative_infinity<T>()};
  for (int r = 0; r < p.r; ++r) {
    const int h = i * p.sh - p.pt + r * p.dh;
    if (h < 0 || h >= p.h) continue;
    for (int s = 0; s < p.s; ++s) {
      const int w = j * p.sw - p.pl + s * p.dw;
      if (w < 0 || w >= p.w) continue;
      const T v = image[h * p.w + w];
      if (best.tap < 0 || v > best.value || (v != v && best.value == best.value)) best = {r * p.s + s, v};
    }
  }
  return best;
}

// The taps along one axis that reach position `at` from a window: window index `index` uses tap
// `tap` when index·stride - pad + tap·dilation = at. Visited from the last tap down, so the
// windows come in increasing order.
struct Reach {
  int position, pad, stride, dilation, windows;
  // The window that tap `tap` of reaches `position` from, or -1.
  __device__ int window_of(int tap) const {
    const int t = position + pad - tap * dilation, index = t / stride;
    return t >= 0 && index * stride == t && index < windows ? index : -1;
  }
};

template <typename T>
__global__ void max_pool_forward(Pool p, const T* x, T* y) {
  const std::int64_t count = p.planes * p.oh * p.ow;
  for (std::int64_t e = first_element(); e < count; e += grid_stride()) {
    const std::int64_t plane = e / (p.oh * p.ow);
    const int ij = static_cast<int>(e - plane * p.oh * p.ow), i = ij / p.ow, j = ij - i * p.ow;
    y[e] = window_maximum(p, x + plane * p.h * p.w, i, j).value;
  }
}

// dx[n,c,h,w] = Σ dy[n,c,i,j] over the windows (i, j) whose first maximum is (h, w).
template <typename T>
__global__ void max_pool_backward(Pool p, const T* x, const T* dy, T* dx) {
  const std::int64_t count = p.planes * p.h * p.w;
  for (std::int64_t e = first_element(); e < count; e += grid_stride()) {
    const std::int64_t plane = e / (p.h * p.w);
    const int hw = static_cast<int>(e - plane * p.h * p.w), h = hw / p.w, w = hw - h * p.w;
    const T* image = x + plane * p.h * p.w;
    const T* gradient = dy + plane * p.oh * p.ow;
    const Reach rows{h, p.pt, p.sh, p.dh, p.oh}, columns{w, p.pl, p.sw, p.dw, p.ow};
    T sum = T(0);
    for (int r = p.r - 1; r >= 0; --r) {
      const int i = rows.window_of(r);
      if (i < 0) continue;
      for (int s = p.s - 1; s >= 0; --s) {
        const int j = columns.window_of(s);
        if (j >= 0 && window_maximum(p, image, i, j).tap == r * p.s + s) sum += gradient[i * p.ow + j];
      }
    }
    dx[e] = sum;
  }
}

// How many taps of window `index` along one axis fall inside [0, size).
__device__ inline int taps_inside(int index, int stride, int pad, int dilation, int taps, int size) {
  int inside = 0;
  for (int tap = 0; tap < taps; ++tap) {
    const int at = index * stride - pad + tap * dilation;
    inside += at >= 0 && at < size;
  }
  return inside;
}

// What window (i, j)'s sum is divided by.
__device__ inline int divisor(const Pool& p, int i, int j) {
  if (p.count_include_pad) return p.r * p.s;
  return taps_inside(i, p.sh, p.pt, p.dh, p.r, p.h) * taps_inside(j, p.sw, p.pl, p.dw, p.s, p.w);
}

template <typename T>
__global__ void avg_pool_forward(Pool p, const T* x, T* y) {
  const std::int64_t count = p.planes * p.oh * p.ow;
  for (std::int64_t e = first_element(); e < count; e += grid_stride()) {
    const std::int64_t plane = e / (p.oh * p.ow);
    const int ij = static_cast<int>(e - plane * p.oh * p.ow), i = ij / p.ow, j = ij - i * p.ow;
    const T* image = x + plane * p.h * p.w;
    T sum = T(0);
    for (int r = 0; r < p.r; ++r) {
      const int h = i * p.sh - p.pt + r * p.dh;
      if (h < 0 || h >= p.h) continue;
      for (int s = 0; s < p.s; ++s) {
        const int w = j * p.sw - p.pl + s * p.dw;
        if (w >= 0 && w < p.w) sum += image[h * p.w + w];
      }
    }
    y[e] = sum / static_cast<T>(divisor(p, i, j));
  }
}

// dx[n,c,h,w] = Σ dy[n,c,i,j] / divisor(i, j) over the windows (i, j) that hold (h, w).
template <typename T>
__global__ void avg_pool_backward(Pool p, const T* dy, T* dx) {
  const std::int64_t count = p.planes * p.h * p.w;
  for (std::int64_t e = first_element(); e < count; e += grid_stride()) {
    const std::int64_t plane = e / (p.h * p.w);
    const int hw = static_cast<int>(e - plane * p.h * p.w), h = hw / p.w, w = hw - h * p.w;
    const T* gradient = dy + plane * p.oh * p.ow;
    const Reach rows{h, p.pt, p.sh, p.dh, p.oh}, columns{w, p.pl, p.sw, p.dw, p.ow};
    T sum = T(0);
    for (int r = p.r - 1; r >= 0; --r) {
      const int i = rows.window_of(r);
      if (i < 0) continue;
      for (int s = p.s - 1; s >= 0; --s) {
        const int j = columns.window_of(s);
        if (j >= 0) sum += gradient[i * p.ow + j] / static_cast<T>(divisor(p, i, j));
      }
    }
    dx[e] = sum;
  }
}

// --- Padding -----------------------------------------------------------------------------------------

// Where position `at` of a padded dim reads the unpadded one: `at - before`, mirrored about the
// edges in reflect mode (one reflection suffices: the pads are shorter than the dim); -1 in the
// constant mode's padding.
__device__ inline std::int64_t source_of(std::int64_t at, std::int64_t before, std::int64_t size, bool reflect) {
  std::int64_t t = at - before;
  if (t >= 0 && t < size) return t;
  if (!reflect) return -1;
  return t < 0 ? -t : 2 * (size - 1) - t;
}

template <typename T>
__global__ void pad_forward(PadShape a, T value, const T* x, T* y, std::int64_t count) {
  for (std::int64_t e = first_element(); e < count; e += grid_stride()) {
    std::int64_t rest = e, offset = 0, stride = 1;
    bool inside = true;
    for (int d = a.rank - 1; d >= 0; --d) {
      const std::int64_t at = rest % a.out_dims[d], t = source_of(at, a.before[d], a.in_dims[d], a.reflect);
      rest /= a.out_dims[d];
      inside = inside && t >= 0;
      offset += t * stride;
      stride *= a.in_dims[d];
    }
    y[e] = inside ? x[offset] : value;
  }
}

// dx[e] = Σ dy over the positions of y that copy x[e]: per dim, the position itself and (reflect)
// its mirror images before and after it, combined over the dims in increasing order of y's
// offset.
template <typename T>
__global__ void pad_backward(PadShape a, const T* dy, T* dx, std::int64_t count) {
  for (std::int64_t e = first_element(); e < count; e += grid_stride()) {
    std::int64_t sources[kMaxDims][3];
    int counts[kMaxDims], digit[kMaxDims];
    std::int64_t rest = e;
    for (int d = a.rank - 1; d >= 0; --d) {
      const std::int64_t t = rest % a.in_dims[d], size = a.in_dims[d], before = a.before[d];
      const std::int64_t after = a.out_dims[d] - size - before;
      rest /= a.in_dims[d];
      int n = 0;
      if (a.reflect && t >= 1 && t <= before) sources[d][n++] = before - t;
      sources[d][n++] = before + t;
      if (a.reflect && t <= size - 2 && t >= size - 1 - after) sources[d][n++] = before + 2 * (size - 1) - t;
      counts[d] = n;
      digit[d] = 0;
    }
    T sum = T(0);
    for (;;) {
      std::int64_t offset = 0;
      for (int d = 0; d < a.rank; ++d) offset = offset * a.out_dims[d] + sources[d][digit[d]];
      sum += dy[offset];
      int d = a.rank - 1;
      while (d >= 0 && ++digit[d] == counts[d]) digit[d--] = 0;
      if (d < 0) break;
    }
    dx[e] = sum;
  }
}

// fused_conv2d's epilogue on conv2d's output, in place: y[n,k,i,j] += bias[k], then the ReLU
// (NaN passes through it, as relu's does). One more pass over y after the convolution's.
template <typename T>
__global__ void bias_activation(std::int64_t count, std::int64_t plane, std::int64_t channels, const T* bias, bool relu,
                                T* y) {
  for (std::int64_t e = first_element(); e < count; e += grid_stride()) {
    const T v = y[e] + bias[e / plane % channels];
    y[e] = relu && v < T(0) ? T(0) : v;
  }
}

// Whether a convolution takes the direct kernels: one input channel per group (depthwise, or
// with a channel multiplier Kg of at most kMaxMultiplier; a larger one fills enough of the
// GEMM's tile rows).
constexpr std::int64_t kMaxMultiplier = 16;
bool depthwise(const ConvShape& a) { return a.groups == a.in_channels && a.out_channels <= kMaxMultiplier * a.groups; }

}  // namespace

bool conv_fits_kernels(const ConvShape& a) {
  constexpr std::int64_t kLimit = std::int64_t{1} << 31;
  const std::int64_t window = a.kernel_h * a.kernel_w;
  return a.batch * a.out_height * a.out_width < kLimit && a.batch * a.height * a.width < kLimit &&
         a.in_channels * window < kLimit && a.out_channels * window < kLimit && a.stride_h < kLimit &&
         a.stride_w < kLimit && a.pad_top < kLimit && a.pad_left < kLimit && a.dilation_h * a.kernel_h < kLimit &&
         a.dilation_w * a.kernel_w < kLimit && a.height + a.pad_top < kLimit && a.width + a.pad_left < kLimit;
}

bool launch_conv2d(Element type, const ConvShape& shape, const void* x, const void* w, void* y, void* stream) {
  return with_float_type(type, [&](auto zero) {
    using T = decltype(zero);
    const Conv c(shape);
    if (depthwise(shape)) {
      const std::int64_t count = static_cast<std::int64_t>(c.batch) * c.k * c.out_plane();
      if (count == 0) return;
      FOVEA_LAUNCH(depthwise_forward<T>, blocks_for(count), kThreads, 0, as_stream(stream))
      (c, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<T*>(y));
      return;
    }
    const ForwardProblem<T> problem{c, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<T*>(y)};
    run_gemm<T>(problem, unsplit(c.groups, c.kg, c.batch * c.out_plane(), c.cg * c.window()), as_stream(stream));
  });
}

bool launch_conv2d_epilogue(Element type, const ConvShape& shape, const void* bias, bool relu, void* y, void* stream) {
  return with_float_type(type, [&](auto zero) {
    using T = decltype(zero);
    const std::int64_t plane = shape.out_height * shape.out_width;
    const std::int64_t count = shape.batch * shape.out_channels * plane;
    if (count == 0) return;
    FOVEA_LAUNCH(bias_activation<T>, blocks_for(count), kThreads, 0, as_stream(stream))
    (count, plane, shape.out_channels, static_cast<const T*>(bias), relu, static_cast<T*>(y));
  });
}

bool launch_conv2d_backward_data(Element type, const ConvShape& shape, const void* dy, const void* w, void* dx,
                                 void* stream) {
  return with_float_type(type, [&](auto zero) {
    using T = decltype(zero);
    const Conv c(shape);
    if (depthwise(shape)) {
      const std::int64_t count = static_cast<std::int64_t>(c.batch) * c.c * c.in_plane();
      if (count == 0) return;
      FOVEA_LAUNCH(depthwise_backward_data<T>, blocks_for(count), kThreads, 0, as_stream(stream))
      (c, static_cast<const T*>(dy), static_cast<const T*>(w), static_cast<T*>(dx));
      return;
    }
    if ((c.sh > 1 || c.sw > 1) && c.r <= kMaxPhaseTaps && c.s <= kMaxPhaseTaps)
      return strided_backward_data(c, static_cast<const T*>(dy), static_cast<const T*>(w), static_cast<T*>(dx),
                                   as_stream(stream));
    const BackwardDataProblem<T> problem{c, static_cast<const T*>(dy), static_cast<const T*>(w), static_cast<T*>(dx)};
    run_gemm<T>(problem, unsplit(c.groups, c.cg, c.batch * c.in_plane(), c.kg * c.window()), as_stream(stream));
  });
}

std::int64_t conv2d_backward_filter_workspace_bytes(Element type, const ConvShape& shape) {
  if (depthwise(shape)) return 0;
  const GemmSize size = filter_size(Conv(shape));
  if (size.splits == 1) return 0;
  const std::int64_t element_bytes = type == Element::f64 ? 8 : 4;
  return size.splits * shape.out_channels * (shape.in_channels / shape.groups) * shape.kernel_h * shape.kernel_w *
         element_bytes;
}

bool launch_conv2d_backward_filter(Element type, const ConvShape& shape, const void* x, const void* dy, void* dw,
                                   void* workspace, void* stream) {
  return with_float_type(type, [&](auto zero) {
    using T = decltype(zero);
    const Conv c(shape);
    const std::int64_t weights = static_cast<std::int64_t>(c.k) * c.cg * c.window();
    if (weights == 0) return;
    if (depthwise(shape)) {
      FOVEA_LAUNCH(depthwise_backward_filter<T>, grid_for(weights), kThreads, kThreads * sizeof(T), as_stream(stream))
      (c, static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dw));
      return;
    }
    const GemmSize size = filter_size(c);
    T* target = size.splits == 1 ? static_cast<T*>(dw) : static_cast<T*>(workspace);
    const BackwardFilterProblem<T> problem{c, static_cast<const T*>(x), static_cast<const T*>(dy), target};
    run_gemm<T>(problem, size, as_stream(stream));
    if (size.splits == 1) return;
    FOVEA_LAUNCH(add_chunks<T>, blocks_for(weights), kThreads, 0, as_stream(stream))
    (target, static_cast<T*>(dw), weights, size.splits);
  });
}

bool launch_max_pool2d(Element type, const PoolShape& shape, const void* x, void* y, void* stream) {
  return with_float_type(type, [&](auto zero) {
    using T = decltype(zero);
    const std::int64_t count = shape.batch * shape.channels * shape.out_height * shape.out_width;
    if (count == 0) return;
    FOVEA_LAUNCH(max_pool_forward<T>, blocks_for(count), kThreads, 0, as_stream(stream))
    (Pool(shape), static_cast<const T*>(x), static_cast<T*>(y));
  });
}

bool launch_max_pool2d_backward(Element type, const PoolShape& shape, const void* x, const void* dy, void* dx,
                                void* stream) {
  return with_float_type(type, [&](auto zero) {
    using T = decltype(zero);
    const std::int64_t count = shape.batch * shape.channels * shape.height * shape.width;
    if (count == 0) return;
    FOVEA_LAUNCH(max_pool_backward<T>, blocks_for(count), kThreads, 0, as_stream(stream))
    (Pool(shape), static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dx));
  });
}

bool launch_avg_pool2d(Element type, const PoolShape& shape, const void* x, void* y, void* stream) {
  return with_float_type(type, [&](auto zero) {
    using T = decltype(zero);
    const std::int64_t count = shape.batch * shape.channels * shape.out_height * shape.out_width;
    if (count == 0) return;
    FOVEA_LAUNCH(avg_pool_forward<T>, blocks_for(count), kThreads, 0, as_stream(stream))
    (Pool(shape), static_cast<const T*>(x), static_cast<T*>(y));
  });
}

bool launch_avg_pool2d_backward(Element type, const PoolShape& shape, const void* dy, void* dx, void* stream) {
  return with_float_type(type, [&](auto zero) {
    using T = decltype(zero);
    const std::int64_t count = shape.batch * shape.channels * shape.height * shape.width;
    if (count == 0) return;
    FOVEA_LAUNCH(avg_pool_backward<T>, blocks_for(count), kThreads, 0, as_stream(stream))
    (Pool(shape), static_cast<const T*>(dy), static_cast<T*>(dx));
  });
}

bool launch_pad(Element type, const PadShape& shape, double value, const void* x, void* y, void* stream) {
  std::int64_t count = 1;
  for (int d = 0; d < shape.rank; ++d) count *= shape.out_dims[d];
  auto run = [&](auto zero) {
    using T = decltype(zero);
    if (count == 0) return;
    FOVEA_LAUNCH(pad_forward<T>, blocks_for(count), kThreads, 0, as_stream(stream))
    (shape, static_cast<T>(value), static_cast<const T*>(x), static_cast<T*>(y), count);
  };
  switch (type) {
    case Element::i32:
      run(std::int32_t{});
      return true;
    case Element::i64:
      run(std::int64_t{});
      return true;
    default:
      return with_float_type(type, run);
  }
}

bool launch_pad_backward(Element type, const PadShape& shape, const void* dy, void* dx, void* stream) {
  return with_float_type(type, [&](auto zero) {
    using T = decltype(zero);
    std::int64_t count = 1;
    for (int d = 0; d < shape.rank; ++d) count *= shape.in_dims[d];
    if (count == 0) return;
    FOVEA_LAUNCH(pad_backward<T>, blocks_for(count), kThreads, 0, as_stream(stream))
    (shape, static_cast<const T*>(dy), static_cast<T*>(dx), count);
  });
}

}  // namespace fovea::cuda_backend
