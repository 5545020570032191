// Tests for the shape ops (ops/shape_ops.h) and their CPU kernels. Every op is compared with
// a plain reference that maps each output multi-index to the input multi-index it copies.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "testing.h"

using namespace fovea;
using testing::random_tensor;

namespace {

using Index = std::vector<std::int64_t>;

constexpr DType all_dtypes[] = {f32, f64, i32, i64, boolean};

// Random data with many distinct values (integers in [-1000, 1000); booleans are 0 or 1).
Tensor random_values(DType dtype, const Shape& shape, std::uint64_t seed) {
  return random_tensor(dtype, shape, seed, -1000.0, 1000.0);
}

// The row-major multi-index of flat position `flat` in `shape`, and back.
Index unravel(std::int64_t flat, const Shape& shape) {
  Index index(static_cast<std::size_t>(shape.rank()));
  for (int k = shape.rank() - 1; k >= 0; --k) {
    index[static_cast<std::size_t>(k)] = flat % shape[k];
    flat /= shape[k];
  }
  return index;
}
std::int64_t ravel(const Index& index, const Shape& shape) {
  std::int64_t flat = 0;
  for (int k = 0; k < shape.rank(); ++k) flat = flat * shape[k] + index[static_cast<std::size_t>(k)];
  return flat;
}

// Element `from` of `src` copied to element `to` of `dst`, whatever the dtype.
void copy_element(const Tensor& src, std::int64_t from, Tensor& dst, std::int64_t to) {
  const std::size_t size = dtype_size(src.dtype());
  std::memcpy(dst.raw() + static_cast<std::size_t>(to) * size, src.raw() + static_cast<std::size_t>(from) * size, size);
}

// A tensor of `shape` whose element at every multi-index i is x's element at source(i).
template <typename F>
Tensor gather_reference(const Tensor& x, const Shape& shape, F&& source) {
  Tensor out = Tensor::empty(x.dtype(), shape);
  for (std::int64_t i = 0; i < shape.numel(); ++i) copy_element(x, ravel(source(unravel(i, shape)), x.shape()), out, i);
  return out;
}

// out[i_0..i_{n-1}] = x[j] with j[axes[k]] = i_k.
Tensor reference_permute(const Tensor& x, const Index& axes) {
  std::vector<std::int64_t> dims;
  for (std::int64_t a : axes) dims.push_back(x.shape()[static_cast<int>(a)]);
  return gather_reference(x, Shape(dims), [&](const Index& i) {
    Index j(axes.size());
    for (std::size_t k = 0; k < axes.size(); ++k) j[static_cast<std::size_t>(axes[k])] = i[k];
    return j;
  });
}

// NumPy broadcasting: x's dims aligned right; a size-1 dim of x always reads index 0.
Tensor reference_broadcast(const Tensor& x, const Shape& shape) {
  const int lead = shape.rank() - x.rank();
  return gather_reference(x, shape, [&](const Index& i) {
    Index j(static_cast<std::size_t>(x.rank()));
    for (int k = 0; k < x.rank(); ++k)
      j[static_cast<std::size_t>(k)] = x.shape()[k] == 1 ? 0 : i[static_cast<std::size_t>(lead + k)];
    return j;
  });
}

// The indices Python's range(*slice(start, end, step).indices(n)) visits, for step >= 1.
Index python_slice_indices(std::int64_t start, std::int64_t end, std::int64_t step, std::int64_t n) {
  if (start < 0) start = std::max<std::int64_t>(start + n, 0);
  if (start > n) start = n;
  if (end < 0) end = std::max<std::int64_t>(end + n, 0);
  if (end > n) end = n;
  Index taken;
  for (std::int64_t i = start; i < end; i += step) taken.push_back(i);
  return taken;
}

Tensor reference_slice(const Tensor& x, int axis, std::int64_t start, std::int64_t end, std::int64_t step) {
  const Index taken = python_slice_indices(start, end, step, x.shape()[axis]);
  Shape shape = x.shape();
  shape[axis] = static_cast<std::int64_t>(taken.size());
  return gather_reference(x, shape, [&](Index i) {
    i[static_cast<std::size_t>(axis)] = taken[static_cast<std::size_t>(i[static_cast<std::size_t>(axis)])];
    return i;
  });
}

// Every element of every input placed at its offset along `axis`.
Tensor reference_concat(const std::vector<Tensor>& xs, int axis) {
  Shape shape = xs[0].shape();
  shape[axis] = 0;
  for (const Tensor& x : xs) shape[axis] += x.shape()[axis];
  Tensor out = Tensor::empty(xs[0].dtype(), shape);
  std::int64_t offset = 0;
  for (const Tensor& x : xs) {
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      Index j = unravel(i, x.shape());
      j[static_cast<std::size_t>(axis)] += offset;
      copy_element(x, i, out, ravel(j, shape));
    }
    offset += x.shape()[axis];
  }
  return out;
}

