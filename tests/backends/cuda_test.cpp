// The CUDA backend against the CPU backend (backends/cuda/): every op, compiled for both on the
// same random inputs, gives the same results (exactly for integers, bools and data movement;
// to rounding for floating math; to summation order for matmul, reductions and attention);
// gradients of small models and a few training steps agree; Philox streams are the same; and
// run-time errors are raised on the GPU as on the CPU.
//
// Where no GPU is visible every test prints why, once, and passes. Run just these with
//   ./fovea_tests -sf="*cuda_test*"
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fovea/ops/normalization.h>

#include "testing.h"

#ifdef FOVEA_WITH_CUDA
#include <fovea/backends/cuda/cuda_backend.h>
#endif

namespace {

using namespace fovea;
using fovea::testing::have_gpu;
using fovea::testing::random_tensor;

constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();
constexpr double inf = std::numeric_limits<double>::infinity();

// How close the GPU's floating results must be to the CPU's; integers and bools must be equal.
struct Tolerance {
  double f32_rtol = 1e-5, f32_atol = 1e-6;
  double f64_rtol = 1e-12, f64_atol = 1e-14;
};

// Elementwise math: the GPU's libm differs from glibc's by an ulp or two.
constexpr Tolerance kElementwise{};
// Data movement and integer math: bit for bit.
constexpr Tolerance kExact{0, 0, 0, 0};
// Sums in another order (cuBLAS, attention, atomics): a few ulps of the terms' magnitude.
constexpr Tolerance kSummation{1e-4, 1e-5, 1e-10, 1e-12};

// |actual - expected| <= atol + rtol·|expected| elementwise, where equal values (infinities
// included) and two NaNs always pass; reports the first element that does not.
void expect_close(const Tensor& actual, const Tensor& expected, double rtol, double atol) {
  REQUIRE(dtype_name(actual.dtype()) == dtype_name(expected.dtype()));
  REQUIRE(actual.shape().to_string() == expected.shape().to_string());
  for (std::int64_t i = 0; i < actual.numel(); ++i) {
    const double a = actual.at(i), e = expected.at(i);
    if (a == e || (std::isnan(a) && std::isnan(e))) continue;
    if (!(std::abs(a - e) <= atol + rtol * std::abs(e))) {
      FAIL_CHECK("element " << i << " of " << actual.shape().to_string() << ": GPU " << a << ", CPU " << e);
      return;
    }
  }
}

void check_agrees(const Tensor& gpu, const Tensor& cpu, const Tolerance& t) {
  if (cpu.dtype() == f32)
    expect_close(gpu, cpu, t.f32_rtol, t.f32_atol);
  else if (cpu.dtype() == f64)
    expect_close(gpu, cpu, t.f64_rtol, t.f64_atol);
  else
    expect_close(gpu, cpu, 0, 0);
}

// Compiles `outputs` for the CPU and for the GPU, runs both once on `feeds` (which may hold
// NaN and infinities), and checks that every output agrees; returns the GPU's.
std::vector<Tensor> check_backends_agree(Graph& g, const std::vector<Value>& outputs, const Feeds& feeds,
                                         const Tolerance& tolerance) {
  const CompileOptions options{.updates = {}, .check_finite_feeds = false};
  Executable on_cpu = compile(g, outputs, cpu(), options);
  Executable on_gpu = compile(g, outputs, cuda(), options);
  const std::vector<Tensor> expected = on_cpu.run(feeds);
  const std::vector<Tensor> got = on_gpu.run(feeds);
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("output " << i << ": " << outputs[i].name() << " " << outputs[i].type().to_string());
    check_agrees(got[i], expected[i], tolerance);
  }
  return got;
}

// The what() of the fovea::Error that `f` throws, or "(no error)".
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Random numbers for `dtype`: floats uniform in [low, high), integers their floor, bools 0/1.
Tensor random_of(DType dtype, const Shape& shape, std::uint64_t seed, double low = -2, double high = 2) {
  return random_tensor(dtype, shape, seed, is_integer(dtype) ? 2 * low : low, is_integer(dtype) ? 2 * high : high);
}

// Random numbers on a coarse grid (multiples of 1/2 for floats), so that comparisons find
// equal pairs and divisions meet zeros.
Tensor coarse_of(DType dtype, const Shape& shape, std::uint64_t seed) {
  Tensor t = random_of(dtype, shape, seed);
  if (dtype == f32)
    for (float& x : t.data<float>()) x = std::floor(2 * x) / 2;
  if (dtype == f64)
    for (double& x : t.data<double>()) x = std::floor(2 * x) / 2;
  return t;
}

// `t` with its zeros replaced by ones (integer divisors).
Tensor nonzero(Tensor t) {
  visit_dtype(t.dtype(), [&](auto zero) {
    using T = decltype(zero);
    for (T& x : t.data<T>())
      if (x == T(0)) x = T(1);
  });
  return t;
}

std::string shape_name(const Shape& s) { return s.to_string(); }

}  // namespace

// --- The backend ------------------------------------------------------------------------------

TEST_CASE("fovea::cuda() is one process-wide CUDA backend where a GPU is visible, and an Error saying why where not") {
  std::string reason;
  if (!cuda_available(&reason)) {
    // Not a skip: without a GPU this test checks that cuda() says why.
    MESSAGE("no GPU here: " << reason);
    CHECK_THROWS_WITH_AS(cuda(), doctest::Contains(reason.c_str()), Error);
    return;
  }
  const std::shared_ptr<Backend> gpu = cuda();
  CHECK(gpu == cuda());
  CHECK(gpu == cuda(0));
  CHECK(gpu->name() == "cuda");
  CHECK(gpu->device() == Device::cuda);
  CHECK_FALSE(gpu->uses_host_memory());
  CHECK_THROWS_WITH_AS(cuda(1000), doctest::Contains("no such device"), Error);
}

