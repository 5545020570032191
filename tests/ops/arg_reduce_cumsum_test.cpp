// argmax, argmin and cumsum against plain references: for each position of the other axes,
// walk the axis in order and keep the best index, or the running sum.
#include <cmath>
#include <cstdint>
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

// x seen as [outer, count, inner] around a normalised axis.
struct Around {
  std::int64_t outer = 1, count = 1, inner = 1;
  Around(const Shape& shape, int axis) {
    for (int d = 0; d < axis; ++d) outer *= shape[d];
    count = shape[axis];
    for (int d = axis + 1; d < shape.rank(); ++d) inner *= shape[d];
  }
};

// Whether v ranks strictly beyond `best`: above for argmax, below for argmin, a NaN beyond every
// number. Two NaNs are the same.
bool beyond(double v, double best, bool min) {
  if (std::isnan(best)) return false;
  if (std::isnan(v)) return true;
  return min ? v < best : v > best;
}
bool same(double v, double best) { return (std::isnan(v) && std::isnan(best)) || v == best; }

Tensor reference_arg(const Tensor& x, int axis, bool keepdims, bool last, bool min) {
  const Around a(x.shape(), axis);
  std::vector<std::int64_t> dims;
  for (int d = 0; d < x.rank(); ++d)
    if (d != axis)
      dims.push_back(x.shape()[d]);
    else if (keepdims)
      dims.push_back(1);
  Tensor y = Tensor::zeros(i64, Shape(dims));
  auto out = y.data<std::int64_t>();
  for (std::int64_t o = 0; o < a.outer; ++o)
    for (std::int64_t i = 0; i < a.inner; ++i) {
      std::int64_t best = 0;
      for (std::int64_t r = 1; r < a.count; ++r) {
        const double v = x.at((o * a.count + r) * a.inner + i), b = x.at((o * a.count + best) * a.inner + i);
        if (beyond(v, b, min) || (last && same(v, b))) best = r;
      }
      out[static_cast<std::size_t>(o * a.inner + i)] = best;
    }
  return y;
}

// Sums in double, exact for the small integers used here.
Tensor reference_cumsum(const Tensor& x, int axis, bool exclusive, bool reverse) {
  const Around a(x.shape(), axis);
  Tensor y = Tensor::zeros(x.dtype(), x.shape());
  for (std::int64_t o = 0; o < a.outer; ++o)
    for (std::int64_t i = 0; i < a.inner; ++i)
      for (std::int64_t r = 0; r < a.count; ++r) {
        double sum = 0;
        for (std::int64_t s = 0; s < a.count; ++s) {
          const bool in = reverse ? (exclusive ? s > r : s >= r) : (exclusive ? s < r : s <= r);
          if (in) sum += x.at((o * a.count + s) * a.inner + i);
        }
        visit_dtype(x.dtype(), [&](auto zero) {
          using T = decltype(zero);
          y.data<T>()[static_cast<std::size_t>((o * a.count + r) * a.inner + i)] = static_cast<T>(sum);
        });
      }
  return y;
}

int normalised(std::int64_t axis, int rank) { return static_cast<int>(axis < 0 ? axis + rank : axis); }

// Random inputs; integral ones (in every dtype) have ties.
Tensor input_for(DType dtype, const Shape& shape, std::uint64_t seed, bool integral) {
  if (integral) return random_tensor(i64, shape, seed, -3, 3).to(dtype);
  return random_tensor(dtype, shape, seed, is_integer(dtype) ? -100 : -1, is_integer(dtype) ? 100 : 1);
}

void check_arg(bool min, DType dtype, const Shape& shape, std::int64_t axis, bool keepdims, bool last,
               const Tensor& input) {
  CAPTURE(min);
  CAPTURE(dtype_name(dtype));
  CAPTURE(shape.to_string());
  CAPTURE(axis);
  CAPTURE(keepdims);
  CAPTURE(last);
  Graph g;
  Value x = g.placeholder("x", dtype, shape);
  Value y = min ? argmin(x, axis, keepdims, last) : argmax(x, axis, keepdims, last);
  CHECK(y.dtype() == i64);
  const Tensor got = run1(g, y, {{x, input}});
  const Tensor want = reference_arg(input, normalised(axis, shape.rank()), keepdims, last, min);
  REQUIRE(got.shape() == want.shape());
  for (std::int64_t i = 0; i < got.numel(); ++i) CHECK(got.at(i) == want.at(i));
}