// Exact equality: shape ops move elements and must not change a bit of them.
void check_equal(const Tensor& actual, const Tensor& expected) { testing::check_close(actual, expected, 0.0, 0.0); }

// Builds y = build(x) over a placeholder holding `data`, verifies the graph and runs it.
template <typename F>
Tensor run_on(const Tensor& data, F&& build) {
  Graph g;
  Value x = g.placeholder("x", data.dtype(), data.shape());
  Value y = build(x);
  g.verify();
  return testing::run1(g, y, {{x, data}});
}

// `build` must throw fovea::Error whose message names `op`, this file and contains `fragment`.
template <typename F>
void check_error(F&& build, const std::string& op, const std::string& fragment) {
  CHECK_THROWS_AS(build(), fovea::Error);
  try {
    build();
  } catch (const fovea::Error& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find(op) != std::string::npos);
    CHECK(what.find("shape_ops_test.cpp") != std::string::npos);
    CHECK(what.find(fragment) != std::string::npos);
  }
}

}  // namespace

// --- permute ------------------------------------------------------------------------------

TEST_CASE("permute matches the reference for all six permutations of a rank-3 tensor in every dtype") {
  for (DType dtype : all_dtypes) {
    CAPTURE(dtype_name(dtype));
    const Tensor data = random_values(dtype, {3, 4, 5}, 1);
    Index axes{0, 1, 2};
    do {
      CAPTURE(Shape(axes).to_string());
      check_equal(run_on(data, [&](Value x) { return permute(x, axes); }), reference_permute(data, axes));
    } while (std::next_permutation(axes.begin(), axes.end()));
  }
}

TEST_CASE("permute matches the reference for random permutations of rank 4 and 5, and the identity") {
  const Shape shapes[] = {{3, 2, 4, 5}, {5, 1, 6, 2}, {2, 3, 1, 4, 3}, {3, 2, 2, 3, 4}};
  std::mt19937 rng(7);
  for (DType dtype : all_dtypes) {
    CAPTURE(dtype_name(dtype));
    for (const Shape& shape : shapes) {
      const Tensor data = random_values(dtype, shape, 2);
      Index axes(static_cast<std::size_t>(shape.rank()));
      std::iota(axes.begin(), axes.end(), 0);
      for (int trial = 0; trial < 6; ++trial) {
        if (trial > 0) std::shuffle(axes.begin(), axes.end(), rng);  // trial 0: the identity
        CAPTURE(shape.to_string());
        CAPTURE(Shape(axes).to_string());
        check_equal(run_on(data, [&](Value x) { return permute(x, axes); }), reference_permute(data, axes));
      }
    }
  }
}

TEST_CASE("permute with negative axes equals permute with the same axes counted from the front") {
  const Tensor data = random_values(f32, {2, 3, 4}, 3);
  Graph g;
  Value x = g.placeholder("x", f32, {2, 3, 4});
  Value y = permute(x, {-1, 0, -2});
  CHECK(y.node().attrs.get_ints("axes") == Index{2, 0, 1});
  CHECK(y.shape() == Shape{4, 2, 3});
  check_equal(testing::run1(g, y, {{x, data}}), reference_permute(data, {2, 0, 1}));
}

