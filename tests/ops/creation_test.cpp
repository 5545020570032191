#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <fovea/core/philox.h>

#include "testing.h"

using namespace fovea;
using testing::check_close;
using testing::random_tensor;

namespace {

constexpr DType all_dtypes[] = {f32, f64, i32, i64, boolean};

template <typename F>
std::string error_of(F&& build) {
  try {
    build();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The cast rules for in-range values: to bool is x != 0, float to int truncates, the rest is
// C++'s conversion.
Tensor reference_cast(const Tensor& x, DType to) {
  Tensor out = Tensor::empty(to, x.shape());
  visit_dtype(x.dtype(), [&](auto from_zero) {
    using From = decltype(from_zero);
    visit_dtype(to, [&](auto to_zero) {
      using To = decltype(to_zero);
      auto src = x.data<From>();
      auto dst = out.data<To>();
      for (std::int64_t i = 0; i < x.numel(); ++i) {
        if constexpr (std::is_same_v<To, std::uint8_t>)
          dst[i] = src[i] != 0 ? 1 : 0;
        else if constexpr (std::is_floating_point_v<From> && std::is_integral_v<To>)
          dst[i] = static_cast<To>(std::trunc(src[i]));
        else
          dst[i] = static_cast<To>(src[i]);
      }
    });
  });
  return out;
}

Tensor run_cast(const Tensor& x, DType to) {
  Graph g;
  auto xv = g.placeholder("x", x.dtype(), x.shape());
  return testing::run1(g, cast(xv, to), {{xv, x}});
}

// The scoped-name hash the random ops derive their stream from: FNV-1a, then philox::mix.
std::uint64_t expected_stream(const std::string& name) {
  std::uint64_t h = 1469598103934665603ull;
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return philox::mix(h);
}

// low + (high - low)·U(seed, stream, i) for every element, one at a time.
Tensor reference_uniform(DType dtype, const Shape& shape, std::uint64_t seed, std::uint64_t stream, double low,
                         double high) {
  Tensor out = Tensor::empty(dtype, shape);
  visit_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    auto y = out.data<T>();
    for (std::int64_t i = 0; i < out.numel(); ++i)
      y[i] = static_cast<T>(low + (high - low) * philox::uniform(seed, stream, static_cast<std::uint64_t>(i)));
  });
  return out;
}

Tensor reference_normal(DType dtype, const Shape& shape, std::uint64_t seed, std::uint64_t stream, double mean,
                        double stddev) {
  Tensor out = Tensor::empty(dtype, shape);
  visit_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    auto y = out.data<T>();
    for (std::int64_t i = 0; i < out.numel(); ++i)
      y[i] = static_cast<T>(mean + stddev * philox::normal(seed, stream, static_cast<std::uint64_t>(i)));
  });
  return out;
}

std::uint64_t seed_of(Value v) { return static_cast<std::uint64_t>(v.node().attrs.get_int("seed")); }
std::uint64_t stream_of(Value v) { return static_cast<std::uint64_t>(v.node().attrs.get_int("stream")); }

// The library is built for the host CPU (-march=native) and may fuse `low + range·u` into one
// multiply-add, the tests are not: the two may differ in the last bit of a double, which can
// flip the last bit of a float. Anything beyond that would be a different draw.
void check_same_draws(const Tensor& actual, const Tensor& expected) {
  const double tolerance = actual.dtype() == f32 ? 2e-7 : 1e-15;
  check_close(actual, expected, tolerance, tolerance);
}

bool same_values(const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel()) return false;
  for (std::int64_t i = 0; i < a.numel(); ++i)
    if (a.at(i) != b.at(i)) return false;
  return true;
}

}  // namespace

// --- cast ------------------------------------------------------------------------------------

TEST_CASE("cast between every pair of dtypes matches the reference conversion") {
  std::uint64_t seed = 1;
  for (DType from : all_dtypes) {
    for (DType to : all_dtypes) {
      for (const Shape& shape : {Shape{3, 5}, Shape{}, Shape{2, 0, 3}}) {
        CAPTURE(dtype_name(from));
        CAPTURE(dtype_name(to));
        CAPTURE(shape.to_string());
        const Tensor x = random_tensor(from, shape, ++seed, -50, 50);
        check_close(run_cast(x, to), reference_cast(x, to), 0, 0);
      }
    }
  }
}

