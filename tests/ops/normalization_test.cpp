// The fused normalizations (ops/normalization.h) against plain references written here: loops
// over the rows of [..., n] tensors in f64, on random inputs, in f32 and f64; their gradients
// through the VJP rules against finite differences; and every build-time error.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <fovea/ops/normalization.h>

#include "gradcheck.h"
#include "testing.h"

namespace {

using namespace fovea;
using fovea::testing::random_tensor;

using Index = std::int64_t;

// --- References -------------------------------------------------------------------------------

// x [..., n] as `rows` rows of n: rows = Π leading dims.
Index rows_of(const Shape& s) {
  Index rows = 1;
  for (int i = 0; i + 1 < s.rank(); ++i) rows *= s[i];
  return rows;
}
Index last_of(const Shape& s) { return s[s.rank() - 1]; }

std::vector<double> values_of(const Tensor& t) {
  std::vector<double> v(static_cast<std::size_t>(t.numel()));
  for (Index i = 0; i < t.numel(); ++i) v[static_cast<std::size_t>(i)] = t.at(i);
  return v;
}

// A tensor of `dtype` and `shape` holding `values` (rounded to the dtype).
Tensor tensor_of(DType dtype, const Shape& shape, const std::vector<double>& values) {
  Tensor t = Tensor::empty(dtype, shape);
  visit_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    auto data = t.data<T>();
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<T>(values[i]);
  });
  return t;
}

// softmax or log-softmax of every row: y[i] = exp(x[i] - m) / Σ_j exp(x[j] - m), or its log.
std::vector<double> reference_softmax(const std::vector<double>& x, Index rows, Index n, bool log) {
  std::vector<double> y(x.size());
  for (Index r = 0; r < rows; ++r) {
    double m = -std::numeric_limits<double>::infinity();
    for (Index i = 0; i < n; ++i) m = std::max(m, x[r * n + i]);
    double s = 0;
    for (Index i = 0; i < n; ++i) s += std::exp(x[r * n + i] - m);
    for (Index i = 0; i < n; ++i) {
      const double shifted = x[r * n + i] - m;
      y[r * n + i] = log ? shifted - std::log(s) : std::exp(shifted) / s;
    }
  }
  return y;
}

// softmax backward: dx = y·(dy - Σ dy·y);  log-softmax backward: dx = dy - exp(y)·Σ dy.
std::vector<double> reference_softmax_backward(const std::vector<double>& y, const std::vector<double>& dy, Index rows,
                                               Index n, bool log) {
  std::vector<double> dx(y.size());
  for (Index r = 0; r < rows; ++r) {
    double total = 0;
    for (Index i = 0; i < n; ++i) total += log ? dy[r * n + i] : dy[r * n + i] * y[r * n + i];
    for (Index i = 0; i < n; ++i) {
      const Index k = r * n + i;
      dx[k] = log ? dy[k] - std::exp(y[k]) * total : y[k] * (dy[k] - total);
    }
  }
  return dx;
}

struct LayerNormReference {
  std::vector<double> y, mean, rstd;
};

// μ = mean(x), σ² = mean((x - μ)²), r = 1/√(σ² + eps), y = (x - μ)·r·γ + β, row by row.
LayerNormReference reference_layer_norm(const std::vector<double>& x, const std::vector<double>& gamma,
                                        const std::vector<double>& beta, Index rows, Index n, double eps) {
  LayerNormReference ref{std::vector<double>(x.size()), std::vector<double>(static_cast<std::size_t>(rows)),
                         std::vector<double>(static_cast<std::size_t>(rows))};
  for (Index r = 0; r < rows; ++r) {
    double mean = 0, variance = 0;
    for (Index i = 0; i < n; ++i) mean += x[r * n + i] / static_cast<double>(n);
    for (Index i = 0; i < n; ++i) variance += (x[r * n + i] - mean) * (x[r * n + i] - mean) / static_cast<double>(n);
    const double rstd = 1.0 / std::sqrt(variance + eps);
    ref.mean[r] = mean;
    ref.rstd[r] = rstd;
    for (Index i = 0; i < n; ++i) ref.y[r * n + i] = (x[r * n + i] - mean) * rstd * gamma[i] + beta[i];
  }
  return ref;
}