TEST_CASE("transposing matrices large enough for the tiled and threaded paths matches the reference") {
  for (DType dtype : all_dtypes) {
    CAPTURE(dtype_name(dtype));
    const Tensor matrix = random_values(dtype, {257, 513}, 4);
    check_equal(run_on(matrix, [](Value x) { return transpose(x); }), reference_permute(matrix, {1, 0}));
    const Tensor batch = random_values(dtype, {3, 67, 129}, 5);
    check_equal(run_on(batch, [](Value x) { return transpose(x); }), reference_permute(batch, {0, 2, 1}));
  }
  // Larger general permutations: one moving the innermost axis, one keeping it (row copies).
  const Tensor cube = random_values(f32, {40, 50, 30}, 6);
  check_equal(run_on(cube, [](Value x) { return permute(x, {2, 0, 1}); }), reference_permute(cube, {2, 0, 1}));
  check_equal(run_on(cube, [](Value x) { return permute(x, {1, 0, 2}); }), reference_permute(cube, {1, 0, 2}));
  const Tensor rows = random_values(f64, {64, 33, 40}, 7);
  check_equal(run_on(rows, [](Value x) { return permute(x, {1, 0, 2}); }), reference_permute(rows, {1, 0, 2}));
}

TEST_CASE("permute handles size-1 dims, zero-size dims, rank 1 and rank 0") {
  struct Case {
    Shape shape;
    Index axes;
  };
  const Case cases[] = {{{1, 1, 1}, {2, 0, 1}},
                        {{2, 1, 3}, {2, 1, 0}},
                        {{1, 5, 1, 4}, {3, 2, 1, 0}},
                        {{0, 3, 2}, {2, 0, 1}},
                        {{3, 0}, {1, 0}},
                        {{7}, {0}},
                        {{0}, {0}},
                        {{}, {}},
                        {{1, 2}, {1, 0}}};
  for (DType dtype : all_dtypes) {
    CAPTURE(dtype_name(dtype));
    for (const Case& c : cases) {
      CAPTURE(c.shape.to_string());
      const Tensor data = random_values(dtype, c.shape, 8);
      check_equal(run_on(data, [&](Value x) { return permute(x, c.axes); }), reference_permute(data, c.axes));
    }
  }
}

TEST_CASE("transpose swaps the last two axes by default and any two axes when asked") {
  const Tensor data = random_values(i64, {2, 3, 4}, 9);
  Graph g;
  Value x = g.placeholder("x", i64, {2, 3, 4});
  Value last_two = transpose(x);
  Value outer = transpose(x, 0, -1);
  Value same = transpose(x, 1, 1);
  CHECK(last_two.node().op == &ops::permute);
  CHECK(last_two.shape() == Shape{2, 4, 3});
  auto out = testing::run(g, {last_two, outer, same}, {{x, data}});
  check_equal(out[0], reference_permute(data, {0, 2, 1}));
  check_equal(out[1], reference_permute(data, {2, 1, 0}));
  check_equal(out[2], data);
}

// --- reshape ------------------------------------------------------------------------------

TEST_CASE("reshape with -1 infers the missing dim and keeps the row-major order") {
  for (DType dtype : all_dtypes) {
    CAPTURE(dtype_name(dtype));
    const Tensor data = random_values(dtype, {2, 3, 4}, 10);
    Graph g;
    Value x = g.placeholder("x", dtype, {2, 3, 4});
    Value y = reshape(x, {4, -1});
    CHECK(y.shape() == Shape{4, 6});
    CHECK(y.node().attrs.get_ints("shape") == Index{4, 6});
    CHECK(reshape(x, {-1}).shape() == Shape{24});
    CHECK(reshape(x, {2, -1, 2}).shape() == Shape{2, 6, 2});
    g.verify();
    check_equal(testing::run1(g, y, {{x, data}}), data.reshape({4, 6}));
  }
}

TEST_CASE("an intermediate reshape shares its input's buffer") {
  const Tensor data = random_values(f64, {2, 3, 4}, 10);
  Graph g;
  Value x = g.placeholder("x", f64, {2, 3, 4});
  Value y = neg(reshape(x, {4, -1}));
  Executable exe = compile(g, {y}, cpu());
  CHECK(exe.memory_plan().view_count == 1);
  const Tensor out = exe.run({{x, data}})[0];
  for (std::int64_t i = 0; i < 24; ++i) CHECK(out.at(i) == -data.at(i));
}

