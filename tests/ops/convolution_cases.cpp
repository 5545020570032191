// The op-case table's rows for the convolution family (ops/convolution.h): every geometry a
// user can ask for (strides, asymmetric and 'same' padding, dilation, groups, depthwise with a
// channel multiplier, 1x1 kernels and images, batch 1 and 0), each op against its plain
// reference (ops/convolution_reference.h) and, the backward ops included, through the f64
// gradient check.
#include <cmath>

#include <fmt/format.h>

#include <fovea/ops/batch_norm.h>
#include <fovea/ops/convolution.h>

#include "ops/convolution_reference.h"
#include "ops/op_cases.h"

namespace fovea::testing {
namespace {

using Inputs = std::vector<Tensor>;
using Pair = std::array<std::int64_t, 2>;
const std::vector<DType> kFloats = {DType::f32, DType::f64};

struct Geometry {
  Shape x, w;
  ConvAttributes a;
};

Shape conv_output(const Geometry& g) {
  std::array<std::int64_t, 2> out{};
  for (int i = 0; i < 2; ++i) {
    const std::int64_t span = g.a.dilation[i] * (g.w[2 + i] - 1) + 1;
    out[i] = (g.x[2 + i] + g.a.padding[i] + g.a.padding[i + 2] - span) / g.a.stride[i] + 1;
  }
  return {g.x[0], g.w[0], out[0], out[1]};
}

std::string describe(const Geometry& g) {
  return fmt::format("x {} w {} stride [{},{}] padding [{},{},{},{}] dilation [{},{}] groups {}", g.x.to_string(),
                     g.w.to_string(), g.a.stride[0], g.a.stride[1], g.a.padding[0], g.a.padding[1], g.a.padding[2],
                     g.a.padding[3], g.a.dilation[0], g.a.dilation[1], g.a.groups);
}

// conv2d's reference plus bias[k], through the ReLU when `relu`.
Tensor fused_conv2d_reference(const Inputs& in, const ConvAttributes& a, bool relu) {
  const Tensor y = conv2d_reference(in[0], in[1], a);
  const Shape& s = y.shape();
  const std::int64_t plane = s[2] * s[3];
  Tensor out = Tensor::zeros(DType::f64, s);
  double* o = out.data<double>().data();
  for (std::int64_t e = 0; e < s.numel(); ++e) {
    const double v = y.at(e) + in[2].at(e / plane % s[1]);
    o[e] = relu && v < 0 ? 0.0 : v;
  }
  return out;
}

// fused_conv2d with and without its ReLU on geometry `g`.
void add_fused_conv_cases(std::vector<OpCase>& cases, const Geometry& g) {
  for (const ConvActivation activation : {ConvActivation::none, ConvActivation::relu}) {
    const ConvAttributes a = g.a;
    const bool relu = activation == ConvActivation::relu;
    cases.push_back(
        {.op = "fused_conv2d",
         .name = fmt::format("fused_conv2d {} activation {}", describe(g), relu ? "relu" : "none"),
         .dtypes = kFloats,
         .inputs = {{g.x}, {g.w}, {{g.w[0]}}},
         .build = [=](Graph&, const std::vector<Value>& v) { return fused_conv2d(v[0], v[1], v[2], a, activation); },
         .reference = [=](const Inputs& in, const Value&) { return fused_conv2d_reference(in, a, relu); },
         .differentiable = g.x.numel() > 0});
  }
}

void add_conv_cases(std::vector<OpCase>& cases) {
  const std::vector<Geometry> geometries = {
      {{2, 3, 5, 6}, {4, 3, 3, 3}, {{1, 1}, {1, 1, 1, 1}, {1, 1}, 1}},
      {{1, 4, 7, 5}, {6, 2, 3, 2}, {{2, 2}, {1, 0, 0, 1}, {1, 2}, 2}},  // groups, asymmetric padding
      {{2, 3, 6, 6}, {3, 1, 3, 3}, {{1, 1}, {1, 1, 1, 1}, {1, 1}, 3}},  // depthwise
      {{1, 2, 5, 5}, {4, 1, 3, 3}, {{2, 2}, {1, 1, 1, 1}, {1, 1}, 2}},  // depthwise, channel multiplier 2
      {{2, 3, 4, 4}, {5, 3, 1, 1}, {{1, 1}, {0, 0, 0, 0}, {1, 1}, 1}},  // 1x1
      {{2, 3, 1, 1}, {2, 3, 3, 3}, {{1, 1}, {1, 1, 1, 1}, {1, 1}, 1}},  // a 1x1 image
      {{1, 2, 9, 8}, {3, 2, 2, 3}, {{3, 2}, {0, 1, 2, 0}, {2, 2}, 1}},  // dilation, stride 3
      {{0, 2, 4, 4}, {3, 2, 3, 3}, {{1, 1}, {1, 1, 1, 1}, {1, 1}, 1}},  // an empty batch
  };
  for (const Geometry& g : geometries) {
    add_fused_conv_cases(cases, g);
    const ConvAttributes a = g.a;
    const Shape y = conv_output(g);
    const Pair size{g.x[2], g.x[3]}, kernel{g.w[2], g.w[3]};
    const bool nonempty = g.x.numel() > 0;
    cases.push_back({.op = "conv2d",
                     .name = "conv2d " + describe(g),
                     .dtypes = kFloats,
                     .inputs = {{g.x}, {g.w}},
                     .build = [=](Graph&, const std::vector<Value>& v) { return conv2d_with(v[0], v[1], a); },
                     .reference = [=](const Inputs& in, const Value&) { return conv2d_reference(in[0], in[1], a); },
                     .differentiable = nonempty});
    cases.push_back(
        {.op = "conv2d_backward_data",
         .name = "conv2d_backward_data " + describe(g),
         .dtypes = kFloats,
         .inputs = {{y}, {g.w}},
         .build = [=](Graph&, const std::vector<Value>& v) { return conv2d_backward_data(v[0], v[1], size, a); },
         .reference = [=](const Inputs& in,
                          const Value&) { return conv2d_backward_data_reference(in[0], in[1], size, a); },
         .differentiable = nonempty});
    cases.push_back(
        {.op = "conv2d_backward_filter",
         .name = "conv2d_backward_filter " + describe(g),
         .dtypes = kFloats,
         .inputs = {{g.x}, {y}},
         .build = [=](Graph&, const std::vector<Value>& v) { return conv2d_backward_filter(v[0], v[1], kernel, a); },
         .reference = [=](const Inputs& in,
                          const Value&) { return conv2d_backward_filter_reference(in[0], in[1], kernel, a); },
         .differentiable = nonempty});
  }
  // The builders that resolve padding or rename the roles, through the same ops.
  cases.push_back({.op = "conv2d",
                   .name = "conv2d with Padding::same() and stride 2 (the extra row at the bottom)",
                   .dtypes = kFloats,
                   .inputs = {{{1, 2, 6, 7}}, {{3, 2, 4, 3}}},
                   .build =
                       [](Graph&, const std::vector<Value>& v) {
                         return conv2d(v[0], v[1], {.stride = {2, 2}, .padding = Padding::same()});
                       },
                   .reference =
                       [](const Inputs& in, const Value&) {
                         // out ⌈6/2⌉ = 3 rows: total (3-1)·2 + 4 - 6 = 2 → 1 and 1; ⌈7/2⌉ = 4
                         // columns: (4-1)·2 + 3 - 7 = 2 → 1 and 1.
                         return conv2d_reference(in[0], in[1], {{2, 2}, {1, 1, 1, 1}, {1, 1}, 1});
                       },
                   .differentiable = true});
  cases.push_back({.op = "conv2d",
                   .name = "conv1d x [2,3,7] w [4,3,3] stride 2 padding same dilation 1",
                   .dtypes = kFloats,
                   .inputs = {{{2, 3, 7}}, {{4, 3, 3}}},
                   .build =
                       [](Graph&, const std::vector<Value>& v) {
                         return conv1d(v[0], v[1], {.stride = 2, .padding = Padding::same()});
                       },
                   .reference =
                       [](const Inputs& in, const Value&) {
                         const Tensor y = conv2d_reference(in[0].reshape({2, 3, 1, 7}), in[1].reshape({4, 3, 1, 3}),
                                                           {{1, 2}, {0, 1, 0, 1}, {1, 1}, 1});
                         return y.reshape({2, 4, 4});
                       },
                   .differentiable = true});
  cases.push_back(
      {.op = "conv2d_backward_data",
       .name = "conv_transpose2d x [1,4,3,4] w [4,3,3,3] stride 2 padding 1 output_padding 1 groups 1",
       .dtypes = kFloats,
       .inputs = {{{1, 4, 3, 4}}, {{4, 3, 3, 3}}},
       .build =
           [](Graph&, const std::vector<Value>& v) {
             return conv_transpose2d(v[0], v[1], {.stride = {2, 2}, .padding = {1, 1}, .output_padding = {1, 1}});
           },
       .reference =
           [](const Inputs& in, const Value&) {
             // OH = (3-1)·2 - 2 + 2 + 1 + 1 = 6, OW = (4-1)·2 - 2 + 2 + 1 + 1 = 8
             return conv2d_backward_data_reference(in[0], in[1], {6, 8}, {{2, 2}, {1, 1, 1, 1}, {1, 1}, 1});
           },
       .differentiable = true});
}

struct PoolCase {
  Shape x;
  PoolWindow p;
  bool integral = false;  // small integers: ties inside windows
};

Pool2dOptions options_of(const PoolWindow& p) {
  return {.stride = p.stride,
          .padding = Padding::sides(p.padding[0], p.padding[1], p.padding[2], p.padding[3]),
          .dilation = p.dilation,
          .count_include_pad = p.count_include_pad};
}

std::string describe(const Shape& x, const PoolWindow& p) {
  return fmt::format("x {} kernel [{},{}] stride [{},{}] padding [{},{},{},{}] dilation [{},{}]", x.to_string(),
                     p.kernel[0], p.kernel[1], p.stride[0], p.stride[1], p.padding[0], p.padding[1], p.padding[2],
                     p.padding[3], p.dilation[0], p.dilation[1]);
}

Shape pool_output(const Shape& x, const PoolWindow& p) {
  std::array<std::int64_t, 2> out{};
  for (int i = 0; i < 2; ++i) {
    const std::int64_t span = p.dilation[i] * (p.kernel[i] - 1) + 1;
    out[i] = (x[2 + i] + p.padding[i] + p.padding[i + 2] - span) / p.stride[i] + 1;
  }
  return {x[0], x[1], out[0], out[1]};
}

void add_max_pool_cases(std::vector<OpCase>& cases) {
  const std::vector<PoolCase> pools = {
      {{2, 3, 6, 7}, {.kernel = {2, 2}, .stride = {2, 2}}},  // the last column is left out
      {{1, 2, 7, 7}, {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1, 1, 1}}},
      {{1, 1, 7, 7}, {.kernel = {2, 3}, .stride = {1, 1}, .dilation = {2, 1}, .padding = {1, 0, 0, 1}}},
      {{2, 2, 4, 4}, {.kernel = {2, 2}, .stride = {1, 1}}, true},  // ties: the first maximum wins
      {{1, 3, 1, 1}, {.kernel = {1, 1}, .stride = {1, 1}}},        // a 1x1 image
      // Windows that tile the image over its padding, the last row and column outside them.
      {{1, 2, 9, 12}, {.kernel = {3, 3}, .stride = {3, 3}, .padding = {1, 1, 1, 0}}},
  };
  for (const PoolCase& pc : pools) {
    const PoolWindow p = pc.p;
    const InputSpec x{
        .shape = pc.x, .low = pc.integral ? -2.0 : -1.0, .high = pc.integral ? 2.0 : 1.0, .integral = pc.integral};
    cases.push_back(
        {.op = "max_pool2d",
         .name = "max_pool2d " + describe(pc.x, p) + (pc.integral ? " with ties" : ""),
         .dtypes = kFloats,
         .inputs = {x},
         .build = [=](Graph&, const std::vector<Value>& v) { return max_pool2d(v[0], p.kernel, options_of(p)); },
         .reference = [=](const Inputs& in, const Value&) { return max_pool2d_reference(in[0], p); },
         .differentiable = !pc.integral});
    cases.push_back(
        {.op = "max_pool2d_backward",
         .name = "max_pool2d_backward " + describe(pc.x, p) + (pc.integral ? " with ties" : ""),
         .dtypes = kFloats,
         .inputs = {x, {pool_output(pc.x, p)}},
         .build =
             [=](Graph& g, const std::vector<Value>& v) {
               const Value y = max_pool2d(v[0], p.kernel, options_of(p));
               const std::array<Value, 2> in{v[0], v[1]};
               return g.apply1(ops::max_pool2d_backward, in, y.node().attrs, Loc::current());
             },
         .reference = [=](const Inputs& in, const Value&) { return max_pool2d_backward_reference(in[0], in[1], p); }});
  }
}

void add_avg_pool_cases(std::vector<OpCase>& cases) {
  const std::vector<PoolCase> pools = {
      {{2, 3, 6, 7}, {.kernel = {2, 2}, .stride = {2, 2}}},
      {{1, 2, 7, 6}, {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1, 1, 1}, .count_include_pad = true}},
      {{1, 2, 7, 6}, {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1, 1, 1}, .count_include_pad = false}},
      {{1, 1, 5, 5}, {.kernel = {2, 3}, .stride = {1, 2}, .padding = {1, 0, 0, 1}, .count_include_pad = false}},
      {{1, 2, 9, 12}, {.kernel = {3, 3}, .stride = {3, 3}, .padding = {1, 1, 1, 0}, .count_include_pad = false}},
  };
  for (const PoolCase& pc : pools) {
    const PoolWindow p = pc.p;
    const Pair size{pc.x[2], pc.x[3]};
    const std::string what = describe(pc.x, p) + (p.count_include_pad ? " counting padding" : " not counting padding");
    cases.push_back(
        {.op = "avg_pool2d",
         .name = "avg_pool2d " + what,
         .dtypes = kFloats,
         .inputs = {{pc.x}},
         .build = [=](Graph&, const std::vector<Value>& v) { return avg_pool2d(v[0], p.kernel, options_of(p)); },
         .reference = [=](const Inputs& in, const Value&) { return avg_pool2d_reference(in[0], p); },
         .differentiable = true});
    cases.push_back(
        {.op = "avg_pool2d_backward",
         .name = "avg_pool2d_backward " + what,
         .dtypes = kFloats,
         .inputs = {{pool_output(pc.x, p)}},
         .build =
             [=](Graph& g, const std::vector<Value>& v) {
               // The pool's own gradient rule builds the backward node.
               const Value x = g.placeholder("pooled_input", v[0].dtype(), Shape{pc.x});
               Attributes attrs = avg_pool2d(x, p.kernel, options_of(p)).node().attrs;
               attrs.set("input_size", std::vector<std::int64_t>{size[0], size[1]});
               const std::array<Value, 1> in{v[0]};
               return g.apply1(ops::avg_pool2d_backward, in, std::move(attrs), Loc::current());
             },
         .reference = [=](const Inputs& in, const Value&) { return avg_pool2d_backward_reference(in[0], size, p); },
         .differentiable = true});
  }
}

