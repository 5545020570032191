// Convolutions, pooling and padding over images in NCHW layout (batch, channels, height, width).
//
//   conv2d(x, w)   x f32[N,C,H,W], w f32[K,C/groups,R,S]  ->  y f32[N,K,OH,OW]
//
//     y[n,k,i,j] = Σ_{c in k's group, r, s} x[n, c, i·sh - pt + r·dh, j·sw - pl + s·dw] · w[k, c', r, s]
//     OH = ⌊(H + pt + pb - dh·(R-1) - 1) / sh⌋ + 1   (and OW alike)
//
// Padding reads zeros. groups splits C and K into that many independent convolutions; groups =
// C = K is a depthwise convolution. There is no bias input: add one with `add(y, reshape(b,
// {K, 1, 1}))`, and the optimizer fuses that add and a following ReLU into the convolution's
// epilogue, one fused_conv2d node (passes/conv_fusion.h):
//
//   fused_conv2d(x, w, b)  =  activation(conv2d(x, w) + b[k])    b f32[K], activation none or relu
//
// The gradients are two more ops, and the three close under differentiation (each is linear in
// each of its two inputs), so every order of derivative is available:
//
//   conv2d_backward_data(dy, w)    = ∂L/∂x,  the transposed convolution of dy by w
//   conv2d_backward_filter(x, dy)  = ∂L/∂w,  the correlation of x with dy
//
// conv_transpose2d is conv2d_backward_data with the roles named as PyTorch names them.
//
// max_pool2d's gradient routes each output's gradient to the FIRST maximal element of its
// window in row-major order (as PyTorch does), found again from x by the backward kernel rather
// than remembered as an index: no argmax tensor is stored between the passes. A NaN in a window
// is its maximum. Padding never wins (it reads -inf).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "fovea/ops/elementwise.h"

namespace fovea {

// How a convolution or a pool pads its input, resolved against the input's size, the (dilated)
// window and the stride when the node is built.
class Padding {
 public:
  // The same on every side: Padding(1) is PyTorch's padding=1.
  Padding(std::int64_t all = 0) : Padding(all, all) {}  // NOLINT(google-explicit-constructor)
  // Top and bottom `height`, left and right `width`: PyTorch's padding=(h, w).
  Padding(std::int64_t height, std::int64_t width) : sides_{height, width, height, width} {}
  static Padding sides(std::int64_t top, std::int64_t left, std::int64_t bottom, std::int64_t right);
  // Output size ⌈input / stride⌉; an odd total puts the extra row or column at the bottom or
  // right (ONNX's SAME_UPPER, TensorFlow's SAME). With stride 1 that is PyTorch's 'same'.
  static Padding same();
  // No padding: PyTorch's 'valid'.
  static Padding valid() { return Padding(0); }

  // {top, left, bottom, right} for an input of `size` (H, W), a window spanning `window`
  // (dilation·(kernel-1)+1) and `stride`.
  std::array<std::int64_t, 4> resolve(std::array<std::int64_t, 2> size, std::array<std::int64_t, 2> window,
                                      std::array<std::int64_t, 2> stride) const;
  bool is_same() const { return same_; }

