// Value statistics (Executable::set_value_statistics): after each step of a run, every floating
// output it wrote is summarised — NaN and infinity counts, and the minimum, maximum, mean,
// standard deviation and a histogram of the finite elements (runtime/executable.h). The steps
// run one by one on anomaly mode's path (runtime/anomaly.cpp), which calls this after each.
#include "fovea/runtime/executable.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "fovea/core/half.h"

namespace fovea {

namespace {

double as_double(float x) { return x; }
double as_double(double x) { return x; }
double as_double(bfloat16 x) { return to_float(x); }
double as_double(float16 x) { return to_float(x); }

// The finite element `x` (of the range [min, max]) as a histogram bin. The range is measured
// in halves, so that one spanning more than the largest double (lowest() to max()) still has a
// finite width.
std::size_t bin_of(double x, double min, double half_width) {
  if (!(half_width > 0)) return 0;
  const double position = (x / 2 - min / 2) / half_width * static_cast<double>(ValueStatistics::bins);
  return std::min(ValueStatistics::bins - 1, static_cast<std::size_t>(position));
}

// Two passes over the elements: the counts, the range and the mean first, then the spread
// about that mean (more accurate than a sum of squares) and the histogram, which needs the range.
template <typename T>
ValueStatistics summarise(const T* data, std::size_t count) {
  ValueStatistics s;
  s.count = count;
  double min = std::numeric_limits<double>::infinity(), max = -min, sum = 0;
  std::size_t finite = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const double x = as_double(data[i]);
    if (std::isnan(x)) {
      ++s.nan_count;
    } else if (std::isinf(x)) {
      ++s.inf_count;
    } else {
      min = std::min(min, x);
      max = std::max(max, x);
      sum += x;
      ++finite;
    }
  }
  if (finite == 0) return s;
  s.min = min;
  s.max = max;
  s.mean = sum / static_cast<double>(finite);
  s.histogram.assign(ValueStatistics::bins, 0);
  const double half_width = max / 2 - min / 2;
  double squares = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const double x = as_double(data[i]);
    if (!std::isfinite(x)) continue;
    squares += (x - s.mean) * (x - s.mean);
    ++s.histogram[bin_of(x, min, half_width)];
  }
  s.std = std::sqrt(squares / static_cast<double>(finite));
  return s;
}

ValueStatistics summarise(DType dtype, const std::byte* data, std::size_t count) {
  switch (dtype) {
    case DType::f32:
      return summarise(reinterpret_cast<const float*>(data), count);
    case DType::f64:
      return summarise(reinterpret_cast<const double*>(data), count);
    case DType::bf16:
      return summarise(reinterpret_cast<const bfloat16*>(data), count);
    case DType::f16:
      return summarise(reinterpret_cast<const float16*>(data), count);
    default:
      return {};
  }
}

}  // namespace

// A transfer step only moves a value (a feed, a requested output) that is summarised where it
// is computed, so it adds nothing; nor does a step's integer or bool output.
void Executable::summarise_step_outputs(const Step& step) {
  if (step.node == no_node) return;
  const KernelContext& context = step.context;
  for (std::size_t k = 0; k < context.outputs.size(); ++k) {
    const TensorArg& out = context.outputs[k];
    if (!is_floating(out.type.dtype)) continue;
    const auto count = static_cast<std::size_t>(out.numel());
    ValueStatistics s = summarise(out.type.dtype, count > 0 ? on_host(out) : nullptr, count);
    s.value = {step.node, static_cast<std::uint32_t>(k)};
    value_statistics_.push_back(std::move(s));
  }
}

}  // namespace fovea
