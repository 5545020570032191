#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "testing.h"

using namespace fovea;
using testing::check_close;
using testing::random_tensor;

namespace {

constexpr DType all_dtypes[] = {f32, f64, i32, i64, boolean};
constexpr DType numeric_dtypes[] = {f32, f64, i32, i64};

// The multi-index of flat position `flat` in a row-major `shape`, and back.
std::vector<std::int64_t> unravel(std::int64_t flat, const Shape& shape) {
  std::vector<std::int64_t> idx(shape.rank());
  for (int i = shape.rank() - 1; i >= 0; --i) {
    idx[i] = flat % shape[i];
    flat /= shape[i];
  }
  return idx;
}
std::int64_t ravel(const std::vector<std::int64_t>& idx, const Shape& shape) {
  std::int64_t flat = 0;
  for (int i = 0; i < shape.rank(); ++i) flat = flat * shape[i] + idx[i];
  return flat;
}

// x.shape[:axis] + ids.shape + x.shape[axis+1:]
Shape indexed_shape(const Shape& x, const Shape& ids, int axis) {
  std::vector<std::int64_t> dims(x.begin(), x.begin() + axis);
  dims.insert(dims.end(), ids.begin(), ids.end());
  dims.insert(dims.end(), x.begin() + axis + 1, x.end());
  return Shape(dims);
}

// The position in x that output (or update) multi-index `idx` refers to: its dims before the
// axis, then the index found at its middle dims, then its dims after the axis.
std::vector<std::int64_t> source_index(const std::vector<std::int64_t>& idx, const Tensor& ids, int axis) {
  std::vector<std::int64_t> x_idx(idx.begin(), idx.begin() + axis);
  const std::vector<std::int64_t> p(idx.begin() + axis, idx.begin() + axis + ids.rank());
  x_idx.push_back(static_cast<std::int64_t>(ids.at(ravel(p, ids.shape()))));
  x_idx.insert(x_idx.end(), idx.begin() + axis + ids.rank(), idx.end());
  return x_idx;
}

// out[a.., p.., b..] = x[a.., ids[p..], b..]
Tensor reference_gather(const Tensor& x, const Tensor& ids, int axis) {
  Tensor out = Tensor::empty(x.dtype(), indexed_shape(x.shape(), ids.shape(), axis));
  visit_dtype(x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    auto src = x.data<T>();
    auto dst = out.data<T>();
    for (std::int64_t q = 0; q < out.numel(); ++q)
      dst[q] = src[ravel(source_index(unravel(q, out.shape()), ids, axis), x.shape())];
  });
  return out;
}

// out = target; out[a.., ids[p..], b..] += u[a.., p.., b..] for every position of u in order.
Tensor reference_scatter_add(const Tensor& target, const Tensor& ids, const Tensor& updates, int axis) {
  Tensor out = target.clone();
  visit_dtype(target.dtype(), [&](auto zero) {
    using T = decltype(zero);
    auto u = updates.data<T>();
    auto dst = out.data<T>();
    for (std::int64_t q = 0; q < updates.numel(); ++q)
      dst[ravel(source_index(unravel(q, updates.shape()), ids, axis), target.shape())] += u[q];
  });
  return out;
}

// out[i] = cond[i'] ? a[i''] : b[i'''], each operand indexed with NumPy broadcasting.
std::int64_t broadcast_index(const std::vector<std::int64_t>& out_idx, const Shape& in) {
  const int offset = static_cast<int>(out_idx.size()) - in.rank();
  std::vector<std::int64_t> idx(in.rank());
  for (int i = 0; i < in.rank(); ++i) idx[i] = in[i] == 1 ? 0 : out_idx[offset + i];
  return ravel(idx, in);
}
Tensor reference_where(const Tensor& cond, const Tensor& a, const Tensor& b, const Shape& out_shape) {
  Tensor out = Tensor::empty(a.dtype(), out_shape);
  visit_dtype(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    auto c = cond.data<std::uint8_t>();
    auto av = a.data<T>();
    auto bv = b.data<T>();
    auto dst = out.data<T>();
    for (std::int64_t q = 0; q < out.numel(); ++q) {
      const auto idx = unravel(q, out_shape);
      dst[q] = c[broadcast_index(idx, cond.shape())] ? av[broadcast_index(idx, a.shape())]
                                                     : bv[broadcast_index(idx, b.shape())];
    }
  });
  return out;
}