TEST_CASE("cast from float to int truncates toward zero, saturates, and maps NaN to 0") {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor x = Tensor::from<double>({2.7, -2.7, 0.5, -0.5, 3e9, -3e9, 1e30, -1e30, inf, -inf, nan}, {11});
  check_close(run_cast(x, i32),
              Tensor::from<std::int32_t>({2, -2, 0, 0, 2147483647, -2147483647 - 1, 2147483647, -2147483647 - 1,
                                          2147483647, -2147483647 - 1, 0},
                                         {11}),
              0, 0);
  const Tensor i64_out = run_cast(x.to(f32), i64);
  auto v = i64_out.data<std::int64_t>();
  CHECK(v[0] == 2);
  CHECK(v[1] == -2);
  CHECK(v[4] == 3000000000);
  CHECK(v[6] == std::numeric_limits<std::int64_t>::max());
  CHECK(v[7] == std::numeric_limits<std::int64_t>::min());
  CHECK(v[8] == std::numeric_limits<std::int64_t>::max());
  CHECK(v[9] == std::numeric_limits<std::int64_t>::min());
  CHECK(v[10] == 0);
}

TEST_CASE("cast to bool is x != 0, so NaN is true and -0 is false") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  check_close(run_cast(Tensor::from<float>({0.0f, -0.0f, 0.25f, -3.0f, static_cast<float>(nan)}, {5}), boolean),
              Tensor::from<std::uint8_t>({0, 0, 1, 1, 1}, {5}), 0, 0);
  check_close(run_cast(Tensor::from<std::int64_t>({0, 5, -1}, {3}), boolean),
              Tensor::from<std::uint8_t>({0, 1, 1}, {3}), 0, 0);
}

TEST_CASE("cast from i64 to i32 wraps modulo 2^32 and f64 beyond f32's range becomes infinity") {
  check_close(run_cast(Tensor::from<std::int64_t>({(std::int64_t{1} << 32) + 5, std::int64_t{1} << 31, -1}, {3}), i32),
              Tensor::from<std::int32_t>({5, -2147483647 - 1, -1}, {3}), 0, 0);
  const Tensor big = run_cast(Tensor::from<double>({1e39, -1e39, 0.1}, {3}), f32);
  CHECK(std::isinf(big.at(0)));
  CHECK(big.at(0) > 0);
  CHECK(std::isinf(big.at(1)));
  CHECK(big.at(2) == static_cast<double>(0.1f));
}

TEST_CASE("cast to the input's own dtype returns the input without adding a node") {
  Graph g;
  auto x = g.placeholder("x", f32, {2});
  const std::size_t before = g.size();
  CHECK(cast(x, f32) == x);
  CHECK(g.size() == before);
  auto y = cast(x, i64);
  CHECK(y.node().op == &ops::cast);
  CHECK(y.node().attrs.get_dtype("dtype") == i64);
  CHECK(y.type().to_string() == "i64[2]");
}

// --- fill ------------------------------------------------------------------------------------

TEST_CASE("fill writes its value everywhere in every dtype and shape") {
  for (DType dtype : all_dtypes) {
    for (const Shape& shape : {Shape{}, Shape{7}, Shape{3, 0}, Shape{200, 300}}) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(shape.to_string());
      Graph g;
      // A number each dtype holds exactly (see the next test for the others).
      const double value = dtype == boolean ? 1.0 : (is_floating(dtype) ? 2.5 : -3.0);
      auto y = fill(g, shape, value, dtype);
      REQUIRE(y.type() == (TensorType{dtype, shape}));
      check_close(testing::run1(g, y), Tensor::full(dtype, shape, value), 0, 0);
    }
  }
}

TEST_CASE("fill rejects a value its dtype cannot hold exactly, naming the node and the line") {
  // Integers: a fraction would be truncated, 1e20 has no i32, NaN no integer at all; bool is 0 or 1.
  Graph g;
  CHECK_THROWS_WITH_AS(fill(g, {2}, -2.9, i32), doctest::Contains("-2.9 is not an integer"), Error);
  CHECK_THROWS_WITH_AS(fill(g, {2}, 1e20, i32), doctest::Contains("outside the range of i32"), Error);
  CHECK_THROWS_WITH_AS(fill(g, {2}, std::numeric_limits<double>::quiet_NaN(), i64),
                       doctest::Contains("not a finite number"), Error);
  CHECK_THROWS_WITH_AS(fill(g, {2}, 2.0, boolean), doctest::Contains("neither 0 nor 1"), Error);
  CHECK_THROWS_WITH_AS(fill(g, {2}, 0.5, i64), doctest::Contains("creation_test.cpp"), Error);
  // What they hold exactly is fine, and so is any number for a float dtype.
  auto a = fill(g, {2}, -2.0, i32);
  auto b = fill(g, {2}, 2147483647.0, i32);
  auto c = fill(g, {2}, 1e20, f32);
  auto d = fill(g, {2}, 0.0, boolean);
  auto out = testing::run(g, {a, b, c, d});
  CHECK(out[0].at(0) == -2);
  CHECK(out[1].at(1) == 2147483647);
  CHECK(out[2].at(0) == doctest::Approx(1e20).epsilon(1e-7));
  CHECK(out[3].at(1) == 0);
}

