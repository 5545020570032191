// reduce_sum, reduce_max, reduce_min, reduce_prod and reduce_mean against a plain reference: walk
// every input element, find the output element its multi-index maps to, and accumulate there.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gradcheck.h"
#include "testing.h"

namespace {

using namespace fovea;
using fovea::testing::check_close;
using fovea::testing::random_tensor;
using fovea::testing::run1;

enum class Kind { sum, max, min, prod };

double start_of(Kind kind) {
  switch (kind) {
    case Kind::sum:
      return 0.0;
    case Kind::max:
      return -std::numeric_limits<double>::infinity();
    case Kind::min:
      return std::numeric_limits<double>::infinity();
    case Kind::prod:
      return 1.0;
  }
  return 0.0;
}

// a combined with v; a NaN, once in a max or a min, stays (v > NaN and v < NaN are false).
double combine(Kind kind, double a, double v) {
  switch (kind) {
    case Kind::sum:
      return a + v;
    case Kind::max:
      return std::isnan(v) || v > a ? v : a;
    case Kind::min:
      return std::isnan(v) || v < a ? v : a;
    case Kind::prod:
      return a * v;
  }
  return a;
}

// The reference: y[k] = Σ (max, min, Π) of x over the multi-indices that drop to k. `axes` must
// be normalised; empty means every axis. Sums accumulate in double (exact for the small integers
// used here); integer products in uint64_t, wrapping around as the integer type does.
Tensor reference_reduce(const Tensor& x, std::vector<std::int64_t> axes, bool keepdims, Kind kind) {
  const int rank = x.rank();
  if (axes.empty())
    for (int i = 0; i < rank; ++i) axes.push_back(i);
  std::vector<bool> reduced(static_cast<std::size_t>(rank), false);
  for (std::int64_t a : axes) reduced[static_cast<std::size_t>(a)] = true;
  std::vector<std::int64_t> out_dims;  // with keepdims: reduced dims as 1
  for (int i = 0; i < rank; ++i) out_dims.push_back(reduced[i] ? 1 : x.shape()[i]);
  const Shape kept_shape(out_dims);
  const std::vector<std::int64_t> kept_strides = kept_shape.strides();

  const bool wrapping = kind == Kind::prod && is_integer(x.dtype());
  std::vector<double> acc(static_cast<std::size_t>(kept_shape.numel()), start_of(kind));
  std::vector<std::uint64_t> wrapped(acc.size(), 1);
  std::vector<std::int64_t> index(static_cast<std::size_t>(rank), 0);
  for (std::int64_t flat = 0; flat < x.numel(); ++flat) {
    std::int64_t rest = flat, out = 0;
    for (int d = rank - 1; d >= 0; --d) {
      index[d] = rest % x.shape()[d];
      rest /= x.shape()[d];
      if (!reduced[d]) out += index[d] * kept_strides[d];
    }
    const auto o = static_cast<std::size_t>(out);
    acc[o] = combine(kind, acc[o], x.at(flat));
    if (wrapping) wrapped[o] *= static_cast<std::uint64_t>(static_cast<std::int64_t>(x.at(flat)));
  }
  std::vector<std::int64_t> dims;
  for (int i = 0; i < rank; ++i)
    if (!reduced[i] || keepdims) dims.push_back(out_dims[i]);
  Tensor y = Tensor::empty(x.dtype(), Shape(dims));
  visit_dtype(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    auto data = y.data<T>();
    for (std::size_t i = 0; i < data.size(); ++i)
      data[i] = wrapping ? static_cast<T>(wrapped[i]) : static_cast<T>(acc[i]);
  });
  return y;
}

Value build(Kind kind, Value x, std::vector<std::int64_t> axes, bool keepdims) {
  switch (kind) {
    case Kind::sum:
      return reduce_sum(x, std::move(axes), keepdims);
    case Kind::max:
      return reduce_max(x, std::move(axes), keepdims);
    case Kind::min:
      return reduce_min(x, std::move(axes), keepdims);
    case Kind::prod:
      return reduce_prod(x, std::move(axes), keepdims);
  }
  return {};
}

