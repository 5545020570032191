// Elementwise ops against plain references: every unary op, every binary op with NumPy
// broadcasting (including size-1 and zero-size dims and rank 0), in every dtype it supports.
#include <cmath>
#include <cstdint>
#include <functional>

#include <fovea/ops/functors.h>

#include "gradcheck.h"
#include "passes/optimize_testing.h"
#include "testing.h"

using namespace fovea;
using fovea::testing::check_close;
using fovea::testing::random_tensor;

namespace {

// y[i] = f(x[i]) computed in double, then stored in `out_dtype`.
Tensor reference_unary(const Tensor& x, const std::function<double(double)>& f, DType out_dtype) {
  Tensor y = Tensor::empty(out_dtype, x.shape());
  visit_dtype(out_dtype, [&](auto zero) {
    using T = decltype(zero);
    auto out = y.data<T>();
    for (std::int64_t i = 0; i < x.numel(); ++i) out[i] = static_cast<T>(f(x.at(i)));
  });
  return y;
}

// out[idx] = f(a[idx mapped into a], b[idx mapped into b]) by explicit multi-index walking:
// the definition of broadcasting, with no cleverness.
Tensor reference_binary(const Tensor& a, const Tensor& b, const std::function<double(double, double)>& f,
                        DType out_dtype) {
  Shape out_shape;
  REQUIRE(broadcast_shapes(a.shape(), b.shape(), out_shape));
  Tensor y = Tensor::empty(out_dtype, out_shape);
  const int rank = out_shape.rank();
  std::vector<std::int64_t> idx(static_cast<std::size_t>(rank), 0);
  auto offset_in = [&](const Shape& s) {
    std::int64_t off = 0;
    for (int d = 0; d < s.rank(); ++d) {
      const std::int64_t i = idx[static_cast<std::size_t>(rank - s.rank() + d)];
      off = off * s[d] + (s[d] == 1 ? 0 : i);
    }
    return off;
  };
  visit_dtype(out_dtype, [&](auto zero) {
    using T = decltype(zero);
    auto out = y.data<T>();
    for (std::int64_t flat = 0; flat < out_shape.numel(); ++flat) {
      std::int64_t rest = flat;
      for (int d = rank - 1; d >= 0; --d) {
        idx[static_cast<std::size_t>(d)] = rest % out_shape[d];
        rest /= out_shape[d];
      }
      out[flat] = static_cast<T>(f(a.at(offset_in(a.shape())), b.at(offset_in(b.shape()))));
    }
  });
  return y;
}

// ln(1 + eˣ) = max(x, 0) + ln(1 + e^-|x|): never overflows, and written differently from the
// kernel's x > 20 ? x : log1p(eˣ).
double softplus_reference(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x))); }

struct UnaryCase {
  const char* name;
  Value (*build)(Value, Loc);
  double (*reference)(double);
  bool integers;     // also defined on i32/i64
  double low, high;  // input range (log and sqrt want positive inputs)
};