TEST_CASE("reshape handles scalars, size-1 dims and zero-size dims") {
  struct Case {
    Shape from, to, want;
  };
  const Case cases[] = {{{}, {1, 1}, {1, 1}}, {{1, 1}, {}, {}},
                        {{1}, {-1}, {1}},     {{0, 3}, {3, -1, 2}, {3, 0, 2}},
                        {{0, 3}, {0}, {0}},   {{5, 1}, {1, 5, 1}, {1, 5, 1}}};
  for (DType dtype : all_dtypes) {
    for (const Case& c : cases) {
      CAPTURE(c.from.to_string());
      CAPTURE(c.to.to_string());
      const Tensor data = random_values(dtype, c.from, 11);
      const Tensor out = run_on(data, [&](Value x) { return reshape(x, c.to); });
      REQUIRE(out.shape() == c.want);
      check_equal(out, data.reshape(c.want));
    }
  }
}

TEST_CASE("reshape of a parameter or a constant copies it out of its own buffer") {
  for (DType dtype : {f32, f64}) {
    Graph g;
    Value w = g.parameter("w", dtype, {3, 4}, init::normal(0.0, 1.0));
    const Tensor data = random_values(dtype, {2, 6}, 12);
    Value c = g.constant(data, "c");
    Value w_flat = reshape(w, {2, -1});
    Value c_flat = reshape(c, {-1});
    Executable exe = compile(g, {w_flat, c_flat}, cpu());
    CHECK(exe.memory_plan().view_count == 0);
    auto out = exe.run({});
    check_equal(out[0], g.parameter_value(w).clone().reshape({2, 6}));
    check_equal(out[1], data.reshape({12}));
    // Running again after the parameter changes sees the new values.
    Tensor& value = g.parameter_value(w);
    std::memset(value.raw(), 0, value.nbytes());
    check_equal(exe.run({})[0], Tensor::zeros(dtype, {2, 6}));
  }
}

TEST_CASE("a reshape's input used again by a later op keeps its values") {
  const Tensor data = random_values(f32, {4, 6}, 13);
  SUBCASE("the reshape is an output") {
    Graph g;
    Value x = g.placeholder("x", f32, {4, 6});
    Value y = reshape(x, {24});
    Value negated = neg(y);
    Value doubled = x * 2.0;
    auto out = testing::run(g, {y, negated, doubled}, {{x, data}});
    check_equal(out[0], data.reshape({24}));
    for (std::int64_t i = 0; i < 24; ++i) {
      CHECK(out[1].at(i) == -data.at(i));
      CHECK(out[2].at(i) == 2.0 * data.at(i));
    }
  }
  SUBCASE("the reshape is an intermediate feeding an op that could work in place") {
    Graph g;
    Value x = g.placeholder("x", f32, {4, 6});
    Value y = reshape(x, {2, 12});
    Value negated = neg(y);  // must not overwrite y's bytes in place: they are x's, read below
    Value doubled = x * 2.0;
    Value sum = reshape(negated, {4, 6}) + doubled;  // -x + 2x = x, exactly
    Executable exe = compile(g, {sum, doubled}, cpu());
    CHECK(exe.memory_plan().view_count >= 1);
    auto out = exe.run({{x, data}});
    check_equal(out[0], data);
    for (std::int64_t i = 0; i < 24; ++i) CHECK(out[1].at(i) == 2.0 * data.at(i));
  }
}

// --- slice --------------------------------------------------------------------------------

TEST_CASE("slice follows Python's rules for negative, clamped and stepped bounds along every axis") {
  struct Bounds {
    std::int64_t start, end, step;
  };
  const Bounds bounds[] = {{1, 4, 1}, {-3, -1, 1}, {-100, 100, 1}, {0, 7, 2},   {1, -1, 3}, {-2, 100, 2},
                           {4, 2, 1}, {3, 3, 1},   {0, 1, 3},      {5, 100, 2}, {-1, 0, 1}, {0, 100, 3}};
  const Shape shape{5, 6, 7};
  for (DType dtype : all_dtypes) {
    CAPTURE(dtype_name(dtype));
    const Tensor data = random_values(dtype, shape, 14);
    for (int axis = 0; axis < 3; ++axis) {
      for (const Bounds& b : bounds) {
        CAPTURE(axis);
        CAPTURE(b.start);
        CAPTURE(b.end);
        CAPTURE(b.step);
        const std::int64_t given_axis = axis == 2 ? -1 : axis;  // the last axis counted from the end
        const Tensor out = run_on(data, [&](Value x) { return slice(x, given_axis, b.start, b.end, b.step); });
        check_equal(out, reference_slice(data, axis, b.start, b.end, b.step));
      }
    }
  }
}