struct LayerNormGradients {
  std::vector<double> dx, dgamma, dbeta;
};

// x̂ = (x - μ)·r, g = dy·γ:  dx = r·(g - mean(g) - x̂·mean(g·x̂)),  dγ = Σ_rows dy·x̂,  dβ = Σ_rows dy.
LayerNormGradients reference_layer_norm_backward(const std::vector<double>& dy, const std::vector<double>& x,
                                                 const std::vector<double>& gamma, const std::vector<double>& mean,
                                                 const std::vector<double>& rstd, Index rows, Index n) {
  LayerNormGradients ref{std::vector<double>(x.size()), std::vector<double>(static_cast<std::size_t>(n), 0.0),
                         std::vector<double>(static_cast<std::size_t>(n), 0.0)};
  for (Index r = 0; r < rows; ++r) {
    double mean_g = 0, mean_gx = 0;
    for (Index i = 0; i < n; ++i) {
      const double xhat = (x[r * n + i] - mean[r]) * rstd[r], g = dy[r * n + i] * gamma[i];
      mean_g += g / static_cast<double>(n);
      mean_gx += g * xhat / static_cast<double>(n);
    }
    for (Index i = 0; i < n; ++i) {
      const double xhat = (x[r * n + i] - mean[r]) * rstd[r], g = dy[r * n + i] * gamma[i];
      ref.dx[r * n + i] = rstd[r] * (g - mean_g - xhat * mean_gx);
      ref.dgamma[i] += dy[r * n + i] * xhat;
      ref.dbeta[i] += dy[r * n + i];
    }
  }
  return ref;
}

// nn::cross_entropy's per-example value, spelled out: with p = softmax(x),
//   loss = -Σ_c ((1-ε)·[c = t] + ε/C)·log p[c]     (the one-hot row is all zero when t is outside [0, C))
// and lse = log Σ_c exp(x[c]).
std::pair<std::vector<double>, std::vector<double>> reference_cross_entropy(const std::vector<double>& x,
                                                                            const std::vector<double>& t, Index rows,
                                                                            Index classes, double eps) {
  const std::vector<double> logp = reference_softmax(x, rows, classes, true);
  std::vector<double> loss(static_cast<std::size_t>(rows)), lse(static_cast<std::size_t>(rows));
  for (Index r = 0; r < rows; ++r) {
    double value = 0;
    for (Index c = 0; c < classes; ++c) {
      const double target = (t[r] == static_cast<double>(c) ? 1.0 - eps : 0.0) + eps / static_cast<double>(classes);
      value -= target * logp[r * classes + c];
    }
    loss[r] = value;
    lse[r] = x[r * classes] - logp[r * classes];
  }
  return {loss, lse};
}

// dx[c] = ḡ·(Σ_k target[k])·p[c] - ḡ·target[c], with target as above: the gradient of the loss.
std::vector<double> reference_cross_entropy_backward(const std::vector<double>& x, const std::vector<double>& t,
                                                     const std::vector<double>& dloss, Index rows, Index classes,
                                                     double eps) {
  const std::vector<double> p = reference_softmax(x, rows, classes, false);
  std::vector<double> dx(x.size());
  for (Index r = 0; r < rows; ++r) {
    std::vector<double> target(static_cast<std::size_t>(classes));
    double mass = 0;
    for (Index c = 0; c < classes; ++c) {
      target[c] = (t[r] == static_cast<double>(c) ? 1.0 - eps : 0.0) + eps / static_cast<double>(classes);
      mass += target[c];
    }
    for (Index c = 0; c < classes; ++c) dx[r * classes + c] = dloss[r] * (mass * p[r * classes + c] - target[c]);
  }
  return dx;
}