TEST_CASE("fill stores no tensor in the graph, unlike a constant") {
  Graph g;
  auto y = zeros(g, {1 << 15, 1 << 15});  // 4 GiB if it were stored
  CHECK(y.node().op == &ops::fill);
  for (const auto& [name, attr] : y.node().attrs.items()) CHECK_FALSE(std::holds_alternative<Tensor>(attr));
  CHECK(y.node().attrs.get_float("value") == 0.0);
}

TEST_CASE("zeros, ones and the _like builders take the shape and dtype they are given or copied") {
  Graph g;
  auto x = g.placeholder("x", i32, {2, 3});
  auto z = zeros(g, {4}, f64);
  auto o = ones(g, {2, 2});
  auto zl = zeros_like(x);
  auto ol = ones_like(x);
  auto fl = full_like(x, 7);
  CHECK(z.type().to_string() == "f64[4]");
  CHECK(o.type().to_string() == "f32[2,2]");
  CHECK(zl.type() == x.type());
  auto out = testing::run(g, {z, o, zl, ol, fl});
  check_close(out[0], Tensor::full(f64, {4}, 0), 0, 0);
  check_close(out[1], Tensor::full(f32, {2, 2}, 1), 0, 0);
  check_close(out[2], Tensor::full(i32, {2, 3}, 0), 0, 0);
  check_close(out[3], Tensor::full(i32, {2, 3}, 1), 0, 0);
  check_close(out[4], Tensor::full(i32, {2, 3}, 7), 0, 0);
}

TEST_CASE("fill rejects a negative dimension when built") {
  Graph g;
  CHECK_THROWS_AS(fill(g, {2, -1}, 1.0), Error);
  const std::string message = error_of([&] { zeros(g, {-3}); });
  CHECK(contains(message, "fill"));
  CHECK(contains(message, "negative"));
  CHECK(contains(message, "creation_test.cpp"));
}

// --- iota ------------------------------------------------------------------------------------

TEST_CASE("iota counts along every axis of rank-1 to rank-3 shapes in every numeric dtype") {
  for (DType dtype : {f32, f64, i32, i64}) {
    for (const Shape& shape : {Shape{5}, Shape{3, 4}, Shape{2, 3, 4}, Shape{2, 0, 3}, Shape{300, 200}}) {
      for (int axis = -shape.rank(); axis < shape.rank(); ++axis) {
        CAPTURE(dtype_name(dtype));
        CAPTURE(shape.to_string());
        CAPTURE(axis);
        Graph g;
        auto y = iota(g, shape, axis, dtype);
        CHECK(y.node().attrs.get_int("axis") == (axis < 0 ? axis + shape.rank() : axis));
        // Reference: the axis-th coordinate of every multi-index.
        const int a = axis < 0 ? axis + shape.rank() : axis;
        Tensor want = Tensor::empty(dtype, shape);
        visit_dtype(dtype, [&](auto zero) {
          using T = decltype(zero);
          auto w = want.data<T>();
          for (std::int64_t flat = 0; flat < want.numel(); ++flat) {
            std::int64_t rest = flat, coordinate = 0;
            for (int d = shape.rank() - 1; d >= 0; --d) {
              if (d == a) coordinate = rest % shape[d];
              rest /= shape[d];
            }
            w[flat] = static_cast<T>(coordinate);
          }
        });
        check_close(testing::run1(g, y), want, 0, 0);
      }
    }
  }
}

TEST_CASE("iota defaults to i64, like NumPy's arange") {
  Graph g;
  auto y = iota(g, {4}, 0);
  CHECK(y.dtype() == i64);
  check_close(testing::run1(g, y), Tensor::from<std::int64_t>({0, 1, 2, 3}, {4}), 0, 0);
}