// Builds, runs and compares one reduction of a random input of `shape`.
// Floating inputs are uniform in [-spread, spread), or in [1 - spread, 1 + spread) for products
// (long products of numbers near 1 neither vanish nor overflow); integers in [-100, 100).
void check_reduction(Kind kind, DType dtype, const Shape& shape, const std::vector<std::int64_t>& axes, bool keepdims,
                     std::uint64_t seed, double spread = 1.0) {
  CAPTURE(dtype_name(dtype));
  CAPTURE(shape.to_string());
  CAPTURE(keepdims);
  const bool integer = is_integer(dtype);
  const double center = kind == Kind::prod && !integer ? 1.0 : 0.0;
  const Tensor input = integer ? random_tensor(dtype, shape, seed, -100, 100)
                               : random_tensor(dtype, shape, seed, center - spread, center + spread);
  Graph g;
  Value x = g.placeholder("x", dtype, shape);
  Value y = build(kind, x, axes, keepdims);
  std::vector<std::int64_t> normalised;
  for (std::int64_t a : axes) normalised.push_back(a < 0 ? a + shape.rank() : a);
  const Tensor want = reference_reduce(input, normalised, keepdims, kind);
  const double rtol = dtype == f32 ? 1e-5 : 1e-12;
  check_close(run1(g, y, {{x, input}}), want, rtol, dtype == f32 ? 1e-5 : 1e-12);
}

// Every subset of {0, 1, 2}; the empty subset stands for "no axes given", which means all.
std::vector<std::vector<std::int64_t>> axis_subsets_of_rank3() {
  std::vector<std::vector<std::int64_t>> subsets;
  for (int mask = 0; mask < 8; ++mask) {
    std::vector<std::int64_t> s;
    for (int a = 0; a < 3; ++a)
      if (mask & (1 << a)) s.push_back(a);
    subsets.push_back(s);
  }
  return subsets;
}

// The message of the fovea::Error that `f` throws ("" if none).
template <typename F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool mentions(const std::string& message, const std::string& what) { return message.find(what) != std::string::npos; }

const DType kAllDtypes[] = {f32, f64, i32, i64};
const Kind kAllKinds[] = {Kind::sum, Kind::max, Kind::min, Kind::prod};

}  // namespace

TEST_CASE("reduce_sum over every axis subset of a rank-3 tensor matches the reference, with and without keepdims") {
  std::uint64_t seed = 1;
  for (DType dtype : kAllDtypes)
    for (const auto& axes : axis_subsets_of_rank3())
      for (bool keepdims : {false, true}) {
        CAPTURE(axes.size());
        check_reduction(Kind::sum, dtype, {3, 4, 5}, axes, keepdims, seed++);
      }
}

TEST_CASE("reduce_max over every axis subset of a rank-3 tensor matches the reference, with and without keepdims") {
  std::uint64_t seed = 100;
  for (DType dtype : kAllDtypes)
    for (const auto& axes : axis_subsets_of_rank3())
      for (bool keepdims : {false, true}) {
        CAPTURE(axes.size());
        check_reduction(Kind::max, dtype, {3, 4, 5}, axes, keepdims, seed++);
      }
}

TEST_CASE("reduce_min over every axis subset of a rank-3 tensor matches the reference, with and without keepdims") {
  std::uint64_t seed = 1100;
  for (DType dtype : kAllDtypes)
    for (const auto& axes : axis_subsets_of_rank3())
      for (bool keepdims : {false, true}) {
        CAPTURE(axes.size());
        check_reduction(Kind::min, dtype, {3, 4, 5}, axes, keepdims, seed++);
      }
}

TEST_CASE("reduce_prod over every axis subset of a rank-3 tensor matches the reference, integers wrapping around") {
  std::uint64_t seed = 1200;
  for (DType dtype : kAllDtypes)
    for (const auto& axes : axis_subsets_of_rank3())
      for (bool keepdims : {false, true}) {
        CAPTURE(axes.size());
        check_reduction(Kind::prod, dtype, {3, 4, 5}, axes, keepdims, seed++);
      }
}