void check_cumsum(DType dtype, const Shape& shape, std::int64_t axis, bool exclusive, bool reverse,
                  std::uint64_t seed) {
  CAPTURE(dtype_name(dtype));
  CAPTURE(shape.to_string());
  CAPTURE(axis);
  CAPTURE(exclusive);
  CAPTURE(reverse);
  const Tensor input = input_for(dtype, shape, seed, false);
  Graph g;
  Value x = g.placeholder("x", dtype, shape);
  Value y = cumsum(x, axis, exclusive, reverse);
  CHECK(y.type() == x.type());
  const Tensor want = reference_cumsum(input, normalised(axis, shape.rank()), exclusive, reverse);
  check_close(run1(g, y, {{x, input}}), want, dtype == f32 ? 1e-5 : 1e-12, dtype == f32 ? 1e-5 : 1e-12);
}

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

// Shapes with size-1 and zero-size dims; every axis of each, spelled positively and negatively.
const Shape kShapes[] = {{3, 4, 5}, {1, 4, 1}, {3, 1, 5}, {7}, {2, 0, 3}, {0, 4}};

}  // namespace

TEST_CASE("argmax and argmin match the reference over every axis, with and without keepdims and select_last_index") {
  std::uint64_t seed = 1;
  for (bool min : {false, true})
    for (DType dtype : kAllDtypes)
      for (const Shape& shape : kShapes)
        for (int axis = -shape.rank(); axis < shape.rank(); ++axis) {
          // A zero-size axis with outputs has no index (a build-time error, tested below).
          Shape out = shape;
          out[normalised(axis, shape.rank())] = 1;
          if (shape[normalised(axis, shape.rank())] == 0 && out.numel() > 0) continue;
          for (bool integral : {false, true}) {
            const Tensor input = input_for(dtype, shape, seed++, integral);
            for (bool keepdims : {false, true})
              for (bool last : {false, true}) check_arg(min, dtype, shape, axis, keepdims, last, input);
          }
        }
}

TEST_CASE("argmax and argmin pick the first of tied elements, or the last with select_last_index") {
  Graph g;
  Value x = g.placeholder("x", i32, {2, 5});
  const Tensor input = Tensor::from<std::int32_t>({1, 4, 4, 0, 0, 2, 2, 2, 2, 2}, {2, 5});
  const std::vector<Tensor> got = fovea::testing::run(
      g, {argmax(x, 1), argmax(x, 1, false, true), argmin(x, -1), argmin(x, -1, true, true)}, {{x, input}});
  CHECK(got[0].data<std::int64_t>()[0] == 1);
  CHECK(got[0].data<std::int64_t>()[1] == 0);
  CHECK(got[1].data<std::int64_t>()[0] == 2);
  CHECK(got[1].data<std::int64_t>()[1] == 4);
  CHECK(got[2].data<std::int64_t>()[0] == 3);
  CHECK(got[3].shape() == Shape{2, 1});
  CHECK(got[3].data<std::int64_t>()[0] == 4);
  CHECK(got[3].data<std::int64_t>()[1] == 4);
}

// As in NumPy: argmax and argmin both return the first NaN (with select_last_index, the last).
TEST_CASE("a NaN is the maximum for argmax and the minimum for argmin, the first NaN winning") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (DType dtype : {f32, f64}) {
    Graph g;
    Value x = g.placeholder("x", dtype, {3, 5});
    const Tensor input =
        Tensor::from<float>({1, nan, inf, nan, -inf, -inf, 2, inf, -inf, 0, nan, nan, nan, nan, nan}, {3, 5}).to(dtype);
    const std::vector<Tensor> got = fovea::testing::run(
        g, {argmax(x, 1), argmin(x, 1), argmax(x, 1, false, true), argmin(x, 1, false, true)}, {{x, input}});
    const std::vector<std::vector<std::int64_t>> want = {{1, 2, 0}, {1, 0, 0}, {3, 2, 4}, {3, 3, 4}};
    for (std::size_t k = 0; k < want.size(); ++k)
      for (std::size_t i = 0; i < 3; ++i) {
        CAPTURE(k);
        CAPTURE(i);
        CHECK(got[k].data<std::int64_t>()[i] == want[k][i]);
      }
    // Along the other axis too (a column walk).
    check_arg(false, dtype, {3, 5}, 0, false, false, input);
    check_arg(true, dtype, {3, 5}, 0, true, true, input);
  }
}