TEST_CASE("the CUDA backend has a kernel for every op and dtype the CPU backend has, and the transfers besides" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  const KernelRegistry& gpu = cuda()->kernels();
  const KernelRegistry& host = cpu()->kernels();
  // Compared by name: the registries' keys are OpDef addresses, ordered by name then dtype.
  auto named = [](const KernelRegistry& r) {
    std::vector<std::pair<std::string, DType>> out;
    for (const auto& [op, dtype] : r.keys()) out.emplace_back(std::string(op->name), dtype);
    return out;
  };
  std::vector<std::pair<std::string, DType>> expected = named(host);
  for (const char* op : {"to_device", "to_host"})
    for (DType t : {f32, f64, i32, i64, boolean, bf16, f16}) expected.emplace_back(op, t);
  std::ranges::sort(expected);
  std::vector<std::pair<std::string, DType>> actual = named(gpu);
  std::ranges::sort(actual);
  CHECK(actual == expected);
  // The checks that stop a run on the CPU report after the run on the GPU (Verdict).
  CHECK(static_cast<bool>(gpu.verdict_message(ops::gather, f32)));
  CHECK(static_cast<bool>(gpu.verdict_message(ops::scatter_add, f64)));
  CHECK(static_cast<bool>(gpu.verdict_message(ops::div, i32)));
  CHECK_FALSE(static_cast<bool>(gpu.verdict_message(ops::div, f32)));
}

#ifdef FOVEA_WITH_CUDA
TEST_CASE("f32 matmuls on the GPU stay in f32 unless TF32 is allowed" * doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  auto gpu = std::static_pointer_cast<CudaBackend>(cuda());
  CHECK_FALSE(gpu->allow_tf32());
  Graph g;
  Value a = g.placeholder("a", f32, {64, 256});
  Value b = g.placeholder("b", f32, {256, 32});
  const Feeds feeds = {{a, random_tensor(f32, {64, 256}, 1)}, {b, random_tensor(f32, {256, 32}, 2)}};
  check_backends_agree(g, {matmul(a, b)}, feeds, kSummation);
  gpu->set_allow_tf32(true);
  CHECK(gpu->allow_tf32());
  check_backends_agree(g, {matmul(a, b)}, feeds, Tolerance{2e-2, 2e-2, 1e-10, 1e-12});  // 10-bit mantissas
  gpu->set_allow_tf32(false);
}
#endif

// --- Elementwise ------------------------------------------------------------------------------

TEST_CASE("every unary op agrees with the CPU for each dtype it takes, on rank-0, size-1, zero-size and long shapes" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  // Every unary row of the table (ops/elementwise_table.h), so that a new row is checked here
  // too; the numeric ones also on integers, a few on positive inputs only, and those defined on
  // (-1, 1) on inputs there (elsewhere both backends would only agree on NaN).
  struct Row {
    const OpDef* op;
    ElementwiseKind kind;
  };
  const Row rows[] = {
#define FOVEA_UNARY_ROW(name, functor, kind, ...) {&ops::name, ElementwiseKind::kind},
      FOVEA_UNARY_OPS(FOVEA_UNARY_ROW)
#undef FOVEA_UNARY_ROW
  };
  const OpDef* const positive_only[] = {&ops::log, &ops::sqrt, &ops::rsqrt, &ops::acosh};
  const OpDef* const inside_unit[] = {&ops::asin, &ops::acos, &ops::atanh};
  std::uint64_t seed = 1;
  for (DType dtype : {f32, f64, i32, i64})
    for (const Shape& shape : {Shape{}, Shape{0}, Shape{3, 1, 4}, Shape{1000}}) {
      CAPTURE(dtype_name(dtype));
      INFO("shape " << shape_name(shape));
      Graph g;
      Value x = g.placeholder("x", dtype, shape);
      Value positive = g.placeholder("positive", dtype, shape);
      Value unit = g.placeholder("unit", dtype, shape);
      std::vector<Value> outputs;
      for (const Row& row : rows) {
        if (row.kind == ElementwiseKind::logical || (row.kind != ElementwiseKind::numeric && !is_floating(dtype)))
          continue;
        const bool wants_positive = std::ranges::find(positive_only, row.op) != std::end(positive_only);
        const bool wants_unit = std::ranges::find(inside_unit, row.op) != std::end(inside_unit);
        const std::array<Value, 1> in{wants_unit ? unit : wants_positive ? positive : x};
        outputs.push_back(g.apply1(*row.op, in, {}, std::source_location::current()));
      }
      check_backends_agree(g, outputs,
                           {{x, random_of(dtype, shape, seed++, -3, 3)},
                            {positive, random_of(dtype, shape, seed++, 0.1, 3)},
                            {unit, random_of(dtype, shape, seed++, -0.95, 0.95)}},
                           kElementwise);
    }
  Graph g;
  Value x = g.placeholder("x", boolean, {5, 7});
  check_backends_agree(g, {logical_not(x)}, {{x, random_tensor(boolean, {5, 7}, 9)}}, kExact);
}

