#include "ops/convolution_reference.h"

#include <cmath>
#include <functional>
#include <limits>

namespace fovea::testing {
namespace {

struct ConvSizes {
  std::int64_t n, c, h, w, k, r, s, oh, ow;
};

// Calls visit(x_index, w_index, y_index) for every product of the forward sum whose input
// position lies inside the image (padding reads zero, so the others contribute nothing).
void for_each_product(const ConvSizes& z, const ConvAttributes& a,
                      const std::function<void(std::int64_t, std::int64_t, std::int64_t)>& visit) {
  const std::int64_t cg = z.c / a.groups, kg = z.k / a.groups;
  for (std::int64_t n = 0; n < z.n; ++n)
    for (std::int64_t k = 0; k < z.k; ++k)
      for (std::int64_t i = 0; i < z.oh; ++i)
        for (std::int64_t j = 0; j < z.ow; ++j)
          for (std::int64_t cc = 0; cc < cg; ++cc)
            for (std::int64_t r = 0; r < z.r; ++r)
              for (std::int64_t s = 0; s < z.s; ++s) {
                const std::int64_t c = (k / kg) * cg + cc;
                const std::int64_t h = i * a.stride[0] - a.padding[0] + r * a.dilation[0];
                const std::int64_t w = j * a.stride[1] - a.padding[1] + s * a.dilation[1];
                if (h < 0 || h >= z.h || w < 0 || w >= z.w) continue;
                visit(((n * z.c + c) * z.h + h) * z.w + w, ((k * cg + cc) * z.r + r) * z.s + s,
                      ((n * z.k + k) * z.oh + i) * z.ow + j);
              }
}

double& at(Tensor& t, std::int64_t i) { return t.data<double>()[static_cast<std::size_t>(i)]; }

}  // namespace

Tensor conv2d_reference(const Tensor& x, const Tensor& w, const ConvAttributes& a) {
  const Shape &xs = x.shape(), &ws = w.shape();
  const std::int64_t ew = a.dilation[1] * (ws[3] - 1) + 1, eh = a.dilation[0] * (ws[2] - 1) + 1;
  const ConvSizes z{xs[0],
                    xs[1],
                    xs[2],
                    xs[3],
                    ws[0],
                    ws[2],
                    ws[3],
                    (xs[2] + a.padding[0] + a.padding[2] - eh) / a.stride[0] + 1,
                    (xs[3] + a.padding[1] + a.padding[3] - ew) / a.stride[1] + 1};
  Tensor y = Tensor::zeros(DType::f64, {z.n, z.k, z.oh, z.ow});
  for_each_product(z, a, [&](std::int64_t xi, std::int64_t wi, std::int64_t yi) { at(y, yi) += x.at(xi) * w.at(wi); });
  return y;
}

Tensor conv2d_backward_data_reference(const Tensor& dy, const Tensor& w, std::array<std::int64_t, 2> input_size,
                                      const ConvAttributes& a) {
  const Shape &ys = dy.shape(), &ws = w.shape();
  const ConvSizes z{ys[0], ws[1] * a.groups, input_size[0], input_size[1], ws[0], ws[2], ws[3], ys[2], ys[3]};
  Tensor dx = Tensor::zeros(DType::f64, {z.n, z.c, z.h, z.w});
  for_each_product(z, a,
                   [&](std::int64_t xi, std::int64_t wi, std::int64_t yi) { at(dx, xi) += dy.at(yi) * w.at(wi); });
  return dx;
}

Tensor conv2d_backward_filter_reference(const Tensor& x, const Tensor& dy, std::array<std::int64_t, 2> kernel_size,
                                        const ConvAttributes& a) {
  const Shape &xs = x.shape(), &ys = dy.shape();
  const ConvSizes z{xs[0], xs[1], xs[2], xs[3], ys[1], kernel_size[0], kernel_size[1], ys[2], ys[3]};
  Tensor dw = Tensor::zeros(DType::f64, {z.k, z.c / a.groups, z.r, z.s});
  for_each_product(z, a,
                   [&](std::int64_t xi, std::int64_t wi, std::int64_t yi) { at(dw, wi) += x.at(xi) * dy.at(yi); });
  return dw;
}

namespace {

struct PoolSizes {
  std::int64_t planes, h, w, oh, ow;
};

PoolSizes pool_sizes(const Shape& x, const PoolWindow& p) {
  auto out = [&](int i, std::int64_t size) {
    const std::int64_t span = p.dilation[i] * (p.kernel[i] - 1) + 1;
    return (size + p.padding[i] + p.padding[i + 2] - span) / p.stride[i] + 1;
  };
  return {x[0] * x[1], x[2], x[3], out(0, x[2]), out(1, x[3])};
}

// Calls visit(plane, i, j, h, w, inside) for every position (h, w) of every window, in
// row-major window order; `inside` says whether it lies in the image.
void for_each_window_position(
    const PoolSizes& z, const PoolWindow& p,
    const std::function<void(std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool)>& visit) {
  for (std::int64_t plane = 0; plane < z.planes; ++plane)
    for (std::int64_t i = 0; i < z.oh; ++i)
      for (std::int64_t j = 0; j < z.ow; ++j)
        for (std::int64_t r = 0; r < p.kernel[0]; ++r)
          for (std::int64_t s = 0; s < p.kernel[1]; ++s) {
            const std::int64_t h = i * p.stride[0] - p.padding[0] + r * p.dilation[0];
            const std::int64_t w = j * p.stride[1] - p.padding[1] + s * p.dilation[1];
            visit(plane, i, j, h, w, h >= 0 && h < z.h && w >= 0 && w < z.w);
          }
}

// The flat index in x of each output's first maximal element (-1: none in the image).
std::vector<std::int64_t> first_max(const Tensor& x, const PoolSizes& z, const PoolWindow& p) {
  std::vector<std::int64_t> best(static_cast<std::size_t>(z.planes * z.oh * z.ow), -1);
  for_each_window_position(
      z, p, [&](std::int64_t plane, std::int64_t i, std::int64_t j, std::int64_t h, std::int64_t w, bool inside) {
        if (!inside) return;
        std::int64_t& b = best[static_cast<std::size_t>((plane * z.oh + i) * z.ow + j)];
        const std::int64_t xi = (plane * z.h + h) * z.w + w;
        if (b >= 0 && std::isnan(x.at(b))) return;  // a NaN stays the maximum
        if (b < 0 || std::isnan(x.at(xi)) || x.at(xi) > x.at(b)) b = xi;
      });
  return best;
}

}  // namespace

Tensor max_pool2d_reference(const Tensor& x, const PoolWindow& p) {
  const PoolSizes z = pool_sizes(x.shape(), p);
  const std::vector<std::int64_t> best = first_max(x, z, p);
  Tensor y = Tensor::zeros(DType::f64, {x.shape()[0], x.shape()[1], z.oh, z.ow});
  for (std::size_t o = 0; o < best.size(); ++o)
    at(y, static_cast<std::int64_t>(o)) = best[o] < 0 ? -std::numeric_limits<double>::infinity() : x.at(best[o]);
  return y;
}

Tensor max_pool2d_backward_reference(const Tensor& x, const Tensor& dy, const PoolWindow& p) {
  const PoolSizes z = pool_sizes(x.shape(), p);
  const std::vector<std::int64_t> best = first_max(x, z, p);
  Tensor dx = Tensor::zeros(DType::f64, x.shape());
  for (std::size_t o = 0; o < best.size(); ++o)
    if (best[o] >= 0) at(dx, best[o]) += dy.at(static_cast<std::int64_t>(o));
  return dx;
}

namespace {

// The divisor of each output: the whole window, or its in-image part.
std::vector<double> divisors(const PoolSizes& z, const PoolWindow& p) {
  std::vector<double> count(static_cast<std::size_t>(z.planes * z.oh * z.ow), 0.0);
  for_each_window_position(
      z, p, [&](std::int64_t plane, std::int64_t i, std::int64_t j, std::int64_t, std::int64_t, bool inside) {
        if (inside || p.count_include_pad) count[static_cast<std::size_t>((plane * z.oh + i) * z.ow + j)] += 1;
      });
  return count;
}

}  // namespace

Tensor avg_pool2d_reference(const Tensor& x, const PoolWindow& p) {
  const PoolSizes z = pool_sizes(x.shape(), p);
  const std::vector<double> count = divisors(z, p);
  Tensor y = Tensor::zeros(DType::f64, {x.shape()[0], x.shape()[1], z.oh, z.ow});
  for_each_window_position(
      z, p, [&](std::int64_t plane, std::int64_t i, std::int64_t j, std::int64_t h, std::int64_t w, bool inside) {
        const std::int64_t o = (plane * z.oh + i) * z.ow + j;
        if (inside) at(y, o) += x.at((plane * z.h + h) * z.w + w) / count[static_cast<std::size_t>(o)];
      });
  return y;
}

Tensor avg_pool2d_backward_reference(const Tensor& dy, std::array<std::int64_t, 2> input_size, const PoolWindow& p) {
  const Shape x_shape{dy.shape()[0], dy.shape()[1], input_size[0], input_size[1]};
  const PoolSizes z = pool_sizes(x_shape, p);
  const std::vector<double> count = divisors(z, p);
  Tensor dx = Tensor::zeros(DType::f64, x_shape);
  for_each_window_position(
      z, p, [&](std::int64_t plane, std::int64_t i, std::int64_t j, std::int64_t h, std::int64_t w, bool inside) {
        const std::int64_t o = (plane * z.oh + i) * z.ow + j;
        if (inside) at(dx, (plane * z.h + h) * z.w + w) += dy.at(o) / count[static_cast<std::size_t>(o)];
      });
  return dx;
}

namespace {

// The input index an output index of a padded tensor reads, or -1 for a constant pad element.
std::int64_t padded_source(std::int64_t flat, const Shape& x, const Shape& y, const std::vector<std::int64_t>& before,
                           PadMode mode) {
  std::int64_t source = 0, stride = 1;
  for (int d = y.rank() - 1; d >= 0; --d) {
    std::int64_t i = flat % y[d] - before[static_cast<std::size_t>(d)];
    flat /= y[d];
    if (i < 0 || i >= x[d]) {
      if (mode == PadMode::constant) return -1;
      i = i < 0 ? -i : 2 * (x[d] - 1) - i;  // mirror about the edge, the edge not repeated
    }
    source += i * stride;
    stride *= x[d];
  }
  return source;
}

Shape padded_shape(const Shape& x, const std::vector<std::int64_t>& before, const std::vector<std::int64_t>& after) {
  std::vector<std::int64_t> dims(x.begin(), x.end());
  for (std::size_t d = 0; d < dims.size(); ++d) dims[d] += before[d] + after[d];
  return Shape(std::move(dims));
}

}  // namespace

Tensor pad_reference(const Tensor& x, const std::vector<std::int64_t>& before, const std::vector<std::int64_t>& after,
                     PadMode mode, double value) {
  const Shape y_shape = padded_shape(x.shape(), before, after);
  Tensor y = Tensor::zeros(DType::f64, y_shape);
  for (std::int64_t o = 0; o < y_shape.numel(); ++o) {
    const std::int64_t source = padded_source(o, x.shape(), y_shape, before, mode);
    at(y, o) = source < 0 ? value : x.at(source);
  }
  return y;
}

Tensor pad_backward_reference(const Tensor& dy, const std::vector<std::int64_t>& before,
                              const std::vector<std::int64_t>& after, PadMode mode) {
  std::vector<std::int64_t> dims(dy.shape().begin(), dy.shape().end());
  for (std::size_t d = 0; d < dims.size(); ++d) dims[d] -= before[d] + after[d];
  const Shape x_shape(std::move(dims));
  Tensor dx = Tensor::zeros(DType::f64, x_shape);
  for (std::int64_t o = 0; o < dy.numel(); ++o) {
    const std::int64_t source = padded_source(o, x_shape, dy.shape(), before, mode);
    if (source >= 0) at(dx, source) += dy.at(o);
  }
  return dx;
}

}  // namespace fovea::testing