TEST_CASE("slice stores normalised bounds and gives an empty result when end <= start") {
  Graph g;
  Value x = g.placeholder("x", f32, {5, 6});
  Value y = slice(x, -1, -4, -1, 2);
  CHECK(y.node().attrs.get_int("axis") == 1);
  CHECK(y.node().attrs.get_int("start") == 2);
  CHECK(y.node().attrs.get_int("end") == 5);
  CHECK(y.node().attrs.get_int("step") == 2);
  CHECK(y.shape() == Shape{5, 2});
  Value empty = slice(x, 0, 4, 1);
  CHECK(empty.shape() == Shape{0, 6});
  Value clamped = slice(x, 0, 3, 100);
  CHECK(clamped.node().attrs.get_int("end") == 5);
  CHECK(clamped.shape() == Shape{2, 6});
  g.verify();
  const Tensor data = random_values(f32, {5, 6}, 15);
  auto out = testing::run(g, {y, empty, clamped}, {{x, data}});
  check_equal(out[0], reference_slice(data, 1, -4, -1, 2));
  CHECK(out[1].numel() == 0);
  check_equal(out[2], reference_slice(data, 0, 3, 100, 1));
}

TEST_CASE("slice of a larger tensor, split over threads, matches the reference") {
  const Tensor data = random_values(f32, {300, 257}, 16);
  check_equal(run_on(data, [](Value x) { return slice(x, 1, 10, 250); }), reference_slice(data, 1, 10, 250, 1));
  check_equal(run_on(data, [](Value x) { return slice(x, 1, 1, -1, 3); }), reference_slice(data, 1, 1, -1, 3));
  check_equal(run_on(data, [](Value x) { return slice(x, 0, 3, 290, 2); }), reference_slice(data, 0, 3, 290, 2));
  const Tensor wide = random_values(i64, {4, 40000}, 17);
  check_equal(run_on(wide, [](Value x) { return slice(x, 1, 5, 39000, 3); }), reference_slice(wide, 1, 5, 39000, 3));
}

// --- concat -------------------------------------------------------------------------------

TEST_CASE("concat along each axis of rank-3 inputs matches the reference, with a zero-size input") {
  for (DType dtype : all_dtypes) {
    CAPTURE(dtype_name(dtype));
    for (int axis = 0; axis < 3; ++axis) {
      CAPTURE(axis);
      std::vector<Tensor> parts;
      const std::int64_t sizes[] = {2, 0, 3};
      for (std::int64_t size : sizes) {
        Shape shape{2, 3, 4};
        shape[axis] = size;
        parts.push_back(random_values(dtype, shape, 18 + static_cast<std::uint64_t>(parts.size())));
      }
      Graph g;
      std::vector<Value> inputs;
      Feeds feeds;
      for (const Tensor& t : parts) {
        inputs.push_back(g.placeholder("x", dtype, t.shape()));
        feeds.push_back({inputs.back(), t});
      }
      Value y = concat(inputs, axis == 1 ? -2 : axis);
      CHECK(y.node().attrs.get_int("axis") == axis);
      g.verify();
      check_equal(testing::run1(g, y, feeds), reference_concat(parts, axis));
    }
  }
}

TEST_CASE("concat of one input copies it, and concat of large inputs matches the reference") {
  const Tensor one = random_values(boolean, {3, 5}, 21);
  check_equal(run_on(one, [](Value x) { return concat({x}, 1); }), one);

  const Tensor a = random_values(f32, {600, 100}, 22), b = random_values(f32, {600, 60}, 23);
  Graph g;
  Value x = g.placeholder("a", f32, a.shape()), z = g.placeholder("b", f32, b.shape());
  Value y = concat({x, z, x}, -1);
  CHECK(y.shape() == Shape{600, 260});
  check_equal(testing::run1(g, y, {{x, a}, {z, b}}), reference_concat({a, b, a}, 1));

  const Tensor top = random_values(f64, {1, 400, 100}, 24), bottom = random_values(f64, {1, 300, 100}, 25);
  Graph h;
  Value t = h.placeholder("top", f64, top.shape()), u = h.placeholder("bottom", f64, bottom.shape());
  check_equal(testing::run1(h, concat({t, u}, 1), {{t, top}, {u, bottom}}), reference_concat({top, bottom}, 1));
}