void add_pad_cases(std::vector<OpCase>& cases) {
  struct PadCase {
    Shape x;
    std::vector<std::int64_t> before, after;
    PadMode mode;
    double value;
    std::vector<DType> dtypes;
  };
  const std::vector<DType> numeric = {DType::f32, DType::f64, DType::i32, DType::i64};
  const std::vector<PadCase> pads = {
      {{2, 3, 4}, {0, 1, 2}, {1, 0, 3}, PadMode::constant, 0.5, kFloats},
      {{2, 3}, {1, 0}, {0, 2}, PadMode::constant, 2.0, numeric},
      {{3, 4, 5}, {1, 0, 2}, {2, 3, 4}, PadMode::reflect, 0.0, numeric},
      {{1, 1, 4, 4}, {0, 0, 1, 1}, {0, 0, 1, 1}, PadMode::reflect, 0.0, kFloats},  // an image, as convs pad it
      {{0, 3}, {1, 0}, {0, 1}, PadMode::constant, 0.0, kFloats},                   // an empty dim
  };
  for (const PadCase& pc : pads) {
    const auto before = pc.before, after = pc.after;
    const PadMode mode = pc.mode;
    const double value = pc.value;
    const std::string what =
        fmt::format("{} x {} before [{}] after [{}]", mode == PadMode::constant ? "constant" : "reflect",
                    pc.x.to_string(), fmt::join(before, ","), fmt::join(after, ","));
    cases.push_back(
        {.op = "pad",
         .name = "pad " + what,
         .dtypes = pc.dtypes,
         .inputs = {{.shape = pc.x, .low = -4, .high = 4}},
         .build = [=](Graph&, const std::vector<Value>& v) { return pad(v[0], before, after, mode, value); },
         .reference = [=](const Inputs& in, const Value&) { return pad_reference(in[0], before, after, mode, value); },
         .differentiable = pc.x.numel() > 0});
    std::vector<std::int64_t> dims(pc.x.begin(), pc.x.end());
    for (std::size_t d = 0; d < dims.size(); ++d) dims[d] += before[d] + after[d];
    cases.push_back({.op = "pad_backward",
                     .name = "pad_backward " + what,
                     .dtypes = kFloats,
                     .inputs = {{Shape(dims)}},
                     .build =
                         [=](Graph& g, const std::vector<Value>& v) {
                           const Value x = g.placeholder("padded_input", v[0].dtype(), pc.x);
                           Attributes attrs = pad(x, before, after, mode, value).node().attrs;
                           attrs.set("value", 0.0);
                           const std::array<Value, 1> in{v[0]};
                           return g.apply1(ops::pad_backward, in, std::move(attrs), Loc::current());
                         },
                     .reference = [=](const Inputs& in,
                                      const Value&) { return pad_backward_reference(in[0], before, after, mode); },
                     .differentiable = pc.x.numel() > 0});
  }
}

