// The op-case table (see op_cases.h): every op with a CPU kernel, built once per case, with a
// plain reference in double or the unfused composition it stands for.
#include "ops/op_cases.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>

#include <fovea/core/philox.h>
#include <fovea/nn/layers.h>
#include <fovea/nn/losses.h>
#include <fovea/ops/collective.h>
#include <fovea/ops/attention.h>
#include <fovea/ops/fused_elementwise.h>
#include <fovea/ops/normalization.h>
#include <fovea/ops/state.h>

namespace fovea::testing {
namespace {

using Inputs = std::vector<Tensor>;
using Index = std::vector<std::int64_t>;

const std::vector<DType> kFloats = {DType::f32, DType::f64};
// Fused attention also takes bf16 and f16 q, k, v (mixed precision), computing in f32.
const std::vector<DType> kFloatsAndHalves = {DType::f32, DType::f64, DType::bf16, DType::f16};
const std::vector<DType> kNumeric = {DType::f32, DType::f64, DType::i32, DType::i64};
const std::vector<DType> kAll = {DType::f32, DType::f64, DType::i32, DType::i64, DType::boolean};
// The shape ops also move bf16 and f16 elements (mixed precision).
const std::vector<DType> kAllAndHalves = {DType::f32,     DType::f64,  DType::i32, DType::i64,
                                          DType::boolean, DType::bf16, DType::f16};
constexpr double kInf = std::numeric_limits<double>::infinity();

// --- Index arithmetic for the references -----------------------------------------------------

// The row-major multi-index of element `flat` of a tensor of shape `s`.
Index unravel(std::int64_t flat, const Shape& s) {
  Index idx(static_cast<std::size_t>(s.rank()));
  for (int d = s.rank() - 1; d >= 0; --d) {
    idx[static_cast<std::size_t>(d)] = flat % s[d];
    flat /= s[d];
  }
  return idx;
}

std::int64_t ravel(const Index& idx, const Shape& s) {
  std::int64_t flat = 0;
  for (int d = 0; d < s.rank(); ++d) flat = flat * s[d] + idx[static_cast<std::size_t>(d)];
  return flat;
}

// The element of a tensor of shape `in` that broadcasting sends to output index `idx`: dims
// aligned to the right, a size-1 dim repeated.
std::int64_t broadcast_offset(const Index& idx, const Shape& in) {
  const std::size_t shift = idx.size() - static_cast<std::size_t>(in.rank());
  std::int64_t flat = 0;
  for (int d = 0; d < in.rank(); ++d) flat = flat * in[d] + (in[d] == 1 ? 0 : idx[shift + static_cast<std::size_t>(d)]);
  return flat;
}

Shape broadcast_all(const Inputs& in) {
  Shape out = in[0].shape();
  for (const Tensor& t : in) {
    Shape next;
    REQUIRE(broadcast_shapes(out, t.shape(), next));
    out = next;
  }
  return out;
}

Tensor zeros64(const Shape& s) { return Tensor::zeros(DType::f64, s); }

// --- Reference builders ----------------------------------------------------------------------

// y[idx] = f(x0[idx], x1[idx], ...) under NumPy broadcasting; `integer` says the inputs are
// integers (for division's truncation).
using Pointwise = std::function<double(std::span<const double>, bool integer)>;
Reference pointwise(Pointwise f) {
  return [f](const Inputs& in, const Value&) {
    const Shape shape = broadcast_all(in);
    Tensor y = zeros64(shape);
    const bool integer = is_integer(in[0].dtype());
    std::vector<double> args(in.size());
    for (std::int64_t i = 0; i < shape.numel(); ++i) {
      const Index idx = unravel(i, shape);
      for (std::size_t k = 0; k < in.size(); ++k) args[k] = in[k].at(broadcast_offset(idx, in[k].shape()));
      y.data<double>()[static_cast<std::size_t>(i)] = f(args, integer);
    }
    return y;
  };
}
Reference unary(double (*f)(double)) {
  return pointwise([f](std::span<const double> x, bool) { return f(x[0]); });
}
template <typename F>
Reference binary(F f) {
  return pointwise([f](std::span<const double> x, bool) { return static_cast<double>(f(x[0], x[1])); });
}

// Reduces `axes` of x with `combine`, starting from `init`; keepdims keeps them as size 1.
Reference reduction(std::vector<int> axes, bool keepdims, double init, double (*combine)(double, double)) {
  return [=](const Inputs& in, const Value&) {
    const Shape& xs = in[0].shape();
    std::vector<int> all = axes;
    if (all.empty())
      for (int d = 0; d < xs.rank(); ++d) all.push_back(d);
    Shape kept = xs;
    for (int d : all) kept[d] = 1;
    Tensor y = Tensor::full(DType::f64, kept, init);
    for (std::int64_t i = 0; i < xs.numel(); ++i) {
      Index idx = unravel(i, xs);
      for (int d : all) idx[static_cast<std::size_t>(d)] = 0;
      double& slot = y.data<double>()[static_cast<std::size_t>(ravel(idx, kept))];
      slot = combine(slot, in[0].at(i));
    }
    if (keepdims) return y;
    std::vector<std::int64_t> dims;
    for (int d = 0; d < xs.rank(); ++d)
      if (std::find(all.begin(), all.end(), d) == all.end()) dims.push_back(xs[d]);
    return y.reshape(Shape(dims));
  };
}

// y[i...] = x[j...] where `source` maps an output index to the input index it copies.
Tensor rearranged(const Tensor& x, const Shape& out, const std::function<Index(const Index&)>& source) {
  Tensor y = zeros64(out);
  for (std::int64_t i = 0; i < out.numel(); ++i)
    y.data<double>()[static_cast<std::size_t>(i)] = x.at(ravel(source(unravel(i, out)), x.shape()));
  return y;
}

// Batched a·b with broadcast batch dims (a [..., m, k], b [..., k, n]), optionally transposed.
Tensor matmul_reference(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  const int ra = a.rank(), rb = b.rank();
  const std::int64_t m = ta ? a.shape()[ra - 1] : a.shape()[ra - 2], k = ta ? a.shape()[ra - 2] : a.shape()[ra - 1];
  const std::int64_t n = tb ? b.shape()[rb - 2] : b.shape()[rb - 1];
  const Shape batch_a(std::vector<std::int64_t>(a.shape().begin(), a.shape().end() - 2));
  const Shape batch_b(std::vector<std::int64_t>(b.shape().begin(), b.shape().end() - 2));
  Shape batch;
  REQUIRE(broadcast_shapes(batch_a, batch_b, batch));
  std::vector<std::int64_t> out_dims = batch.dims();
  out_dims.push_back(m);
  out_dims.push_back(n);
  Tensor y = zeros64(Shape(out_dims));
  for (std::int64_t bi = 0; bi < batch.numel(); ++bi) {
    const Index idx = unravel(bi, batch);
    const std::int64_t oa = broadcast_offset(idx, batch_a) * m * k, ob = broadcast_offset(idx, batch_b) * k * n;
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double sum = 0;
        for (std::int64_t p = 0; p < k; ++p)
          sum += a.at(oa + (ta ? p * m + i : i * k + p)) * b.at(ob + (tb ? j * k + p : p * n + j));
        y.data<double>()[static_cast<std::size_t>((bi * m + i) * n + j)] = sum;
      }
  }
  return y;
}

// --- Row-wise references of the fused normalizations (rows over the last axis) ---------------

struct Rows {
  std::int64_t rows = 0, n = 0;
};
Rows rows_of(const Shape& s) {
  const std::int64_t n = s.rank() == 0 ? 1 : s[s.rank() - 1];
  return {n == 0 ? 0 : s.numel() / n, n};
}

// log Σ_j exp(x[row, j]), computed directly (the test inputs are small).
double row_lse(const Tensor& x, std::int64_t row, std::int64_t n) {
  double sum = 0;
  for (std::int64_t j = 0; j < n; ++j) sum += std::exp(x.at(row * n + j));
  return std::log(sum);
}

Tensor softmax_rows(const Tensor& x, bool log_space) {
  Tensor y = zeros64(x.shape());
  const Rows r = rows_of(x.shape());
  for (std::int64_t row = 0; row < r.rows; ++row) {
    const double lse = row_lse(x, row, r.n);
    for (std::int64_t j = 0; j < r.n; ++j) {
      const double v = x.at(row * r.n + j) - lse;
      y.data<double>()[static_cast<std::size_t>(row * r.n + j)] = log_space ? v : std::exp(v);
    }
  }
  return y;
}

// dx = y ⊙ (dy - Σ dy·y) for softmax; dx = dy - exp(y)·Σ dy for log-softmax.
Tensor softmax_backward_rows(const Tensor& y, const Tensor& dy, bool log_space) {
  Tensor dx = zeros64(y.shape());
  const Rows r = rows_of(y.shape());
  for (std::int64_t row = 0; row < r.rows; ++row) {
    double dot = 0, sum = 0;
    for (std::int64_t j = 0; j < r.n; ++j) {
      dot += dy.at(row * r.n + j) * y.at(row * r.n + j);
      sum += dy.at(row * r.n + j);
    }
    for (std::int64_t j = 0; j < r.n; ++j) {
      const double yi = y.at(row * r.n + j), gi = dy.at(row * r.n + j);
      dx.data<double>()[static_cast<std::size_t>(row * r.n + j)] =
          log_space ? gi - std::exp(yi) * sum : yi * (gi - dot);
    }
  }
  return dx;
}

// Layer norm's output `which`: 0 y, 1 μ, 2 r = 1/√(σ² + eps).
Reference layer_norm_reference(int which, double eps) {
  return [=](const Inputs& in, const Value&) {
    const Tensor &x = in[0], &gamma = in[1], &beta = in[2];
    const Rows r = rows_of(x.shape());
    Shape stat = x.shape();
    stat[stat.rank() - 1] = 1;
    Tensor y = zeros64(which == 0 ? x.shape() : stat);
    for (std::int64_t row = 0; row < r.rows; ++row) {
      double mean = 0, var = 0;
      for (std::int64_t j = 0; j < r.n; ++j) mean += x.at(row * r.n + j) / static_cast<double>(r.n);
      for (std::int64_t j = 0; j < r.n; ++j) var += std::pow(x.at(row * r.n + j) - mean, 2) / static_cast<double>(r.n);
      const double rstd = 1 / std::sqrt(var + eps);
      auto out = y.data<double>();
      if (which == 1) out[static_cast<std::size_t>(row)] = mean;
      if (which == 2) out[static_cast<std::size_t>(row)] = rstd;
      if (which == 0)
        for (std::int64_t j = 0; j < r.n; ++j)
          out[static_cast<std::size_t>(row * r.n + j)] = (x.at(row * r.n + j) - mean) * rstd * gamma.at(j) + beta.at(j);
    }
    return y;
  };
}

// Softmax cross-entropy with label smoothing ε: `which` 0 the loss, 1 lse, 2 dlogits (from dloss in[2]).
Reference cross_entropy_reference(int which, double eps) {
  return [=](const Inputs& in, const Value&) {
    const Tensor &x = in[0], &t = in[1];
    const Rows r = rows_of(x.shape());
    Tensor y = zeros64(which == 2 ? x.shape() : t.shape());
    for (std::int64_t row = 0; row < r.rows; ++row) {
      const double lse = row_lse(x, row, r.n);
      const auto target = static_cast<std::int64_t>(t.at(row));
      const bool valid = target >= 0 && target < r.n;
      double mean = 0;
      for (std::int64_t c = 0; c < r.n; ++c) mean += x.at(row * r.n + c) / static_cast<double>(r.n);
      const double picked = valid ? lse - x.at(row * r.n + target) : 0;
      auto out = y.data<double>();
      if (which == 0) out[static_cast<std::size_t>(row)] = (valid ? (1 - eps) * picked : 0) + eps * (lse - mean);
      if (which == 1) out[static_cast<std::size_t>(row)] = lse;
      if (which == 2)
        for (std::int64_t c = 0; c < r.n; ++c) {
          const double p = std::exp(x.at(row * r.n + c) - lse), k = valid ? 1 : eps;
          out[static_cast<std::size_t>(row * r.n + c)] =
              in[2].at(row) * (k * p - (1 - eps) * (valid && c == target ? 1 : 0) - eps / static_cast<double>(r.n));
        }
    }
    return y;
  };
}

// x [outer, n, inner] seen three-dimensionally around `axis`.
struct Around {
  std::int64_t outer = 1, n = 1, inner = 1;
};
Around around(const Shape& s, int axis) {
  Around a;
  for (int d = 0; d < axis; ++d) a.outer *= s[d];
  a.n = s[axis];
  for (int d = axis + 1; d < s.rank(); ++d) a.inner *= s[d];
  return a;
}

// out[o, p, j] = x[o, ids[p], j]
Reference gather_reference(int axis) {
  return [=](const Inputs& in, const Value& out) {
    const Around x = around(in[0].shape(), axis);
    const std::int64_t m = in[1].numel();
    Tensor y = zeros64(out.shape());
    for (std::int64_t o = 0; o < x.outer; ++o)
      for (std::int64_t p = 0; p < m; ++p)
        for (std::int64_t j = 0; j < x.inner; ++j)
          y.data<double>()[static_cast<std::size_t>((o * m + p) * x.inner + j)] =
              in[0].at((o * x.n + static_cast<std::int64_t>(in[1].at(p))) * x.inner + j);
    return y;
  };
}

// out = t; out[o, ids[p], j] += u[o, p, j]
Reference scatter_add_reference(int axis) {
  return [=](const Inputs& in, const Value&) {
    const Around t = around(in[0].shape(), axis);
    const std::int64_t m = in[1].numel();
    Tensor y = in[0].to(DType::f64);
    for (std::int64_t o = 0; o < t.outer; ++o)
      for (std::int64_t p = 0; p < m; ++p)
        for (std::int64_t j = 0; j < t.inner; ++j)
          y.data<double>()[static_cast<std::size_t>((o * t.n + static_cast<std::int64_t>(in[1].at(p))) * t.inner +
                                                    j)] += in[2].at((o * m + p) * t.inner + j);
    return y;
  };
}

// The scores' additive mask of bottom-right causality: 0 where key j <= query i + (tk - tq), -∞ elsewhere.
Tensor causal_mask(std::int64_t tq, std::int64_t tk) {
  Tensor m = zeros64({tq, tk});
  for (std::int64_t i = 0; i < tq; ++i)
    for (std::int64_t j = 0; j < tk; ++j)
      if (j > i + (tk - tq)) m.data<double>()[static_cast<std::size_t>(i * tk + j)] = -kInf;
  return m;
}

// A mask [tq, tk] hiding a few keys from a few queries (never a whole row).
Tensor some_mask(std::int64_t tq, std::int64_t tk) {
  Tensor m = zeros64({tq, tk});
  for (std::int64_t i = 0; i < tq; ++i) m.data<double>()[static_cast<std::size_t>(i * tk + (i + 1) % tk)] = -kInf;
  return m;
}

// x in f32 when it is bf16 or f16 (what fused attention computes in), x itself otherwise.
Value wide(Value x) { return is_half(x.dtype()) ? cast(x, DType::f32) : x; }
DType wide(DType t) { return is_half(t) ? DType::f32 : t; }

// softmax(scale·q·kᵀ + mask)·v (which 0) or the rows' log-sum-exp (which 1), from primitives,
// in q's dtype (q, k and v are f32 or f64 here).
Value attention_composition(Value q, Value k, Value v, const Tensor& mask, double scale, int which) {
  Graph& g = q.graph();
  Value s = matmul(q, k, false, true) * scale + g.constant(mask.to(q.dtype()));
  if (which == 1) return log(reduce_sum(exp(s), {-1}));
  return matmul(nn::softmax(s), v);
}

// All of `values` flattened and joined: one output to compare for ops with several.
Value joined(std::vector<Value> values) {
  for (Value& v : values) v = reshape(v, {-1});
  return concat(values, 0);
}

// A fixed i64 tensor.
Tensor ids(std::initializer_list<std::int64_t> values, Shape shape) {
  return Tensor::from<std::int64_t>(values, shape);
}

// --- The cases, family by family ---------------------------------------------------------------

void add_elementwise_cases(std::vector<OpCase>& cases) {
  struct Unary {
    const char* op;
    Value (*build)(Value, Loc);
    double (*f)(double);
    std::vector<DType> dtypes;
    double low, high;
    bool differentiable;
  };
  const std::vector<Unary> unaries = {
      {"neg", &neg, [](double x) { return -x; }, kNumeric, -5, 5, true},
      {"abs", &abs, [](double x) { return std::abs(x); }, kNumeric, -5, 5, true},
      {"exp", &exp, [](double x) { return std::exp(x); }, kFloats, -2, 2, true},
      {"log", &log, [](double x) { return std::log(x); }, kFloats, 0.2, 3, true},
      {"sqrt", &sqrt, [](double x) { return std::sqrt(x); }, kFloats, 0.2, 3, true},
      {"rsqrt", &rsqrt, [](double x) { return 1 / std::sqrt(x); }, kFloats, 0.2, 3, true},
      {"tanh", &tanh, [](double x) { return std::tanh(x); }, kFloats, -2, 2, true},
      {"sigmoid", &sigmoid, [](double x) { return 1 / (1 + std::exp(-x)); }, kFloats, -3, 3, true},
      {"softplus", &softplus, [](double x) { return x > 20 ? x : std::log1p(std::exp(x)); }, kFloats, -30, 30, true},
      {"relu", &relu, [](double x) { return x > 0 ? x : 0.0; }, kNumeric, -5, 5, true},
      {"sin", &sin, [](double x) { return std::sin(x); }, kFloats, -3, 3, true},
      {"cos", &cos, [](double x) { return std::cos(x); }, kFloats, -3, 3, true},
      {"tan", &tan, [](double x) { return std::sin(x) / std::cos(x); }, kFloats, -1.4, 1.4, true},
      // Inside the domains: asin, acos and atanh on (-1, 1), acosh above 1, away from the
      // edges where the derivative blows up.
      {"asin", &asin, [](double x) { return std::atan2(x, std::sqrt(1 - x * x)); }, kFloats, -0.9, 0.9, true},
      {"acos", &acos, [](double x) { return std::atan2(std::sqrt(1 - x * x), x); }, kFloats, -0.9, 0.9, true},
      {"atan", &atan, [](double x) { return std::atan2(x, 1.0); }, kFloats, -4, 4, true},
      {"sinh", &sinh, [](double x) { return (std::exp(x) - std::exp(-x)) / 2; }, kFloats, -3, 3, true},
      {"cosh", &cosh, [](double x) { return (std::exp(x) + std::exp(-x)) / 2; }, kFloats, -3, 3, true},
      {"asinh", &asinh, [](double x) { return std::copysign(std::log(std::abs(x) + std::sqrt(x * x + 1)), x); },
       kFloats, -3, 3, true},
      {"acosh", &acosh, [](double x) { return std::log(x + std::sqrt(x * x - 1)); }, kFloats, 1.1, 4, true},
      {"atanh", &atanh, [](double x) { return 0.5 * std::log((1 + x) / (1 - x)); }, kFloats, -0.9, 0.9, true},
      {"erf", &erf, [](double x) { return 1 - std::erfc(x); }, kFloats, -3, 3, true},
      {"reciprocal", &reciprocal, [](double x) { return 1 / x; }, kFloats, 0.5, 3, true},
      // The rounding ops' gradient is zero: random inputs are integers with probability 0, and
      // miles (in units of the check's ε = 1e-6) from one almost surely.
      {"floor", &floor, [](double x) { return std::floor(x); }, kFloats, -5, 5, true},
      {"ceil", &ceil, [](double x) { return std::ceil(x); }, kFloats, -5, 5, true},
      {"round", &round, [](double x) { return x - std::remainder(x, 1.0); }, kFloats, -5, 5, true},
      {"sign", &sign, [](double x) { return double((x > 0) - (x < 0)); }, kNumeric, -5, 5, true},
      {"isnan", &isnan, [](double x) { return x != x ? 1.0 : 0.0; }, kFloats, -5, 5, false},
      {"isinf", &isinf, [](double x) { return std::abs(x) == kInf ? 1.0 : 0.0; }, kFloats, -5, 5, false},
      {"logical_not", &logical_not, [](double x) { return x == 0 ? 1.0 : 0.0; }, {DType::boolean}, 0, 1, false},
  };
  for (const Unary& u : unaries) {
    auto build = u.build;
    // [2,3] and a zero-size [0,4]: the empty case must run and give an empty result.
    for (const Shape& shape : {Shape{2, 3}, Shape{0, 4}})
      cases.push_back({.op = u.op,
                       .name = std::string(u.op) + " " + shape.to_string(),
                       .dtypes = u.dtypes,
                       .inputs = {{shape, std::nullopt, u.low, u.high}},
                       .build = [build](Graph&, const std::vector<Value>& x) { return build(x[0], Loc::current()); },
                       .reference = unary(u.f),
                       .differentiable = u.differentiable && shape.numel() > 0});
  }

  struct Binary {
    const char* op;
    Value (*build)(Value, Value, Loc);
    Reference reference;
    std::vector<DType> dtypes;
    double low, high, low_b, high_b;
    bool differentiable;
  };
  auto truncated_div = pointwise(
      [](std::span<const double> x, bool integer) { return integer ? std::trunc(x[0] / x[1]) : x[0] / x[1]; });
  const std::vector<Binary> binaries = {
      {"add", &add, binary(std::plus<>()), kNumeric, -5, 5, -5, 5, true},
      {"sub", &sub, binary(std::minus<>()), kNumeric, -5, 5, -5, 5, true},
      {"mul", &mul, binary(std::multiplies<>()), kNumeric, -5, 5, -5, 5, true},
      {"div", &div, truncated_div, kNumeric, -9, 9, 1, 4, true},
      {"pow", &pow, binary([](double a, double b) { return std::pow(a, b); }), kFloats, 0.5, 2, -2, 2, true},
      // Negative dividends and positive divisors here; negative divisors in
      // tests/ops/elementwise_test.cpp.
      {"mod", &mod, binary([](double a, double b) { return a - b * std::floor(a / b); }), kNumeric, -9, 9, 1, 4, true},
      {"fmod", &fmod, binary([](double a, double b) { return a - b * std::trunc(a / b); }), kNumeric, -9, 9, 1, 4,
       true},
      {"maximum", &maximum, binary([](double a, double b) { return std::max(a, b); }), kNumeric, -5, 5, -5, 5, true},
      {"minimum", &minimum, binary([](double a, double b) { return std::min(a, b); }), kNumeric, -5, 5, -5, 5, true},
  };
  // Broadcasting both ways ([3,1] against [4]), against a scalar, and with a zero-size dim.
  const std::vector<std::pair<Shape, Shape>> shapes = {{{3, 1}, {4}}, {{2, 3}, {}}, {{0, 3}, {1, 3}}};
  for (const Binary& b : binaries)
    for (const auto& [sa, sb] : shapes) {
      auto build = b.build;
      cases.push_back(
          {.op = b.op,
           .name = std::string(b.op) + " " + sa.to_string() + " " + sb.to_string(),
           .dtypes = b.dtypes,
           .inputs = {{sa, std::nullopt, b.low, b.high}, {sb, std::nullopt, b.low_b, b.high_b}},
           .build = [build](Graph&, const std::vector<Value>& x) { return build(x[0], x[1], Loc::current()); },
           .reference = b.reference,
           .differentiable = b.differentiable && sa.numel() > 0});
    }

  // Comparisons and logic: integral inputs in a small range, so that ties happen.
  struct Comparison {
    const char* op;
    Value (*build)(Value, Value, Loc);
    bool (*f)(double, double);
    std::vector<DType> dtypes;
  };
  const std::vector<Comparison> comparisons = {
      {"equal", &equal, [](double a, double b) { return a == b; }, kAll},
      {"not_equal", &not_equal, [](double a, double b) { return a != b; }, kAll},
      {"less", &less, [](double a, double b) { return a < b; }, kAll},
      {"less_equal", &less_equal, [](double a, double b) { return a <= b; }, kAll},
      {"greater", &greater, [](double a, double b) { return a > b; }, kAll},
      {"greater_equal", &greater_equal, [](double a, double b) { return a >= b; }, kAll},
      {"logical_and", &logical_and, [](double a, double b) { return a != 0 && b != 0; }, {DType::boolean}},
      {"logical_or", &logical_or, [](double a, double b) { return a != 0 || b != 0; }, {DType::boolean}},
  };
  for (const Comparison& c : comparisons) {
    auto build = c.build;
    cases.push_back(
        {.op = c.op,
         .name = std::string(c.op) + " [3,1] [4]",
         .dtypes = c.dtypes,
         .inputs = {{{3, 1}, std::nullopt, -2, 2, {}, true}, {{4}, std::nullopt, -2, 2, {}, true}},
         .build = [build](Graph&, const std::vector<Value>& x) { return build(x[0], x[1], Loc::current()); },
         .reference = binary(c.f)});
  }

  // isnan and isinf on the values they tell apart: NaN, ±∞, and finite numbers of both signs.
  const Tensor special =
      Tensor::from<double>({std::numeric_limits<double>::quiet_NaN(), kInf, -kInf, 0.0, -2.5, 3e38}, {2, 3});
  cases.push_back({.op = "isnan",
                   .name = "isnan of NaN, ±inf and finite values",
                   .dtypes = kFloats,
                   .inputs = {{{2, 3}, std::nullopt, 0, 0, special}},
                   .build = [](Graph&, const std::vector<Value>& x) { return isnan(x[0]); },
                   .reference = unary([](double x) { return std::isnan(x) ? 1.0 : 0.0; })});
  cases.push_back({.op = "isinf",
                   .name = "isinf of NaN, ±inf and finite values",
                   .dtypes = kFloats,
                   .inputs = {{{2, 3}, std::nullopt, 0, 0, special}},
                   .build = [](Graph&, const std::vector<Value>& x) { return isinf(x[0]); },
                   .reference = unary([](double x) { return std::isinf(x) ? 1.0 : 0.0; })});
}

double plus(double a, double b) { return a + b; }
double larger(double a, double b) { return std::max(a, b); }
double smaller(double a, double b) { return std::min(a, b); }
double times(double a, double b) { return a * b; }

// argmax (Min: argmin) along `axis` of x: the first index of the extremum, or the last with
// `last`. The case inputs hold no NaN (tests/ops/arg_reduce_cumsum_test.cpp covers NaNs).
Reference arg_reduction(int axis, bool keepdims, bool last, bool min) {
  return [=](const Inputs& in, const Value&) {
    const Shape& xs = in[0].shape();
    Shape kept = xs;
    kept[axis] = 1;
    Tensor y = zeros64(kept);
    for (std::int64_t k = 0; k < kept.numel(); ++k) {
      Index idx = unravel(k, kept);
      std::int64_t best = 0;
      double best_value = in[0].at(ravel(idx, xs));
      for (std::int64_t r = 1; r < xs[axis]; ++r) {
        idx[static_cast<std::size_t>(axis)] = r;
        const double v = in[0].at(ravel(idx, xs));
        if ((min ? v < best_value : v > best_value) || (last && v == best_value)) best = r, best_value = v;
      }
      y.data<double>()[static_cast<std::size_t>(k)] = static_cast<double>(best);
    }
    if (keepdims) return y;
    std::vector<std::int64_t> dims;
    for (int d = 0; d < xs.rank(); ++d)
      if (d != axis) dims.push_back(xs[d]);
    return y.reshape(Shape(dims));
  };
}

// Running sums along `axis`, as ops/reduce.h defines cumsum.
Reference running_sum(int axis, bool exclusive, bool reverse) {
  return [=](const Inputs& in, const Value&) {
    const Shape& xs = in[0].shape();
    Tensor y = zeros64(xs);
    for (std::int64_t k = 0; k < xs.numel(); ++k) {
      Index idx = unravel(k, xs);
      const std::int64_t r = idx[static_cast<std::size_t>(axis)];
      double sum = 0;
      for (std::int64_t s = 0; s < xs[axis]; ++s) {
        idx[static_cast<std::size_t>(axis)] = s;
        if (reverse ? (exclusive ? s > r : s >= r) : (exclusive ? s < r : s <= r)) sum += in[0].at(ravel(idx, xs));
      }
      y.data<double>()[static_cast<std::size_t>(k)] = sum;
    }
    return y;
  };
}

// reduce_min, reduce_prod, argmax, argmin, cumsum: the reductions the ONNX importer needs.
void add_more_reduce_cases(std::vector<OpCase>& cases) {
  cases.push_back({.op = "reduce_min",
                   .name = "reduce_min [2,3,4] axes {0,-1}",
                   .dtypes = kNumeric,
                   .inputs = {{{2, 3, 4}, std::nullopt, -50, 50}},
                   .build =
                       [](Graph&, const std::vector<Value>& x) {
                         return reduce_min(x[0], {0, -1});
                       },
                   .reference = reduction({0, 2}, false, kInf, &smaller),
                   .differentiable = true});
  cases.push_back({.op = "reduce_prod",
                   .name = "reduce_prod [2,3,4] axis 1, keepdims",
                   .dtypes = kNumeric,
                   .inputs = {{{2, 3, 4}, std::nullopt, -3, 3}},
                   .build = [](Graph&, const std::vector<Value>& x) { return reduce_prod(x[0], {1}, true); },
                   .reference = reduction({1}, true, 1, &times),
                   .differentiable = true});
  // Rows with no zero, one zero and two zeros: the gradient must not divide by them.
  cases.push_back(
      {.op = "reduce_prod",
       .name = "reduce_prod [3,4] with zeros, axis -1",
       .dtypes = kNumeric,
       .inputs = {{.shape = {3, 4}, .value = Tensor::from<double>({2, -3, 1, 2, 0, 3, -1, 2, 0, 2, 0, 3}, {3, 4})}},
       .build = [](Graph&, const std::vector<Value>& x) { return reduce_prod(x[0], {-1}); },
       .reference = reduction({1}, false, 1, &times),
       .differentiable = true});
  cases.push_back({.op = "reduce_prod",
                   .name = "reduce_prod over a zero-size axis gives ones",
                   .dtypes = kNumeric,
                   .inputs = {{{3, 0}}},
                   .build = [](Graph&, const std::vector<Value>& x) { return reduce_prod(x[0], {1}); },
                   .reference = reduction({1}, false, 1, &times)});
  cases.push_back({.op = "argmax",
                   .name = "argmax [3,4,5] axis -1",
                   .dtypes = kNumeric,
                   .inputs = {{{3, 4, 5}, std::nullopt, -50, 50}},
                   .build = [](Graph&, const std::vector<Value>& x) { return argmax(x[0], -1); },
                   .reference = arg_reduction(2, false, false, false)});
  cases.push_back({.op = "argmin",
                   .name = "argmin [3,4,5] axis 0, keepdims, last of ties",
                   .dtypes = kNumeric,
                   .inputs = {{{3, 4, 5}, std::nullopt, -2, 2, {}, true}},
                   .build = [](Graph&, const std::vector<Value>& x) { return argmin(x[0], 0, true, true); },
                   .reference = arg_reduction(0, true, true, true)});
  cases.push_back({.op = "cumsum",
                   .name = "cumsum [3,4,5] axis 1",
                   .dtypes = kNumeric,
                   .inputs = {{{3, 4, 5}, std::nullopt, -5, 5}},
                   .build = [](Graph&, const std::vector<Value>& x) { return cumsum(x[0], 1); },
                   .reference = running_sum(1, false, false),
                   .differentiable = true});
  cases.push_back({.op = "cumsum",
                   .name = "cumsum [3,1,4] axis -1, exclusive, reverse",
                   .dtypes = kNumeric,
                   .inputs = {{{3, 1, 4}, std::nullopt, -5, 5}},
                   .build = [](Graph&, const std::vector<Value>& x) { return cumsum(x[0], -1, true, true); },
                   .reference = running_sum(2, true, true),
                   .differentiable = true});
}

void add_reduce_cases(std::vector<OpCase>& cases) {
  cases.push_back({.op = "reduce_sum",
                   .name = "reduce_sum [2,3,4] axes {0,2}",
                   .dtypes = kNumeric,
                   .inputs = {{{2, 3, 4}, std::nullopt, -5, 5}},
                   .build =
                       [](Graph&, const std::vector<Value>& x) {
                         return reduce_sum(x[0], {0, -1});
                       },
                   .reference = reduction({0, 2}, false, 0, &plus),
                   .differentiable = true});
  cases.push_back({.op = "reduce_sum",
                   .name = "reduce_sum [3,4] every axis, keepdims",
                   .dtypes = kNumeric,
                   .inputs = {{{3, 4}, std::nullopt, -5, 5}},
                   .build = [](Graph&, const std::vector<Value>& x) { return reduce_sum(x[0], {}, true); },
                   .reference = reduction({}, true, 0, &plus),
                   .differentiable = true});
  cases.push_back({.op = "reduce_sum",
                   .name = "reduce_sum over a zero-size axis gives zeros",
                   .dtypes = kNumeric,
                   .inputs = {{{0, 3}}},
                   .build = [](Graph&, const std::vector<Value>& x) { return reduce_sum(x[0], {0}); },
                   .reference = reduction({0}, false, 0, &plus)});
  cases.push_back({.op = "reduce_max",
                   .name = "reduce_max [2,3,4] axis 1, keepdims",
                   .dtypes = kNumeric,
                   .inputs = {{{2, 3, 4}, std::nullopt, -50, 50}},
                   .build = [](Graph&, const std::vector<Value>& x) { return reduce_max(x[0], {1}, true); },
                   .reference = reduction({1}, true, -kInf, &larger),
                   .differentiable = true});
  add_more_reduce_cases(cases);
}

void add_shape_cases(std::vector<OpCase>& cases) {
  cases.push_back({.op = "reshape",
                   .name = "reshape [2,3,4] -> [4,-1]",
                   .dtypes = kAllAndHalves,
                   .inputs = {{{2, 3, 4}, std::nullopt, -5, 5}},
                   .build =
                       [](Graph&, const std::vector<Value>& x) {
                         return reshape(x[0], {4, -1});
                       },
                   .reference =
                       [](const Inputs& in, const Value&) {
                         return in[0].to(DType::f64).reshape({4, 6});
                       },
                   .differentiable = true});
  cases.push_back({.op = "permute",
                   .name = "permute [2,3,4] by {2,0,1}",
                   .dtypes = kAllAndHalves,
                   .inputs = {{{2, 3, 4}, std::nullopt, -5, 5}},
                   .build =
                       [](Graph&, const std::vector<Value>& x) {
                         return permute(x[0], {2, 0, 1});
                       },
                   .reference =
                       [](const Inputs& in, const Value&) {
                         return rearranged(in[0], {4, 2, 3}, [](const Index& i) { return Index{i[1], i[2], i[0]}; });
                       },
                   .differentiable = true});
  cases.push_back({.op = "broadcast_to",
                   .name = "broadcast_to [3,1] -> [2,3,5]",
                   .dtypes = kAllAndHalves,
                   .inputs = {{{3, 1}, std::nullopt, -5, 5}},
                   .build =
                       [](Graph&, const std::vector<Value>& x) {
                         return broadcast_to(x[0], {2, 3, 5});
                       },
                   .reference =
                       [](const Inputs& in, const Value&) {
                         return rearranged(in[0], {2, 3, 5}, [](const Index& i) { return Index{i[1], 0}; });
                       },
                   .differentiable = true});
  cases.push_back({.op = "slice",
                   .name = "slice [7,5] axis 0, 1:6:2",
                   .dtypes = kAllAndHalves,
                   .inputs = {{{7, 5}, std::nullopt, -5, 5}},
                   .build = [](Graph&, const std::vector<Value>& x) { return slice(x[0], 0, 1, 6, 2); },
                   .reference =
                       [](const Inputs& in, const Value&) {
                         return rearranged(in[0], {3, 5}, [](const Index& i) { return Index{1 + 2 * i[0], i[1]}; });
                       },
                   .differentiable = true});
  cases.push_back({.op = "slice",
                   .name = "slice [4,6] axis -1, -4:-1 (negative bounds)",
                   .dtypes = kAllAndHalves,
                   .inputs = {{{4, 6}, std::nullopt, -5, 5}},
                   .build = [](Graph&, const std::vector<Value>& x) { return slice(x[0], -1, -4, -1); },
                   .reference =
                       [](const Inputs& in, const Value&) {
                         return rearranged(in[0], {4, 3}, [](const Index& i) { return Index{i[0], i[1] + 2}; });
                       },
                   .differentiable = true});
  cases.push_back({.op = "concat",
                   .name = "concat [2,3] [0,3] [4,3] axis 0",
                   .dtypes = kAllAndHalves,
                   .inputs = {{{2, 3}, std::nullopt, -5, 5}, {{0, 3}}, {{4, 3}, std::nullopt, -5, 5}},
                   .build =
                       [](Graph&, const std::vector<Value>& x) {
                         return concat({x[0], x[1], x[2]}, 0);
                       },
                   .reference =
                       [](const Inputs& in, const Value&) {
                         Tensor y = zeros64({6, 3});
                         for (std::int64_t i = 0; i < 6; ++i) y.data<double>()[i] = in[0].at(i);
                         for (std::int64_t i = 0; i < 12; ++i) y.data<double>()[6 + i] = in[2].at(i);
                         return y;
                       },
                   .differentiable = true});
  cases.push_back({.op = "concat",
                   .name = "concat [2,1] [2,3] axis 1",
                   .dtypes = kAllAndHalves,
                   .inputs = {{{2, 1}, std::nullopt, -5, 5}, {{2, 3}, std::nullopt, -5, 5}},
                   .build =
                       [](Graph&, const std::vector<Value>& x) {
                         return concat({x[0], x[1]}, 1);
                       },
                   .reference =
                       [](const Inputs& in, const Value&) {
                         Tensor y = zeros64({2, 4});
                         for (std::int64_t r = 0; r < 2; ++r) {
                           y.data<double>()[r * 4] = in[0].at(r);
                           for (std::int64_t c = 0; c < 3; ++c) y.data<double>()[r * 4 + 1 + c] = in[1].at(r * 3 + c);
                         }
                         return y;
                       },
                   .differentiable = true});
}

void add_matmul_cases(std::vector<OpCase>& cases) {
  struct Mm {
    Shape a, b;
    bool ta, tb;
  };
  const std::vector<Mm> shapes = {{{2, 3}, {3, 4}, false, false},
                                  {{2, 1, 2, 3}, {3, 3, 2}, false, false},  // batch dims broadcast
                                  {{2, 3, 4}, {5, 4}, false, true},         // q·kᵀ
                                  {{3, 2}, {3, 4}, true, false},
                                  {{2, 0}, {0, 3}, false, false}};  // an empty sum: zeros
  for (const Mm& m : shapes) {
    const bool ta = m.ta, tb = m.tb;
    cases.push_back(
        {.op = "matmul",
         .name = "matmul " + m.a.to_string() + (ta ? "ᵀ" : "") + " " + m.b.to_string() + (tb ? "ᵀ" : ""),
         .dtypes = kFloats,
         .inputs = {{m.a}, {m.b}},
         .build = [=](Graph&, const std::vector<Value>& x) { return matmul(x[0], x[1], ta, tb); },
         .reference = [=](const Inputs& in, const Value&) { return matmul_reference(in[0], in[1], ta, tb); },
         .differentiable = m.a.numel() > 0});
  }
}

void add_indexing_cases(std::vector<OpCase>& cases) {
  cases.push_back({.op = "gather",
                   .name = "gather [4,3] axis 0 at i64 [2,2] (repeats)",
                   .dtypes = kAll,
                   .inputs = {{{4, 3}, std::nullopt, -5, 5}, {{2, 2}, DType::i64, 0, 0, ids({3, 0, 3, 1}, {2, 2})}},
                   .build = [](Graph&, const std::vector<Value>& x) { return gather(x[0], x[1], 0); },
                   .reference = gather_reference(0),
                   .differentiable = true});
  cases.push_back({.op = "gather",
                   .name = "gather [2,5,3] axis 1 at i32 [4]",
                   .dtypes = kFloats,
                   .inputs = {{{2, 5, 3}}, {{4}, DType::i32, 0, 0, ids({4, 0, 2, 2}, {4}).to(DType::i32)}},
                   .build = [](Graph&, const std::vector<Value>& x) { return gather(x[0], x[1], 1); },
                   .reference = gather_reference(1),
                   .differentiable = true});
  cases.push_back({.op = "scatter_add",
                   .name = "scatter_add into [4,3] axis 0 from [5,3], repeated rows",
                   .dtypes = kNumeric,
                   .inputs = {{{4, 3}, std::nullopt, -5, 5},
                              {{5}, DType::i64, 0, 0, ids({1, 3, 1, 0, 1}, {5})},
                              {{5, 3}, std::nullopt, -5, 5}},
                   .build = [](Graph&, const std::vector<Value>& x) { return scatter_add(x[0], x[1], x[2], 0); },
                   .reference = scatter_add_reference(0),
                   .differentiable = true});
  cases.push_back({.op = "scatter_add",
                   .name = "scatter_add into [2,4] axis 1 with i32 indices",
                   .dtypes = kFloats,
                   .inputs = {{{2, 4}}, {{3}, DType::i32, 0, 0, ids({3, 3, 0}, {3}).to(DType::i32)}, {{2, 3}}},
                   .build = [](Graph&, const std::vector<Value>& x) { return scatter_add(x[0], x[1], x[2], 1); },
                   .reference = scatter_add_reference(1),
                   .differentiable = true});
  cases.push_back({.op = "where",
                   .name = "where bool [3,1] ? [1,4] : [3,4]",
                   .dtypes = kAll,
                   .inputs = {{{3, 1}, DType::boolean}, {{1, 4}, std::nullopt, -5, 5}, {{3, 4}, std::nullopt, -5, 5}},
                   .build = [](Graph&, const std::vector<Value>& x) { return where(x[0], x[1], x[2]); },
                   .reference = pointwise([](std::span<const double> x, bool) { return x[0] != 0 ? x[1] : x[2]; }),
                   .differentiable = true});
  cases.push_back({.op = "check_indices",
                   .name = "check_indices [2,3] below 5",
                   .dtypes = {DType::i32, DType::i64},
                   .inputs = {{{2, 3}, std::nullopt, 0, 5}},
                   .build = [](Graph&, const std::vector<Value>& x) { return check_indices(x[0], 5); },
                   .reference = [](const Inputs& in, const Value&) { return in[0].to(DType::f64); }});
}

void add_creation_cases(std::vector<OpCase>& cases) {
  // Casts: the case's dtype is the source; the target is fixed per case (never the same type,
  // where cast returns its input and builds no node).
  struct Cast {
    DType to;
    std::vector<DType> from;
    double (*f)(double);
    bool integral = false;
  };
  const std::vector<Cast> casts = {
      {DType::i32, {DType::f32, DType::f64, DType::i64}, [](double x) { return std::trunc(x); }},
      {DType::f64,
       {DType::f32, DType::i32, DType::i64, DType::boolean, DType::bf16, DType::f16},
       [](double x) { return x; }},
      {DType::boolean, {DType::f32, DType::f64, DType::i32, DType::i64}, [](double x) { return x != 0 ? 1.0 : 0.0; }},
      {DType::f32,
       {DType::f64, DType::i32, DType::i64, DType::boolean, DType::bf16, DType::f16},
       [](double x) { return x; }},
      // Integers in [-4, 4) are exact in bf16 and f16: the reference needs no rounding rule.
      {DType::bf16, {DType::f32, DType::f64}, [](double x) { return x; }, true},
      {DType::f16, {DType::f32, DType::f64}, [](double x) { return x; }, true},
  };
  for (const Cast& c : casts) {
    const DType to = c.to;
    cases.push_back({.op = "cast",
                     .name = std::string("cast to ") + std::string(dtype_name(to)),
                     .dtypes = c.from,
                     .inputs = {{{2, 5}, std::nullopt, -4, 4, {}, c.integral}},
                     .build = [to](Graph&, const std::vector<Value>& x) { return cast(x[0], to); },
                     .reference = unary(c.f)});
  }
  cases.push_back(
      {.op = "fill",
       .name = "fill [2,3] with 1 (full_like)",
       .dtypes = kAll,
       .inputs = {{{2, 3}}},
       .build = [](Graph&, const std::vector<Value>& x) { return full_like(x[0], 1.0); },
       .reference = [](const Inputs& in, const Value&) { return Tensor::full(DType::f64, in[0].shape(), 1); }});
  cases.push_back(
      {.op = "iota",
       .name = "iota [3,4] along axis 1",
       .dtypes = kNumeric,
       .inputs = {{{3, 4}}},
       .build = [](Graph& g, const std::vector<Value>& x) { return iota(g, x[0].shape(), 1, x[0].dtype()); },
       .reference =
           [](const Inputs& in, const Value&) {
             Tensor y = zeros64(in[0].shape());
             for (std::int64_t i = 0; i < y.numel(); ++i) y.data<double>()[i] = static_cast<double>(i % 4);
             return y;
           }});
  // The random ops draw element i from Philox at (graph seed, node stream, i).
  auto draws = [](bool normal) -> Reference {
    return [normal](const Inputs& in, const Value& out) {
      const auto seed = static_cast<std::uint64_t>(out.node().attrs.get_int("seed"));
      const auto stream = static_cast<std::uint64_t>(out.node().attrs.get_int("stream"));
      Tensor y = zeros64(in[0].shape());
      for (std::int64_t i = 0; i < y.numel(); ++i) {
        const auto e = static_cast<std::uint64_t>(i);
        y.data<double>()[i] =
            normal ? 1.5 + 0.5 * philox::normal(seed, stream, e) : -2 + 5 * philox::uniform(seed, stream, e);
      }
      return y;
    };
  };
  cases.push_back(
      {.op = "random_uniform",
       .name = "random_uniform [3,5] in [-2,3)",
       .dtypes = kFloats,
       .inputs = {{{3, 5}}},
       .build = [](Graph& g,
                   const std::vector<Value>& x) { return random_uniform(g, x[0].shape(), x[0].dtype(), -2, 3); },
       .reference = draws(false)});
  cases.push_back(
      {.op = "random_normal",
       .name = "random_normal [3,5] mean 1.5 stddev 0.5",
       .dtypes = kFloats,
       .inputs = {{{3, 5}}},
       .build = [](Graph& g,
                   const std::vector<Value>& x) { return random_normal(g, x[0].shape(), x[0].dtype(), 1.5, 0.5); },
       .reference = draws(true),
       .f32 = {1e-5, 1e-5}});
  cases.push_back({.op = "stop_gradient",
                   .name = "stop_gradient [2,3] copies",
                   .dtypes = kAll,
                   .inputs = {{{2, 3}, std::nullopt, -5, 5}},
                   .build = [](Graph&, const std::vector<Value>& x) { return stop_gradient(x[0]); },
                   .reference = [](const Inputs& in, const Value&) { return in[0].to(DType::f64); }});
}

void add_normalization_cases(std::vector<OpCase>& cases) {
  for (const Shape& shape : {Shape{3, 5}, Shape{2, 1, 4}, Shape{2, 1}}) {
    cases.push_back({.op = "fused_softmax",
                     .name = "fused_softmax " + shape.to_string(),
                     .dtypes = kFloats,
                     .inputs = {{shape, std::nullopt, -3, 3}},
                     .build = [](Graph&, const std::vector<Value>& x) { return fused_softmax(x[0]); },
                     .reference = [](const Inputs& in, const Value&) { return softmax_rows(in[0], false); },
                     .differentiable = true});
    cases.push_back({.op = "fused_log_softmax",
                     .name = "fused_log_softmax " + shape.to_string(),
                     .dtypes = kFloats,
                     .inputs = {{shape, std::nullopt, -3, 3}},
                     .build = [](Graph&, const std::vector<Value>& x) { return fused_log_softmax(x[0]); },
                     .reference = [](const Inputs& in, const Value&) { return softmax_rows(in[0], true); },
                     .differentiable = true});
  }
  cases.push_back(
      {.op = "fused_softmax_backward",
       .name = "fused_softmax_backward [3,5]",
       .dtypes = kFloats,
       .inputs = {{{3, 5}, std::nullopt, 0, 1}, {{3, 5}}},
       .build = [](Graph&, const std::vector<Value>& x) { return fused_softmax_backward(x[0], x[1]); },
       .reference = [](const Inputs& in, const Value&) { return softmax_backward_rows(in[0], in[1], false); }});
  cases.push_back(
      {.op = "fused_log_softmax_backward",
       .name = "fused_log_softmax_backward [3,5]",
       .dtypes = kFloats,
       .inputs = {{{3, 5}, std::nullopt, -3, 0}, {{3, 5}}},
       .build = [](Graph&, const std::vector<Value>& x) { return fused_log_softmax_backward(x[0], x[1]); },
       .reference = [](const Inputs& in, const Value&) { return softmax_backward_rows(in[0], in[1], true); }});

  constexpr double eps = 1e-5;
  const std::vector<InputSpec> ln_inputs = {{{3, 4}, std::nullopt, -2, 2}, {{4}, std::nullopt, 0.5, 1.5}, {{4}}};
  const char* outputs[] = {"y", "mean", "rstd"};
  for (int which = 0; which < 3; ++which)
    cases.push_back({.op = "fused_layer_norm",
                     .name = std::string("fused_layer_norm [3,4] ") + outputs[which],
                     .dtypes = kFloats,
                     .inputs = ln_inputs,
                     .build =
                         [which](Graph&, const std::vector<Value>& x) {
                           const FusedLayerNormOutputs o = fused_layer_norm(x[0], x[1], x[2], eps);
                           return which == 0 ? o.y : which == 1 ? o.mean : o.rstd;
                         },
                     .reference = layer_norm_reference(which, eps),
                     .differentiable = which == 0,
                     .f32 = {1e-4, 1e-5}});
  // The backward against autodiff of nn::layer_norm's chain of primitives: dx, dγ, dβ joined.
  cases.push_back({.op = "fused_layer_norm_backward",
                   .name = "fused_layer_norm_backward [3,4] against the unfused chain's gradients",
                   .dtypes = kFloats,
                   .inputs = {{{3, 4}, std::nullopt, -2, 2}, {{4}, std::nullopt, 0.5, 1.5}, {{4}}, {{3, 4}}},
                   .build =
                       [](Graph&, const std::vector<Value>& x) {
                         const FusedLayerNormOutputs o = fused_layer_norm(x[0], x[1], x[2], eps);
                         const FusedLayerNormGradients d = fused_layer_norm_backward(x[3], x[0], x[1], o.mean, o.rstd);
                         return joined({d.dx, d.dgamma, d.dbeta});
                       },
                   .composition =
                       [](Graph&, const std::vector<Value>& x) {
                         const Value y = nn::layer_norm(x[0], x[1], x[2], eps);
                         return joined(grad(reduce_sum(y * x[3]), {x[0], x[1], x[2]}));
                       },
                   .f32 = {1e-4, 1e-5},
                   .f64 = {1e-9, 1e-9}});

  // Targets include -1, outside [0, C): only the smoothing term remains.
  const Tensor targets = ids({0, 4, -1, 2}, {4});
  for (double smoothing : {0.0, 0.1})
    for (int which = 0; which < 2; ++which)
      cases.push_back({.op = "fused_softmax_cross_entropy",
                       .name = std::string("fused_softmax_cross_entropy [4,5] ") + (which == 0 ? "loss" : "lse") +
                               ", smoothing " + std::to_string(smoothing),
                       .dtypes = kFloats,
                       .inputs = {{{4, 5}, std::nullopt, -3, 3}, {{4}, DType::i64, 0, 0, targets}},
                       .build =
                           [=](Graph&, const std::vector<Value>& x) {
                             const FusedCrossEntropyOutputs o = fused_softmax_cross_entropy(x[0], x[1], smoothing);
                             return which == 0 ? o.loss : o.lse;
                           },
                       .reference = cross_entropy_reference(which, smoothing),
                       .differentiable = which == 0});
  cases.push_back({.op = "fused_softmax_cross_entropy_backward",
                   .name = "fused_softmax_cross_entropy_backward [4,5], smoothing 0.1",
                   .dtypes = kFloats,
                   .inputs = {{{4, 5}, std::nullopt, -3, 3}, {{4}, DType::i64, 0, 0, targets}, {{4}}},
                   .build =
                       [](Graph&, const std::vector<Value>& x) {
                         const FusedCrossEntropyOutputs o = fused_softmax_cross_entropy(x[0], x[1], 0.1);
                         return fused_softmax_cross_entropy_backward(x[0], x[1], o.lse, x[2], 0.1);
                       },
                   .reference = cross_entropy_reference(2, 0.1)});
}

void add_attention_cases(std::vector<OpCase>& cases) {
  // q [2,3,4], k [2,5,4], v [2,5,3]; the mask is a constant (it gets no gradient).
  const std::vector<InputSpec> qkv = {{{2, 3, 4}}, {{2, 5, 4}}, {{2, 5, 3}}};
  constexpr double scale = 0.5;
  for (bool causal : {false, true})
    for (int which = 0; which < 2; ++which) {
      const Tensor mask = causal ? causal_mask(3, 5) : some_mask(3, 5);
      cases.push_back({.op = "fused_attention",
                       .name = std::string("fused_attention ") + (causal ? "causal" : "masked") +
                               (which == 0 ? " o" : " lse") + " against the unfused chain",
                       .dtypes = kFloatsAndHalves,
                       .inputs = qkv,
                       .build =
                           [=](Graph& g, const std::vector<Value>& x) {
                             const Value m = causal ? Value() : g.constant(mask.to(wide(x[0].dtype())));
                             const FusedAttentionOutputs o = fused_attention(x[0], x[1], x[2], m, scale, causal);
                             return which == 0 ? o.output : o.lse;
                           },
                       .composition =
                           [=](Graph&, const std::vector<Value>& x) {
                             return attention_composition(wide(x[0]), wide(x[1]), wide(x[2]), mask, scale, which);
                           },
                       .differentiable = which == 0,
                       .f32 = {1e-4, 1e-5},
                       .f64 = {1e-10, 1e-10},
                       .half = {2e-2, 2e-2}});
    }
  for (bool causal : {false, true}) {
    const Tensor mask = causal ? causal_mask(3, 5) : some_mask(3, 5);
    std::vector<InputSpec> inputs = qkv;
    inputs.push_back({{2, 3, 3}});  // d_o
    cases.push_back({.op = "fused_attention_backward",
                     .name = std::string("fused_attention_backward ") + (causal ? "causal" : "masked") +
                             " against the unfused chain's gradients",
                     .dtypes = kFloatsAndHalves,
                     .inputs = inputs,
                     .build =
                         [=](Graph& g, const std::vector<Value>& x) {
                           const Value m = causal ? Value() : g.constant(mask.to(wide(x[0].dtype())));
                           const FusedAttentionOutputs o = fused_attention(x[0], x[1], x[2], m, scale, causal);
                           const FusedAttentionGradients d =
                               fused_attention_backward(x[0], x[1], x[2], m, o.output, o.lse, x[3], scale, causal);
                           return joined({d.dq, d.dk, d.dv});
                         },
                     .composition =
                         [=](Graph&, const std::vector<Value>& x) {
                           const Value q = wide(x[0]), k = wide(x[1]), v = wide(x[2]);
                           const Value o = attention_composition(q, k, v, mask, scale, 0);
                           return joined(grad(reduce_sum(o * wide(x[3])), {q, k, v}));
                         },
                     .f32 = {1e-4, 1e-5},
                     .f64 = {1e-10, 1e-10},
                     .half = {3e-2, 3e-2}});
  }
}

void add_fused_elementwise_cases(std::vector<OpCase>& cases) {
  // out0 = tanh(in0 · 0.5) + in1, with in1 [4] broadcast against in0 [3,4].
  cases.push_back(
      {.op = "fused_elementwise",
       .name = "fused_elementwise tanh(x·0.5) + b, b broadcast",
       .dtypes = kFloats,
       .inputs = {{{3, 4}, std::nullopt, -2, 2}, {{4}}},
       .build =
           [](Graph& g, const std::vector<Value>& x) {
             fused::Program p;
             p.inputs = 2;
             p.immediates = {0.5};
             fused::Opcode mul_op{}, tanh_op{}, add_op{};
             REQUIRE(fused::opcode_of("mul", mul_op));
             REQUIRE(fused::opcode_of("tanh", tanh_op));
             REQUIRE(fused::opcode_of("add", add_op));
             p.code = {{mul_op, 0, 2}, {tanh_op, 3}, {add_op, 4, 1}};  // r3, r4, r5
             p.outputs = {5};
             p.output_is_bool = {false};
             p.shape = {3, 4};
             return fused_elementwise(g, x, p, x[0].dtype())[0];
           },
       .reference = pointwise([](std::span<const double> x, bool) { return std::tanh(x[0] * 0.5) + x[1]; })});
}

// A program whose output is a comparison, stored as bool: out0 = less(in0, in1).
void add_fused_comparison_case(std::vector<OpCase>& cases) {
  cases.push_back({.op = "fused_elementwise",
                   .name = "fused_elementwise x < y stored as bool",
                   .dtypes = kFloats,
                   .inputs = {{{2, 3}, std::nullopt, -2, 2, {}, true}, {{3}, std::nullopt, -2, 2, {}, true}},
                   .build =
                       [](Graph& g, const std::vector<Value>& x) {
                         fused::Program p;
                         p.inputs = 2;
                         fused::Opcode less_op{};
                         REQUIRE(fused::opcode_of("less", less_op));
                         p.code = {{less_op, 0, 1}};  // r2
                         p.outputs = {2};
                         p.output_is_bool = {true};
                         p.shape = {2, 3};
                         return fused_elementwise(g, x, p, x[0].dtype())[0];
                       },
                   .reference = binary([](double a, double b) { return a < b; })});
}

// The collectives on one rank (SoloCommunicator), where each returns its input: what they do
// between ranks is tested under mpirun (tests/distributed/).
void add_collective_cases(std::vector<OpCase>& cases) {
  static const auto solo = std::make_shared<SoloCommunicator>();
  const Reference identity = [](const Inputs& in, const Value&) { return in[0].to(DType::f64); };
  const std::vector<std::pair<std::string, CaseBuilder>> builds = {
      {"all_reduce", [](Graph&, const std::vector<Value>& x) { return all_reduce(x[0], solo, Reduction::mean); }},
      {"broadcast_from", [](Graph&, const std::vector<Value>& x) { return broadcast_from(x[0], solo); }},
      {"reduce_to", [](Graph&, const std::vector<Value>& x) { return reduce_to(x[0], solo); }},
      {"all_gather", [](Graph&, const std::vector<Value>& x) { return all_gather(x[0], solo, 1); }},
      {"reduce_scatter", [](Graph&, const std::vector<Value>& x) { return reduce_scatter(x[0], solo, 1); }},
      {"all_reduce_wait",
       [](Graph&, const std::vector<Value>& x) { return all_reduce_wait(all_reduce_start(x[0], solo)); }},
      {"all_reduce_start",
       [](Graph&, const std::vector<Value>& x) { return all_reduce_wait(all_reduce_start(x[0], solo)) * 1.0; }}};
  for (const auto& [op, build] : builds)
    cases.push_back({.op = op,
                     .name = op + " [2,3] on one rank",
                     .dtypes = kNumeric,
                     .inputs = {{{2, 3}, std::nullopt, -5, 5}},
                     .build = build,
                     .reference = identity,
                     .differentiable = true});
}

void add_state_cases(std::vector<OpCase>& cases) {
  // assign writes its value into a state (initially zeros); the case reads the state back.
  cases.push_back({.op = "assign",
                   .name = "assign [2,3] into a state",
                   .dtypes = kAll,
                   .inputs = {{{2, 3}, std::nullopt, -5, 5}},
                   .build =
                       [](Graph& g, const std::vector<Value>& x) {
                         return assign(g.state("target", x[0].dtype(), x[0].shape(), init::zeros()), x[0]);
                       },
                   .reference = [](const Inputs& in, const Value&) { return in[0].to(DType::f64); },
                   .update = true});
}

}  // namespace

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> cases = [] {
    std::vector<OpCase> all;
    add_elementwise_cases(all);
    add_reduce_cases(all);
    add_shape_cases(all);
    add_matmul_cases(all);
    add_indexing_cases(all);
    add_creation_cases(all);
    add_normalization_cases(all);
    add_attention_cases(all);
    add_fused_elementwise_cases(all);
    add_fused_comparison_case(all);
    add_state_cases(all);
    add_collective_cases(all);
    add_convolution_cases(all);
    return all;
  }();
  return cases;
}

const std::vector<Exemption>& op_case_exemptions() {
  // None today. An op that cannot be a case (one a backend adds by itself, say) goes here with
  // why, and where it is tested instead: {"op", "reason; tested in tests/..."}.
  static const std::vector<Exemption> exemptions = {};
  return exemptions;
}

std::vector<Tensor> case_inputs(const OpCase& c, DType dtype, std::uint64_t seed) {
  std::vector<Tensor> values;
  for (std::size_t i = 0; i < c.inputs.size(); ++i) {
    const InputSpec& in = c.inputs[i];
    const DType t = in.dtype.value_or(dtype);
    if (in.value.defined())
      values.push_back(in.value.to(t));
    else if (in.integral)
      values.push_back(random_tensor(DType::i64, in.shape, seed + i, in.low, in.high).to(t));
    else
      values.push_back(random_tensor(t, in.shape, seed + i, in.low, in.high));
  }
  return values;
}

}  // namespace fovea::testing