TEST_CASE("iota rejects bool, a rank-0 shape and an axis out of range when built") {
  Graph g;
  CHECK_THROWS_AS(iota(g, {3}, 0, boolean), Error);
  std::string message = error_of([&] { iota(g, {3}, 0, boolean); });
  CHECK(contains(message, "iota"));
  CHECK(contains(message, "bool"));
  CHECK(contains(message, "creation_test.cpp"));
  CHECK(contains(error_of([&] { iota(g, {3, 4}, 2); }), "axis 2 is out of range"));
  CHECK(contains(error_of([&] { iota(g, {3, 4}, -3); }), "axis -3 is out of range"));
  CHECK(contains(error_of([&] { iota(g, {}, 0); }), "rank 0"));
}

// --- random ----------------------------------------------------------------------------------

TEST_CASE("random_uniform equals the serial Philox reference element by element, so no thread count changes it") {
  // [0, 1) in f32 is dropout's draw, which the vector kernels convert with f32 arithmetic of
  // their own (philox_lanes.h): it must give the reference's bits too.
  for (const auto& [from, to] : {std::pair{-2.0, 3.0}, std::pair{0.0, 1.0}})
    for (DType dtype : {f32, f64}) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(from);
      Graph g;
      g.set_seed(1234);
      const Shape shape{3, 40001};  // large enough to split over the pool, not a multiple of 4
      auto y = random_uniform(g, shape, dtype, from, to);
      CHECK(seed_of(y) == 1234);
      CHECK(stream_of(y) == expected_stream("random_uniform"));
      const Tensor out = testing::run1(g, y);
      check_same_draws(out, reference_uniform(dtype, shape, 1234, stream_of(y), from, to));
      double low = 10, high = -10;
      for (std::int64_t i = 0; i < out.numel(); ++i) {
        low = std::min(low, out.at(i));
        high = std::max(high, out.at(i));
      }
      const double width = to - from;
      CHECK(low >= from);
      CHECK(low < from + 0.002 * width);
      CHECK(high <= to);
      CHECK(high > to - 0.002 * width);
    }
}

TEST_CASE("random_normal equals the serial Philox reference element by element") {
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph g;
    g.set_seed(99);
    const Shape shape{5, 7, 1001};
    auto y = random_normal(g, shape, dtype, 1.5, 0.3);
    const Tensor out = testing::run1(g, y);
    check_same_draws(out, reference_normal(dtype, shape, 99, stream_of(y), 1.5, 0.3));
    double sum = 0;
    for (std::int64_t i = 0; i < out.numel(); ++i) sum += out.at(i);
    CHECK(std::abs(sum / static_cast<double>(out.numel()) - 1.5) < 0.02);
  }
}

TEST_CASE("random ops give the same numbers on every run of one executable") {
  Graph g;
  auto u = random_uniform(g, {1000});
  auto n = random_normal(g, {1000}, f64);
  Executable exe = compile(g, {u, n});
  const auto first = exe.run({});
  const auto second = exe.run({});
  CHECK(same_values(first[0], second[0]));
  CHECK(same_values(first[1], second[1]));
}

TEST_CASE("random ops fed a different step draw different numbers, and the same step the same ones") {
  Graph g;
  g.set_seed(5);
  auto step = g.placeholder("step", i64, {});
  auto u = random_uniform(g, {4, 250}, f32, 0.1, 0.7, step);
  auto n = random_normal(g, {4, 250}, f64, 0, 1, step);
  Executable exe = compile(g, {u, n});
  const auto at0 = exe.run({{step, Tensor::scalar<std::int64_t>(0)}});
  const auto at1 = exe.run({{step, Tensor::scalar<std::int64_t>(1)}});
  const auto again0 = exe.run({{step, Tensor::scalar<std::int64_t>(0)}});
  CHECK_FALSE(same_values(at0[0], at1[0]));
  CHECK_FALSE(same_values(at0[1], at1[1]));
  CHECK(same_values(at0[0], again0[0]));
  CHECK(same_values(at0[1], again0[1]));
  // Step s draws from stream + s.
  check_same_draws(at1[0], reference_uniform(f32, {4, 250}, 5, stream_of(u) + 1, 0.1, 0.7));
  check_same_draws(at1[1], reference_normal(f64, {4, 250}, 5, stream_of(n) + 1, 0, 1));
  // An undefined step is step 0.
  Graph h;
  h.set_seed(5);
  check_close(testing::run1(h, random_uniform(h, {4, 250}, f32, 0.1, 0.7)), at0[0], 0, 0);
}