// Batch norm over x [N, C, inner...]: which output of the op (0: y, 1: mean, 2: variance), or
// with `backward` batch_norm_backward's dx from (dy, x, gamma, mean, variance).
Tensor batch_norm_reference(const Inputs& in, int which, bool backward, double eps) {
  const Tensor& x = backward ? in[1] : in[0];
  const Shape& s = x.shape();
  const std::int64_t channels = s[1], inner = s.numel() / std::max<std::int64_t>(1, s[0] * channels);
  const double n = static_cast<double>(s[0] * inner);
  auto at = [&](std::int64_t b, std::int64_t c, std::int64_t i) { return (b * channels + c) * inner + i; };
  Tensor out = Tensor::zeros(DType::f64, which == 0 ? s : Shape{channels});
  double* o = out.data<double>().data();
  for (std::int64_t c = 0; c < channels; ++c) {
    double mean = 0, var = 0;
    if (backward) {
      mean = in[3].at(c), var = in[4].at(c);
    } else {
      for (std::int64_t b = 0; b < s[0]; ++b)
        for (std::int64_t i = 0; i < inner; ++i) mean += x.at(at(b, c, i)) / n;
      for (std::int64_t b = 0; b < s[0]; ++b)
        for (std::int64_t i = 0; i < inner; ++i) var += std::pow(x.at(at(b, c, i)) - mean, 2) / n;
    }
    const double r = 1 / std::sqrt(var + eps), gamma = backward ? in[2].at(c) : in[1].at(c);
    if (which == 1) o[c] = mean;
    if (which == 2) o[c] = var;
    if (which != 0) continue;
    double sum_dy = 0, sum_dy_xhat = 0;
    for (std::int64_t b = 0; backward && b < s[0]; ++b)
      for (std::int64_t i = 0; i < inner; ++i) {
        sum_dy += in[0].at(at(b, c, i));
        sum_dy_xhat += in[0].at(at(b, c, i)) * (x.at(at(b, c, i)) - mean) * r;
      }
    for (std::int64_t b = 0; b < s[0]; ++b)
      for (std::int64_t i = 0; i < inner; ++i) {
        const std::int64_t k = at(b, c, i);
        const double xhat = (x.at(k) - mean) * r;
        o[k] = backward ? gamma * r * (in[0].at(k) - sum_dy / n - xhat * sum_dy_xhat / n) : xhat * gamma + in[2].at(c);
      }
  }
  return out;
}