// Runs `build` and returns the message of the fovea::Error it throws ("" if none).
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

// gather(x, ids, axis) on placeholders, run once.
Tensor run_gather(const Tensor& x, const Tensor& ids, std::int64_t axis) {
  Graph g;
  auto xv = g.placeholder("x", x.dtype(), x.shape());
  auto iv = g.placeholder("ids", ids.dtype(), ids.shape());
  return testing::run1(g, gather(xv, iv, axis), {{xv, x}, {iv, ids}});
}

Tensor run_scatter_add(const Tensor& target, const Tensor& ids, const Tensor& updates, std::int64_t axis) {
  Graph g;
  auto tv = g.placeholder("target", target.dtype(), target.shape());
  auto iv = g.placeholder("ids", ids.dtype(), ids.shape());
  auto uv = g.placeholder("updates", updates.dtype(), updates.shape());
  return testing::run1(g, scatter_add(tv, iv, uv, axis), {{tv, target}, {iv, ids}, {uv, updates}});
}

const std::vector<Shape> x_shapes{{5}, {4, 3}, {2, 3, 4}, {2, 0, 3}, {3, 2, 0}};
const std::vector<Shape> index_shapes{{}, {3}, {2, 2}, {0}};

}  // namespace

TEST_CASE("gather along every axis of rank-1 to rank-3 inputs matches the reference in every dtype") {
  std::uint64_t seed = 1;
  for (DType dtype : all_dtypes) {
    for (const Shape& shape : x_shapes) {
      const Tensor x = random_tensor(dtype, shape, ++seed, -10, 10);
      for (int axis = 0; axis < shape.rank(); ++axis) {
        for (const Shape& ids_shape : index_shapes) {
          if (shape[axis] == 0 && ids_shape.numel() != 0) continue;  // no valid index exists
          for (DType index_dtype : {i32, i64}) {
            CAPTURE(dtype_name(dtype));
            CAPTURE(shape.to_string());
            CAPTURE(axis);
            CAPTURE(ids_shape.to_string());
            CAPTURE(dtype_name(index_dtype));
            const Tensor ids = random_tensor(index_dtype, ids_shape, ++seed, 0, static_cast<double>(shape[axis]));
            check_close(run_gather(x, ids, axis), reference_gather(x, ids, axis), 0, 0);
          }
        }
      }
    }
  }
}

TEST_CASE("gather with a negative axis counts from the last dim") {
  const Tensor x = random_tensor(f64, {2, 3, 4}, 7);
  const Tensor ids = Tensor::from<std::int64_t>({3, 0, 3, 1}, {2, 2});
  const Tensor out = run_gather(x, ids, -1);
  CHECK(out.shape() == Shape{2, 3, 2, 2});
  check_close(out, reference_gather(x, ids, 2), 0, 0);
  check_close(run_gather(x, Tensor::from<std::int32_t>({2}, {1}), -2),
              reference_gather(x, Tensor::from<std::int32_t>({2}, {1}), 1), 0, 0);
}

TEST_CASE("gather of an embedding table by a batch of token ids copies whole rows") {
  // Large enough that the copy is split over the thread pool.
  const Tensor table = random_tensor(f32, {1000, 256}, 11);
  const Tensor ids = random_tensor(i32, {32, 64}, 12, 0, 1000);
  const Tensor out = run_gather(table, ids, 0);
  CHECK(out.shape() == Shape{32, 64, 256});
  check_close(out, reference_gather(table, ids, 0), 0, 0);
}

TEST_CASE("gather builds a node with op gather and the normalised axis as its attribute") {
  Graph g;
  auto x = g.placeholder("x", f32, {4, 5});
  auto ids = g.placeholder("ids", i64, {3});
  auto y = gather(x, ids, -1);
  CHECK(y.node().op == &ops::gather);
  CHECK(y.node().attrs.get_int("axis") == 1);
  CHECK(y.type().to_string() == "f32[4,3]");
}

