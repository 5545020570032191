// Plain references for the convolution family (ops/convolution.h): the defining sums written as
// loops in double, slow and obviously right. Inputs may be any dtype; outputs are f64.
#pragma once

#include <array>

#include <fovea/ops/convolution.h>

namespace fovea::testing {

// y[n,k,i,j] = Σ_{c',r,s} x[n, group·C/g + c', i·sh - pt + r·dh, j·sw - pl + s·dw] · w[k,c',r,s]
Tensor conv2d_reference(const Tensor& x, const Tensor& w, const ConvAttributes& a);
// The adjoints of conv2d_reference in x and in w: every product x·w of the forward sum
// contributes dy·w to dx and dy·x to dw.
Tensor conv2d_backward_data_reference(const Tensor& dy, const Tensor& w, std::array<std::int64_t, 2> input_size,
                                      const ConvAttributes& a);
Tensor conv2d_backward_filter_reference(const Tensor& x, const Tensor& dy, std::array<std::int64_t, 2> kernel_size,
                                        const ConvAttributes& a);

struct PoolWindow {
  std::array<std::int64_t, 2> kernel{1, 1}, stride{1, 1}, dilation{1, 1};
  std::array<std::int64_t, 4> padding{0, 0, 0, 0};  // top, left, bottom, right
  bool count_include_pad = true;
};
// The max of each window (padding never wins, NaN wins), and the gradient routed to each
// window's first maximal element in row-major order.
Tensor max_pool2d_reference(const Tensor& x, const PoolWindow& p);
Tensor max_pool2d_backward_reference(const Tensor& x, const Tensor& dy, const PoolWindow& p);
Tensor avg_pool2d_reference(const Tensor& x, const PoolWindow& p);
Tensor avg_pool2d_backward_reference(const Tensor& dy, std::array<std::int64_t, 2> input_size, const PoolWindow& p);

// Padding by the index map: an output element copies the input element it maps to (reflect) or
// is `value` (constant, outside); the backward adds each output gradient onto that element.
Tensor pad_reference(const Tensor& x, const std::vector<std::int64_t>& before, const std::vector<std::int64_t>& after,
                     PadMode mode, double value);
Tensor pad_backward_reference(const Tensor& dy, const std::vector<std::int64_t>& before,
                              const std::vector<std::int64_t>& after, PadMode mode);

}  // namespace fovea::testing