// --- broadcast_to -------------------------------------------------------------------------

TEST_CASE("broadcast_to adds leading dims and expands size-1 dims") {
  struct Case {
    Shape from, to;
  };
  const Case cases[] = {{{3, 1, 4}, {2, 3, 5, 4}}, {{1}, {4, 3}},    {{}, {2, 3}},       {{3}, {0, 3}},
                        {{2, 3}, {2, 3}},          {{1, 1}, {1, 1}}, {{4, 1}, {4, 7}},   {{1, 300}, {200, 300}},
                        {{5, 1, 1}, {5, 2, 3}},    {{}, {}},         {{2, 1}, {3, 2, 0}}};
  for (DType dtype : all_dtypes) {
    CAPTURE(dtype_name(dtype));
    for (const Case& c : cases) {
      CAPTURE(c.from.to_string());
      CAPTURE(c.to.to_string());
      const Tensor data = random_values(dtype, c.from, 24);
      check_equal(run_on(data, [&](Value x) { return broadcast_to(x, c.to); }), reference_broadcast(data, c.to));
    }
  }
}

// --- squeeze, unsqueeze, flatten ----------------------------------------------------------

TEST_CASE("squeeze, unsqueeze and flatten are reshapes to the shapes NumPy gives") {
  const Tensor data = random_values(i32, {1, 3, 1, 4}, 25);
  Graph g;
  Value x = g.placeholder("x", i32, {1, 3, 1, 4});
  const std::pair<Value, Shape> cases[] = {{squeeze(x), {3, 4}},
                                           {squeeze(x, {0}), {3, 1, 4}},
                                           {squeeze(x, {-2, 0}), {3, 4}},
                                           {unsqueeze(x, 0), {1, 1, 3, 1, 4}},
                                           {unsqueeze(x, -1), {1, 3, 1, 4, 1}},
                                           {unsqueeze(x, 2), {1, 3, 1, 1, 4}},
                                           {flatten(x), {12}},
                                           {flatten(x, 1, 2), {1, 3, 4}},
                                           {flatten(x, 1), {1, 12}},
                                           {flatten(x, -2, -1), {1, 3, 4}}};
  std::vector<Value> outputs;
  for (const auto& [value, want] : cases) {
    CAPTURE(value.name());
    CHECK(value.node().op == &ops::reshape);
    CHECK(value.shape() == want);
    outputs.push_back(value);
  }
  g.verify();
  auto out = testing::run(g, outputs, {{x, data}});
  for (std::size_t i = 0; i < out.size(); ++i) check_equal(out[i], data.reshape(cases[i].second));

  Value s = g.scalar(2.0, f64);
  CHECK(flatten(s).shape() == Shape{1});
  CHECK(unsqueeze(s, 0).shape() == Shape{1});
  CHECK(squeeze(unsqueeze(s, -1)).shape() == Shape{});
}

// --- gradients ----------------------------------------------------------------------------