TEST_CASE("every binary op and comparison agrees with the CPU under NumPy broadcasting, for each dtype it takes" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  const std::vector<std::pair<Shape, Shape>> pairs = {
      {{4, 3}, {4, 3}}, {{2, 3, 4}, {4}}, {{3, 1}, {1, 5}},          {{}, {2, 3}},
      {{2, 3}, {}},     {{0, 3}, {1, 3}}, {{2, 1, 4, 1}, {3, 1, 5}}, {{5, 1, 1, 7}, {1, 6, 1, 1}},
      {{}, {}},         {{1000}, {1000}},
  };
  std::uint64_t seed = 100;
  for (DType dtype : {f32, f64, i32, i64, boolean})
    for (const auto& [sa, sb] : pairs) {
      CAPTURE(dtype_name(dtype));
      INFO("shapes " << shape_name(sa) << " and " << shape_name(sb));
      Graph g;
      Value a = g.placeholder("a", dtype, sa);
      Value b = g.placeholder("b", dtype, sb);
      Feeds feeds = {{a, coarse_of(dtype, sa, seed++)}, {b, coarse_of(dtype, sb, seed++)}};
      std::vector<Value> outputs = {equal(a, b),      not_equal(a, b), less(a, b),
                                    less_equal(a, b), greater(a, b),   greater_equal(a, b)};
      if (dtype == boolean) {
        outputs.push_back(logical_and(a, b));
        outputs.push_back(logical_or(a, b));
      } else {
        for (Value y : {add(a, b), sub(a, b), mul(a, b), maximum(a, b), minimum(a, b)}) outputs.push_back(y);
        if (is_floating(dtype)) {
          outputs.push_back(div(a, b));  // zeros give ±inf and NaN, the same on both
          outputs.push_back(mod(a, b));
          outputs.push_back(fmod(a, b));
          Value base = g.placeholder("base", dtype, sa);
          feeds.push_back({base, random_of(dtype, sa, seed++, 0.25, 3)});
          outputs.push_back(fovea::pow(base, b));
        } else {
          Value divisor = g.placeholder("divisor", dtype, sb);
          feeds.push_back({divisor, nonzero(coarse_of(dtype, sb, seed++))});
          for (Value y : {div(a, divisor), mod(a, divisor), fmod(a, divisor)}) outputs.push_back(y);
        }
      }
      check_backends_agree(g, outputs, feeds, is_floating(dtype) ? kElementwise : kExact);
    }
}

TEST_CASE("NaN propagates through maximum and minimum on the GPU as on the CPU" * doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  for (DType dtype : {f32, f64}) {
    Graph g;
    Value a = g.placeholder("a", dtype, {4});
    Value b = g.placeholder("b", dtype, {4});
    check_backends_agree(g, {maximum(a, b), minimum(a, b), maximum(b, a)},
                         {{a, Tensor::from<double>({not_a_number, 1, not_a_number, -inf}, {4}).to(dtype)},
                          {b, Tensor::from<double>({2, not_a_number, not_a_number, inf}, {4}).to(dtype)}},
                         kExact);
  }
}

TEST_CASE("integer division and remainder by zero raise the CPU's fovea::Error on the GPU" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  for (DType dtype : {i32, i64}) {
    Graph g;
    Value a = g.placeholder("a", dtype, {2, 3});
    Value b = g.placeholder("b", dtype, {3});
    Value empty = g.placeholder("empty", dtype, {0, 3});
    const Feeds feeds = {{a, Tensor::from<double>({1, 2, 3, 4, 5, 6}, {2, 3}).to(dtype)},
                         {b, Tensor::from<double>({1, 0, 2}, {3}).to(dtype)},
                         {empty, Tensor::empty(dtype, {0, 3})}};
    // Also when the quotient is empty: every divisor is checked, as on the CPU.
    for (Value y : {div(a, b), div(empty, b), mod(a, b), fmod(a, b), mod(empty, b)}) {
      Executable on_cpu = compile(g, {y}, cpu());
      Executable on_gpu = compile(g, {y}, cuda());
      const std::string expected = error_of([&] { on_cpu.run(feeds); });
      CHECK(expected.find(y.node().op == &ops::div ? "integer division by zero" : "integer modulo by zero") !=
            std::string::npos);
      CHECK(error_of([&] { on_gpu.run(feeds); }) == expected);
    }
  }
}

// --- Reductions -------------------------------------------------------------------------------

TEST_CASE("the reductions over axes agree with the CPU over rows, columns, middle blocks, scattered axes" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  struct Case {
    Shape shape;
    std::vector<std::int64_t> axes;
    bool keepdims;
  };
  const std::vector<Case> cases = {
      {{2, 3, 4}, {}, false},
      {{2, 3, 4}, {0}, false},
      {{2, 3, 4}, {1}, true},
      {{2, 3, 4}, {2}, false},
      {{2, 3, 4}, {-1}, true},
      {{2, 3, 4}, {0, 2}, false},
      {{2, 3, 4}, {0, 1}, false},
      {{2, 3, 4}, {1, 2}, false},
      {{3, 1, 5}, {1}, false},
      {{3, 1, 5}, {0, 2}, true},
      {{2, 3, 4, 5}, {0, 2}, false},
      {{2, 3, 4, 5}, {1, 3}, false},
      {{2, 3, 4, 5}, {0, 3}, true},
      {{}, {}, false},
      {{1}, {0}, false},
      {{100003}, {0}, false},
      {{4, 50000}, {1}, false},
      {{50000, 3}, {0}, false},
      {{3000, 70}, {0}, false},
      {{70, 3000}, {1}, false},
      {{3, 20000, 40}, {1}, false},
      {{2, 0, 3}, {1}, false},
      {{2, 0, 3}, {0}, false},
      {{0, 4}, {1}, true},
  };
  std::uint64_t seed = 200;
  for (DType dtype : {f32, f64, i32, i64})
    for (const Case& c : cases) {
      CAPTURE(dtype_name(dtype));
      INFO("shape " << shape_name(c.shape) << ", " << c.axes.size() << " axes, keepdims " << c.keepdims);
      Graph g;
      Value x = g.placeholder("x", dtype, c.shape);
      std::vector<Value> outputs = {reduce_sum(x, c.axes, c.keepdims), reduce_prod(x, c.axes, c.keepdims)};
      bool empty_set = c.shape.numel() == 0;
      if (!empty_set) outputs.push_back(reduce_max(x, c.axes, c.keepdims));
      if (!empty_set) outputs.push_back(reduce_min(x, c.axes, c.keepdims));
      check_backends_agree(g, outputs, {{x, random_of(dtype, c.shape, seed++, -1, 1)}},
                           Tolerance{1e-5, 1e-5, 1e-12, 1e-12});
    }
}