// --- Helpers ----------------------------------------------------------------------------------

// f32 results are compared with the f64 reference rounded to f32.
void check_matches(const Tensor& actual, DType dtype, const Shape& shape, const std::vector<double>& expected) {
  testing::check_close(actual, tensor_of(dtype, shape, expected), testing::rtol_for(dtype),
                       dtype == f64 ? 1e-12 : 2e-6);
}

Shape stats_shape(const Shape& s) {
  std::vector<Index> dims = s.dims();
  dims.back() = 1;
  return Shape(dims);
}
Shape batch_shape(const Shape& s) {
  std::vector<Index> dims = s.dims();
  dims.pop_back();
  return Shape(dims);
}

// Shapes every row op is tried on: rank 3, a single column, a single element, no rows, and rows
// longer than the kernels' block of 1024 elements with a ragged tail.
const std::vector<Shape> kShapes = {{2, 3, 7}, {3, 1}, {1}, {0, 5}, {4, 0}, {3, 1500}};

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A build error names the op and this file (the user's line).
template <typename F>
void check_build_error(F&& build, const std::string& op, const std::string& fragment) {
  CHECK_THROWS_AS(build(), Error);
  const std::string message = testing::error_of(build);
  CAPTURE(message);
  CHECK(contains(message, op));
  CHECK(contains(message, "normalization_test.cpp"));
  CHECK(contains(message, fragment));
}

// --- Forward and backward against the references ------------------------------------------------

TEST_CASE("fused_softmax and fused_log_softmax match the reference over the last axis, f32 and f64") {
  for (DType t : {f32, f64})
    for (const Shape& shape : kShapes)
      for (double range : {1.0, 60.0}) {  // 60: exp(x) alone would overflow f32; the max shift must be there
        CAPTURE(dtype_name(t));
        CAPTURE(shape.to_string());
        Graph g;
        Value x = g.placeholder("x", t, shape);
        const Tensor xv = random_tensor(t, shape, 11, -range, range);
        const std::vector<Tensor> out = testing::run(g, {fused_softmax(x), fused_log_softmax(x)}, {{x, xv}});
        const std::vector<double> xs = values_of(xv);
        check_matches(out[0], t, shape, reference_softmax(xs, rows_of(shape), last_of(shape), false));
        check_matches(out[1], t, shape, reference_softmax(xs, rows_of(shape), last_of(shape), true));
      }
}

TEST_CASE("fused_softmax of a row of one element is 1 and its log-softmax 0") {
  Graph g;
  Value x = g.placeholder("x", f32, {3, 1});
  const std::vector<Tensor> out =
      testing::run(g, {fused_softmax(x), fused_log_softmax(x)}, {{x, Tensor::from<float>({-5, 0, 80}, {3, 1})}});
  for (Index i = 0; i < 3; ++i) {
    CHECK(out[0].at(i) == 1.0);
    CHECK(out[1].at(i) == 0.0);
  }
}

TEST_CASE("fused_softmax_backward and fused_log_softmax_backward match y·(dy - Σ dy·y) and dy - exp(y)·Σ dy") {
  for (DType t : {f32, f64})
    for (const Shape& shape : kShapes) {
      CAPTURE(dtype_name(t));
      CAPTURE(shape.to_string());
      Graph g;
      Value y = g.placeholder("y", t, shape), dy = g.placeholder("dy", t, shape);
      const Tensor yv = random_tensor(t, shape, 21, 0.0, 1.0), logv = random_tensor(t, shape, 22, -4.0, 0.0);
      const Tensor dyv = random_tensor(t, shape, 23);
      Value logy = g.placeholder("logy", t, shape);
      const std::vector<Tensor> out = testing::run(
          g, {fused_softmax_backward(y, dy), fused_log_softmax_backward(logy, dy)}, {{y, yv}, {dy, dyv}, {logy, logv}});
      const Index rows = rows_of(shape), n = last_of(shape);
      check_matches(out[0], t, shape, reference_softmax_backward(values_of(yv), values_of(dyv), rows, n, false));
      check_matches(out[1], t, shape, reference_softmax_backward(values_of(logv), values_of(dyv), rows, n, true));
    }
}

TEST_CASE("fused_layer_norm matches the reference y, mean [..., 1] and rstd [..., 1], f32 and f64") {
  for (DType t : {f32, f64})
    for (const Shape& shape : kShapes)
      for (double offset : {0.0, 3.0}) {  // rows far from zero: the variance must not cancel
        CAPTURE(dtype_name(t));
        CAPTURE(shape.to_string());
        CAPTURE(offset);
        Graph g;
        const Shape features{last_of(shape)};
        Value x = g.placeholder("x", t, shape), gamma = g.placeholder("gamma", t, features);
        Value beta = g.placeholder("beta", t, features);
        const FusedLayerNormOutputs ln = fused_layer_norm(x, gamma, beta, 1e-5);
        CHECK(ln.mean.shape() == stats_shape(shape));
        CHECK(ln.rstd.shape() == stats_shape(shape));
        const Tensor xv = random_tensor(t, shape, 31, offset - 1.0, offset + 1.0);
        const Tensor gv = random_tensor(t, features, 32, 0.5, 1.5), bv = random_tensor(t, features, 33);
        const std::vector<Tensor> out = testing::run(g, {ln.y, ln.mean, ln.rstd}, {{x, xv}, {gamma, gv}, {beta, bv}});
        const LayerNormReference ref =
            reference_layer_norm(values_of(xv), values_of(gv), values_of(bv), rows_of(shape), last_of(shape), 1e-5);
        check_matches(out[0], t, shape, ref.y);
        if (last_of(shape) == 0) {  // the mean of no elements is NaN, as reduce_mean's
          for (Index r = 0; r < out[1].numel(); ++r) CHECK(std::isnan(out[1].at(r)));
          continue;
        }
        check_matches(out[1], t, stats_shape(shape), ref.mean);
        check_matches(out[2], t, stats_shape(shape), ref.rstd);
      }
}

TEST_CASE("fused_layer_norm_backward matches the reference dx, dgamma and dbeta, f32 and f64") {
  for (DType t : {f32, f64})
    for (const Shape& shape : {Shape{2, 3, 7}, Shape{3, 1}, Shape{1}, Shape{0, 5}, Shape{300, 70}}) {
      CAPTURE(dtype_name(t));
      CAPTURE(shape.to_string());
      Graph g;
      const Shape features{last_of(shape)};
      Value dy = g.placeholder("dy", t, shape), x = g.placeholder("x", t, shape);
      Value gamma = g.placeholder("gamma", t, features);
      Value mean = g.placeholder("mean", t, stats_shape(shape)), rstd = g.placeholder("rstd", t, stats_shape(shape));
      const FusedLayerNormGradients grads = fused_layer_norm_backward(dy, x, gamma, mean, rstd);
      const Tensor dyv = random_tensor(t, shape, 41), xv = random_tensor(t, shape, 42);
      const Tensor gv = random_tensor(t, features, 43, 0.5, 1.5);
      const Tensor mv = random_tensor(t, stats_shape(shape), 44, -0.2, 0.2);
      const Tensor rv = random_tensor(t, stats_shape(shape), 45, 0.5, 2.0);
      const std::vector<Tensor> out = testing::run(g, {grads.dx, grads.dgamma, grads.dbeta},
                                                   {{dy, dyv}, {x, xv}, {gamma, gv}, {mean, mv}, {rstd, rv}});
      const LayerNormGradients ref = reference_layer_norm_backward(
          values_of(dyv), values_of(xv), values_of(gv), values_of(mv), values_of(rv), rows_of(shape), last_of(shape));
      check_matches(out[0], t, shape, ref.dx);
      // dγ and dβ sum over up to 300 rows: f32 rounding grows with the count.
      testing::check_close(out[1], tensor_of(t, features, ref.dgamma), t == f64 ? 1e-12 : 1e-5,
                           t == f64 ? 1e-12 : 1e-5);
      testing::check_close(out[2], tensor_of(t, features, ref.dbeta), t == f64 ? 1e-12 : 1e-5, t == f64 ? 1e-12 : 1e-5);
    }
}

// Targets for `rows` rows of `classes` classes, with every third one outside [0, C) (-100 as an
// ignore_index, or C itself).
Tensor targets_for(DType index_type, const Shape& shape, Index classes) {
  std::vector<double> t(static_cast<std::size_t>(shape.numel()));
  for (std::size_t i = 0; i < t.size(); ++i)
    t[i] = i % 3 == 2 ? (i % 2 ? -100.0 : static_cast<double>(classes)) : static_cast<double>((i * 7 + 3) % classes);
  return tensor_of(index_type, shape, t);
}

TEST_CASE(
    "fused_softmax_cross_entropy matches nn's per-example value and lse, label smoothing 0 and 0.1, "
    "targets outside 0..C-1 included") {
  const std::vector<Shape> shapes = {{6, 5}, {2, 3, 4}, {1}, {0, 5}, {3, 1}, {2, 1200}};
  for (DType t : {f32, f64})
    for (DType index_type : {i32, i64})
      for (const Shape& shape : shapes)
        for (double eps : {0.0, 0.1}) {
          CAPTURE(dtype_name(t));
          CAPTURE(dtype_name(index_type));
          CAPTURE(shape.to_string());
          CAPTURE(eps);
          Graph g;
          const Shape batch = batch_shape(shape);
          Value x = g.placeholder("x", t, shape), targets = g.placeholder("targets", index_type, batch);
          const FusedCrossEntropyOutputs ce = fused_softmax_cross_entropy(x, targets, eps);
          CHECK(ce.loss.shape() == batch);
          const Tensor xv = random_tensor(t, shape, 51, -3.0, 3.0);
          const Tensor tv = targets_for(index_type, batch, last_of(shape));
          const std::vector<Tensor> out = testing::run(g, {ce.loss, ce.lse}, {{x, xv}, {targets, tv}});
          const auto [loss, lse] =
              reference_cross_entropy(values_of(xv), values_of(tv), rows_of(shape), last_of(shape), eps);
          check_matches(out[0], t, batch, loss);
          check_matches(out[1], t, batch, lse);
        }
}

TEST_CASE("fused_softmax_cross_entropy_backward matches the gradient of the per-example loss") {
  for (DType t : {f32, f64})
    for (const Shape& shape : {Shape{6, 5}, Shape{2, 3, 4}, Shape{1}, Shape{0, 5}, Shape{2, 1200}})
      for (double eps : {0.0, 0.1}) {
        CAPTURE(dtype_name(t));
        CAPTURE(shape.to_string());
        CAPTURE(eps);
        Graph g;
        const Shape batch = batch_shape(shape);
        const DType index_type = shape.rank() == 3 ? i32 : i64;
        Value x = g.placeholder("x", t, shape), targets = g.placeholder("targets", index_type, batch);
        Value dloss = g.placeholder("dloss", t, batch);
        const FusedCrossEntropyOutputs ce = fused_softmax_cross_entropy(x, targets, eps);
        Value dx = fused_softmax_cross_entropy_backward(x, targets, ce.lse, dloss, eps);
        const Tensor xv = random_tensor(t, shape, 61, -3.0, 3.0), tv = targets_for(index_type, batch, last_of(shape));
        const Tensor dv = random_tensor(t, batch, 62);
        const Tensor out = testing::run1(g, dx, {{x, xv}, {targets, tv}, {dloss, dv}});
        check_matches(out, t, shape,
                      reference_cross_entropy_backward(values_of(xv), values_of(tv), values_of(dv), rows_of(shape),
                                                       last_of(shape), eps));
      }
}

// --- Gradients through the VJP rules -----------------------------------------------------------------

TEST_CASE("gradcheck: fused_softmax and fused_log_softmax, f64, rank 1 to 3") {
  for (const Shape& shape : {Shape{5}, Shape{3, 4}, Shape{2, 2, 3}, Shape{3, 1}}) {
    CAPTURE(shape.to_string());
    testing::gradcheck("fused_softmax", [](Graph&, const std::vector<Value>& x) { return fused_softmax(x[0]); },
                       {{shape, -2.0, 2.0}});
    testing::gradcheck("fused_log_softmax", [](Graph&, const std::vector<Value>& x) { return fused_log_softmax(x[0]); },
                       {{shape, -2.0, 2.0}});
  }
}

TEST_CASE("gradcheck: fused_layer_norm with respect to x, gamma and beta, f64") {
  for (const Shape& shape : {Shape{4}, Shape{3, 5}, Shape{2, 2, 3}}) {
    CAPTURE(shape.to_string());
    const Shape features{last_of(shape)};
    testing::gradcheck(
        "fused_layer_norm",
        [](Graph&, const std::vector<Value>& in) { return fused_layer_norm(in[0], in[1], in[2], 1e-5).y; },
        {{shape, -2.0, 2.0}, {features, 0.5, 1.5}, {features, -1.0, 1.0}});
  }
}

TEST_CASE("gradcheck: fused_softmax_cross_entropy with respect to the logits, smoothing 0 and 0.1, f64") {
  for (double eps : {0.0, 0.1}) {
    CAPTURE(eps);
    const Tensor targets = Tensor::from<std::int64_t>({2, 0, -100, 4, 1, 5}, {2, 3});
    testing::gradcheck(
        "fused_softmax_cross_entropy",
        [eps](Graph&, const std::vector<Value>& in) { return fused_softmax_cross_entropy(in[0], in[1], eps).loss; },
        {{{2, 3, 5}, -2.0, 2.0}, {{2, 3}, 0, 0, i64, targets}});
  }
}

TEST_CASE("a gradient through the saved statistics (lse, mean, rstd) is an error naming the op") {
  Graph g;
  Value x = g.placeholder("x", f64, {3, 4}), targets = g.placeholder("targets", i64, {3});
  Value gamma = g.placeholder("gamma", f64, {4}), beta = g.placeholder("beta", f64, {4});
  const FusedCrossEntropyOutputs ce = fused_softmax_cross_entropy(x, targets);
  const FusedLayerNormOutputs ln = fused_layer_norm(x, gamma, beta, 1e-5);
  CHECK_THROWS_AS(grad(reduce_sum(ce.lse), {x}), Error);
  CHECK(contains(testing::error_of([&] { grad(reduce_sum(ce.lse), {x}); }), "fused_softmax_cross_entropy"));
  const std::string message = testing::error_of([&] { grad(reduce_sum(ln.rstd), {x}); });
  CHECK(contains(message, "fused_layer_norm"));
  CHECK(contains(message, "only output 0 is differentiable"));
}

TEST_CASE("a second derivative through fused_softmax is an error (its backward has no gradient rule)") {
  Graph g;
  Value x = g.placeholder("x", f64, {2, 3});
  Value first = grad(reduce_sum(fused_softmax(x) * fused_softmax(x)), {x})[0];
  CHECK_THROWS_AS(grad(reduce_sum(first), {x}), Error);
  CHECK(contains(testing::error_of([&] { grad(reduce_sum(first), {x}); }), "fused_softmax_backward"));
}

// --- Build-time errors -----------------------------------------------------------------------------

TEST_CASE("fused_softmax and fused_log_softmax reject rank-0 and integer inputs") {
  Graph g;
  Value scalar = g.placeholder("s", f32, {});
  Value ints = g.placeholder("i", i32, {2, 3});
  check_build_error([&] { fused_softmax(scalar); }, "fused_softmax", "rank >= 1");
  check_build_error([&] { fused_log_softmax(ints); }, "fused_log_softmax", "f32 or f64");
}

TEST_CASE("the softmax backwards reject a dy of another shape or dtype") {
  Graph g;
  Value y = g.placeholder("y", f32, {2, 3});
  check_build_error(
      [&] {
        fused_softmax_backward(y, g.placeholder("dy", f32, {2, 4}));
      },
      "fused_softmax_backward", "dy must be f32[2,3]");
  check_build_error(
      [&] {
        fused_log_softmax_backward(y, g.placeholder("dy64", f64, {2, 3}));
      },
      "fused_log_softmax_backward", "dy must be f32[2,3]");
}

TEST_CASE("fused_layer_norm rejects gamma or beta that are not [D], another dtype, and a negative eps") {
  Graph g;
  Value x = g.placeholder("x", f32, {4, 6});
  Value good = g.placeholder("good", f32, {6});
  check_build_error([&] { fused_layer_norm(x, g.placeholder("g7", f32, {7}), good, 1e-5); }, "fused_layer_norm",
                    "gamma must be f32[6]");
  check_build_error(
      [&] {
        fused_layer_norm(x, good, g.placeholder("b16", f32, {1, 6}), 1e-5);
      },
      "fused_layer_norm", "beta must be f32[6]");
  check_build_error([&] { fused_layer_norm(x, g.placeholder("g64", f64, {6}), good, 1e-5); }, "fused_layer_norm",
                    "gamma must be f32[6]");
  check_build_error([&] { fused_layer_norm(x, good, good, -1.0); }, "fused_layer_norm", "eps must be");
  check_build_error(
      [&] {
        fused_layer_norm(g.placeholder("xi", i64, {4, 6}), good, good, 1e-5);
      },
      "fused_layer_norm", "f32 or f64");
}

TEST_CASE("fused_layer_norm_backward rejects statistics that are not [..., 1]") {
  Graph g;
  Value dy = g.placeholder("dy", f32, {4, 6}), x = g.placeholder("x", f32, {4, 6});
  Value gamma = g.placeholder("gamma", f32, {6}), good = g.placeholder("good", f32, {4, 1});
  check_build_error([&] { fused_layer_norm_backward(dy, x, gamma, g.placeholder("m", f32, {4}), good); },
                    "fused_layer_norm_backward", "mean must be f32[4,1]");
  check_build_error(
      [&] {
        fused_layer_norm_backward(dy, g.placeholder("x5", f32, {4, 5}), gamma, good, good);
      },
      "fused_layer_norm_backward", "x must be f32[4,6]");
}

TEST_CASE(
    "fused_softmax_cross_entropy rejects float targets, targets of the wrong shape, no classes and bad "
    "smoothing") {
  Graph g;
  Value logits = g.placeholder("logits", f32, {4, 3});
  Value targets = g.placeholder("targets", i64, {4});
  check_build_error([&] { fused_softmax_cross_entropy(logits, g.placeholder("tf", f32, {4})); },
                    "fused_softmax_cross_entropy", "integer class indices");
  check_build_error(
      [&] {
        fused_softmax_cross_entropy(logits, g.placeholder("t43", i64, {4, 3}));
      },
      "fused_softmax_cross_entropy", "targets must have the logits' shape without the class dim");
  check_build_error(
      [&] {
        fused_softmax_cross_entropy(g.placeholder("empty", f32, {4, 0}), targets);
      },
      "fused_softmax_cross_entropy", "at least one");
  check_build_error([&] { fused_softmax_cross_entropy(logits, targets, 1.5); }, "fused_softmax_cross_entropy",
                    "label_smoothing must lie in [0, 1]");
  const FusedCrossEntropyOutputs ce = fused_softmax_cross_entropy(logits, targets);
  check_build_error(
      [&] {
        fused_softmax_cross_entropy_backward(logits, targets, g.placeholder("lse", f32, {4, 1}), ce.loss);
      },
      "fused_softmax_cross_entropy_backward", "lse must be f32[4]");
}

}  // namespace
