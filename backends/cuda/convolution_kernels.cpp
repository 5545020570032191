// CUDA kernels for convolutions, pooling and padding (ops/convolution.h), host side: the decoded
// sizes of each node handed to the launchers of convolution.cu (where the algorithms are).
#include <limits>

#include <fmt/format.h>

#include "fovea/backends/cuda/kernels.h"

namespace fovea::cuda_backend {

namespace {

ConvShape conv_shape(const KernelContext& ctx, const Conv2dParams& p) {
  ConvShape shape;
  shape.batch = p.batch, shape.in_channels = p.in_channels, shape.height = p.height, shape.width = p.width;
  shape.out_channels = p.out_channels, shape.out_height = p.out_height, shape.out_width = p.out_width;
  shape.kernel_h = p.kernel_h, shape.kernel_w = p.kernel_w, shape.stride_h = p.stride_h, shape.stride_w = p.stride_w;
  shape.pad_top = p.pad_top, shape.pad_left = p.pad_left, shape.dilation_h = p.dilation_h;
  shape.dilation_w = p.dilation_w, shape.groups = p.groups;
  if (!conv_fits_kernels(shape))
    ctx.fail(
        fmt::format("the CUDA convolution kernels index with 32-bit integers: N·OH·OW ({}), N·H·W ({}), "
                    "C·R·S ({}) and K·R·S ({}) must each be below 2^31",
                    p.batch * p.out_height * p.out_width, p.batch * p.height * p.width,
                    p.in_channels * p.kernel_h * p.kernel_w, p.out_channels * p.kernel_h * p.kernel_w));
  return shape;
}

ConvShape conv_shape(const KernelContext& ctx) { return conv_shape(ctx, ctx.params<Conv2dParams>()); }

Element type_of(const KernelContext& ctx) { return element(ctx.in(0).type.dtype); }

// Inputs (x, w).
void conv2d_kernel(const KernelContext& ctx) {
  if (ctx.out().numel() == 0) return;
  check_launch(ctx,
               launch_conv2d(type_of(ctx), conv_shape(ctx), ctx.in(0).data, ctx.in(1).data, ctx.out().data,
                             CudaBackend::of(ctx).stream()),
               "conv2d");
}

// Inputs (x, w, bias): the convolution, then its epilogue over y in place.
void fused_conv2d_kernel(const KernelContext& ctx) {
  if (ctx.out().numel() == 0) return;
  const FusedConv2dParams& p = ctx.params<FusedConv2dParams>();
  const ConvShape shape = conv_shape(ctx, p.conv);
  void* stream = CudaBackend::of(ctx).stream();
  check_launch(ctx, launch_conv2d(type_of(ctx), shape, ctx.in(0).data, ctx.in(1).data, ctx.out().data, stream),
               "fused_conv2d");
  check_launch(ctx,
               launch_conv2d_epilogue(type_of(ctx), shape, ctx.in(2).data, p.activation == ConvActivation::relu,
                                      ctx.out().data, stream),
               "fused_conv2d");
}

// Inputs (dy, w).
void conv2d_backward_data_kernel(const KernelContext& ctx) {
  if (ctx.out().numel() == 0) return;
  check_launch(ctx,
               launch_conv2d_backward_data(type_of(ctx), conv_shape(ctx), ctx.in(0).data, ctx.in(1).data,
                                           ctx.out().data, CudaBackend::of(ctx).stream()),
               "conv2d_backward_data");
}

// Inputs (x, dy).
void conv2d_backward_filter_kernel(const KernelContext& ctx) {
  if (ctx.out().numel() == 0) return;
  const ConvShape shape = conv_shape(ctx);
  CudaBackend& gpu = CudaBackend::of(ctx);
  const std::int64_t bytes = conv2d_backward_filter_workspace_bytes(type_of(ctx), shape);
  void* workspace = bytes > 0 ? gpu.workspace(static_cast<std::size_t>(bytes)) : nullptr;
  check_launch(ctx,
               launch_conv2d_backward_filter(type_of(ctx), shape, ctx.in(0).data, ctx.in(1).data, ctx.out().data,
                                             workspace, gpu.stream()),
               "conv2d_backward_filter");
}

PoolShape pool_shape(const KernelContext& ctx) {
  const Pool2dParams& p = ctx.params<Pool2dParams>();
  constexpr std::int64_t kLimit = std::numeric_limits<int>::max();
  // The kernels index within one image with ints.
  if (p.height * p.width >= kLimit || p.out_height * p.out_width >= kLimit || p.height + p.pad_top >= kLimit ||
      p.width + p.pad_left >= kLimit || p.dilation_h * p.kernel_h >= kLimit || p.dilation_w * p.kernel_w >= kLimit ||
      p.stride_h * p.out_height >= kLimit || p.stride_w * p.out_width >= kLimit)
    ctx.fail("the CUDA pooling kernels index within an image with 32-bit integers: the image is too large");
  PoolShape shape;
  shape.batch = p.batch, shape.channels = p.channels, shape.height = p.height, shape.width = p.width;
  shape.out_height = p.out_height, shape.out_width = p.out_width, shape.kernel_h = p.kernel_h;
  shape.kernel_w = p.kernel_w, shape.stride_h = p.stride_h, shape.stride_w = p.stride_w, shape.pad_top = p.pad_top;
  shape.pad_left = p.pad_left, shape.dilation_h = p.dilation_h, shape.dilation_w = p.dilation_w;
  shape.count_include_pad = p.count_include_pad;
  return shape;
}

void max_pool2d_kernel(const KernelContext& ctx) {
  check_launch(
      ctx,
      launch_max_pool2d(type_of(ctx), pool_shape(ctx), ctx.in(0).data, ctx.out().data, CudaBackend::of(ctx).stream()),
      "max_pool2d");
}

// Inputs (x, dy).
void max_pool2d_backward_kernel(const KernelContext& ctx) {
  check_launch(ctx,
               launch_max_pool2d_backward(type_of(ctx), pool_shape(ctx), ctx.in(0).data, ctx.in(1).data, ctx.out().data,
                                          CudaBackend::of(ctx).stream()),
               "max_pool2d_backward");
}

void avg_pool2d_kernel(const KernelContext& ctx) {
  check_launch(
      ctx,
      launch_avg_pool2d(type_of(ctx), pool_shape(ctx), ctx.in(0).data, ctx.out().data, CudaBackend::of(ctx).stream()),
      "avg_pool2d");
}

// Input dy.
void avg_pool2d_backward_kernel(const KernelContext& ctx) {
  check_launch(ctx,
               launch_avg_pool2d_backward(type_of(ctx), pool_shape(ctx), ctx.in(0).data, ctx.out().data,
                                          CudaBackend::of(ctx).stream()),
               "avg_pool2d_backward");
}

// The pad of `unpadded` (x, or dx), its runs of unpadded dims merged into one so that any rank
// whose padded dims are few enough fits in kMaxDims.
PadShape pad_shape(const KernelContext& ctx, const Shape& unpadded) {
  const PadParams& p = ctx.params<PadParams>();
  PadShape shape;
  shape.reflect = p.mode == PadMode::reflect;
  bool previous_unpadded = false;
  for (int d = 0; d < unpadded.rank(); ++d) {
    const auto k = static_cast<std::size_t>(d);
    const bool padded = p.before[k] != 0 || p.after[k] != 0;
    if (!padded && previous_unpadded) {
      shape.in_dims[shape.rank - 1] *= unpadded[d];
      shape.out_dims[shape.rank - 1] *= unpadded[d];
      continue;
    }
    if (shape.rank == kMaxDims)
      ctx.fail(fmt::format("the CUDA pad kernel takes at most {} dims after merging the unpadded ones", kMaxDims));
    shape.in_dims[shape.rank] = unpadded[d];
    shape.out_dims[shape.rank] = unpadded[d] + p.before[k] + p.after[k];
    shape.before[shape.rank] = p.before[k];
    ++shape.rank;
    previous_unpadded = !padded;
  }
  return shape;
}

void pad_kernel(const KernelContext& ctx) {
  check_launch(ctx,
               launch_pad(type_of(ctx), pad_shape(ctx, ctx.in(0).shape()), ctx.params<PadParams>().value,
                          ctx.in(0).data, ctx.out().data, CudaBackend::of(ctx).stream()),
               "pad");
}

void pad_backward_kernel(const KernelContext& ctx) {
  check_launch(ctx,
               launch_pad_backward(type_of(ctx), pad_shape(ctx, ctx.out().shape()), ctx.in(0).data, ctx.out().data,
                                   CudaBackend::of(ctx).stream()),
               "pad_backward");
}

}  // namespace

void register_convolution_kernels(KernelRegistry& r) {
  for (DType t : {DType::f32, DType::f64}) {
    r.add(ops::conv2d, t, &conv2d_kernel);
    r.add(ops::fused_conv2d, t, &fused_conv2d_kernel);
    r.add(ops::conv2d_backward_data, t, &conv2d_backward_data_kernel);
    r.add(ops::conv2d_backward_filter, t, &conv2d_backward_filter_kernel);
    r.add(ops::max_pool2d, t, &max_pool2d_kernel);
    r.add(ops::max_pool2d_backward, t, &max_pool2d_backward_kernel);
    r.add(ops::avg_pool2d, t, &avg_pool2d_kernel);
    r.add(ops::avg_pool2d_backward, t, &avg_pool2d_backward_kernel);
    r.add(ops::pad_backward, t, &pad_backward_kernel);
  }
  for (DType t : {DType::f32, DType::f64, DType::i32, DType::i64}) r.add(ops::pad, t, &pad_kernel);
}

}  // namespace fovea::cuda_backend