TEST_CASE("a NaN anywhere in a reduced set makes reduce_max NaN on the GPU too" * doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  Graph g;
  Value x = g.placeholder("x", f32, {3, 4});
  check_backends_agree(g, {reduce_max(x, {1}), reduce_max(x, {0}), reduce_sum(x, {1})},
                       {{x, Tensor::from<float>({1, 2, std::nanf(""), 4, 5, 6, 7, 8, -1, -2, -3, -4}, {3, 4})}},
                       kExact);
}

TEST_CASE("argmax, argmin and cumsum agree with the CPU along every axis, NaNs and ties included" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  std::uint64_t seed = 900;
  for (DType dtype : {f32, f64, i32, i64})
    for (const Shape& shape : {Shape{2, 3, 4}, Shape{3, 1, 5}, Shape{7}, Shape{3000, 5}, Shape{5, 3000}, Shape{0, 4}})
      for (int axis = 0; axis < shape.rank(); ++axis) {
        CAPTURE(dtype_name(dtype));
        INFO("shape " << shape_name(shape) << ", axis " << axis);
        Graph g;
        Value x = g.placeholder("x", dtype, shape);
        std::vector<Value> outputs = {cumsum(x, axis), cumsum(x, axis, true, true)};
        if (shape[axis] > 0)
          for (bool last : {false, true}) {
            outputs.push_back(argmax(x, axis, false, last));
            outputs.push_back(argmin(x, axis, true, last));
          }
        // Integral values give ties; for floats, a NaN joins them.
        Tensor input = random_of(DType::i64, shape, seed++, -3, 3).to(dtype);
        if (is_floating(dtype) && shape.numel() > 3) {
          input = input.to(DType::f64);
          input.data<double>()[2] = std::nan("");
          input = input.to(dtype);
        }
        check_backends_agree(g, outputs, {{x, input}}, Tolerance{1e-5, 1e-5, 1e-12, 1e-12});
      }
}

// --- Matmul -----------------------------------------------------------------------------------

TEST_CASE("matmul agrees with the CPU for transposes, folded and strided batches, broadcast batches and empty dims" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  struct Case {
    Shape a, b;
    bool transpose_a, transpose_b;
  };
  const std::vector<Case> cases = {
      {{5, 7}, {7, 3}, false, false},
      {{7, 5}, {7, 3}, true, false},
      {{5, 7}, {3, 7}, false, true},
      {{7, 5}, {3, 7}, true, true},
      {{2, 5, 7}, {7, 3}, false, false},
      {{2, 5, 7}, {2, 7, 3}, false, false},
      {{2, 7, 5}, {7, 3}, true, false},
      {{1, 5, 7}, {4, 7, 3}, false, false},
      {{4, 5, 7}, {1, 3, 7}, false, true},
      {{2, 1, 5, 7}, {3, 7, 3}, false, false},
      {{2, 1, 7, 5}, {1, 3, 3, 7}, true, true},
      {{4, 0, 7}, {7, 3}, false, false},
      {{5, 0}, {0, 3}, false, false},
      {{2, 5, 0}, {2, 0, 3}, false, false},
      {{64, 128}, {128, 96}, false, false},
      {{3, 33, 65}, {3, 65, 17}, false, false},
  };
  std::uint64_t seed = 300;
  for (DType dtype : {f32, f64})
    for (const Case& c : cases) {
      CAPTURE(dtype_name(dtype));
      INFO(shape_name(c.a) << (c.transpose_a ? "ᵀ" : "") << " x " << shape_name(c.b) << (c.transpose_b ? "ᵀ" : ""));
      Graph g;
      Value a = g.placeholder("a", dtype, c.a);
      Value b = g.placeholder("b", dtype, c.b);
      check_backends_agree(g, {matmul(a, b, c.transpose_a, c.transpose_b)},
                           {{a, random_tensor(dtype, c.a, seed++)}, {b, random_tensor(dtype, c.b, seed++)}},
                           kSummation);
    }
}

// --- Shape ops --------------------------------------------------------------------------------

TEST_CASE("permute, broadcast_to, slice, concat and reshape move every dtype's elements exactly as on the CPU" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  std::uint64_t seed = 400;
  for (DType dtype : {f32, f64, i32, i64, boolean}) {
    CAPTURE(dtype_name(dtype));
    Graph g;
    Value x = g.placeholder("x", dtype, {2, 3, 4});
    Value y = g.placeholder("y", dtype, {2, 1, 3});
    Value z = g.placeholder("z", dtype, {3, 1});
    Value w = g.placeholder("w", dtype, {2, 3, 4, 5, 2});
    Value e = g.placeholder("e", dtype, {0, 3});
    Value s = g.placeholder("s", dtype, {});
    Value c = g.constant(random_of(dtype, {4, 6}, seed++), "c");
    const std::vector<Value> outputs = {
        permute(x, {2, 0, 1}),
        permute(x, {0, 2, 1}),
        permute(x, {1, 0, 2}),
        permute(x, {-1, -2, -3}),
        permute(y, {1, 2, 0}),
        permute(w, {4, 2, 0, 3, 1}),
        permute(e, {1, 0}),
        broadcast_to(z, {2, 3, 5}),
        broadcast_to(y, {4, 2, 5, 3}),
        broadcast_to(s, {3, 2}),
        broadcast_to(e, {2, 0, 3}),
        slice(x, 1, 1, 3),
        slice(x, 2, 0, 4, 3),
        slice(x, -1, -3, -1),
        slice(x, 0, 1, 2),
        slice(w, 3, 4, 0),
        slice(x, 1, 0, 3, 2),
        concat({x, x}, 0),
        concat({x, slice(x, 1, 0, 1), x}, 1),
        concat({x, x, x}, -1),
        concat({e, e}, 0),
        concat({slice(x, 0, 0, 0), x}, 0),
        reshape(c, {6, 4}),
        reshape(x, {4, 6}),
        reshape(s, {1, 1}),
    };
    check_backends_agree(g, outputs,
                         {{x, random_of(dtype, {2, 3, 4}, seed++)},
                          {y, random_of(dtype, {2, 1, 3}, seed++)},
                          {z, random_of(dtype, {3, 1}, seed++)},
                          {w, random_of(dtype, {2, 3, 4, 5, 2}, seed++)},
                          {e, random_of(dtype, {0, 3}, seed++)},
                          {s, random_of(dtype, {}, seed++)}},
                         kExact);
  }
}