TEST_CASE("argmax and argmin of long and wide inputs match the reference") {
  check_arg(false, f32, {3, 5000}, 1, false, false, input_for(f32, {3, 5000}, 10, false));
  check_arg(true, f64, {5000, 3}, 0, false, false, input_for(f64, {5000, 3}, 11, false));
  check_arg(false, i64, {7, 300, 9}, 1, true, true, input_for(i64, {7, 300, 9}, 12, true));
  check_arg(true, i32, {4, 3000, 5}, -2, false, false, input_for(i32, {4, 3000, 5}, 13, true));
}

TEST_CASE("argmax over a zero-size axis is a build-time error, and argmin rejects bool and a bad axis") {
  Graph g;
  Value x = g.placeholder("x", f32, {3, 0});
  CHECK_THROWS_AS(argmax(x, 1), Error);
  const std::string message = error_message([&] { argmax(x, 1); });
  CHECK(mentions(message, "argmax"));
  CHECK(mentions(message, "empty set"));
  CHECK(mentions(message, "arg_reduce_cumsum_test.cpp"));
  CHECK(argmin(x, 0).shape() == Shape{0});
  Value b = g.placeholder("b", boolean, {3});
  CHECK(mentions(error_message([&] { argmin(b, 0); }), "argmin"));
  Value y = g.placeholder("y", f32, {3, 4});
  const std::string axis_message = error_message([&] { argmin(y, 2); });
  CHECK(mentions(axis_message, "argmin"));
  CHECK(mentions(axis_message, "out of range"));
  CHECK(argmax(y, -1).node().attrs.get_int("axis") == 1);
}

TEST_CASE("argmax and argmin are not differentiable") {
  CHECK_FALSE(ops::argmax.differentiable);
  CHECK_FALSE(ops::argmin.differentiable);
}

TEST_CASE("cumsum matches the reference over every axis, inclusive and exclusive, forward and reverse") {
  std::uint64_t seed = 100;
  for (DType dtype : kAllDtypes)
    for (const Shape& shape : kShapes)
      for (int axis = -shape.rank(); axis < shape.rank(); ++axis)
        for (bool exclusive : {false, true})
          for (bool reverse : {false, true}) check_cumsum(dtype, shape, axis, exclusive, reverse, seed++);
}

TEST_CASE("cumsum of long and wide inputs matches the reference") {
  check_cumsum(f32, {3, 5000}, 1, false, false, 200);
  check_cumsum(f64, {5000, 3}, 0, true, true, 201);
  check_cumsum(i64, {7, 300, 9}, 1, false, true, 202);
  check_cumsum(i32, {4, 3000, 5}, -2, true, false, 203);
}

TEST_CASE("cumsum of integers wraps around like the integer type, and of f32 accumulates in double") {
  Graph g;
  Value n = g.placeholder("n", i32, {3});
  const std::int32_t big = std::numeric_limits<std::int32_t>::max();
  const Tensor wrapped = run1(g, cumsum(n, 0), {{n, Tensor::from<std::int32_t>({big, 1, 1}, {3})}});
  CHECK(wrapped.at(1) == static_cast<double>(std::numeric_limits<std::int32_t>::min()));
  // 2^24 + 1000·1: a float running sum would stay at 2^24.
  std::vector<float> values(1001, 1.0f);
  values[0] = 16777216.0f;
  Value x = g.placeholder("x", f32, {1001});
  CHECK(run1(g, cumsum(x, 0), {{x, Tensor::from(values, {1001})}}).at(1000) == 16778216.0);
}

TEST_CASE("cumsum rejects bool inputs and an out-of-range axis at the user's line") {
  Graph g;
  Value b = g.placeholder("b", boolean, {3});
  CHECK_THROWS_AS(cumsum(b, 0), Error);
  Value x = g.placeholder("x", f32, {2, 3});
  const std::string message = error_message([&] { cumsum(x, -3); });
  CHECK(mentions(message, "cumsum"));
  CHECK(mentions(message, "out of range"));
  CHECK(mentions(message, "arg_reduce_cumsum_test.cpp"));
  Value s = g.placeholder("s", f32, {});
  CHECK_THROWS_AS(cumsum(s, 0), Error);
}

TEST_CASE("cumsum passes the gradient check along every axis, in all four directions") {
  using fovea::testing::gradcheck;
  for (std::int64_t axis : {0, 1, -1})
    for (bool exclusive : {false, true})
      for (bool reverse : {false, true}) {
        CAPTURE(axis);
        CAPTURE(exclusive);
        CAPTURE(reverse);
        gradcheck("cumsum", [&](Graph&, const std::vector<Value>& x) { return cumsum(x[0], axis, exclusive, reverse); },
                  {{{2, 3, 4}}});
      }
}
