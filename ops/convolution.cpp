#include "fovea/ops/convolution.h"

#include <algorithm>
#include <array>

#include <fmt/format.h>

#include "fovea/core/exact_number.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/indexing.h"
#include "fovea/ops/reduce.h"
#include "fovea/ops/shape_ops.h"
#include "fovea/ops/vjp.h"

namespace fovea {

namespace {

using Pair = std::array<std::int64_t, 2>;
using Sides = std::array<std::int64_t, 4>;  // top, left, bottom, right

Pair pair_of(const Attributes& attrs, const char* name) {
  const std::vector<std::int64_t>& v = attrs.get_ints(name);
  return {v.at(0), v.at(1)};
}

Sides sides_of(const Attributes& attrs) {
  const std::vector<std::int64_t>& v = attrs.get_ints("padding");
  return {v.at(0), v.at(1), v.at(2), v.at(3)};
}

std::string pair_string(Pair p) { return fmt::format("[{},{}]", p[0], p[1]); }

// How many windows of `span` elements, `stride` apart, fit in `size` padded by `before` and
// `after`; 0 when not even one does.
std::int64_t windows(std::int64_t size, std::int64_t before, std::int64_t after, std::int64_t span,
                     std::int64_t stride) {
  const std::int64_t padded = size + before + after;
  return padded < span ? 0 : (padded - span) / stride + 1;
}

// The checks every windowed op makes on its attributes, and its output's spatial size for an
// input of `size` and a kernel of `kernel`.
Pair window_output(const InferContext& ctx, Pair size, Pair kernel, const char* kernel_what) {
  const Pair stride = pair_of(ctx.attrs(), "stride"), dilation = pair_of(ctx.attrs(), "dilation");
  const Sides pad = sides_of(ctx.attrs());
  for (int i = 0; i < 2; ++i) {
    if (stride[i] < 1) ctx.fail(fmt::format("stride {} must be at least 1", pair_string(stride)));
    if (dilation[i] < 1) ctx.fail(fmt::format("dilation {} must be at least 1", pair_string(dilation)));
    if (kernel[i] < 1) ctx.fail(fmt::format("the {} {} must be at least 1", kernel_what, pair_string(kernel)));
  }
  if (std::any_of(pad.begin(), pad.end(), [](std::int64_t p) { return p < 0; }))
    ctx.fail(fmt::format("padding [{},{},{},{}] must not be negative", pad[0], pad[1], pad[2], pad[3]));
  Pair out{};
  for (int i = 0; i < 2; ++i) {
    const std::int64_t span = dilation[i] * (kernel[i] - 1) + 1;
    out[i] = windows(size[i], pad[i], pad[i + 2], span, stride[i]);
    if (out[i] == 0)
      ctx.fail(fmt::format("the {} {} spans {} {} with dilation {}, more than the {} {} of the input padded to {}",
                           kernel_what, pair_string(kernel), span, i == 0 ? "rows" : "columns", dilation[i], size[i],
                           i == 0 ? "rows" : "columns", size[i] + pad[i] + pad[i + 2]));
  }
  return out;
}

void require_images(const InferContext& ctx, std::size_t i, const char* what) {
  if (ctx.input(i).shape.rank() != 4)
    ctx.fail(fmt::format("{} must be [N,C,H,W] (rank 4), got {}", what, ctx.input(i).to_string()));
}

// --- Convolutions --------------------------------------------------------------------------

// The channel counts of a convolution of x with C channels by w [K, C/groups, R, S].
void check_channels(const InferContext& ctx, std::int64_t c, const Shape& w, const char* x_what) {
  const std::int64_t groups = ctx.attrs().get_int("groups");
  if (groups < 1) ctx.fail(fmt::format("groups must be at least 1, got {}", groups));
  if (c % groups != 0) ctx.fail(fmt::format("{} has {} channels, not divisible by groups {}", x_what, c, groups));
  if (w[0] % groups != 0)
    ctx.fail(fmt::format("w [K,C/groups,R,S] has K = {} output channels, not divisible by groups {}", w[0], groups));
  if (w[1] * groups != c)
    ctx.fail(
        fmt::format("w [K,C/groups,R,S] = {} takes {} input channels per group, {} in all with groups {}, but {} "
                    "has {} channels",
                    w.to_string(), w[1], w[1] * groups, groups, x_what, c));
}

std::vector<TensorType> infer_conv2d(const InferContext& ctx) {
  require_images(ctx, 0, "x");
  if (ctx.input(1).shape.rank() != 4)
    ctx.fail(fmt::format("w must be [K,C/groups,R,S] (rank 4), got {}", ctx.input(1).to_string()));
  ctx.require_floating(0);
  ctx.require_same_dtype();
  const Shape &x = ctx.input(0).shape, &w = ctx.input(1).shape;
  check_channels(ctx, x[1], w, "x");
  const Pair out = window_output(ctx, {x[2], x[3]}, {w[2], w[3]}, "kernel");
  return {TensorType{ctx.input(0).dtype, Shape{x[0], w[0], out[0], out[1]}}};
}

ConvActivation conv_activation(const InferContext* ctx, const std::string& name) {
  if (name == "none") return ConvActivation::none;
  if (name == "relu") return ConvActivation::relu;
  if (ctx) ctx->fail(fmt::format("activation must be 'none' or 'relu', got '{}'", name));
  throw Error(fmt::format("unknown convolution activation '{}'", name));
}

const char* activation_name(ConvActivation activation) { return activation == ConvActivation::relu ? "relu" : "none"; }

// (x, w, bias) -> y: conv2d's output, bias one value per output channel.
std::vector<TensorType> infer_fused_conv2d(const InferContext& ctx) {
  std::vector<TensorType> y = infer_conv2d(ctx);
  const Shape& bias = ctx.input(2).shape;
  if (bias.rank() != 1 || bias[0] != y[0].shape[1])
    ctx.fail(
        fmt::format("bias must be [K] with K = {} output channels, got {}", y[0].shape[1], ctx.input(2).to_string()));
  conv_activation(&ctx, ctx.attrs().get_string("activation"));
  return y;
}

// (dy, w) -> dx [N, C, H, W] with H, W from input_size.
std::vector<TensorType> infer_conv2d_backward_data(const InferContext& ctx) {
  require_images(ctx, 0, "dy");
  if (ctx.input(1).shape.rank() != 4)
    ctx.fail(fmt::format("w must be [K,C/groups,R,S] (rank 4), got {}", ctx.input(1).to_string()));
  ctx.require_floating(0);
  ctx.require_same_dtype();
  const Shape &dy = ctx.input(0).shape, &w = ctx.input(1).shape;
  const Pair size = pair_of(ctx.attrs(), "input_size");
  const std::int64_t groups = ctx.attrs().get_int("groups");
  if (groups < 1) ctx.fail(fmt::format("groups must be at least 1, got {}", groups));
  if (dy[1] != w[0]) ctx.fail(fmt::format("dy has {} channels, w has K = {} output channels", dy[1], w[0]));
  check_channels(ctx, w[1] * groups, w, "x");
  const Pair out = window_output(ctx, size, {w[2], w[3]}, "kernel");
  if (out[0] != dy[2] || out[1] != dy[3])
    ctx.fail(fmt::format("an input of {} convolved gives {}, but dy is {}", pair_string(size), pair_string(out),
                         ctx.input(0).to_string()));
  return {TensorType{ctx.input(0).dtype, Shape{dy[0], w[1] * groups, size[0], size[1]}}};
}

// (x, dy) -> dw [K, C/groups, R, S] with R, S from kernel_size.
std::vector<TensorType> infer_conv2d_backward_filter(const InferContext& ctx) {
  require_images(ctx, 0, "x");
  require_images(ctx, 1, "dy");
  ctx.require_floating(0);
  ctx.require_same_dtype();
  const Shape &x = ctx.input(0).shape, &dy = ctx.input(1).shape;
  const Pair kernel = pair_of(ctx.attrs(), "kernel_size");
  const std::int64_t groups = ctx.attrs().get_int("groups");
  if (groups < 1) ctx.fail(fmt::format("groups must be at least 1, got {}", groups));
  if (x[0] != dy[0]) ctx.fail(fmt::format("x has batch {}, dy has {}", x[0], dy[0]));
  const Shape w{dy[1], x[1] / groups, kernel[0], kernel[1]};
  check_channels(ctx, x[1], w, "x");
  const Pair out = window_output(ctx, {x[2], x[3]}, kernel, "kernel");
  if (out[0] != dy[2] || out[1] != dy[3])
    ctx.fail(fmt::format("x {} convolved gives {}, but dy is {}", ctx.input(0).to_string(), pair_string(out),
                         ctx.input(1).to_string()));
  return {TensorType{ctx.input(0).dtype, w}};
}

ConvAttributes conv_attributes(const Attributes& attrs) {
  return {pair_of(attrs, "stride"), sides_of(attrs), pair_of(attrs, "dilation"), attrs.get_int("groups")};
}

Attributes to_attributes(const ConvAttributes& a) {
  return {{"stride", std::vector<std::int64_t>(a.stride.begin(), a.stride.end())},
          {"padding", std::vector<std::int64_t>(a.padding.begin(), a.padding.end())},
          {"dilation", std::vector<std::int64_t>(a.dilation.begin(), a.dilation.end())},
          {"groups", a.groups}};
}

Pair spatial(const Value& v) { return {v.shape()[2], v.shape()[3]}; }

// Each of the three is bilinear in its two inputs; the gradients of one are the other two.
std::vector<Value> vjp_conv2d(const VjpContext& c) {
  const ConvAttributes a = conv_attributes(c.attrs());
  const Value &x = c.x(0), &w = c.x(1), &g = c.g();
  Value dx, dw;
  if (c.wants(0)) dx = conv2d_backward_data(g, w, spatial(x), a);
  if (c.wants(1)) dw = conv2d_backward_filter(x, g, spatial(w), a);
  return {dx, dw};
}

// y = act(z), z = conv2d(x, w) + bias: the gradient at z is g where the ReLU passed its input
// (y > 0, read from y: z itself is not kept), then conv2d's two gradients and the bias's sum.
std::vector<Value> vjp_fused_conv2d(const VjpContext& c) {
  const ConvAttributes a = conv_attributes(c.attrs());
  const Value &x = c.x(0), &w = c.x(1), &y = c.y();
  Value dz = c.g();
  if (conv_activation(nullptr, c.attrs().get_string("activation")) == ConvActivation::relu)
    dz = where(greater(y, scalar_like(y, 0.0)), dz, zeros_like(dz));
  Value dx, dw, dbias;
  if (c.wants(0)) dx = conv2d_backward_data(dz, w, spatial(x), a);
  if (c.wants(1)) dw = conv2d_backward_filter(x, dz, spatial(w), a);
  if (c.wants(2)) dbias = reduce_sum(dz, {0, 2, 3});
  return {dx, dw, dbias};
}

std::vector<Value> vjp_conv2d_backward_data(const VjpContext& c) {
  const ConvAttributes a = conv_attributes(c.attrs());
  const Value &dy = c.x(0), &w = c.x(1), &g = c.g();
  Value d_dy, dw;
  if (c.wants(0)) d_dy = conv2d_with(g, w, a);
  if (c.wants(1)) dw = conv2d_backward_filter(g, dy, spatial(w), a);
  return {d_dy, dw};
}

std::vector<Value> vjp_conv2d_backward_filter(const VjpContext& c) {
  const ConvAttributes a = conv_attributes(c.attrs());
  const Value &x = c.x(0), &dy = c.x(1), &g = c.g();
  Value dx, d_dy;
  if (c.wants(0)) dx = conv2d_backward_data(dy, g, spatial(x), a);
  if (c.wants(1)) d_dy = conv2d_with(x, g, a);
  return {dx, d_dy};
}

Conv2dParams conv_params(const Attributes& attrs, const Shape& x, const Shape& w, const Shape& y) {
  Conv2dParams p;
  p.batch = x[0], p.in_channels = x[1], p.height = x[2], p.width = x[3];
  p.out_channels = y[1], p.out_height = y[2], p.out_width = y[3];
  p.kernel_h = w[2], p.kernel_w = w[3];
  const Pair stride = pair_of(attrs, "stride"), dilation = pair_of(attrs, "dilation");
  const Sides pad = sides_of(attrs);
  p.stride_h = stride[0], p.stride_w = stride[1], p.dilation_h = dilation[0], p.dilation_w = dilation[1];
  p.pad_top = pad[0], p.pad_left = pad[1];
  p.groups = attrs.get_int("groups");
  return p;
}

std::unique_ptr<const DecodedParams> decode_conv2d(const DecodeContext& c) {
  return std::make_unique<const Decoded<Conv2dParams>>(
      conv_params(c.attrs, c.inputs[0].shape, c.inputs[1].shape, c.outputs[0].shape));
}
std::unique_ptr<const DecodedParams> decode_fused_conv2d(const DecodeContext& c) {
  return std::make_unique<const Decoded<FusedConv2dParams>>(
      FusedConv2dParams{conv_params(c.attrs, c.inputs[0].shape, c.inputs[1].shape, c.outputs[0].shape),
                        conv_activation(nullptr, c.attrs.get_string("activation"))});
}
std::unique_ptr<const DecodedParams> decode_conv2d_backward_data(const DecodeContext& c) {
  return std::make_unique<const Decoded<Conv2dParams>>(
      conv_params(c.attrs, c.outputs[0].shape, c.inputs[1].shape, c.inputs[0].shape));
}
std::unique_ptr<const DecodedParams> decode_conv2d_backward_filter(const DecodeContext& c) {
  return std::make_unique<const Decoded<Conv2dParams>>(
      conv_params(c.attrs, c.inputs[0].shape, c.outputs[0].shape, c.inputs[1].shape));
}

// --- Pools ---------------------------------------------------------------------------------

// The pool's output size for an input of `size`, after the checks every pool makes.
Pair pool_output(const InferContext& ctx, Pair size) {
  const Pair kernel = pair_of(ctx.attrs(), "kernel");
  const Sides pad = sides_of(ctx.attrs());
  for (int i = 0; i < 2; ++i)
    if (pad[i] * 2 > kernel[i] || pad[i + 2] * 2 > kernel[i])
      ctx.fail(fmt::format("padding [{},{},{},{}] must be at most half the kernel {} on each side", pad[0], pad[1],
                           pad[2], pad[3], pair_string(kernel)));
  return window_output(ctx, size, kernel, "kernel");
}

std::vector<TensorType> infer_pool2d(const InferContext& ctx) {
  require_images(ctx, 0, "x");
  ctx.require_floating(0);
  const Shape& x = ctx.input(0).shape;
  const Pair out = pool_output(ctx, {x[2], x[3]});
  return {TensorType{ctx.input(0).dtype, Shape{x[0], x[1], out[0], out[1]}}};
}

// (x, dy) -> dx
std::vector<TensorType> infer_max_pool2d_backward(const InferContext& ctx) {
  const std::vector<TensorType> y = infer_pool2d(ctx);
  require_images(ctx, 1, "dy");
  ctx.require_same_dtype();
  if (ctx.input(1).shape != y[0].shape)
    ctx.fail(fmt::format("dy must have the pool's output type {}, got {}", y[0].to_string(), ctx.input(1).to_string()));
  return {ctx.input(0)};
}

// (dy) -> dx [N, C, H, W] with H, W from input_size
std::vector<TensorType> infer_avg_pool2d_backward(const InferContext& ctx) {
  require_images(ctx, 0, "dy");
  ctx.require_floating(0);
  const Shape& dy = ctx.input(0).shape;
  const Pair size = pair_of(ctx.attrs(), "input_size");
  const Pair out = pool_output(ctx, size);
  if (out[0] != dy[2] || out[1] != dy[3])
    ctx.fail(fmt::format("an input of {} pooled gives {}, but dy is {}", pair_string(size), pair_string(out),
                         ctx.input(0).to_string()));
  return {TensorType{ctx.input(0).dtype, Shape{dy[0], dy[1], size[0], size[1]}}};
}

Pool2dParams pool_params(const Attributes& attrs, const Shape& x, const Shape& y) {
  Pool2dParams p;
  p.batch = x[0], p.channels = x[1], p.height = x[2], p.width = x[3], p.out_height = y[2], p.out_width = y[3];
  const Pair kernel = pair_of(attrs, "kernel"), stride = pair_of(attrs, "stride");
  const Pair dilation = pair_of(attrs, "dilation");
  const Sides pad = sides_of(attrs);
  p.kernel_h = kernel[0], p.kernel_w = kernel[1], p.stride_h = stride[0], p.stride_w = stride[1];
  p.pad_top = pad[0], p.pad_left = pad[1], p.dilation_h = dilation[0], p.dilation_w = dilation[1];
  p.count_include_pad = attrs.has("count_include_pad") && attrs.get_bool("count_include_pad");
  return p;
}

std::unique_ptr<const DecodedParams> decode_pool2d(const DecodeContext& c) {
  return std::make_unique<const Decoded<Pool2dParams>>(pool_params(c.attrs, c.inputs[0].shape, c.outputs[0].shape));
}
std::unique_ptr<const DecodedParams> decode_max_pool2d_backward(const DecodeContext& c) {
  return std::make_unique<const Decoded<Pool2dParams>>(pool_params(c.attrs, c.inputs[0].shape, c.inputs[1].shape));
}
std::unique_ptr<const DecodedParams> decode_avg_pool2d_backward(const DecodeContext& c) {
  return std::make_unique<const Decoded<Pool2dParams>>(pool_params(c.attrs, c.outputs[0].shape, c.inputs[0].shape));
}

std::vector<Value> vjp_max_pool2d(const VjpContext& c) {
  const std::array<Value, 2> in{c.x(0), c.g()};
  return {c.graph.apply1(ops::max_pool2d_backward, in, c.attrs(), c.node.where)};
}

std::vector<Value> vjp_avg_pool2d(const VjpContext& c) {
  Attributes attrs = c.attrs();
  attrs.set("input_size", std::vector<std::int64_t>{c.x(0).shape()[2], c.x(0).shape()[3]});
  const std::array<Value, 1> in{c.g()};
  return {c.graph.apply1(ops::avg_pool2d_backward, in, std::move(attrs), c.node.where)};
}

// avg_pool2d_backward is linear in dy and the adjoint of avg_pool2d: its own gradient is the pool.
std::vector<Value> vjp_avg_pool2d_backward(const VjpContext& c) {
  Attributes attrs;
  for (const auto& [name, value] : c.attrs().items())
    if (name != "input_size") attrs.set(name, value);
  const std::array<Value, 1> in{c.g()};
  return {c.graph.apply1(ops::avg_pool2d, in, std::move(attrs), c.node.where)};
}

// --- Padding -------------------------------------------------------------------------------

PadMode pad_mode(const InferContext* ctx, const std::string& name) {
  if (name == "constant") return PadMode::constant;
  if (name == "reflect") return PadMode::reflect;
  if (ctx) ctx->fail(fmt::format("mode must be 'constant' or 'reflect', got '{}'", name));
  throw Error(fmt::format("unknown pad mode '{}'", name));
}

// The checks pad and pad_backward share; `x` is the unpadded type.
void check_pads(const InferContext& ctx, const Shape& x) {
  const std::vector<std::int64_t>&before = ctx.attrs().get_ints("before"), &after = ctx.attrs().get_ints("after");
  if (static_cast<int>(before.size()) != x.rank() || static_cast<int>(after.size()) != x.rank())
    ctx.fail(fmt::format("before ({} values) and after ({} values) must give one pad per dim of {}", before.size(),
                         after.size(), x.to_string()));
  const bool reflect = pad_mode(&ctx, ctx.attrs().get_string("mode")) == PadMode::reflect;
  for (int i = 0; i < x.rank(); ++i) {
    const auto k = static_cast<std::size_t>(i);
    if (before[k] < 0 || after[k] < 0)
      ctx.fail(fmt::format("pads must not be negative, got {} before and {} after dim {}", before[k], after[k], i));
    if (reflect && (before[k] >= x[i] || after[k] >= x[i]) && (before[k] > 0 || after[k] > 0))
      ctx.fail(fmt::format("reflect padding of dim {} ({} before, {} after) must be less than its size {}", i,
                           before[k], after[k], x[i]));
  }
}

Shape padded(const Attributes& attrs, const Shape& x) {
  const std::vector<std::int64_t>&before = attrs.get_ints("before"), &after = attrs.get_ints("after");
  std::vector<std::int64_t> dims(x.begin(), x.end());
  for (std::size_t i = 0; i < dims.size(); ++i) dims[i] += before[i] + after[i];
  return Shape(std::move(dims));
}

std::vector<TensorType> infer_pad(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  if (x.dtype == DType::boolean) ctx.fail(fmt::format("x must be numeric, got {}", x.to_string()));
  check_pads(ctx, x.shape);
  const std::string why = number_mismatch(ctx.attrs().get_float("value"), x.dtype);
  if (!why.empty()) ctx.fail(why);
  return {TensorType{x.dtype, padded(ctx.attrs(), x.shape)}};
}

// (dy) -> dx: dy's dims less the pads
std::vector<TensorType> infer_pad_backward(const InferContext& ctx) {
  const TensorType& dy = ctx.input(0);
  ctx.require_floating(0);
  const std::vector<std::int64_t>&before = ctx.attrs().get_ints("before"), &after = ctx.attrs().get_ints("after");
  if (static_cast<int>(before.size()) != dy.shape.rank() || static_cast<int>(after.size()) != dy.shape.rank())
    ctx.fail(fmt::format("before and after must give one pad per dim of {}", dy.to_string()));
  std::vector<std::int64_t> dims(dy.shape.begin(), dy.shape.end());
  for (std::size_t i = 0; i < dims.size(); ++i) {
    dims[i] -= before[i] + after[i];
    if (dims[i] < 0) ctx.fail(fmt::format("dy {} is smaller than its pads along dim {}", dy.to_string(), i));
  }
  const Shape x(std::move(dims));
  check_pads(ctx, x);
  return {TensorType{dy.dtype, x}};
}

std::vector<Value> vjp_pad(const VjpContext& c) {
  Attributes attrs = c.attrs();
  attrs.set("value", 0.0);
  const std::array<Value, 1> in{c.g()};
  return {c.graph.apply1(ops::pad_backward, in, std::move(attrs), c.node.where)};
}

// pad_backward is linear and the adjoint of padding with zeros (constant) or of reflecting.
std::vector<Value> vjp_pad_backward(const VjpContext& c) {
  const std::array<Value, 1> in{c.g()};
  return {c.graph.apply1(ops::pad, in, c.attrs(), c.node.where)};
}

}  // namespace

PadParams PadParams::decode(const DecodeContext& context) {
  const Attributes& a = context.attrs;
  return {a.get_ints("before"), a.get_ints("after"), pad_mode(nullptr, a.get_string("mode")), a.get_float("value")};
}

namespace ops {
const OpDef conv2d{.name = "conv2d",
                   .min_inputs = 2,
                   .max_inputs = 2,
                   .infer = infer_conv2d,
                   .vjp = vjp_conv2d,
                   .decode = decode_conv2d};
const OpDef conv2d_backward_data{.name = "conv2d_backward_data",
                                 .min_inputs = 2,
                                 .max_inputs = 2,
                                 .infer = infer_conv2d_backward_data,
                                 .vjp = vjp_conv2d_backward_data,
                                 .decode = decode_conv2d_backward_data};
const OpDef conv2d_backward_filter{.name = "conv2d_backward_filter",
                                   .min_inputs = 2,
                                   .max_inputs = 2,
                                   .infer = infer_conv2d_backward_filter,
                                   .vjp = vjp_conv2d_backward_filter,
                                   .decode = decode_conv2d_backward_filter};
const OpDef fused_conv2d{.name = "fused_conv2d",
                         .min_inputs = 3,
                         .max_inputs = 3,
                         .infer = infer_fused_conv2d,
                         .vjp = vjp_fused_conv2d,
                         .decode = decode_fused_conv2d};
const OpDef max_pool2d{.name = "max_pool2d",
                       .min_inputs = 1,
                       .max_inputs = 1,
                       .infer = infer_pool2d,
                       .vjp = vjp_max_pool2d,
                       .decode = decode_pool2d};
// No gradient rule: its derivative with respect to dy would need the windows' argmax, which
// the argmax-free design does not keep. A second derivative through max pooling is an error.
const OpDef max_pool2d_backward{.name = "max_pool2d_backward",
                                .min_inputs = 2,
                                .max_inputs = 2,
                                .infer = infer_max_pool2d_backward,
                                .decode = decode_max_pool2d_backward};
const OpDef avg_pool2d{.name = "avg_pool2d",
                       .min_inputs = 1,
                       .max_inputs = 1,
                       .infer = infer_pool2d,
                       .vjp = vjp_avg_pool2d,
                       .decode = decode_pool2d};
const OpDef avg_pool2d_backward{.name = "avg_pool2d_backward",
                                .min_inputs = 1,
                                .max_inputs = 1,
                                .infer = infer_avg_pool2d_backward,
                                .vjp = vjp_avg_pool2d_backward,
                                .decode = decode_avg_pool2d_backward};
const OpDef pad{.name = "pad",
                .min_inputs = 1,
                .max_inputs = 1,
                .infer = infer_pad,
                .vjp = vjp_pad,
                .decode = decode_as<PadParams>};
const OpDef pad_backward{.name = "pad_backward",
                         .min_inputs = 1,
                         .max_inputs = 1,
                         .infer = infer_pad_backward,
                         .vjp = vjp_pad_backward,
                         .decode = decode_as<PadParams>};
}  // namespace ops

// --- Builders ------------------------------------------------------------------------------

Padding Padding::sides(std::int64_t top, std::int64_t left, std::int64_t bottom, std::int64_t right) {
  Padding p;
  p.sides_ = {top, left, bottom, right};
  return p;
}

Padding Padding::same() {
  Padding p;
  p.same_ = true;
  return p;
}

std::array<std::int64_t, 4> Padding::resolve(Pair size, Pair window, Pair stride) const {
  if (!same_) return sides_;
  Sides s{};
  for (int i = 0; i < 2; ++i) {
    const std::int64_t out = stride[i] > 0 ? (size[i] + stride[i] - 1) / stride[i] : size[i];
    const std::int64_t total = std::max<std::int64_t>(0, (out - 1) * stride[i] + window[i] - size[i]);
    s[i] = total / 2;
    s[i + 2] = total - total / 2;
  }
  return s;
}

namespace {

Graph& graph_of(std::string_view op, std::initializer_list<Value> inputs, SourceLoc where) {
  for (const Value& v : inputs)
    if (!v.defined()) throw Error("an input is an undefined Value", std::string(op), "", where);
  return inputs.begin()->graph();
}

// Rank checks the builders need before they can read sizes to resolve padding. Raised before any
// node exists, so they name the location in force (a layer's user's line, core/graph.h).
void require_rank(const Value& v, int rank, std::string_view op, const char* what, SourceLoc where) {
  if (v.rank() != rank)
    throw Error(fmt::format("{} must have rank {}, got {}", what, rank, v.type().to_string()), std::string(op), "",
                v.graph().located(where));
}

std::vector<std::int64_t> ints(Pair p) { return {p[0], p[1]}; }

}  // namespace

Value conv2d_with(Value x, Value w, const ConvAttributes& a, Loc where) {
  Graph& g = graph_of(ops::conv2d.name, {x, w}, where);
  const std::array<Value, 2> in{x, w};
  return g.apply1(ops::conv2d, in, to_attributes(a), where);
}

Value fused_conv2d(Value x, Value w, Value bias, const ConvAttributes& a, ConvActivation activation, Loc where) {
  Graph& g = graph_of(ops::fused_conv2d.name, {x, w, bias}, where);
  Attributes attrs = to_attributes(a);
  attrs.set("activation", std::string(activation_name(activation)));
  const std::array<Value, 3> in{x, w, bias};
  return g.apply1(ops::fused_conv2d, in, std::move(attrs), where);
}

Value conv2d_backward_data(Value dy, Value w, Pair input_size, const ConvAttributes& a, Loc where) {
  Graph& g = graph_of(ops::conv2d_backward_data.name, {dy, w}, where);
  Attributes attrs = to_attributes(a);
  attrs.set("input_size", ints(input_size));
  const std::array<Value, 2> in{dy, w};
  return g.apply1(ops::conv2d_backward_data, in, std::move(attrs), where);
}

Value conv2d_backward_filter(Value x, Value dy, Pair kernel_size, const ConvAttributes& a, Loc where) {
  Graph& g = graph_of(ops::conv2d_backward_filter.name, {x, dy}, where);
  Attributes attrs = to_attributes(a);
  attrs.set("kernel_size", ints(kernel_size));
  const std::array<Value, 2> in{x, dy};
  return g.apply1(ops::conv2d_backward_filter, in, std::move(attrs), where);
}

Value conv2d(Value x, Value w, const Conv2dOptions& options, Loc where) {
  graph_of(ops::conv2d.name, {x, w}, where);
  require_rank(x, 4, ops::conv2d.name, "x [N,C,H,W]", where);
  require_rank(w, 4, ops::conv2d.name, "w [K,C/groups,R,S]", where);
  const Pair window{options.dilation[0] * (w.shape()[2] - 1) + 1, options.dilation[1] * (w.shape()[3] - 1) + 1};
  const Sides pad = options.padding.resolve(spatial(x), window, options.stride);
  return conv2d_with(x, w, {options.stride, pad, options.dilation, options.groups}, where);
}

Value conv1d(Value x, Value w, const Conv1dOptions& options, Loc where) {
  graph_of(ops::conv2d.name, {x, w}, where);
  require_rank(x, 3, "conv1d", "x [N,C,L]", where);
  require_rank(w, 3, "conv1d", "w [K,C/groups,S]", where);
  const Shape &xs = x.shape(), &ws = w.shape();
  const Pair window{1, options.dilation * (ws[2] - 1) + 1};
  const Sides sides = options.padding.resolve({1, xs[2]}, window, {1, options.stride});
  const ConvAttributes a{{1, options.stride}, {0, sides[1], 0, sides[3]}, {1, options.dilation}, options.groups};
  const Value y =
      conv2d_with(reshape(x, {xs[0], xs[1], 1, xs[2]}, where), reshape(w, {ws[0], ws[1], 1, ws[2]}, where), a, where);
  return reshape(y, {y.shape()[0], y.shape()[1], y.shape()[3]}, where);
}

Value conv_transpose2d(Value x, Value w, const ConvTranspose2dOptions& o, Loc where) {
  graph_of("conv_transpose2d", {x, w}, where);
  require_rank(x, 4, "conv_transpose2d", "x [N,Cin,H,W]", where);
  require_rank(w, 4, "conv_transpose2d", "w [Cin,Cout/groups,R,S]", where);
  Pair out{};
  for (int i = 0; i < 2; ++i) {
    if (o.output_padding[i] < 0 || (o.output_padding[i] >= o.stride[i] && o.output_padding[i] >= o.dilation[i]))
      throw Error(fmt::format("output_padding {} must be smaller than the stride {} or the dilation {}",
                              pair_string(o.output_padding), pair_string(o.stride), pair_string(o.dilation)),
                  "conv_transpose2d", "", x.graph().located(where));
    out[i] = (x.shape()[2 + i] - 1) * o.stride[i] - 2 * o.padding[i] + o.dilation[i] * (w.shape()[2 + i] - 1) +
             o.output_padding[i] + 1;
    if (out[i] < 1)
      throw Error(fmt::format("the output would have {} {}: the padding {} removes more than the input covers", out[i],
                              i == 0 ? "rows" : "columns", pair_string(o.padding)),
                  "conv_transpose2d", "", x.graph().located(where));
  }
  // The conv whose input gradient this is, from an image of `out` rows padded by `padding` on
  // top: output_padding's extra rows at the bottom are ones no window of that conv reached. Its
  // bottom padding b must give x's rows back as its window count, ⌊(out + p + b - span) / s⌋ + 1
  // = H, that is p - op <= b < p - op + s: b = p when op < s; when op >= s (allowed where op <
  // dilation) the conv's last windows are dropped, b = p - (op - s + 1). Columns alike.
  std::array<std::int64_t, 2> bottom{};
  for (int i = 0; i < 2; ++i) {
    bottom[i] = o.padding[i] - std::max<std::int64_t>(0, o.output_padding[i] - o.stride[i] + 1);
    if (bottom[i] < 0)
      throw Error(fmt::format("output_padding {} reaches past the stride {} by more than the padding {}",
                              pair_string(o.output_padding), pair_string(o.stride), pair_string(o.padding)),
                  "conv_transpose2d", "", x.graph().located(where));
  }
  const ConvAttributes a{o.stride, {o.padding[0], o.padding[1], bottom[0], bottom[1]}, o.dilation, o.groups};
  return conv2d_backward_data(x, w, out, a, where);
}

namespace {

Attributes pool_attributes(const Value& x, Pair kernel, const Pool2dOptions& o, bool average) {
  const Pair stride{o.stride[0] == 0 ? kernel[0] : o.stride[0], o.stride[1] == 0 ? kernel[1] : o.stride[1]};
  const Pair dilation = average ? Pair{1, 1} : o.dilation;
  const Pair window{dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1};
  const Sides pad = o.padding.resolve(spatial(x), window, stride);
  Attributes attrs{{"kernel", ints(kernel)},
                   {"stride", ints(stride)},
                   {"padding", std::vector<std::int64_t>(pad.begin(), pad.end())},
                   {"dilation", ints(dilation)}};
  if (average) attrs.set("count_include_pad", o.count_include_pad);
  return attrs;
}

Value pool(const OpDef& op, Value x, Pair kernel, const Pool2dOptions& options, Loc where) {
  Graph& g = graph_of(op.name, {x}, where);
  require_rank(x, 4, op.name, "x [N,C,H,W]", where);
  const std::array<Value, 1> in{x};
  return g.apply1(op, in, pool_attributes(x, kernel, options, &op == &ops::avg_pool2d), where);
}

}  // namespace

Value max_pool2d(Value x, Pair kernel, const Pool2dOptions& options, Loc where) {
  return pool(ops::max_pool2d, x, kernel, options, where);
}

Value avg_pool2d(Value x, Pair kernel, const Pool2dOptions& options, Loc where) {
  if (options.dilation != Pair{1, 1})
    throw Error("avg_pool2d takes no dilation", std::string(ops::avg_pool2d.name), "",
                x.defined() ? x.graph().located(where) : where);
  return pool(ops::avg_pool2d, x, kernel, options, where);
}

Value global_avg_pool2d(Value x, Loc where) {
  graph_of("global_avg_pool2d", {x}, where);
  require_rank(x, 4, "global_avg_pool2d", "x [N,C,H,W]", where);
  return reduce_mean(x, {2, 3}, true, where);
}

Value pad(Value x, std::vector<std::int64_t> before, std::vector<std::int64_t> after, PadMode mode, double value,
          Loc where) {
  Graph& g = graph_of(ops::pad.name, {x}, where);
  const std::array<Value, 1> in{x};
  Attributes attrs{{"before", std::move(before)},
                   {"after", std::move(after)},
                   {"mode", std::string(mode == PadMode::constant ? "constant" : "reflect")},
                   {"value", value}};
  return g.apply1(ops::pad, in, std::move(attrs), where);
}

}  // namespace fovea