TEST_CASE("gather rejects an index past the end at run time, naming the index, its position and the range") {
  const Tensor x = random_tensor(f32, {5, 2}, 3);
  const std::string message = error_of([&] { run_gather(x, Tensor::from<std::int64_t>({1, 4, 5, 0}, {2, 2}), 0); });
  CHECK(contains(message, "gather"));
  CHECK(contains(message, "index 5"));
  CHECK(contains(message, "position [1,0]"));
  CHECK(contains(message, "[0, 5)"));
  CHECK(contains(message, "indexing_test.cpp"));
  CHECK_THROWS_AS(run_gather(x, Tensor::from<std::int32_t>({7}, {1}), 0), Error);
}

TEST_CASE("gather rejects a negative index at run time") {
  const Tensor x = random_tensor(i64, {3, 4}, 3, -5, 5);
  const std::string message = error_of([&] { run_gather(x, Tensor::from<std::int32_t>({0, -1, 2}, {3}), 1); });
  CHECK(contains(message, "index -1"));
  CHECK(contains(message, "position [1]"));
  CHECK(contains(message, "axis 1"));
  CHECK(contains(message, "[0, 4)"));
}

TEST_CASE("gather rejects any index into a zero-size axis at run time") {
  const Tensor x = Tensor::zeros(f32, {0, 3});
  CHECK(contains(error_of([&] { run_gather(x, Tensor::from<std::int64_t>({0}, {1}), 0); }), "[0, 0)"));
}

TEST_CASE("gather rejects float indices and a bad axis when the node is built") {
  Graph g;
  auto x = g.placeholder("x", f32, {4, 5});
  auto float_ids = g.placeholder("float_ids", f32, {3});
  auto ids = g.placeholder("ids", i32, {3});
  CHECK_THROWS_AS(gather(x, float_ids, 0), Error);
  std::string message = error_of([&] { gather(x, float_ids, 0); });
  CHECK(contains(message, "gather"));
  CHECK(contains(message, "i32 or i64"));
  CHECK(contains(message, "indexing_test.cpp"));
  message = error_of([&] { gather(x, ids, 2); });
  CHECK(contains(message, "axis 2 is out of range"));
  CHECK(contains(message, "indexing_test.cpp"));
  auto scalar = g.placeholder("scalar", f32, {});
  CHECK(contains(error_of([&] { gather(scalar, ids, 0); }), "out of range for rank 0"));
}

TEST_CASE("scatter_add along every axis matches the reference in every numeric dtype, repeats accumulating") {
  std::uint64_t seed = 100;
  for (DType dtype : numeric_dtypes) {
    for (const Shape& shape : x_shapes) {
      const Tensor target = random_tensor(dtype, shape, ++seed, -10, 10);
      for (int axis = 0; axis < shape.rank(); ++axis) {
        for (Shape ids_shape : {Shape{}, Shape{6}, Shape{3, 4}, Shape{0}}) {
          if (shape[axis] == 0 && ids_shape.numel() != 0) continue;
          for (DType index_dtype : {i32, i64}) {
            CAPTURE(dtype_name(dtype));
            CAPTURE(shape.to_string());
            CAPTURE(axis);
            CAPTURE(ids_shape.to_string());
            // More positions than rows: indices repeat.
            const Tensor ids = random_tensor(index_dtype, ids_shape, ++seed, 0, static_cast<double>(shape[axis]));
            const Tensor updates = random_tensor(dtype, indexed_shape(shape, ids_shape, axis), ++seed, -10, 10);
            check_close(run_scatter_add(target, ids, updates, axis), reference_scatter_add(target, ids, updates, axis),
                        0, 0);
          }
        }
      }
    }
  }
}

TEST_CASE("scatter_add sums every update sent to the same row") {
  const Tensor target = Tensor::from<float>({1, 2, 3, 4, 5, 6}, {3, 2});
  const Tensor ids = Tensor::from<std::int64_t>({2, 0, 2, 2}, {4});
  const Tensor updates = Tensor::from<float>({1, 10, 2, 20, 3, 30, 4, 40}, {4, 2});
  check_close(run_scatter_add(target, ids, updates, 0), Tensor::from<float>({3, 22, 3, 4, 13, 86}, {3, 2}), 0, 0);
  check_close(run_scatter_add(target, ids, updates, -2), Tensor::from<float>({3, 22, 3, 4, 13, 86}, {3, 2}), 0, 0);
}

TEST_CASE("scatter_add of integers wraps around on overflow") {
  const Tensor out = run_scatter_add(Tensor::from<std::int32_t>({2147483647, 0}, {2}),
                                     Tensor::from<std::int64_t>({0}, {1}), Tensor::from<std::int32_t>({1}, {1}), 0);
  CHECK(out.at(0) == -2147483648.0);
  CHECK(out.at(1) == 0);
}