const UnaryCase kUnary[] = {
    {"neg", [](Value x, Loc w) { return neg(x, w); }, [](double x) { return -x; }, true, -3, 3},
    {"abs", [](Value x, Loc w) { return fovea::abs(x, w); }, [](double x) { return std::abs(x); }, true, -3, 3},
    {"relu", [](Value x, Loc w) { return relu(x, w); }, [](double x) { return x > 0 ? x : 0.0; }, true, -3, 3},
    {"exp", [](Value x, Loc w) { return fovea::exp(x, w); }, [](double x) { return std::exp(x); }, false, -3, 3},
    {"log", [](Value x, Loc w) { return fovea::log(x, w); }, [](double x) { return std::log(x); }, false, 0.1, 5},
    {"sqrt", [](Value x, Loc w) { return fovea::sqrt(x, w); }, [](double x) { return std::sqrt(x); }, false, 0, 5},
    {"rsqrt", [](Value x, Loc w) { return rsqrt(x, w); }, [](double x) { return 1 / std::sqrt(x); }, false, 0.1, 5},
    {"tanh", [](Value x, Loc w) { return fovea::tanh(x, w); }, [](double x) { return std::tanh(x); }, false, -3, 3},
    {"sigmoid", [](Value x, Loc w) { return sigmoid(x, w); }, [](double x) { return 1 / (1 + std::exp(-x)); }, false,
     -30, 30},
    {"sin", [](Value x, Loc w) { return fovea::sin(x, w); }, [](double x) { return std::sin(x); }, false, -6, 6},
    {"cos", [](Value x, Loc w) { return fovea::cos(x, w); }, [](double x) { return std::cos(x); }, false, -6, 6},
    // [-40, 40]: both sides of the x > 20 switch to y = x, and exp(x) far beyond f32's range.
    {"softplus", [](Value x, Loc w) { return softplus(x, w); }, softplus_reference, false, -40, 40},
    {"tan", [](Value x, Loc w) { return fovea::tan(x, w); }, [](double x) { return std::tan(x); }, false, -1.4, 1.4},
    {"asin", [](Value x, Loc w) { return fovea::asin(x, w); }, [](double x) { return std::asin(x); }, false, -1, 1},
    {"acos", [](Value x, Loc w) { return fovea::acos(x, w); }, [](double x) { return std::acos(x); }, false, -1, 1},
    {"atan", [](Value x, Loc w) { return fovea::atan(x, w); }, [](double x) { return std::atan(x); }, false, -9, 9},
    {"sinh", [](Value x, Loc w) { return fovea::sinh(x, w); }, [](double x) { return std::sinh(x); }, false, -5, 5},
    {"cosh", [](Value x, Loc w) { return fovea::cosh(x, w); }, [](double x) { return std::cosh(x); }, false, -5, 5},
    {"asinh", [](Value x, Loc w) { return fovea::asinh(x, w); }, [](double x) { return std::asinh(x); }, false, -9, 9},
    {"acosh", [](Value x, Loc w) { return fovea::acosh(x, w); }, [](double x) { return std::acosh(x); }, false, 1, 9},
    {"atanh", [](Value x, Loc w) { return fovea::atanh(x, w); }, [](double x) { return std::atanh(x); }, false, -0.99,
     0.99},
    {"erf", [](Value x, Loc w) { return fovea::erf(x, w); }, [](double x) { return std::erf(x); }, false, -4, 4},
    {"reciprocal", [](Value x, Loc w) { return reciprocal(x, w); }, [](double x) { return 1 / x; }, false, 0.1, 5},
    {"floor", [](Value x, Loc w) { return fovea::floor(x, w); }, [](double x) { return std::floor(x); }, false, -9, 9},
    {"ceil", [](Value x, Loc w) { return fovea::ceil(x, w); }, [](double x) { return std::ceil(x); }, false, -9, 9},
    {"round", [](Value x, Loc w) { return fovea::round(x, w); }, [](double x) { return std::nearbyint(x); }, false, -9,
     9},
    {"sign", [](Value x, Loc w) { return sign(x, w); }, [](double x) { return double((x > 0) - (x < 0)); }, true, -3,
     3},
};

const Shape kShapes[] = {Shape{}, Shape{1}, Shape{7}, Shape{3, 0, 2}, Shape{4, 1, 5}, Shape{2, 3, 4, 5}, Shape{70000}};

}  // namespace

TEST_CASE("every unary op matches its reference on random inputs of every shape and dtype") {
  std::uint64_t seed = 1;
  for (const UnaryCase& op : kUnary) {
    for (DType dtype : {f32, f64, i32, i64}) {
      if (is_integer(dtype) && !op.integers) continue;
      for (const Shape& shape : kShapes) {
        CAPTURE(op.name);
        CAPTURE(dtype_name(dtype));
        CAPTURE(shape.to_string());
        Graph g;
        Value x = g.placeholder("x", dtype, shape);
        Value y = op.build(x, Loc::current());
        Tensor input = random_tensor(dtype, shape, seed++, op.low, op.high);
        Tensor got = testing::run1(g, y, {{x, input}});
        check_close(got, reference_unary(input, op.reference, dtype), testing::rtol_for(dtype), 1e-6);
      }
    }
  }
}

TEST_CASE("floating-only unary ops reject integer inputs at build time") {
  Graph g;
  Value x = g.placeholder("ids", i32, {3});
  CHECK_THROWS_WITH_AS(fovea::exp(x), doctest::Contains("exp: input 0 must be f32 or f64"), Error);
}