TEST_CASE("reductions over shapes with size-1 dims match the reference") {
  std::uint64_t seed = 200;
  for (DType dtype : {f32, i64})
    for (Kind kind : kAllKinds)
      for (const Shape& shape : {Shape{1, 4, 1}, Shape{3, 1, 5}, Shape{1, 1, 1}})
        for (const auto& axes : axis_subsets_of_rank3()) check_reduction(kind, dtype, shape, axes, false, seed++);
}

TEST_CASE("reductions over non-adjacent axes of a rank-4 tensor match the reference") {
  std::uint64_t seed = 300;
  const std::vector<std::vector<std::int64_t>> cases{{0, 2}, {1, 3}, {0, 3}, {0, 1, 3}, {0, 2, 3}};
  for (DType dtype : {f32, f64, i32})
    for (Kind kind : kAllKinds)
      for (const auto& axes : cases)
        for (bool keepdims : {false, true}) check_reduction(kind, dtype, {3, 4, 2, 5}, axes, keepdims, seed++);
}

TEST_CASE("reductions with negative axes equal those with the matching positive axes") {
  Graph g;
  Value x = g.placeholder("x", f32, {2, 3, 4});
  Value a = reduce_sum(x, {-1, 0});
  Value b = reduce_sum(x, {0, 2});
  CHECK(a.node().attrs.get_ints("axes") == std::vector<std::int64_t>{0, 2});
  CHECK(b.node().attrs.get_ints("axes") == std::vector<std::int64_t>{0, 2});
  CHECK(a.shape() == Shape{3});
  check_reduction(Kind::sum, f64, {2, 3, 4}, {-1}, false, 400);
  check_reduction(Kind::max, f32, {2, 3, 4}, {-3, -2}, true, 401);
  check_reduction(Kind::max, i32, {2, 3, 4}, {-2}, false, 402);
  check_reduction(Kind::min, f64, {2, 3, 4}, {-1, -3}, true, 403);
  check_reduction(Kind::prod, i64, {2, 3, 4}, {-2}, false, 404);
  check_reduction(Kind::prod, f32, {2, 3, 4}, {-1}, true, 405);
  CHECK(reduce_min(x, {-1, 0}).node().attrs.get_ints("axes") == std::vector<std::int64_t>{0, 2});
  CHECK(reduce_prod(x, {-2}).node().attrs.get_ints("axes") == std::vector<std::int64_t>{1});
}

TEST_CASE("reductions with no axes given reduce every axis to a scalar") {
  Graph g;
  Value x = g.placeholder("x", f32, {2, 3});
  CHECK(reduce_sum(x).shape() == Shape{});
  CHECK(reduce_max(x, {}, true).shape() == Shape{1, 1});
  CHECK(reduce_sum(x).node().attrs.get_ints("axes") == std::vector<std::int64_t>{0, 1});
}

TEST_CASE("reductions of a rank-0 tensor return its value") {
  for (Kind kind : kAllKinds) {
    Graph g;
    Value x = g.placeholder("x", f64, {});
    const Tensor input = Tensor::scalar(2.5);
    check_close(run1(g, build(kind, x, {}, false), {{x, input}}), input);
  }
}

TEST_CASE("reduce_sum over a zero-size axis gives zeros") {
  for (DType dtype : kAllDtypes) {
    Graph g;
    Value x = g.placeholder("x", dtype, {3, 0, 2});
    const Tensor empty = Tensor::zeros(dtype, {3, 0, 2});
    check_close(run1(g, reduce_sum(x, {1}), {{x, empty}}), Tensor::zeros(dtype, {3, 2}));
    check_close(run1(g, reduce_sum(x, {}, true), {{x, empty}}), Tensor::zeros(dtype, {1, 1, 1}));
    // Keeping the zero-size axis gives an empty output.
    check_close(run1(g, reduce_sum(x, {2}), {{x, empty}}), Tensor::zeros(dtype, {3, 0}));
  }
}