TEST_CASE("scatter_add of an embedding gradient split over threads equals the serial sum exactly") {
  // Many repeated ids over many rows: the kernel runs in parallel, by output row, and must add
  // each row's updates in the order of the serial reference.
  const Tensor target = Tensor::zeros(f32, {1000, 64});
  const Tensor ids = random_tensor(i64, {64, 64}, 21, 0, 1000);
  const Tensor updates = random_tensor(f32, {64, 64, 64}, 22);
  const Tensor out = run_scatter_add(target, ids, updates, 0);
  check_close(out, reference_scatter_add(target, ids, updates, 0), 0, 0);
  check_close(run_scatter_add(target, ids, updates, 0), out, 0, 0);
  // With dims before the axis as well.
  const Tensor target3 = random_tensor(f64, {3, 500, 8}, 23);
  const Tensor ids3 = random_tensor(i32, {3000}, 24, 0, 500);
  const Tensor updates3 = random_tensor(f64, {3, 3000, 8}, 25);
  check_close(run_scatter_add(target3, ids3, updates3, 1), reference_scatter_add(target3, ids3, updates3, 1), 0, 0);
}

TEST_CASE("scatter_add is the adjoint of gather: <gather(x), u> equals <x, scatter_add(0, u)>") {
  Graph g;
  auto x = g.placeholder("x", f64, {6, 5});
  auto ids = g.placeholder("ids", i64, {4, 3});
  auto u = g.placeholder("u", f64, {4, 3, 5});
  auto lhs = gather(x, ids, 0);
  auto rhs = scatter_add(zeros_like(x), ids, u, 0);
  const Tensor xt = random_tensor(f64, {6, 5}, 31), it = random_tensor(i64, {4, 3}, 32, 0, 6),
               ut = random_tensor(f64, {4, 3, 5}, 33);
  auto out = testing::run(g, {lhs, rhs}, {{x, xt}, {ids, it}, {u, ut}});
  double a = 0, b = 0;
  for (std::int64_t i = 0; i < ut.numel(); ++i) a += out[0].at(i) * ut.at(i);
  for (std::int64_t i = 0; i < xt.numel(); ++i) b += xt.at(i) * out[1].at(i);
  CHECK(a == doctest::Approx(b).epsilon(1e-12));
}

TEST_CASE("scatter_add rejects out-of-range and negative indices at run time") {
  const Tensor target = Tensor::zeros(f32, {2, 3});
  const Tensor updates = Tensor::zeros(f32, {2, 2});
  std::string message = error_of([&] { run_scatter_add(target, Tensor::from<std::int32_t>({0, 3}, {2}), updates, 1); });
  CHECK(contains(message, "scatter_add"));
  CHECK(contains(message, "index 3"));
  CHECK(contains(message, "position [1]"));
  CHECK(contains(message, "[0, 3)"));
  message = error_of([&] { run_scatter_add(target, Tensor::from<std::int64_t>({-2, 0}, {2}), updates, 1); });
  CHECK(contains(message, "index -2"));
  CHECK(contains(message, "position [0]"));
}

TEST_CASE("scatter_add rejects bad index dtypes, update shapes and dtypes, and bool targets when built") {
  Graph g;
  auto target = g.placeholder("target", f32, {4, 5});
  auto ids = g.placeholder("ids", i64, {3});
  auto float_ids = g.placeholder("float_ids", f64, {3});
  auto updates = g.placeholder("updates", f32, {4, 3});
  CHECK_THROWS_AS(scatter_add(target, float_ids, updates, 1), Error);
  CHECK(contains(error_of([&] { scatter_add(target, float_ids, updates, 1); }), "i32 or i64"));

  const std::string message = error_of([&] { scatter_add(target, ids, updates, 0); });
  CHECK(contains(message, "scatter_add"));
  CHECK(contains(message, "f32[3,5]"));  // the expected shape
  CHECK(contains(message, "got f32[4,3]"));
  CHECK(contains(message, "indexing_test.cpp"));

  auto f64_updates = g.placeholder("f64_updates", f64, {4, 3});
  CHECK(contains(error_of([&] { scatter_add(target, ids, f64_updates, 1); }), "dtype"));
  auto flags = g.placeholder("flags", boolean, {4, 5});
  auto flag_updates = g.placeholder("flag_updates", boolean, {4, 3});
  CHECK(contains(error_of([&] { scatter_add(flags, ids, flag_updates, 1); }), "numeric"));
  CHECK_NOTHROW(scatter_add(target, ids, updates, 1));
}