TEST_CASE("a large permute, a batched transpose and a broadcast along inner dims agree with the CPU" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  Graph g;
  Value x = g.placeholder("x", f32, {4, 64, 8, 32});
  Value b = g.placeholder("b", f32, {64, 1, 32});
  check_backends_agree(g, {permute(x, {0, 2, 1, 3}), transpose(x), broadcast_to(b, {4, 64, 8, 32})},
                       {{x, random_tensor(f32, {4, 64, 8, 32}, 1)}, {b, random_tensor(f32, {64, 1, 32}, 2)}}, kExact);
}

// --- Indexing ---------------------------------------------------------------------------------

TEST_CASE("gather, scatter_add and where agree with the CPU for each dtype, index type and axis" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  std::uint64_t seed = 500;
  for (DType dtype : {f32, f64, i32, i64, boolean})
    for (DType index : {i32, i64}) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(dtype_name(index));
      Graph g;
      Value table = g.placeholder("table", dtype, {5, 4});
      Value x = g.placeholder("x", dtype, {2, 5, 3});
      Value ids = g.placeholder("ids", index, {2, 3});
      Value flat = g.placeholder("flat", index, {7});
      Value none = g.placeholder("none", index, {0});
      Value cond = g.placeholder("cond", boolean, {3, 1});
      Value rows = g.placeholder("rows", boolean, {5, 1});
      Value a = g.placeholder("a", dtype, {1, 4});
      Value b = g.placeholder("b", dtype, {});
      std::vector<Value> outputs = {gather(table, ids, 0), gather(x, ids, 1),       gather(x, flat, 1),
                                    gather(x, none, 1),    gather(table, flat, -2), where(cond, a, b),
                                    where(cond, b, a),     where(rows, table, b)};
      Feeds feeds = {{table, random_of(dtype, {5, 4}, seed++)},
                     {x, random_of(dtype, {2, 5, 3}, seed++)},
                     {ids, Tensor::from<double>({4, 0, 2, 2, 1, 4}, {2, 3}).to(index)},
                     {flat, Tensor::from<double>({3, 3, 0, 4, 1, 3, 2}, {7}).to(index)},
                     {none, Tensor::empty(index, {0})},
                     {cond, random_tensor(boolean, {3, 1}, seed++)},
                     {rows, random_tensor(boolean, {5, 1}, seed++)},
                     {a, random_of(dtype, {1, 4}, seed++)},
                     {b, random_of(dtype, {}, seed++)}};
      if (dtype != boolean) {
        // Repeated indices accumulate: 3 appears three times in `flat`.
        Value updates = g.placeholder("updates", dtype, {7, 4});
        Value middle = g.placeholder("middle", dtype, {2, 7, 3});
        feeds.push_back({updates, random_of(dtype, {7, 4}, seed++)});
        feeds.push_back({middle, random_of(dtype, {2, 7, 3}, seed++)});
        outputs.push_back(scatter_add(table, flat, updates, 0));
        outputs.push_back(scatter_add(x, flat, middle, 1));
        outputs.push_back(scatter_add(x, none, g.constant(Tensor::zeros(dtype, {2, 0, 3})), 1));
      }
      check_backends_agree(g, outputs, feeds, kElementwise);  // atomics: f32 sums to rounding
    }
}

TEST_CASE("gather and scatter_add with an index out of range raise the CPU's fovea::Error on the GPU" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  for (DType index : {i32, i64})
    for (double bad : {5.0, -1.0}) {
      CAPTURE(dtype_name(index));
      CAPTURE(bad);
      Graph g;
      Value table = g.placeholder("table", f32, {5, 4});
      Value ids = g.placeholder("ids", index, {2, 3});
      Value updates = g.placeholder("updates", f32, {2, 3, 4});
      Value hollow = g.placeholder("hollow", f32, {5, 0});  // gathering from it gives an empty result
      const Feeds feeds = {{table, random_tensor(f32, {5, 4}, 1)},
                           {ids, Tensor::from<double>({0, 1, 2, 3, bad, 4}, {2, 3}).to(index)},
                           {updates, random_tensor(f32, {2, 3, 4}, 2)},
                           {hollow, Tensor::empty(f32, {5, 0})}};
      for (Value y : {gather(table, ids, 0), scatter_add(table, ids, updates, 0), gather(hollow, ids, 0)}) {
        Executable on_cpu = compile(g, {y}, cpu());
        Executable on_gpu = compile(g, {y}, cuda());
        const std::string expected = error_of([&] { on_cpu.run(feeds); });
        CHECK(expected.find("is out of range") != std::string::npos);
        CHECK(expected.find("position [1,1]") != std::string::npos);
        CHECK(error_of([&] { on_gpu.run(feeds); }) == expected);
      }
    }
}