namespace {

struct BinaryCase {
  const char* name;
  Value (*build)(Value, Value, Loc);
  double (*reference)(double, double);
  bool comparison;
};

const BinaryCase kBinary[] = {
    {"add", [](Value a, Value b, Loc w) { return add(a, b, w); }, [](double a, double b) { return a + b; }, false},
    {"sub", [](Value a, Value b, Loc w) { return sub(a, b, w); }, [](double a, double b) { return a - b; }, false},
    {"mul", [](Value a, Value b, Loc w) { return mul(a, b, w); }, [](double a, double b) { return a * b; }, false},
    {"maximum", [](Value a, Value b, Loc w) { return maximum(a, b, w); },
     [](double a, double b) { return std::max(a, b); }, false},
    {"minimum", [](Value a, Value b, Loc w) { return minimum(a, b, w); },
     [](double a, double b) { return std::min(a, b); }, false},
    {"equal", [](Value a, Value b, Loc w) { return equal(a, b, w); }, [](double a, double b) { return double(a == b); },
     true},
    {"not_equal", [](Value a, Value b, Loc w) { return not_equal(a, b, w); },
     [](double a, double b) { return double(a != b); }, true},
    {"less", [](Value a, Value b, Loc w) { return less(a, b, w); }, [](double a, double b) { return double(a < b); },
     true},
    {"less_equal", [](Value a, Value b, Loc w) { return less_equal(a, b, w); },
     [](double a, double b) { return double(a <= b); }, true},
    {"greater", [](Value a, Value b, Loc w) { return greater(a, b, w); },
     [](double a, double b) { return double(a > b); }, true},
    {"greater_equal", [](Value a, Value b, Loc w) { return greater_equal(a, b, w); },
     [](double a, double b) { return double(a >= b); }, true},
};

// Pairs of shapes that broadcast, covering scalars, size-1 dims, new leading dims, zero-size
// dims, and shapes large enough to run in parallel.
const std::pair<Shape, Shape> kBroadcastPairs[] = {
    {Shape{}, Shape{}},
    {Shape{5}, Shape{5}},
    {Shape{5}, Shape{}},
    {Shape{}, Shape{2, 3}},
    {Shape{2, 3}, Shape{3}},
    {Shape{2, 1}, Shape{1, 3}},
    {Shape{4, 1, 3}, Shape{5, 1}},
    {Shape{2, 3, 4, 5}, Shape{3, 1, 5}},
    {Shape{0, 3}, Shape{3}},
    {Shape{2, 0}, Shape{1}},
    {Shape{1, 1}, Shape{1}},
    {Shape{300, 257}, Shape{257}},
    {Shape{300, 1}, Shape{1, 257}},
    {Shape{513, 130}, Shape{513, 130}},
};

}  // namespace

TEST_CASE("every binary op matches its reference under NumPy broadcasting in every dtype") {
  std::uint64_t seed = 100;
  for (const BinaryCase& op : kBinary) {
    for (DType dtype : {f32, f64, i32, i64}) {
      for (const auto& [sa, sb] : kBroadcastPairs) {
        CAPTURE(op.name);
        CAPTURE(dtype_name(dtype));
        CAPTURE(sa.to_string());
        CAPTURE(sb.to_string());
        Graph g;
        Value a = g.placeholder("a", dtype, sa);
        Value b = g.placeholder("b", dtype, sb);
        Value y = op.build(a, b, Loc::current());
        // Small integer ranges make equalities common enough to test the comparisons.
        Tensor ta = random_tensor(dtype, sa, seed++, -3, 3), tb = random_tensor(dtype, sb, seed++, -3, 3);
        Tensor got = testing::run1(g, y, {{a, ta}, {b, tb}});
        const DType out = op.comparison ? boolean : dtype;
        check_close(got, reference_binary(ta, tb, op.reference, out), testing::rtol_for(dtype), 1e-6);
      }
    }
  }
}