TEST_CASE("reduce_max over a zero-size axis is a build-time error naming the axis") {
  Graph g;
  Value x = g.placeholder("x", f32, {3, 0, 2});
  CHECK_THROWS_AS(reduce_max(x, {1}), Error);
  const std::string message = error_message([&] { reduce_max(x, {1}); });
  CHECK(mentions(message, "reduce_max"));
  CHECK(mentions(message, "empty"));
  CHECK(mentions(message, "axis 1"));
  CHECK(mentions(message, "reduce_test.cpp"));
  // With no output elements there is no empty maximum to take.
  Value kept = g.placeholder("kept", f32, {0, 4});
  check_close(run1(g, reduce_max(kept, {1}), {{kept, Tensor::zeros(f32, {0, 4})}}), Tensor::zeros(f32, {0}));
}

TEST_CASE("reduce_prod over a zero-size axis gives ones") {
  for (DType dtype : kAllDtypes) {
    Graph g;
    Value x = g.placeholder("x", dtype, {3, 0, 2});
    const Tensor empty = Tensor::zeros(dtype, {3, 0, 2});
    check_close(run1(g, reduce_prod(x, {1}), {{x, empty}}), Tensor::full(dtype, {3, 2}, 1));
    check_close(run1(g, reduce_prod(x, {}, true), {{x, empty}}), Tensor::full(dtype, {1, 1, 1}, 1));
    check_close(run1(g, reduce_prod(x, {2}), {{x, empty}}), Tensor::zeros(dtype, {3, 0}));
  }
}

// The minimum of no elements is undefined, as the maximum is (and not +inf): the two behave alike.
TEST_CASE("reduce_min over a zero-size axis is a build-time error naming the axis, as reduce_max's") {
  Graph g;
  Value x = g.placeholder("x", f32, {3, 0, 2});
  CHECK_THROWS_AS(reduce_min(x, {1}), Error);
  const std::string message = error_message([&] { reduce_min(x, {1}); });
  CHECK(mentions(message, "reduce_min"));
  CHECK(mentions(message, "minimum of an empty set"));
  CHECK(mentions(message, "axis 1"));
  CHECK(mentions(message, "reduce_test.cpp"));
  Value kept = g.placeholder("kept", f32, {0, 4});
  check_close(run1(g, reduce_min(kept, {1}), {{kept, Tensor::zeros(f32, {0, 4})}}), Tensor::zeros(f32, {0}));
}

TEST_CASE("reduce_min propagates NaN in row, column and general layouts") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (DType dtype : {f32, f64}) {
    Tensor input = random_tensor(dtype, {4, 6, 5}, 510);
    visit_dtype(dtype, [&](auto zero) {
      using T = decltype(zero);
      if constexpr (std::is_floating_point_v<T>) input.data<T>()[2 * 30 + 4 * 5 + 1] = static_cast<T>(nan);
    });
    for (const std::vector<std::int64_t>& axes : {std::vector<std::int64_t>{2}, {0}, {1}, {0, 2}, {}}) {
      Graph g;
      Value x = g.placeholder("x", dtype, {4, 6, 5});
      const Tensor got = run1(g, reduce_min(x, axes), {{x, input}});
      check_close(got, reference_reduce(input, axes, false, Kind::min));
      bool any_nan = false;
      for (std::int64_t i = 0; i < got.numel(); ++i) any_nan |= std::isnan(got.at(i));
      CHECK(any_nan);
    }
  }
}

TEST_CASE("reduce_min of integers reaches the lowest value, reduce_max the highest") {
  Graph g;
  Value x = g.placeholder("x", i64, {2, 2});
  const std::int64_t low = std::numeric_limits<std::int64_t>::lowest(), high = std::numeric_limits<std::int64_t>::max();
  const Tensor input = Tensor::from<std::int64_t>({low, 3, high, -3}, {2, 2});
  const std::vector<Tensor> got = fovea::testing::run(g, {reduce_min(x, {1}), reduce_max(x, {1})}, {{x, input}});
  CHECK(got[0].data<std::int64_t>()[0] == low);
  CHECK(got[0].data<std::int64_t>()[1] == -3);
  CHECK(got[1].data<std::int64_t>()[0] == 3);
  CHECK(got[1].data<std::int64_t>()[1] == high);
}