namespace {

// x's elements numbered 0, 1, 2, ... (plus `first`), as i64: a shape op's reference applied to
// it tells, for every output position, which input element that position was copied from.
Tensor element_numbers(const Shape& shape, std::int64_t first = 0) {
  Tensor t = Tensor::empty(i64, shape);
  auto data = t.data<std::int64_t>();
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = first + static_cast<std::int64_t>(i);
  return t;
}

// The transpose of a shape op y = L(x) applied to a cotangent c: every output position sends
// c's value back to the input element it was copied from, ∂x[j] = Σ_{i : source[i] = j} c[i].
// `source` holds, per output position, that element's number; elements numbered outside
// [first, first + numel) belong to another input.
Tensor adjoint_reference(const Tensor& cotangent, const Tensor& source, const Shape& input, std::int64_t first = 0) {
  Tensor out = Tensor::zeros(f64, input);
  auto grad = out.data<double>();
  for (std::int64_t i = 0; i < source.numel(); ++i) {
    const auto j = static_cast<std::int64_t>(source.at(i)) - first;
    if (j >= 0 && j < input.numel()) grad[static_cast<std::size_t>(j)] += cotangent.at(i);
  }
  return out;
}

// Runs the gradient of ⟨c, build(xs)⟩ with respect to every x for random xs and c (f64) and
// checks each against the adjoint of `reference`, the op's reference on tensors.
template <typename Build, typename Reference>
void check_gradient(const std::vector<Shape>& shapes, Build&& build, Reference&& reference) {
  Graph g;
  std::vector<Value> xs;
  std::vector<Tensor> numbers;
  Feeds feeds;
  std::int64_t first = 0;
  for (const Shape& shape : shapes) {
    xs.push_back(g.placeholder("x", f64, shape));
    feeds.push_back({xs.back(), random_values(f64, shape, 30 + xs.size())});
    numbers.push_back(element_numbers(shape, first));
    first += shape.numel();
  }
  const Value y = build(xs);
  const Value c = g.placeholder("c", f64, y.shape());
  const Tensor cotangent = random_values(f64, y.shape(), 40);
  feeds.push_back({c, cotangent});
  const std::vector<Value> grads = vjp({y}, {c}, xs);
  g.verify();
  const std::vector<Tensor> out = testing::run(g, grads, feeds);
  const Tensor source = reference(numbers);
  first = 0;
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    CAPTURE(i);
    testing::check_close(out[i], adjoint_reference(cotangent, source, shapes[i], first), 1e-12, 1e-12);
    first += shapes[i].numel();
  }
}

}  // namespace

TEST_CASE("the gradients of reshape, permute and broadcast_to are their transposes") {
  check_gradient(
      {{2, 3, 4}},
      [](const std::vector<Value>& x) {
        return reshape(x[0], {4, -1});
      },
      [](const std::vector<Tensor>& t) {
        return t[0].reshape({4, 6});
      });
  check_gradient(
      {{2, 3, 4}},
      [](const std::vector<Value>& x) {
        return permute(x[0], {2, 0, 1});
      },
      [](const std::vector<Tensor>& t) {
        return reference_permute(t[0], {2, 0, 1});
      });
  check_gradient(
      {{2, 1, 3, 4}},
      [](const std::vector<Value>& x) {
        return permute(x[0], {3, 1, 0, 2});
      },
      [](const std::vector<Tensor>& t) {
        return reference_permute(t[0], {3, 1, 0, 2});
      });
  check_gradient(
      {{3, 1}},
      [](const std::vector<Value>& x) {
        return broadcast_to(x[0], {2, 3, 4});
      },
      [](const std::vector<Tensor>& t) {
        return reference_broadcast(t[0], {2, 3, 4});
      });
  check_gradient(
      {{}},
      [](const std::vector<Value>& x) {
        return broadcast_to(x[0], {2, 2});
      },
      [](const std::vector<Tensor>& t) {
        return reference_broadcast(t[0], {2, 2});
      });
  check_gradient(
      {{1, 3}}, [](const std::vector<Value>& x) { return squeeze(x[0]); },
      [](const std::vector<Tensor>& t) { return t[0].reshape({3}); });
}

TEST_CASE("the gradient of slice scatters into zeros, and that of concat slices it apart") {
  struct Bounds {
    std::int64_t axis, start, end, step;
  };
  const Bounds bounds[] = {{1, 1, -1, 2}, {0, -3, 100, 1}, {1, 0, 6, 1}, {0, 0, 5, 3}, {1, 4, 2, 1}, {-1, 5, 6, 4}};
  for (const Bounds& b : bounds) {
    CAPTURE(b.axis);
    CAPTURE(b.start);
    CAPTURE(b.end);
    CAPTURE(b.step);
    check_gradient(
        {{5, 6}}, [&](const std::vector<Value>& x) { return slice(x[0], b.axis, b.start, b.end, b.step); },
        [&](const std::vector<Tensor>& t) {
          return reference_slice(t[0], b.axis < 0 ? 1 : static_cast<int>(b.axis), b.start, b.end, b.step);
        });
  }
  for (int axis = 0; axis < 3; ++axis) {
    CAPTURE(axis);
    std::vector<Shape> shapes;
    for (std::int64_t size : {2, 0, 3}) {
      Shape shape{2, 3, 4};
      shape[axis] = size;
      shapes.push_back(shape);
    }
    check_gradient(
        shapes, [&](const std::vector<Value>& x) { return concat(x, axis - 3); },
        [&](const std::vector<Tensor>& t) { return reference_concat(t, axis); });
  }
}