// --- Creation ---------------------------------------------------------------------------------

TEST_CASE("cast agrees with the CPU for every pair of dtypes, including NaN, infinities and out-of-range values" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  const std::vector<double> floats = {not_a_number, inf,  -inf,         1e300,         -1e300, 3e9,
                                      -3e9,         1e19, -1e19,        2.5,           -2.5,   0.0,
                                      -0.0,         0.75, 2147483647.0, -2147483648.0, 9.3e18};
  const auto n = static_cast<std::int64_t>(floats.size());
  std::vector<Tensor> inputs = {
      Tensor::from<double>(floats, {n}), Tensor::from<double>(floats, {n}).to(f32),
      Tensor::from<std::int64_t>({std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max(),
                                  (std::int64_t{1} << 40) + 1, (std::int64_t{1} << 31), -7, 0, 1, 16777217},
                                 {8}),
      Tensor::from<std::int32_t>(
          {std::numeric_limits<std::int32_t>::min(), std::numeric_limits<std::int32_t>::max(), -7, 0, 1, 16777217},
          {6}),
      random_tensor(boolean, {9}, 3)};
  for (const Tensor& input : inputs) {
    CAPTURE(dtype_name(input.dtype()));
    Graph g;
    Value x = g.placeholder("x", input.dtype(), input.shape());
    std::vector<Value> outputs;
    for (DType to : {f32, f64, i32, i64, boolean})
      if (to != input.dtype()) outputs.push_back(cast(x, to));
    check_backends_agree(g, outputs, {{x, input}}, kExact);
  }
}

TEST_CASE("fill and iota write the CPU's values for every dtype and axis" * doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  Graph g;
  std::vector<Value> outputs;
  for (DType dtype : {f32, f64, i32, i64, boolean}) {
    outputs.push_back(fill(g, {3, 5}, 2.7, dtype));
    outputs.push_back(fill(g, {2, 0}, 1.0, dtype));
    outputs.push_back(fill(g, {}, -1.5, dtype));
  }
  for (DType dtype : {f32, f64, i32, i64}) {
    outputs.push_back(iota(g, {4, 3, 5}, 0, dtype));
    outputs.push_back(iota(g, {4, 3, 5}, 1, dtype));
    outputs.push_back(iota(g, {4, 3, 5}, -1, dtype));
    outputs.push_back(iota(g, {7}, 0, dtype));
  }
  check_backends_agree(g, outputs, {}, kExact);
}

TEST_CASE("random_uniform and random_normal draw the CPU's Philox numbers on the GPU, with and without a step" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  Graph g;
  g.set_seed(1234);
  Value step = g.placeholder("step", i64, {});
  std::vector<Value> uniform, normal;
  for (DType dtype : {f32, f64}) {
    uniform.push_back(random_uniform(g, {1001}, dtype));
    uniform.push_back(random_uniform(g, {3, 7}, dtype, -2.0, 3.0, step));
    normal.push_back(random_normal(g, {1001}, dtype));
    normal.push_back(random_normal(g, {2, 5}, dtype, 1.0, 0.5, step));
    normal.push_back(random_normal(g, {3}, dtype));  // a last pair cut in half
  }
  for (std::int64_t s : {0, 7}) {
    const Feeds feeds = {{step, Tensor::scalar<std::int64_t>(s)}};
    // The words are the same; only the last f64 bit of low + (high - low)·u may differ (a fused
    // multiply-add on one side), and Box-Muller's libm calls by an ulp or two.
    check_backends_agree(g, uniform, feeds, Tolerance{1e-7, 0, 1e-15, 1e-15});
    check_backends_agree(g, normal, feeds, Tolerance{1e-6, 1e-7, 1e-12, 1e-13});
  }
}

// --- State --------------------------------------------------------------------------------------

TEST_CASE("assign updates the GPU's copy of a state, which pull_state brings back, and stop_gradient copies" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  auto build = [](Graph& g) {
    Value s = g.state("s", f32, {4}, init::constant(1.0));
    Value x = g.placeholder("x", f32, {4});
    Value out = stop_gradient(s * x);
    return std::tuple{s, x, out, assign(s, s + x)};
  };
  Graph on_cpu, on_gpu;
  auto [s_cpu, x_cpu, out_cpu, update_cpu] = build(on_cpu);
  auto [s_gpu, x_gpu, out_gpu, update_gpu] = build(on_gpu);
  Executable cpu_exe = compile(on_cpu, {out_cpu}, cpu(), {.updates = {update_cpu}});
  Executable gpu_exe = compile(on_gpu, {out_gpu}, cuda(), {.updates = {update_gpu}});
  for (std::uint64_t step = 0; step < 3; ++step) {
    const Tensor x = random_tensor(f32, {4}, step);
    expect_close(gpu_exe.run({{x_gpu, x}})[0], cpu_exe.run({{x_cpu, x}})[0], 1e-6, 1e-7);
  }
  // The host copy is stale until pulled.
  CHECK(on_gpu.parameter_value(s_gpu).at(0) == 1.0);
  gpu_exe.pull_state();
  expect_close(on_gpu.parameter_value(s_gpu), on_cpu.parameter_value(s_cpu), 1e-6, 1e-7);
}