void add_batch_norm_cases(std::vector<OpCase>& cases) {
  const double eps = 1e-3;
  for (const Shape& x : {Shape{4, 3, 2, 5}, Shape{6, 2}, Shape{1, 2, 3}, Shape{2, 1, 1, 1}}) {
    const Shape c{x[1]};
    for (int which : {0, 1, 2}) {
      const char* what = which == 0 ? "y" : which == 1 ? "the batch mean" : "the batch variance";
      cases.push_back(
          {.op = "batch_norm",
           .name = "batch_norm x " + x.to_string() + ": " + what,
           .dtypes = kFloats,
           .inputs = {{x}, {.shape = c, .low = 0.5, .high = 2.0}, {c}},
           .build =
               [=](Graph&, const std::vector<Value>& v) {
                 const BatchNormOutputs o = batch_norm_training(v[0], v[1], v[2], eps);
                 return which == 0 ? o.y : which == 1 ? o.mean : o.variance;
               },
           .reference = [=](const Inputs& in, const Value&) { return batch_norm_reference(in, which, false, eps); },
           // Two values per channel (N = 2, 1x1) normalise to ±1 whatever they are:
           // the gradient is 0 up to rounding, and finite differences of it are noise.
           .differentiable = x.numel() / x[1] > 2,
           .f32 = {1e-4, 1e-5}});
    }
    cases.push_back(
        {.op = "batch_norm_backward",
         .name = "batch_norm_backward x " + x.to_string(),
         .dtypes = kFloats,
         .inputs = {{x}, {x}, {.shape = c, .low = 0.5, .high = 2.0}, {c}, {.shape = c, .low = 0.2, .high = 2.0}},
         .build =
             [=](Graph&, const std::vector<Value>& v) {
               return batch_norm_backward(v[0], v[1], v[2], v[3], v[4], eps).dx;
             },
         .reference = [=](const Inputs& in, const Value&) { return batch_norm_reference(in, 0, true, eps); },
         .f32 = {1e-4, 1e-5}});
  }
}

}  // namespace

void add_convolution_cases(std::vector<OpCase>& cases) {
  add_batch_norm_cases(cases);
  add_conv_cases(cases);
  add_max_pool_cases(cases);
  add_avg_pool_cases(cases);
  add_pad_cases(cases);
}

}  // namespace fovea::testing