// --- errors -------------------------------------------------------------------------------

TEST_CASE("permute rejects axes that are not a permutation") {
  Graph g;
  Value x = g.placeholder("x", f32, {2, 3, 4});
  check_error([&] { permute(x, {0, 0, 1}); }, "permute", "appears twice");
  check_error([&] { permute(x, {0, 1}); }, "permute", "not a permutation");
  check_error([&] { permute(x, {0, 1, 3}); }, "permute", "out of range");
  check_error([&] { permute(x, {0, 1, -4}); }, "permute", "out of range");
  check_error([&] { transpose(x, 0, 3); }, "transpose", "out of range");
}

TEST_CASE("reshape rejects a count mismatch, two -1s and negative dims") {
  Graph g;
  Value x = g.placeholder("x", f32, {2, 3});
  check_error([&] { reshape(x, {4, 2}); }, "reshape", "f32[2,3]");
  check_error([&] { reshape(x, {4, 2}); }, "reshape", "f32[4,2]");
  check_error([&] { reshape(x, {-1, -1}); }, "reshape", "more than one -1");
  check_error([&] { reshape(x, {-2, -3}); }, "reshape", "negative dim");
  check_error([&] { reshape(x, {4, -1}); }, "reshape", "-1");
  Value empty = g.placeholder("e", f32, {0, 3});
  check_error([&] { reshape(empty, {0, -1}); }, "reshape", "-1");
}

TEST_CASE("slice rejects a step below 1 and an axis out of range") {
  Graph g;
  Value x = g.placeholder("x", f32, {5, 6});
  check_error([&] { slice(x, 0, 0, 5, 0); }, "slice", "step");
  check_error([&] { slice(x, 0, 5, 0, -1); }, "slice", "step");
  check_error([&] { slice(x, 2, 0, 1); }, "slice", "out of range");
  Value s = g.scalar(1.0, f32);
  check_error([&] { slice(s, 0, 0, 1); }, "slice", "out of range");
}

TEST_CASE("concat rejects mismatched dims, dtypes and ranks, a bad axis and an empty list") {
  Graph g;
  Value a = g.placeholder("a", f32, {2, 3, 4});
  Value b = g.placeholder("b", f32, {2, 5, 4});
  Value c = g.placeholder("c", f64, {2, 3, 4});
  Value d = g.placeholder("d", f32, {2, 3});
  check_error(
      [&] {
        concat({a, a, b}, 0);
      },
      "concat", "input 2 (f32[2,5,4]) differs from input 0 (f32[2,3,4]) in dim 1");
  check_error([&] { concat({a, c}, 0); }, "concat", "same dtype");
  check_error([&] { concat({a, d}, 0); }, "concat", "same rank");
  check_error([&] { concat({a, b}, 3); }, "concat", "out of range");
  check_error([&] { concat({}, 0); }, "concat", "at least one input");
}

TEST_CASE("broadcast_to rejects incompatible shapes") {
  Graph g;
  Value x = g.placeholder("x", f32, {3, 4});
  check_error([&] { broadcast_to(x, {3, 5}); }, "broadcast_to", "input dim 1 is 4 but target dim 1 is 5");
  check_error([&] { broadcast_to(x, {4}); }, "broadcast_to", "fewer dims");
  check_error([&] { broadcast_to(x, {2, 4, 4}); }, "broadcast_to", "cannot broadcast f32[3,4]");
  check_error([&] { broadcast_to(x, {-1, 4}); }, "broadcast_to", "negative");
}

TEST_CASE("squeeze, unsqueeze and flatten reject bad axes") {
  Graph g;
  Value x = g.placeholder("x", f32, {1, 3, 4});
  check_error([&] { squeeze(x, {1}); }, "squeeze", "not 1");
  check_error([&] { squeeze(x, {3}); }, "squeeze", "out of range");
  check_error([&] { unsqueeze(x, 4); }, "unsqueeze", "out of range");
  check_error([&] { unsqueeze(x, -5); }, "unsqueeze", "out of range");
  check_error([&] { flatten(x, 2, 1); }, "flatten", "in order");
  check_error([&] { flatten(x, 0, 3); }, "flatten", "in range");
}