TEST_CASE("where with three-way broadcasting matches the reference in every dtype") {
  struct Case {
    Shape cond, a, b, out;
  };
  const std::vector<Case> cases{
      {{3, 4}, {3, 4}, {3, 4}, {3, 4}},           // no broadcasting
      {{3, 1}, {1, 4}, {3, 4}, {3, 4}},           // size-1 dims on every side
      {{}, {2, 3}, {3}, {2, 3}},                  // scalar condition
      {{3, 1}, {2, 3, 4}, {4}, {2, 3, 4}},        // every operand of a different rank
      {{2, 1, 4}, {}, {}, {2, 1, 4}},             // scalar branches
      {{}, {}, {}, {}},                           // rank 0
      {{0, 3}, {1, 3}, {0, 1}, {0, 3}},           // zero-size
      {{256, 1}, {256, 300}, {300}, {256, 300}},  // large enough for the thread pool
  };
  std::uint64_t seed = 200;
  for (DType dtype : all_dtypes) {
    for (const Case& c : cases) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(c.cond.to_string());
      CAPTURE(c.a.to_string());
      CAPTURE(c.b.to_string());
      const Tensor cond = random_tensor(boolean, c.cond, ++seed);
      const Tensor a = random_tensor(dtype, c.a, ++seed, -10, 10);
      const Tensor b = random_tensor(dtype, c.b, ++seed, -10, 10);
      Graph g;
      auto cv = g.placeholder("cond", boolean, c.cond);
      auto av = g.placeholder("a", dtype, c.a);
      auto bv = g.placeholder("b", dtype, c.b);
      auto y = where(cv, av, bv);
      REQUIRE(y.shape() == c.out);
      check_close(testing::run1(g, y, {{cv, cond}, {av, a}, {bv, b}}), reference_where(cond, a, b, c.out), 0, 0);
    }
  }
}

TEST_CASE("where is keyed on its branches' dtype, not on the bool condition") {
  CHECK(ops::where.key_on_output);
  Graph g;
  auto cond = g.placeholder("cond", boolean, {2});
  auto a = g.placeholder("a", f64, {2});
  auto y = where(cond, a, zeros_like(a));
  CHECK(kernel_dtype(g, y.node()) == f64);
}

TEST_CASE("where rejects a non-bool condition, mixed branch dtypes and shapes that do not broadcast") {
  Graph g;
  auto cond = g.placeholder("cond", boolean, {3, 4});
  auto mask = g.placeholder("mask", f32, {3, 4});
  auto a = g.placeholder("a", f32, {3, 4});
  auto b = g.placeholder("b", f64, {3, 4});
  auto c = g.placeholder("c", f32, {5});
  CHECK_THROWS_AS(where(mask, a, a), Error);
  std::string message = error_of([&] { where(mask, a, a); });
  CHECK(contains(message, "where"));
  CHECK(contains(message, "must be bool"));
  CHECK(contains(message, "indexing_test.cpp"));
  CHECK(contains(error_of([&] { where(cond, a, b); }), "same dtype"));
  message = error_of([&] { where(cond, a, c); });
  CHECK(contains(message, "do not broadcast"));
  CHECK(contains(message, "[5]"));
}

// --- gradients -------------------------------------------------------------------------------