TEST_CASE("div and pow match their references, and integer division truncates toward zero") {
  std::uint64_t seed = 7;
  for (const auto& [sa, sb] : kBroadcastPairs) {
    for (DType dtype : {f32, f64}) {
      Graph g;
      Value a = g.placeholder("a", dtype, sa), b = g.placeholder("b", dtype, sb);
      Tensor ta = random_tensor(dtype, sa, seed++, 0.5, 3), tb = random_tensor(dtype, sb, seed++, 0.5, 3);
      auto got = testing::run(g, {div(a, b), fovea::pow(a, b)}, {{a, ta}, {b, tb}});
      check_close(got[0],
                  reference_binary(
                      ta, tb, [](double x, double y) { return x / y; }, dtype),
                  testing::rtol_for(dtype));
      check_close(got[1],
                  reference_binary(
                      ta, tb, [](double x, double y) { return std::pow(x, y); }, dtype),
                  testing::rtol_for(dtype) * 10);
    }
  }
  Graph g;
  Value a = g.placeholder("a", i32, {4}), b = g.placeholder("b", i32, {4});
  Tensor got = testing::run1(
      g, div(a, b),
      {{a, Tensor::from<std::int32_t>({7, -7, 7, -7}, {4})}, {b, Tensor::from<std::int32_t>({2, 2, -2, -2}, {4})}});
  check_close(got, Tensor::from<std::int32_t>({3, -3, -3, 3}, {4}));
}

TEST_CASE("integer division by zero is a run-time error naming the node, not undefined behaviour") {
  Graph g;
  Value a = g.placeholder("a", i64, {2}), b = g.placeholder("b", i64, {2});
  Value q = div(a, b);
  auto exe = compile(g, {q});
  try {
    exe.run({{a, Tensor::from<std::int64_t>({1, 2}, {2})}, {b, Tensor::from<std::int64_t>({1, 0}, {2})}});
    FAIL("expected fovea::Error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("integer division by zero") != std::string::npos);
    CHECK(e.node() == q.name());
    CHECK(std::string(e.what()).find("elementwise_test.cpp") != std::string::npos);
  }
}

TEST_CASE("the shared division functor gives 0 for an integer zero divisor, so a GPU's division can finish") {
  // The error itself is the kernel's to raise (above); fn::Div only has to be defined there.
  CHECK(fn::Div{}(std::int32_t{7}, std::int32_t{0}) == 0);
  CHECK(fn::Div{}(std::int64_t{-7}, std::int64_t{0}) == 0);
  CHECK(fn::Div{}(std::int64_t{-7}, std::int64_t{2}) == -3);
  CHECK(std::isinf(fn::Div{}(1.0, 0.0)));
}

TEST_CASE("logical ops work on bool tensors and reject numbers") {
  Graph g;
  Value a = g.placeholder("a", boolean, {4}), b = g.placeholder("b", boolean, {4});
  Tensor ta = Tensor::from<std::uint8_t>({0, 0, 1, 1}, {4}), tb = Tensor::from<std::uint8_t>({0, 1, 0, 1}, {4});
  auto got = testing::run(g, {logical_and(a, b), logical_or(a, b), logical_not(a)}, {{a, ta}, {b, tb}});
  check_close(got[0], Tensor::from<std::uint8_t>({0, 0, 0, 1}, {4}));
  check_close(got[1], Tensor::from<std::uint8_t>({0, 1, 1, 1}, {4}));
  check_close(got[2], Tensor::from<std::uint8_t>({1, 1, 0, 0}, {4}));
  Value x = g.placeholder("x", f32, {4});
  CHECK_THROWS_AS(logical_not(x), Error);
}

TEST_CASE("maximum and minimum propagate NaN like IEEE fmax would not") {
  Graph g;
  Value a = g.placeholder("a", f32, {2}), b = g.placeholder("b", f32, {2});
  const float nan = std::nanf("");
  auto got = testing::run(g, {maximum(a, b), minimum(a, b)},
                          {{a, Tensor::from<float>({nan, 1}, {2})}, {b, Tensor::from<float>({1, nan}, {2})}});
  for (const Tensor& t : got) {
    CHECK(std::isnan(t.at(0)));
    CHECK(std::isnan(t.at(1)));
  }
}

TEST_CASE("operators build the same ops as the named functions, and C++ numbers take the tensor's dtype") {
  Graph g;
  Value x = g.placeholder("x", f64, {3});
  Value y = (2.0 * x + 1.0) / (x - 4.0) - (-x) * x;
  CHECK(y.dtype() == f64);
  Tensor tx = Tensor::from<double>({0.5, 1.5, 2.5}, {3});
  Tensor got = testing::run1(g, y, {{x, tx}});
  for (int i = 0; i < 3; ++i) {
    const double v = tx.at(i);
    CHECK(got.at(i) == doctest::Approx((2 * v + 1) / (v - 4) - (-v) * v).epsilon(1e-14));
  }
  Value z = 1.0 - x / 2.0;
  CHECK(testing::run1(g, z, {{x, tx}}).at(2) == doctest::Approx(1 - 1.25));
}

TEST_CASE("a broadcast mismatch names the op, both types, the node and this file's line") {
  Graph g;
  Value a = g.placeholder("a", f32, {32, 10});
  Value b = g.placeholder("b", f32, {784});
  {
    auto scope = g.scope("mlp");
    const int line = __LINE__ + 2;
    try {
      (void)(a + b);
      FAIL("expected fovea::Error");
    } catch (const Error& e) {
      const std::string what = e.what();
      CHECK(e.op() == "add");
      CHECK(e.node() == "mlp/add");
      CHECK(what.find("f32[32,10]") != std::string::npos);
      CHECK(what.find("f32[784]") != std::string::npos);
      CHECK(what.find("dim -1: 10 vs 784") != std::string::npos);
      CHECK(what.find(std::string("elementwise_test.cpp:") + std::to_string(line)) != std::string::npos);
    }
  }
}

TEST_CASE("mixing dtypes is a build-time error that suggests cast") {
  Graph g;
  Value a = g.placeholder("a", f32, {3});
  Value b = g.placeholder("b", f64, {3});
  CHECK_THROWS_WITH_AS(mul(a, b), doctest::Contains("use cast()"), Error);
}

TEST_CASE("softplus is exact where ln(1 + eˣ) would overflow or round to 0, in f32 and f64") {
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph g;
    Value x = g.placeholder("x", dtype, {7});
    const std::vector<double> xs = {-1000, -30, -1, 0, 1, 30, 1000};
    Tensor input = Tensor::empty(dtype, {7});
    visit_dtype(dtype, [&](auto zero) {
      for (std::size_t i = 0; i < xs.size(); ++i) input.data<decltype(zero)>()[i] = static_cast<decltype(zero)>(xs[i]);
    });
    const Tensor y = testing::run1(g, softplus(x), {{x, input}});
    CHECK(y.at(0) == 0.0);  // e^-1000 underflows; the result is 0, not NaN
    CHECK(y.at(1) > 0.0);   // e^-30 ≈ 9.4e-14 survives log1p
    CHECK(y.at(3) == doctest::Approx(std::log(2.0)));
    CHECK(y.at(5) == 30.0);    // x > 20: y = x
    CHECK(y.at(6) == 1000.0);  // no inf from e^1000
    for (std::size_t i = 0; i < xs.size(); ++i) CHECK(std::isfinite(y.at(static_cast<std::int64_t>(i))));
  }
}