 private:
  std::array<std::int64_t, 4> sides_{};
  bool same_ = false;
};

struct Conv2dOptions {
  std::array<std::int64_t, 2> stride{1, 1};
  Padding padding = 0;
  std::array<std::int64_t, 2> dilation{1, 1};
  std::int64_t groups = 1;
};

// x [N,C,H,W], w [K,C/groups,R,S] -> [N,K,OH,OW]. Floating dtypes, one dtype for both.
Value conv2d(Value x, Value w, const Conv2dOptions& options = {}, Loc where = Loc::current());

struct Conv1dOptions {
  std::int64_t stride = 1;
  Padding padding = 0;  // left/right only: Padding(p), Padding::same() or Padding::valid()
  std::int64_t dilation = 1;
  std::int64_t groups = 1;
};

// x [N,C,L], w [K,C/groups,S] -> [N,K,OL]: conv2d on images one row high.
Value conv1d(Value x, Value w, const Conv1dOptions& options = {}, Loc where = Loc::current());

struct ConvTranspose2dOptions {
  std::array<std::int64_t, 2> stride{1, 1};
  std::array<std::int64_t, 2> padding{0, 0};         // removed from each side of the output
  std::array<std::int64_t, 2> output_padding{0, 0};  // added to the bottom and right; < stride or dilation
  std::array<std::int64_t, 2> dilation{1, 1};
  std::int64_t groups = 1;
};

// x [N,Cin,H,W], w [Cin,Cout/groups,R,S] -> [N,Cout,OH,OW] with
// OH = (H-1)·sh - 2·ph + dh·(R-1) + oph + 1: the gradient of conv2d with respect to its input,
// as PyTorch's ConvTranspose2d computes it.
Value conv_transpose2d(Value x, Value w, const ConvTranspose2dOptions& options = {}, Loc where = Loc::current());

struct Pool2dOptions {
  std::array<std::int64_t, 2> stride{0, 0};    // 0: the kernel size
  Padding padding = 0;                         // at most half the kernel on each side
  std::array<std::int64_t, 2> dilation{1, 1};  // max_pool2d only
  bool count_include_pad = true;               // avg_pool2d only: divide by the whole window, padding included
};

// The largest element of each window; padding never wins.
Value max_pool2d(Value x, std::array<std::int64_t, 2> kernel, const Pool2dOptions& options = {},
                 Loc where = Loc::current());
// The mean of each window, over the whole window (count_include_pad) or its in-image part.
Value avg_pool2d(Value x, std::array<std::int64_t, 2> kernel, const Pool2dOptions& options = {},
                 Loc where = Loc::current());
// x [N,C,H,W] -> [N,C,1,1]: the mean over each channel's image.
Value global_avg_pool2d(Value x, Loc where = Loc::current());

enum class PadMode { constant, reflect };

// Pads each dim i with before[i] elements in front and after[i] behind (ranks equal x's):
// `value` in constant mode; in reflect mode the mirror image about the edge, the edge itself
// not repeated (NumPy's and PyTorch's 'reflect'), which needs before[i], after[i] < x.shape[i].
Value pad(Value x, std::vector<std::int64_t> before, std::vector<std::int64_t> after, PadMode mode = PadMode::constant,
          double value = 0.0, Loc where = Loc::current());

// --- The primitive ops and what their kernels read -------------------------------------------

// One convolution's sizes, from the node's types and attributes; the same struct for all three
// conv ops (each decodes it from its own operands).
struct Conv2dParams {
  std::int64_t batch = 0, in_channels = 0, height = 0, width = 0;  // x: [N,C,H,W]
  std::int64_t out_channels = 0, out_height = 0, out_width = 0;    // y: [N,K,OH,OW]
  std::int64_t kernel_h = 0, kernel_w = 0;                         // w: [K,C/groups,R,S]
  std::int64_t stride_h = 1, stride_w = 1, pad_top = 0, pad_left = 0, dilation_h = 1, dilation_w = 1;
  std::int64_t groups = 1;
  std::int64_t group_in() const { return in_channels / groups; }
  std::int64_t group_out() const { return out_channels / groups; }
  bool depthwise() const { return groups == in_channels && groups == out_channels; }
};

// What fused_conv2d applies after adding the bias.
enum class ConvActivation { none, relu };

// fused_conv2d's sizes and epilogue.
struct FusedConv2dParams {
  Conv2dParams conv;
  ConvActivation activation = ConvActivation::none;
};

// One pooling's sizes; the same struct for the pools and their backward ops.
struct Pool2dParams {
  std::int64_t batch = 0, channels = 0, height = 0, width = 0, out_height = 0, out_width = 0;
  std::int64_t kernel_h = 0, kernel_w = 0, stride_h = 1, stride_w = 1, pad_top = 0, pad_left = 0;
  std::int64_t dilation_h = 1, dilation_w = 1;
  bool count_include_pad = true;
};

struct PadParams {
  std::vector<std::int64_t> before, after;  // per dim of the unpadded tensor
  PadMode mode = PadMode::constant;
  double value = 0;
  static PadParams decode(const DecodeContext& context);
};

// Attributes: stride [sh,sw], padding [top,left,bottom,right], dilation [dh,dw], groups; the
// backward ops also carry what their operands cannot tell: input_size [H,W] on
// conv2d_backward_data, kernel_size [R,S] on conv2d_backward_filter.
//   conv2d                  (x, w)   -> y
//   conv2d_backward_data    (dy, w)  -> dx
//   conv2d_backward_filter  (x, dy)  -> dw
//   fused_conv2d            (x, w, bias) -> y, with activation ("none" or "relu") too
// Pools: kernel [R,S], stride, padding, dilation, count_include_pad (avg only); input_size [H,W]
// on avg_pool2d_backward.
//   max_pool2d (x) -> y;   max_pool2d_backward (x, dy) -> dx
//   avg_pool2d (x) -> y;   avg_pool2d_backward (dy) -> dx
// pad: before, after (int lists), mode ("constant" or "reflect"), value.
//   pad (x) -> y;   pad_backward (dy) -> dx (constant: the crop; reflect: the crop plus the
//   reflected parts added back onto the elements they copy)
namespace ops {
extern const OpDef conv2d, conv2d_backward_data, conv2d_backward_filter, fused_conv2d;
extern const OpDef max_pool2d, max_pool2d_backward, avg_pool2d, avg_pool2d_backward;
extern const OpDef pad, pad_backward;
}  // namespace ops

// The backward ops' builders, for gradient rules and tests. `input_size` is x's [H,W] and
// `kernel_size` w's [R,S]; `padding` is resolved {top,left,bottom,right}.
struct ConvAttributes {
  std::array<std::int64_t, 2> stride{1, 1};
  std::array<std::int64_t, 4> padding{0, 0, 0, 0};
  std::array<std::int64_t, 2> dilation{1, 1};
  std::int64_t groups = 1;
};
Value conv2d_with(Value x, Value w, const ConvAttributes& a, Loc where = Loc::current());
// activation(conv2d(x, w) + bias[k]) as one node, bias [K]: what the optimizer makes of a
// convolution, its bias add and a ReLU.
Value fused_conv2d(Value x, Value w, Value bias, const ConvAttributes& a, ConvActivation activation,
                   Loc where = Loc::current());
Value conv2d_backward_data(Value dy, Value w, std::array<std::int64_t, 2> input_size, const ConvAttributes& a,
                           Loc where = Loc::current());
Value conv2d_backward_filter(Value x, Value dy, std::array<std::int64_t, 2> kernel_size, const ConvAttributes& a,
                             Loc where = Loc::current());

}  // namespace fovea