TEST_CASE("executables on the GPU share one copy of each parameter, and push_state uploads the host's" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  Graph g;
  Value w = g.parameter("w", f32, {3}, init::constant(2.0));
  Value x = g.placeholder("x", f32, {3});
  Executable forward = compile(g, {w * x}, cuda());
  Executable train = compile(g, {w}, cuda(), {.updates = {assign(w, w + 1.0)}});
  const Tensor ones = Tensor::full(f32, {3}, 1.0);
  expect_close(forward.run({{x, ones}})[0], Tensor::full(f32, {3}, 2.0), 0, 0);
  train.run({});
  expect_close(forward.run({{x, ones}})[0], Tensor::full(f32, {3}, 3.0), 0, 0);  // the update is visible
  for (float& v : g.parameter_value(w).data<float>()) v = 10;
  expect_close(forward.run({{x, ones}})[0], Tensor::full(f32, {3}, 3.0), 0, 0);  // not yet pushed
  forward.push_state();
  expect_close(forward.run({{x, ones}})[0], Tensor::full(f32, {3}, 10.0), 0, 0);
  train.run({});
  train.pull_state();
  expect_close(g.parameter_value(w), Tensor::full(f32, {3}, 11.0), 0, 0);
}

// --- Fused attention --------------------------------------------------------------------------

TEST_CASE("fused attention's forward and backward agree with the CPU, with masks, causality and fully masked rows" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  struct Case {
    std::vector<std::int64_t> batch;
    std::int64_t tq, tk, d, dv;
    bool causal;
    std::vector<std::int64_t> mask;  // empty: none
  };
  const std::vector<Case> cases = {
      {{2, 3}, 5, 7, 4, 6, false, {}},
      {{2, 3}, 7, 7, 8, 8, true, {}},
      {{2}, 9, 4, 5, 3, true, {}},
      {{3}, 40, 70, 16, 24, false, {40, 70}},
      {{2, 2}, 33, 65, 64, 40, true, {2, 1, 1, 65}},
      {{1}, 6, 0, 4, 4, false, {}},
      {{2, 3}, 5, 7, 4, 6, false, {2, 3, 5, 7}},
  };
  std::uint64_t seed = 600;
  for (DType dtype : {f32, f64})
    for (const Case& c : cases) {
      CAPTURE(dtype_name(dtype));
      INFO("Tq " << c.tq << " Tk " << c.tk << " D " << c.d << " Dv " << c.dv << " causal " << c.causal << " mask rank "
                 << c.mask.size());
      auto shape = [&](std::int64_t rows, std::int64_t cols) {
        std::vector<std::int64_t> dims = c.batch;
        dims.push_back(rows);
        dims.push_back(cols);
        return Shape(dims);
      };
      Graph g;
      Value q = g.placeholder("q", dtype, shape(c.tq, c.d));
      Value k = g.placeholder("k", dtype, shape(c.tk, c.d));
      Value v = g.placeholder("v", dtype, shape(c.tk, c.dv));
      Value d_o = g.placeholder("d_o", dtype, shape(c.tq, c.dv));
      Feeds feeds = {{q, random_tensor(dtype, q.shape(), seed++)},
                     {k, random_tensor(dtype, k.shape(), seed++)},
                     {v, random_tensor(dtype, v.shape(), seed++)},
                     {d_o, random_tensor(dtype, d_o.shape(), seed++)}};
      Value mask;
      if (!c.mask.empty()) {
        // Random scores offsets, with -∞ over all of query row 1 (a fully masked row where the
        // mask has rows) and over a few single entries.
        Tensor m = random_tensor(dtype, Shape(c.mask), seed++);
        visit_dtype(dtype, [&](auto zero) {
          using T = decltype(zero);
          auto data = m.data<T>();
          const std::int64_t cols = c.mask.back(), rows = c.mask[c.mask.size() - 2];
          for (std::size_t i = 0; i < data.size(); ++i) {
            const auto row = static_cast<std::int64_t>(i) / cols % rows;
            if ((rows > 1 && row == 1) || i % 11 == 3) data[i] = -std::numeric_limits<T>::infinity();
          }
        });
        mask = g.placeholder("mask", dtype, Shape(c.mask));
        feeds.push_back({mask, m});
      }
      const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
      const FusedAttentionOutputs forward = fused_attention(q, k, v, mask, scale, c.causal);
      const FusedAttentionGradients backward =
          fused_attention_backward(q, k, v, mask, forward.output, forward.lse, d_o, scale, c.causal);
      check_backends_agree(g, {forward.output, forward.lse, backward.dq, backward.dk, backward.dv}, feeds, kSummation);
    }
}

// --- Models -------------------------------------------------------------------------------------

TEST_CASE("the gradients of a small MLP agree between the CPU and the GPU" * doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph g;
    nn::Linear l1(g, "l1", 5, 16, true, dtype), l2(g, "l2", 16, 3, true, dtype);
    Value x = g.placeholder("x", dtype, {8, 5});
    Value labels = g.placeholder("labels", i64, {8});
    Value loss = nn::cross_entropy(l2(fovea::tanh(l1(x))), labels);
    std::vector<Value> outputs = grad(loss, g.parameters());
    outputs.push_back(loss);
    check_backends_agree(
        g, outputs,
        {{x, random_tensor(dtype, {8, 5}, 1)}, {labels, Tensor::from<std::int64_t>({0, 1, 2, 2, 1, 0, 0, 2}, {8})}},
        kSummation);
  }
}

TEST_CASE("the gradients of nn::MultiHeadAttention agree between the CPU and the GPU" * doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph g;
    nn::MultiHeadAttention mha(g, "attn", 8, 2, 0.0, dtype);
    Value x = g.placeholder("x", dtype, {2, 5, 8});
    Value memory = g.placeholder("memory", dtype, {2, 6, 8});
    Value r = g.constant(random_tensor(dtype, {2, 5, 8}, 7), "r");
    Value loss = reduce_sum((mha(x, x, nn::causal_mask(g, 5, 5, dtype)) + mha(x, memory)) * r);
    std::vector<Value> wrt = g.parameters();
    wrt.push_back(x);
    wrt.push_back(memory);
    std::vector<Value> outputs = grad(loss, wrt);
    outputs.push_back(loss);
    check_backends_agree(g, outputs,
                         {{x, random_tensor(dtype, {2, 5, 8}, 1)}, {memory, random_tensor(dtype, {2, 6, 8}, 2)}},
                         kSummation);
  }
}

