// Launchers for the CUDA kernels, callable from host C++ compiled by g++.
//
// nvcc compiles only the .cu files, which include nothing heavier than the shared functors
// (ops/functors.h), the elementwise table (ops/elementwise_table.h), Philox (core/philox.h) and
// this header; everything else in the CUDA backend is ordinary C++ (the *_kernels.cpp files
// beside this one). So this header speaks plain C++17: raw pointers, sizes in elements,
// strides, and the stream as a void* (a cudaStream_t).
//
// Every launcher enqueues its work on `stream` and returns at once. One returning false was
// asked for an element type it has no kernel for (a bug in the registration, never a user's
// mistake); launch errors are left for the caller's cudaGetLastError.
#pragma once

#include <cstddef>
#include <cstdint>

#include "fovea/ops/elementwise_table.h"

namespace fovea::cuda_backend {

// Element types, in fovea::DType's order (the host side converts with a static_cast). bf16 and
// f16 are the 16-bit floats of mixed precision: cast and the shape ops move them, and the
// tensor-core attention of attention_mma.cu computes with them.
enum class Element : int { f32, f64, i32, i64, boolean, bf16, f16 };

// The most dims an iteration box may have after merging (see Walk).
inline constexpr int kMaxDims = 8;

// A box of `rank` dims walked in row-major order by a flat index i, and for each of N
// operands a stride per dim (0 where the operand is broadcast along it):
//
//   offset_k(i) = Σ_d index_d(i) · strides[k][d],   index_d(i) = the d-th digit of i in base dims
//
// Broadcasting, permuting, slicing and concatenating are all this one walk with different
// strides; the host merges dims first, so a plain copy is a box of one dim.
template <int N>
struct Walk {
  int rank = 0;
  std::int64_t dims[kMaxDims] = {};
  std::int64_t strides[N][kMaxDims] = {};
};

// --- elementwise.cu ------------------------------------------------------------------------

// One enumerator per row of ops/elementwise_table.h.
enum class UnaryOp : int { FOVEA_UNARY_OPS(FOVEA_ELEMENTWISE_NAME) };
enum class BinaryOp : int { FOVEA_BINARY_OPS(FOVEA_ELEMENTWISE_NAME) };

// y[i] = f(x[i]) for i < n.
bool launch_unary(UnaryOp op, Element type, const void* x, void* y, std::int64_t n, void* stream);
// y[i] = f(a[offset_0(i)], b[offset_1(i)]) for i < n, y contiguous over walk's box.
// Comparisons and logical ops write bytes (bool).
bool launch_binary(BinaryOp op, Element type, const void* a, const void* b, void* y, std::int64_t n,
                   const Walk<2>& walk, void* stream);
// *first = min(*first, p) for every p < n with b[p] == 0 (integers): the check beside an
// integer division, which gives 0 for those (fn::Div). The caller sets *first to ~0 beforehand
// (it is the position word of a Verdict).
bool launch_find_zero(Element type, const void* b, std::int64_t n, unsigned long long* first, void* stream);

// --- reduce.cu -----------------------------------------------------------------------------

enum class ReduceOp : int { sum, max, min, prod };

// x seen as [outer, count, inner]: y[o, i] = op over r < count of x[o, r, i] (count may be 0:
// y gets the identity). Long reductions are split into chunks whose partial results go to
// `workspace` (reduce_workspace_bytes() of it; nullptr when that is 0), then combined in
// chunk order: the result depends on the shape only.
bool launch_reduce_contiguous(ReduceOp op, Element type, const void* x, void* y, std::int64_t outer, std::int64_t count,
                              std::int64_t inner, void* workspace, void* stream);
std::int64_t reduce_workspace_bytes(ReduceOp op, Element type, std::int64_t outer, std::int64_t count,
                                    std::int64_t inner);
// Any set of axes: y[k] = op over r < count of x[offset_kept(k) + offset_reduced(r)], where
// kept walks the outputs and reduced the reduced elements of one output (one operand each).
bool launch_reduce_general(ReduceOp op, Element type, const void* x, void* y, std::int64_t outputs, const Walk<1>& kept,
                           std::int64_t count, const Walk<1>& reduced, void* stream);

// x seen as [outer, count, inner], count > 0: y[o, i] = the r of the largest x[o, r, i] (`min`:
// the smallest). A NaN counts as beyond every number; of equal elements the first wins, or the
// last with select_last_index (ops/reduce.h, argmax).
bool launch_arg_reduce(bool min, Element type, const void* x, std::int64_t* y, std::int64_t outer, std::int64_t count,
                       std::int64_t inner, bool select_last_index, void* stream);
// x and y seen as [outer, count, inner]: y[o, r, i] = Σ x[o, r', i] over r' ≤ r, r' < r with
// `exclusive`, r' ≥ r (r' > r) with `reverse`. Sums accumulate as reduce_sum's.
bool launch_cumsum(Element type, const void* x, void* y, std::int64_t outer, std::int64_t count, std::int64_t inner,
                   bool exclusive, bool reverse, void* stream);

// --- shape.cu ------------------------------------------------------------------------------

// y[y_base + offset_1(i)] = x[x_base + offset_0(i)] for i < n, elements of `element_size`
// bytes (1, 4 or 8). Offsets are in elements.
bool launch_copy(int element_size, const void* x, std::int64_t x_base, void* y, std::int64_t y_base, std::int64_t n,
                 const Walk<2>& walk, void* stream);

// --- indexing.cu ---------------------------------------------------------------------------

// *first = min(*first, p) for every p < m with ids[p] outside [0, n) (and, when has_allowed,
// not equal to `allowed`). The caller sets *first to ~0 beforehand (it is the position word of
// a Verdict). index_type is i32 or i64.
bool launch_check_indices(Element index_type, const void* ids, std::int64_t m, std::int64_t n,
                          unsigned long long* first, void* stream, bool has_allowed = false, std::int64_t allowed = 0);
// After launch_check_indices, when no data kernel follows: verdict[1] = ids[verdict[0]] if the
// position is set (one thread).
bool launch_note_bad_index(Element index_type, const void* ids, std::int64_t m, unsigned long long* verdict,
                           void* stream);
// gather: y[o, p, j] = x[o, ids[p], j] with x [outer, n, inner], ids [m], y [outer, m, inner];
// 0 where ids[p] is outside [0, n). `verdict` is a Verdict's two words, position then detail,
// after launch_check_indices: when the position is set, the detail becomes ids[position].
bool launch_gather(int element_size, Element index_type, const void* x, const void* ids, void* y, std::int64_t outer,
                   std::int64_t n, std::int64_t m, std::int64_t inner, unsigned long long* verdict, void* stream);
// scatter_add: y[o, ids[p], j] += u[o, p, j] with y [outer, n, inner] (already holding the
// target), u [outer, m, inner], skipping ids[p] outside [0, n); `verdict` as for gather.
// Atomic adds: floating sums come in no fixed order.
bool launch_scatter_add(Element type, Element index_type, const void* ids, const void* u, void* y, std::int64_t outer,
                        std::int64_t n, std::int64_t m, std::int64_t inner, unsigned long long* verdict, void* stream);
// where: y[i] = cond[offset_0(i)] ? a[offset_1(i)] : b[offset_2(i)] for i < n.
bool launch_where(int element_size, const void* cond, const void* a, const void* b, void* y, std::int64_t n,
                  const Walk<3>& walk, void* stream);

// --- creation.cu ---------------------------------------------------------------------------

// y[i] = convert<to>(x[i]) with the CPU backend's rules (ops/creation.h, cast()).
bool launch_cast(Element from, Element to, const void* x, void* y, std::int64_t n, void* stream);
// y[i] = convert<type>(value).
bool launch_fill(Element type, double value, void* y, std::int64_t n, void* stream);
// y[i] = (i / inner) mod extent: the index along an axis of extent `extent` with `inner`
// elements after it.
bool launch_iota(Element type, void* y, std::int64_t n, std::int64_t extent, std::int64_t inner, void* stream);
// y[i] = low + (high - low)·U(seed, stream_id + *step, i) and mean + stddev·N(...), with the
// Philox streams of core/philox.h; `step` is a device pointer to one i64, or nullptr.
bool launch_random_uniform(Element type, void* y, std::int64_t n, std::uint64_t seed, std::uint64_t stream_id,
                           const std::int64_t* step, double low, double high, void* stream);
bool launch_random_normal(Element type, void* y, std::int64_t n, std::uint64_t seed, std::uint64_t stream_id,
                          const std::int64_t* step, double mean, double stddev, void* stream);

// --- attention.cu --------------------------------------------------------------------------

// Dropout on the attention probabilities (ops/attention.h): P[i, j] of item b is kept, and
// multiplied by `scale`, when T(philox::uniform(seed, stream + *step, (b·Tq + i)·Tk + j)) >= T(p).
// p = 0: no dropout. `step` is a device pointer to one i64, or nullptr.
struct AttentionDropoutMask {
  double p = 0, scale = 1;
  std::uint64_t seed = 0, stream = 0;
  const std::int64_t* step = nullptr;
};

// The sizes of one fused attention node (ops/attention.h): `batch` items of q [Tq,D],
// k [Tk,D], v [Tk,Dv]; the mask (optional) entry of item b, query i, key j is at
//   Σ_dim index_dim(b)·mask_batch_strides[dim] + i·mask_row_stride + j·mask_column_stride
// with b's digits taken in base batch_dims.
struct AttentionShape {
  std::int64_t batch = 1, tq = 0, tk = 0, d = 0, dv = 0;
  double scale = 1;
  bool causal = false;
  int batch_rank = 0;
  std::int64_t batch_dims[kMaxDims] = {};
  std::int64_t mask_batch_strides[kMaxDims] = {};
  std::int64_t mask_row_stride = 0, mask_column_stride = 0;
  AttentionDropoutMask dropout;
};

// Bytes of shared memory one warp of the attention kernels needs; the host refuses head dims
// whose need exceeds what a block may have (48 KiB).
std::int64_t attention_shared_bytes_per_warp(Element type, std::int64_t d, std::int64_t dv);

// o [batch, Tq, Dv] and lse [batch, Tq]. mask may be nullptr.
bool launch_attention_forward(Element type, const AttentionShape& shape, const void* q, const void* k, const void* v,
                              const void* mask, void* o, void* lse, void* stream);
// dq, dk, dv from q, k, v, mask, o, lse and d_o; `delta` is scratch for batch·Tq elements.
bool launch_attention_backward(Element type, const AttentionShape& shape, const void* q, const void* k, const void* v,
                               const void* mask, const void* o, const void* lse, const void* d_o, void* delta, void* dq,
                               void* dk, void* dv, void* stream);

// --- attention_tiled.cu ----------------------------------------------------------------------

// FlashAttention-2-style tiled kernels with the same contract as the two launchers above,
// opt-in: the host runs them when FOVEA_CUDA_ATTENTION=tiled and this says the sizes fit
// (f32 or f64, D and Dv at most 128, tiles within the device's shared memory per block);
// otherwise the ones above. The backward zeroes dq itself
// and adds into it atomically (dq's last bits may vary between runs).
bool tiled_attention_supports(Element type, std::int64_t d, std::int64_t dv);
bool launch_attention_forward_tiled(Element type, const AttentionShape& shape, const void* q, const void* k,
                                    const void* v, const void* mask, void* o, void* lse, void* stream);
bool launch_attention_backward_tiled(Element type, const AttentionShape& shape, const void* q, const void* k,
                                     const void* v, const void* mask, const void* o, const void* lse, const void* d_o,
                                     void* delta, void* dq, void* dk, void* dv, void* stream);

// --- attention_mma.cu -----------------------------------------------------------------------

// The tensor-core FlashAttention-2 forward for 16-bit inputs (mma.sync on sm_80 and later):
// q [batch,Tq,D], k [batch,Tk,D], v [batch,Tk,Dv] in `type` (bf16 or f16), contiguous; the
// optional mask in f32 with the strides of `shape`; o [batch,Tq,Dv] in `type`; lse [batch,Tq]
// in f32. Scores, softmax and the accumulation of o are f32. Same math as
// launch_attention_forward (dropout included); Tq = 0 or batch = 0 launches nothing, Tk = 0
// gives o = 0 and lse = -inf.
//
// mma_attention_supports: bf16 or f16 with D = Dv, 64 or 128, on a device of compute
// capability 8.0 or newer whose blocks may have the kernel's shared memory. The launcher also
// wants q, k and v on 16-byte boundaries and a mask column stride of at most 2^24 (a mask
// broadcast from any shape has 0 or 1). It returns false, launching nothing, for anything else
// (the host then takes another path); launch errors are left for the caller's cudaGetLastError,
// as with every launcher here.
bool mma_attention_supports(Element type, std::int64_t d, std::int64_t dv);
bool launch_attention_forward_mma(Element type, const AttentionShape& shape, const void* q, const void* k,
                                  const void* v, const float* mask, void* o, float* lse, void* stream);

// --- attention_mma_backward.cu ----------------------------------------------------------------

// The tensor-core FlashAttention-2 backward, the forward's counterpart: dq, dk, dv for half q, k,
// v, o, d_o (contiguous [batch, T, D], `type` bf16 or f16) and f32 lse [batch, Tq] and f32 mask
// (AttentionShape's strides), D = Dv in {64, 128}; dq, dk, dv in `type`. Products on tensor
// cores, everything else in f32; same math as launch_attention_backward (dropout included).
// `scratch` is device memory of at least mma_attention_backward_scratch_bytes(shape) bytes: f32
// Δ and lse·log2(e) per query row and an f32 dq accumulator. dq is summed with f32 atomics, so its
// last bits may vary between runs (dk and dv do not). Tq = 0 gives dk = dv = 0, Tk = 0 dq = 0.
//
// It returns false, launching nothing, for another type or head dim, for a device older than
// sm_80 or whose blocks may not have the kernel's shared memory (113 KB at D = 128), and unless
// q, k, v, o, d_o, scratch, dq, dk and dv all start on 16-byte boundaries; the host then takes
// another path. Launch errors are left for the caller's cudaGetLastError.
std::size_t mma_attention_backward_scratch_bytes(const AttentionShape& shape);
bool launch_attention_backward_mma(Element type, const AttentionShape& shape, const void* q, const void* k,
                                   const void* v, const float* mask, const void* o, const float* lse, const void* d_o,
                                   void* scratch, void* dq, void* dk, void* dv, void* stream);

// --- normalization.cu ----------------------------------------------------------------------

// The fused normalizations of ops/normalization.h, over `rows` rows of `n` contiguous elements
// (the last axis). `log` picks log-softmax over softmax. index_type (the targets) is i32 or i64.
bool launch_softmax(Element type, bool log, const void* x, void* y, std::int64_t rows, std::int64_t n, void* stream);
bool launch_softmax_backward(Element type, bool log, const void* y, const void* dy, void* dx, std::int64_t rows,
                             std::int64_t n, void* stream);
bool launch_layer_norm(Element type, const void* x, const void* gamma, const void* beta, void* y, void* mean,
                       void* rstd, std::int64_t rows, std::int64_t n, double eps, void* stream);
bool launch_layer_norm_backward(Element type, const void* dy, const void* x, const void* gamma, const void* mean,
                                const void* rstd, void* dx, void* dgamma, void* dbeta, std::int64_t rows,
                                std::int64_t n, void* stream);
// Batch norm in training (ops/batch_norm.h) over x as [batch, channels, inner].
bool launch_batch_norm(Element type, const void* x, const void* gamma, const void* beta, void* y, void* mean,
                       void* variance, std::int64_t batch, std::int64_t channels, std::int64_t inner, double eps,
                       void* stream);
bool launch_batch_norm_backward(Element type, const void* dy, const void* x, const void* gamma, const void* mean,
                                const void* variance, void* dx, void* dgamma, void* dbeta, std::int64_t batch,
                                std::int64_t channels, std::int64_t inner, double eps, void* stream);
bool launch_cross_entropy(Element type, Element index_type, const void* logits, const void* targets, void* loss,
                          void* lse, std::int64_t rows, std::int64_t classes, double label_smoothing, void* stream);
bool launch_cross_entropy_backward(Element type, Element index_type, const void* logits, const void* targets,
                                   const void* lse, const void* dloss, void* dlogits, std::int64_t rows,
                                   std::int64_t classes, double label_smoothing, void* stream);

// --- convolution.cu ------------------------------------------------------------------------

// One convolution's sizes (ops/convolution.h's Conv2dParams, in plain C++ for nvcc): x
// [N,C,H,W], w [K,C/groups,R,S], y [N,K,OH,OW], all contiguous. The GEMM coordinates of the
// kernels (N·OH·OW, N·H·W, C·R·S, K·R·S) must be below 2^31: conv_fits_kernels says whether
// they are, and the host refuses larger problems before launching.
struct ConvShape {
  std::int64_t batch = 0, in_channels = 0, height = 0, width = 0;
  std::int64_t out_channels = 0, out_height = 0, out_width = 0;
  std::int64_t kernel_h = 0, kernel_w = 0;
  std::int64_t stride_h = 1, stride_w = 1, pad_top = 0, pad_left = 0, dilation_h = 1, dilation_w = 1;
  std::int64_t groups = 1;
};
bool conv_fits_kernels(const ConvShape& shape);

// conv2d, f32 or f64: y[n,k,i,j] = Σ x[n, c, i·sh - pt + r·dh, j·sw - pl + s·dw]·w[k, c', r, s]
// over the c of k's group, r and s (zero padding).
bool launch_conv2d(Element type, const ConvShape& shape, const void* x, const void* w, void* y, void* stream);
// fused_conv2d's epilogue on the y that launch_conv2d wrote, in place: y[n,k,i,j] += bias[k],
// then max(y, 0) when `relu`.
bool launch_conv2d_epilogue(Element type, const ConvShape& shape, const void* bias, bool relu, void* y, void* stream);
// dx = the adjoint of conv2d with respect to x, applied to dy: every y element's dy times the
// weight that read each x element, summed (no atomics: each dx element sums what reaches it).
bool launch_conv2d_backward_data(Element type, const ConvShape& shape, const void* dy, const void* w, void* dx,
                                 void* stream);
// dw = the adjoint with respect to w. Large batches are split into chunks whose partial sums
// go to `workspace` (conv2d_backward_filter_workspace_bytes() of it; nullptr when that is 0),
// then added in chunk order: the result depends on the shape only.
std::int64_t conv2d_backward_filter_workspace_bytes(Element type, const ConvShape& shape);
bool launch_conv2d_backward_filter(Element type, const ConvShape& shape, const void* x, const void* dy, void* dw,
                                   void* workspace, void* stream);

// One pooling's sizes (Pool2dParams): x [N,C,H,W], y [N,C,OH,OW], contiguous.
struct PoolShape {
  std::int64_t batch = 0, channels = 0, height = 0, width = 0, out_height = 0, out_width = 0;
  std::int64_t kernel_h = 0, kernel_w = 0, stride_h = 1, stride_w = 1, pad_top = 0, pad_left = 0;
  std::int64_t dilation_h = 1, dilation_w = 1;
  bool count_include_pad = true;
};

// max_pool2d: the largest in-image element of each window (a NaN wins; -inf for a window of
// padding only). Its backward gives each dy element to the first maximal element of its window
// in row-major order, found again from x; each dx element sums the windows it won.
bool launch_max_pool2d(Element type, const PoolShape& shape, const void* x, void* y, void* stream);
bool launch_max_pool2d_backward(Element type, const PoolShape& shape, const void* x, const void* dy, void* dx,
                                void* stream);
// avg_pool2d: each window's sum over R·S (count_include_pad) or over its in-image count; the
// backward is its adjoint.
bool launch_avg_pool2d(Element type, const PoolShape& shape, const void* x, void* y, void* stream);
bool launch_avg_pool2d_backward(Element type, const PoolShape& shape, const void* dy, void* dx, void* stream);

// pad over `rank` dims: x [in_dims] inside y [in_dims + before + after] at offset `before`.
struct PadShape {
  int rank = 0;
  std::int64_t in_dims[kMaxDims] = {}, out_dims[kMaxDims] = {}, before[kMaxDims] = {};
  bool reflect = false;
};

// pad (f32, f64, i32, i64): y = x inside, `value` (constant) or the mirror image about each edge,
// the edge not repeated (reflect), outside. Its backward (f32, f64) is the adjoint: dx[e] sums
// dy at every position of y that copies x[e].
bool launch_pad(Element type, const PadShape& shape, double value, const void* x, void* y, void* stream);
bool launch_pad_backward(Element type, const PadShape& shape, const void* dy, void* dx, void* stream);

// --- fused_elementwise (elementwise.cu) ------------------------------------------------------

// A fused_elementwise program (ops/fused_elementwise.h) in a fixed-size block that travels as
// the kernel's parameter. The fusion pass keeps programs within these bounds by default
// (ElementwiseFusionOptions); a bigger one is refused by the launcher.
inline constexpr int kFusedMaxInputs = 32, kFusedMaxCode = 64, kFusedMaxImmediates = 128, kFusedMaxOutputs = 64,
                     kFusedMaxRandoms = 16;

struct FusedInput {
  const void* data = nullptr;
  int kind = 0;  // 0: an element of T, 1: a bool (0/1), 2: not a register (a random stream offset)
  Walk<1> walk;  // the input's offset for each output element (stride 0 where broadcast)
};

struct FusedProgram {
  int inputs = 0, immediates = 0, code = 0, outputs = 0, randoms = 0;
  FusedInput input[kFusedMaxInputs];
  double immediate[kFusedMaxImmediates];
  int op[kFusedMaxCode], a[kFusedMaxCode], b[kFusedMaxCode], c[kFusedMaxCode];  // fused::Opcode and registers
  int output_register[kFusedMaxOutputs];
  bool output_is_bool[kFusedMaxOutputs];
  void* output[kFusedMaxOutputs];
  std::uint64_t random_seed[kFusedMaxRandoms], random_stream[kFusedMaxRandoms];
  int random_step_input[kFusedMaxRandoms];  // the input holding the i64 step added to the stream, or -1
};

// Runs the program for output elements [0, n), T = `type` (f32 or f64).
bool launch_fused_elementwise(Element type, const FusedProgram& program, std::int64_t n, void* stream);

}  // namespace fovea::cuda_backend