TEST_CASE("reduce_max propagates NaN in row, column and general layouts") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (DType dtype : {f32, f64}) {
    Tensor input = random_tensor(dtype, {4, 6, 5}, 500);
    visit_dtype(dtype, [&](auto zero) {
      using T = decltype(zero);
      if constexpr (std::is_floating_point_v<T>) input.data<T>()[1 * 30 + 2 * 5 + 3] = static_cast<T>(nan);
    });
    for (const std::vector<std::int64_t>& axes : {std::vector<std::int64_t>{2}, {0}, {1}, {0, 2}, {}}) {
      Graph g;
      Value x = g.placeholder("x", dtype, {4, 6, 5});
      const Tensor got = run1(g, reduce_max(x, axes), {{x, input}});
      check_close(got, reference_reduce(input, axes, false, Kind::max));
      bool any_nan = false;
      for (std::int64_t i = 0; i < got.numel(); ++i) any_nan |= std::isnan(got.at(i));
      CHECK(any_nan);
    }
  }
}

TEST_CASE("reduce_max of an all -inf row is -inf") {
  Graph g;
  Value x = g.placeholder("x", f32, {2, 3});
  const float inf = std::numeric_limits<float>::infinity();
  const Tensor got = run1(g, reduce_max(x, {1}), {{x, Tensor::from<float>({-inf, -inf, -inf, 1, -inf, 2}, {2, 3})}});
  CHECK(got.at(0) == -inf);
  CHECK(got.at(1) == 2.0);
}

TEST_CASE("reductions of large tensors match the reference in every layout") {
  // Big enough for the parallel tiles and for splitting one long reduction into blocks.
  std::uint64_t seed = 600;
  struct Case {
    Shape shape;
    std::vector<std::int64_t> axes;
  };
  const std::vector<Case> cases{
      {{3, 300000}, {1}},       // long rows
      {{300000, 3}, {0}},       // tall columns
      {{700, 1500}, {0}},       // column sums over wide rows
      {{1500, 700}, {1}},       // many row sums
      {{4, 500, 300}, {1}},     // a middle axis
      {{1 << 20}, {}},          // one long sum
      {{40, 50, 300}, {0, 2}},  // the general path
  };
  for (const Case& c : cases)
    for (Kind kind : kAllKinds)
      check_reduction(kind, f32, c.shape, c.axes, false, seed++, kind == Kind::prod ? 1e-4 : 1);
  check_reduction(Kind::sum, f64, {1 << 20}, {}, false, seed++);
  check_reduction(Kind::sum, i32, {1000, 700}, {0}, false, seed++);
}

TEST_CASE("reduce_sum accumulates f32 in double precision") {
  // 2^24 + 1000·1: a float accumulator stays at 2^24 (2^24 + 1 rounds back down); a double
  // one reaches 16778216, which a float represents exactly.
  std::vector<float> values(1001, 1.0f);
  values[0] = 16777216.0f;
  for (const Shape& shape : {Shape{1001}, Shape{1001, 1}}) {
    Graph g;
    Value x = g.placeholder("x", f32, shape);
    const Tensor got = run1(g, reduce_sum(x, {0}), {{x, Tensor::from(values, shape)}});
    CHECK(got.at(0) == 16778216.0);
  }
}

TEST_CASE("reduce_sum of integers wraps around like the integer type") {
  Graph g;
  Value x = g.placeholder("x", i32, {3});
  const std::int32_t big = std::numeric_limits<std::int32_t>::max();
  const Tensor got = run1(g, reduce_sum(x), {{x, Tensor::from<std::int32_t>({big, 1, 1}, {3})}});
  CHECK(got.at(0) == static_cast<double>(std::numeric_limits<std::int32_t>::min() + 1));
}