TEST_CASE("random ops with the same scoped name and seed give the same numbers in different graphs") {
  auto build = [](Graph& g, std::uint64_t seed) {
    g.set_seed(seed);
    auto x = g.placeholder("x", f32, {3});  // other nodes do not shift the numbers
    (void)x;
    auto scope = g.scope("dropout");
    auto first = random_uniform(g, {100});
    auto second = random_uniform(g, {100});
    return std::vector<Value>{first, second};
  };
  Graph a, b, c;
  const auto va = build(a, 7);
  const auto vb = build(b, 7);
  const auto vc = build(c, 8);
  CHECK(va[0].name() == "dropout/random_uniform");
  CHECK(va[1].name() == "dropout/random_uniform_1");
  CHECK(stream_of(va[0]) == expected_stream("dropout/random_uniform"));
  CHECK(stream_of(va[1]) == expected_stream("dropout/random_uniform_1"));
  const auto ra = testing::run(a, va), rb = testing::run(b, vb), rc = testing::run(c, vc);
  CHECK(same_values(ra[0], rb[0]));
  CHECK(same_values(ra[1], rb[1]));
  CHECK_FALSE(same_values(ra[0], ra[1]));  // another name, another stream
  CHECK_FALSE(same_values(ra[0], rc[0]));  // another seed
}

TEST_CASE("random ops are impure and keyed on their output dtype") {
  CHECK(ops::random_uniform.impure);
  CHECK(ops::random_normal.impure);
  CHECK(ops::random_uniform.key_on_output);
  CHECK(ops::random_normal.key_on_output);
  Graph g;
  auto step = g.placeholder("step", i64, {});
  auto y = random_normal(g, {2}, f64, 0, 1, step);
  CHECK(kernel_dtype(g, y.node()) == f64);
  CHECK(y.node().attrs.get_float("mean") == 0.0);
  CHECK(y.node().attrs.get_float("stddev") == 1.0);
}

TEST_CASE("random ops of a zero-size or rank-0 shape run") {
  Graph g;
  auto empty = random_uniform(g, {0, 4});
  auto scalar = random_normal(g, {});
  const auto out = testing::run(g, {empty, scalar});
  CHECK(out[0].numel() == 0);
  CHECK(out[1].numel() == 1);
  CHECK(out[1].at(0) == doctest::Approx(philox::normal(0, stream_of(scalar), 0)).epsilon(1e-6));
}

TEST_CASE("random ops reject integer and bool dtypes and a step that is not an i64 scalar when built") {
  Graph g;
  CHECK_THROWS_AS(random_uniform(g, {3}, i32), Error);
  std::string message = error_of([&] { random_normal(g, {3}, i64); });
  CHECK(contains(message, "random_normal"));
  CHECK(contains(message, "f32 or f64"));
  CHECK(contains(message, "creation_test.cpp"));
  CHECK(contains(error_of([&] { random_uniform(g, {3}, boolean); }), "random_uniform"));
  auto step32 = g.placeholder("step32", i32, {});
  auto steps = g.placeholder("steps", i64, {1});
  CHECK(contains(error_of([&] { random_uniform(g, {3}, f32, 0, 1, step32); }), "i64 scalar"));
  CHECK(contains(error_of([&] { random_uniform(g, {3}, f32, 0, 1, steps); }), "i64 scalar"));
  CHECK(contains(error_of([&] { random_uniform(g, {-1}); }), "negative"));
}

// --- gradients -------------------------------------------------------------------------------

TEST_CASE("the gradient of a cast between f32 and f64 is the incoming gradient cast back") {
  Graph g;
  auto x = g.placeholder("x", f32, {2, 3});
  const Tensor weights = random_tensor(f64, {2, 3}, 77);
  const Value dx = vjp({cast(x, f64)}, {g.constant(weights)}, {x})[0];
  CHECK(dx.type() == x.type());
  check_close(testing::run1(g, dx), weights.to(f32), 0, 0);  // it needs no value of x
}

TEST_CASE("no gradient flows through fill, iota or random ops") {
  for (const OpDef* op : {&ops::fill, &ops::iota, &ops::random_uniform, &ops::random_normal})
    CHECK_FALSE(op->differentiable);
  const bool cast_has_rule = ops::cast.vjp != nullptr;
  CHECK(cast_has_rule);
  // The step counter a random node reads is an integer: asking for its gradient is an error.
  Graph g;
  auto step = g.placeholder("step", i64, {});
  auto noise = random_normal(g, {3}, f64, 0, 1, step);
  CHECK_THROWS_AS(vjp({noise}, {zeros_like(noise)}, {step}), Error);
}