TEST_CASE("a tiny GPT trained with AdamW and dropout gives the same losses and weights on the CPU and the GPU" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  struct Model {
    Value ids, targets, step, loss;
    std::vector<Value> updates;
  };
  auto build = [](Graph& g) {
    nn::GPT gpt(g, {.vocab = 11, .d_model = 16, .heads = 2, .d_ff = 32, .layers = 2, .max_len = 8, .dropout = 0.1});
    Model m;
    m.ids = g.placeholder("ids", i64, {2, 6});
    m.targets = g.placeholder("targets", i64, {2, 6});
    m.step = g.placeholder("step", i64, {});
    m.loss = nn::cross_entropy(gpt(m.ids, {.training = true, .step = m.step}), m.targets);
    m.updates = nn::adamw(m.loss, g.parameters(), {.lr = nn::constant_lr(1e-2), .weight_decay = 0.01}).updates;
    return m;
  };
  Graph on_cpu, on_gpu;
  const Model a = build(on_cpu), b = build(on_gpu);
  Executable cpu_exe = compile(on_cpu, {a.loss}, cpu(), {.updates = a.updates});
  Executable gpu_exe = compile(on_gpu, {b.loss}, cuda(), {.updates = b.updates});
  const Tensor tokens = Tensor::from<std::int64_t>({1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 6, 5}, {2, 6});
  const Tensor next = Tensor::from<std::int64_t>({2, 3, 4, 5, 6, 7, 9, 8, 7, 6, 5, 4}, {2, 6});
  for (std::int64_t i = 0; i < 6; ++i) {
    CAPTURE(i);
    const Tensor step = Tensor::scalar<std::int64_t>(i);
    const double expected = cpu_exe.run({{a.ids, tokens}, {a.targets, next}, {a.step, step}})[0].item();
    const double got = gpu_exe.run({{b.ids, tokens}, {b.targets, next}, {b.step, step}})[0].item();
    CHECK(std::abs(got - expected) <= 1e-4 * std::abs(expected));
  }
  gpu_exe.pull_state();
  const std::vector<Value> pa = on_cpu.parameters(), pb = on_gpu.parameters();
  REQUIRE(pa.size() == pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) {
    // The key projection's bias has an exactly zero gradient (it adds the same amount to every
    // score of a row, which the softmax ignores), so each backend's Adam steps along the sign
    // of its own rounding noise: only its decay is meaningful, and it is not compared.
    if (pa[i].name().ends_with("k_proj/bias")) continue;
    INFO(pa[i].name());
    expect_close(on_gpu.parameter_value(pb[i]), on_cpu.parameter_value(pa[i]), 1e-3, 1e-4);
  }
}

// --- Fused normalizations ----------------------------------------------------------------------

TEST_CASE("the fused normalizations, forward and backward, agree with the CPU in f32 and f64" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  for (DType dtype : {f32, f64})
    for (const Shape& shape : {Shape{4, 7}, Shape{2, 3, 33}, Shape{3, 1}, Shape{0, 5}, Shape{5, 1500}})
      for (double smoothing : {0.0, 0.1}) {
        CAPTURE(dtype_name(dtype));
        CAPTURE(shape.to_string());
        CAPTURE(smoothing);
        std::vector<std::int64_t> batch_dims = shape.dims(), stats_dims = shape.dims();
        batch_dims.pop_back();
        stats_dims.back() = 1;
        const Shape batch(batch_dims), features{shape[shape.rank() - 1]};
        Graph g;
        Value x = g.placeholder("x", dtype, shape), dy = g.placeholder("dy", dtype, shape);
        Value gamma = g.placeholder("gamma", dtype, features), beta = g.placeholder("beta", dtype, features);
        Value targets = g.placeholder("targets", i64, batch), dloss = g.placeholder("dloss", dtype, batch);
        const Value probabilities = fused_softmax(x), log_probabilities = fused_log_softmax(x);
        const FusedLayerNormOutputs ln = fused_layer_norm(x, gamma, beta, 1e-5);
        const FusedLayerNormGradients ln_grads = fused_layer_norm_backward(dy, x, gamma, ln.mean, ln.rstd);
        const FusedCrossEntropyOutputs ce = fused_softmax_cross_entropy(x, targets, smoothing);
        std::vector<double> ids(static_cast<std::size_t>(batch.numel()));
        for (std::size_t i = 0; i < ids.size(); ++i)
          ids[i] = i % 4 == 3 ? -100.0 : static_cast<double>((i * 5) % static_cast<std::size_t>(features[0]));
        Tensor target_values = Tensor::empty(i64, batch);
        for (std::size_t i = 0; i < ids.size(); ++i) target_values.data<std::int64_t>()[i] = std::int64_t(ids[i]);
        check_backends_agree(g,
                             {probabilities, log_probabilities, fused_softmax_backward(probabilities, dy),
                              fused_log_softmax_backward(log_probabilities, dy), ln.y, ln.mean, ln.rstd, ln_grads.dx,
                              ln_grads.dgamma, ln_grads.dbeta, ce.loss, ce.lse,
                              fused_softmax_cross_entropy_backward(x, targets, ce.lse, dloss, smoothing)},
                             {{x, random_of(dtype, shape, 900, -3, 3)},
                              {dy, random_of(dtype, shape, 901)},
                              {gamma, random_of(dtype, features, 902, 0.5, 1.5)},
                              {beta, random_of(dtype, features, 903)},
                              {targets, target_values},
                              {dloss, random_of(dtype, batch, 904)}},
                             kSummation);
      }
}