TEST_CASE("reduce_mean is reduce_sum scaled by one over the count") {
  std::uint64_t seed = 700;
  for (DType dtype : {f32, f64})
    for (const auto& axes : axis_subsets_of_rank3())
      for (bool keepdims : {false, true}) {
        const Tensor input = random_tensor(dtype, {3, 4, 5}, seed++);
        Graph g;
        Value x = g.placeholder("x", dtype, {3, 4, 5});
        const Tensor sum = reference_reduce(input, axes, keepdims, Kind::sum);
        const double count = static_cast<double>(input.numel() / std::max<std::int64_t>(sum.numel(), 1));
        Tensor want = sum.clone();
        visit_dtype(dtype, [&](auto zero) {
          using T = decltype(zero);
          for (T& v : want.data<T>()) v = static_cast<T>(v / count);
        });
        check_close(run1(g, reduce_mean(x, axes, keepdims), {{x, input}}), want, dtype == f32 ? 1e-5 : 1e-12);
      }
}

TEST_CASE("reduce_mean is a composition, not a primitive") {
  Graph g;
  Value x = g.placeholder("x", f32, {4, 5});
  Value y = reduce_mean(x, {-1});
  CHECK(y.node().op_name() == "mul");
  bool has_sum = false;
  for (std::uint32_t i = 0; i < g.size(); ++i) has_sum |= g.node(i).op_name() == "reduce_sum";
  CHECK(has_sum);
  CHECK(y.shape() == Shape{4});
}

TEST_CASE("reduce_mean over a zero-size axis is NaN") {
  Graph g;
  Value x = g.placeholder("x", f64, {2, 0});
  const Tensor got = run1(g, reduce_mean(x, {1}), {{x, Tensor::zeros(f64, {2, 0})}});
  REQUIRE(got.numel() == 2);
  CHECK(std::isnan(got.at(0)));
}

TEST_CASE("reduce_sum rejects an out-of-range axis with the op name and the user's line") {
  Graph g;
  Value x = g.placeholder("x", f32, {2, 3});
  CHECK_THROWS_AS(reduce_sum(x, {2}), Error);
  CHECK_THROWS_AS(reduce_sum(x, {-3}), Error);
  const std::string message = error_message([&] { reduce_sum(x, {5}); });
  CHECK(mentions(message, "reduce_sum"));
  CHECK(mentions(message, "out of range"));
  CHECK(mentions(message, "reduce_test.cpp"));
}

TEST_CASE("reduce_max rejects a duplicate axis, also when spelled negatively") {
  Graph g;
  Value x = g.placeholder("x", f32, {2, 3});
  CHECK_THROWS_AS(reduce_max(x, {1, 1}), Error);
  const std::string message = error_message([&] { reduce_max(x, {1, -1}); });
  CHECK(mentions(message, "reduce_max"));
  CHECK(mentions(message, "twice"));
  CHECK(mentions(message, "reduce_test.cpp"));
}

TEST_CASE("reduce_mean rejects integer inputs and bad axes under its own name") {
  Graph g;
  Value n = g.placeholder("n", i32, {2, 3});
  CHECK_THROWS_AS(reduce_mean(n), Error);
  const std::string message = error_message([&] { reduce_mean(n); });
  CHECK(mentions(message, "reduce_mean"));
  CHECK(mentions(message, "i32[2,3]"));
  CHECK(mentions(message, "reduce_test.cpp"));
  Value x = g.placeholder("x", f32, {2, 3});
  const std::string axis_message = error_message([&] { reduce_mean(x, {4}); });
  CHECK(mentions(axis_message, "reduce_mean"));
  CHECK(mentions(axis_message, "reduce_test.cpp"));
}

TEST_CASE("reductions reject bool inputs") {
  Graph g;
  Value b = g.placeholder("b", boolean, {4});
  CHECK_THROWS_AS(reduce_sum(b), Error);
  const std::string message = error_message([&] { reduce_max(b); });
  CHECK(mentions(message, "reduce_max"));
  CHECK(mentions(message, "reduce_test.cpp"));
}