namespace {

struct GradInput {
  Shape shape;
  DType dtype = f64;  // integer and bool inputs are fed but not differentiated
  Tensor value = {};  // fixed value (indices, masks); random in [-1, 1) otherwise
};

// Checks the gradient rule of y = build(x...) in f64: fovea::vjp with a fixed random cotangent
// r must match the central differences (L(x + ε) - L(x - ε)) / 2ε of L = Σ y ⊙ r, with L summed
// here in C++ so that the check leans on no other op's gradient rule.
void check_vjp(const std::string& what, const std::function<Value(const std::vector<Value>&)>& build,
               const std::vector<GradInput>& inputs) {
  CAPTURE(what);
  Graph g;
  std::vector<Value> xs, wrt;
  std::vector<std::size_t> wrt_index;
  std::vector<Tensor> values;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    xs.push_back(g.placeholder("x" + std::to_string(i), inputs[i].dtype, inputs[i].shape));
    values.push_back(inputs[i].value.defined() ? inputs[i].value : random_tensor(f64, inputs[i].shape, 40 + i));
    if (is_floating(inputs[i].dtype)) {
      wrt.push_back(xs[i]);
      wrt_index.push_back(i);
    }
  }
  const Value y = build(xs);
  const Tensor r = random_tensor(f64, y.shape(), 99, 0.5, 1.5);
  const std::vector<Value> grads = vjp({y}, {g.constant(r, "r")}, wrt);
  g.verify();
  auto feeds_for = [&](const std::vector<Tensor>& vals) {
    Feeds feeds;
    for (std::size_t i = 0; i < xs.size(); ++i) feeds.emplace_back(xs[i], vals[i]);
    return feeds;
  };
  // y rides along so that every placeholder is used (a linear op's gradient may read none).
  std::vector<Value> outputs = grads;
  outputs.push_back(y);
  const std::vector<Tensor> analytic = compile(g, outputs).run(feeds_for(values));
  Executable forward = compile(g, {y});
  auto loss = [&](const std::vector<Tensor>& vals) {
    const Tensor out = forward.run(feeds_for(vals))[0];
    double sum = 0;
    for (std::int64_t i = 0; i < out.numel(); ++i) sum += out.at(i) * r.at(i);
    return sum;
  };
  constexpr double eps = 1e-6;
  for (std::size_t k = 0; k < wrt.size(); ++k) {
    const std::size_t i = wrt_index[k];
    REQUIRE(analytic[k].shape() == inputs[i].shape);
    for (std::int64_t j = 0; j < values[i].numel(); ++j) {
      std::vector<Tensor> plus = values, minus = values;
      plus[i] = values[i].clone();
      minus[i] = values[i].clone();
      plus[i].data<double>()[j] += eps;
      minus[i].data<double>()[j] -= eps;
      const double numeric = (loss(plus) - loss(minus)) / (2 * eps);
      if (!(std::abs(analytic[k].at(j) - numeric) <= 1e-6 * std::max(1.0, std::abs(numeric)))) {
        FAIL_CHECK("d/dx" << i << "[" << j << "]: rule gives " << analytic[k].at(j) << ", differences give "
                          << numeric);
        return;
      }
    }
  }
}

}  // namespace

TEST_CASE("gather's gradient rule matches finite differences along every axis, repeated indices summing") {
  const Tensor ids = Tensor::from<std::int64_t>({2, 0, 2, 1, 2, 0}, {2, 3});  // 2 appears three times
  for (int axis = 0; axis < 3; ++axis)
    check_vjp("gather axis " + std::to_string(axis),
              [&](const std::vector<Value>& x) { return gather(x[0], x[1], axis); },
              {{Shape{3, 3, 3}}, {Shape{2, 3}, i64, ids}});
  check_vjp("gather with a scalar index", [](const std::vector<Value>& x) { return gather(x[0], x[1], 1); },
            {{Shape{2, 4}}, {Shape{}, i32, Tensor::scalar<std::int32_t>(3)}});
}

TEST_CASE("scatter_add's gradient rule matches finite differences for its target and its updates") {
  check_vjp("scatter_add", [](const std::vector<Value>& x) { return scatter_add(x[0], x[1], x[2], 1); },
            {{Shape{2, 4, 3}}, {Shape{5}, i32, Tensor::from<std::int32_t>({1, 1, 3, 0, 1}, {5})}, {Shape{2, 5, 3}}});
}

TEST_CASE("where's gradient rule matches finite differences, summing broadcast branches back to their shapes") {
  const Tensor cond = Tensor::from<std::uint8_t>({1, 0, 0, 1, 1, 0}, {2, 3});
  auto select = [](const std::vector<Value>& x) { return where(x[0], x[1], x[2]); };
  check_vjp("where", select, {{Shape{2, 3}, boolean, cond}, {Shape{2, 3}}, {Shape{2, 3}}});
  check_vjp("where broadcasting", select, {{Shape{2, 3}, boolean, cond}, {Shape{3}}, {Shape{2, 1}}});
}