TEST_CASE("softplus inside a fused elementwise chain matches its reference, f32 and f64") {
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph g;
    Value x = g.placeholder("x", dtype, {4, 1, 300});
    Value b = g.placeholder("b", dtype, {300});
    Value y = softplus(x * 2.0 + b) - x;
    passes::PassManager pm;
    pm.add("elementwise_fusion",
           [](const Graph& graph, std::span<const ValueRef> roots) { return passes::fuse_elementwise(graph, roots); });
    const passes::OptimizedGraph opt = pm.run(g, {y});
    REQUIRE(testing::count_op(*opt.graph, ops::fused_elementwise) == 1);
    const Tensor xv = random_tensor(dtype, x.shape(), 7, -25, 25), bv = random_tensor(dtype, b.shape(), 8, -5, 5);
    const Tensor got = testing::run1(*opt.graph, opt.value(y), testing::mapped_feeds(opt, {{x, xv}, {b, bv}}));
    const Tensor expected = reference_binary(
        xv, bv, [](double a, double c) { return softplus_reference(a * 2.0 + c) - a; }, dtype);
    check_close(got, expected, testing::rtol_for(dtype), 1e-5);
  }
}

TEST_CASE("softplus passes the f64 finite-difference gradient check (its gradient is sigmoid)") {
  for (const auto& [low, high] : {std::pair{-4.0, 4.0}, std::pair{-30.0, -18.0}, std::pair{18.0, 30.0}})
    testing::gradcheck("softplus [" + std::to_string(low) + ", " + std::to_string(high) + ")",
                       [](Graph&, const std::vector<Value>& x) { return softplus(x[0]); }, {{Shape{3, 4}, low, high}});
}