TEST_CASE("reduce_sum, reduce_max and reduce_mean pass the gradient check over several axis sets") {
  using fovea::testing::gradcheck;
  const std::vector<std::vector<std::int64_t>> axis_sets{{}, {0}, {-1}, {0, 2}, {1}};
  for (const auto& axes : axis_sets)
    for (bool keepdims : {false, true}) {
      CAPTURE(axes.size());
      CAPTURE(keepdims);
      gradcheck("reduce_sum", [&](Graph&, const std::vector<Value>& x) { return reduce_sum(x[0], axes, keepdims); },
                {{{2, 3, 4}}});
      // Random inputs have no ties, so the maximum is differentiable.
      gradcheck("reduce_max", [&](Graph&, const std::vector<Value>& x) { return reduce_max(x[0], axes, keepdims); },
                {{{2, 3, 4}}});
      gradcheck("reduce_mean", [&](Graph&, const std::vector<Value>& x) { return reduce_mean(x[0], axes, keepdims); },
                {{{2, 3, 4}}});
    }
}

TEST_CASE("reduce_min and reduce_prod pass the gradient check over several axis sets") {
  using fovea::testing::gradcheck;
  const std::vector<std::vector<std::int64_t>> axis_sets{{}, {0}, {-1}, {0, 2}, {1}};
  for (const auto& axes : axis_sets)
    for (bool keepdims : {false, true}) {
      CAPTURE(axes.size());
      CAPTURE(keepdims);
      gradcheck("reduce_min", [&](Graph&, const std::vector<Value>& x) { return reduce_min(x[0], axes, keepdims); },
                {{{2, 3, 4}}});
      gradcheck("reduce_prod", [&](Graph&, const std::vector<Value>& x) { return reduce_prod(x[0], axes, keepdims); },
                {{{2, 3, 4}, 0.5, 1.5}});
    }
}

// Rows with no zero, one zero and two zeros: a product is multilinear, so the central difference
// is exact at 0 too, and g·y/x would give NaN there.
TEST_CASE("the gradient of reduce_prod is exact where x has zeros") {
  using fovea::testing::gradcheck;
  const Tensor x = Tensor::from<double>({2, 0, 3, 0.5, 0, 0, 5, -1, 1.5, -2, 4, 0.25}, {3, 4});
  for (const std::vector<std::int64_t>& axes : {std::vector<std::int64_t>{1}, {0}, {}}) {
    CAPTURE(axes.size());
    gradcheck("reduce_prod with zeros",
              [&](Graph&, const std::vector<Value>& in) { return reduce_prod(in[0], axes, true); },
              {{{3, 4}, -1, 1, f64, x}});
  }
  Graph g;
  Value v = g.placeholder("x", f64, {3, 3});
  const Tensor got = run1(g, grad(reduce_sum(reduce_prod(v, {1})), {v})[0],
                          {{v, Tensor::from<double>({2, 0, 3, 0, 0, 5, 1, 2, 4}, {3, 3})}});
  check_close(got, Tensor::from<double>({0, 6, 0, 0, 0, 0, 8, 4, 2}, {3, 3}));
}

TEST_CASE("the gradient of reduce_min is shared evenly among tied minima") {
  Graph g;
  Value x = g.placeholder("x", f64, {2, 3});
  const Tensor got =
      run1(g, grad(reduce_sum(reduce_min(x, {1})), {x})[0], {{x, Tensor::from<double>({1, 3, 1, 5, 2, 4}, {2, 3})}});
  check_close(got, Tensor::from<double>({0.5, 0, 0.5, 0, 1, 0}, {2, 3}));
}

TEST_CASE("the gradient of reduce_max is shared evenly among tied maxima") {
  Graph g;
  Value x = g.placeholder("x", f64, {2, 3});
  Value loss = reduce_sum(reduce_max(x, {1}));
  const std::vector<Value> grads = grad(loss, {x});
  const Tensor got = run1(g, grads[0], {{x, Tensor::from<double>({1, 3, 3, 5, 2, 4}, {2, 3})}});
  check_close(got, Tensor::from<double>({0, 0.5, 0.5, 1, 0, 0}, {2, 3}));
}
