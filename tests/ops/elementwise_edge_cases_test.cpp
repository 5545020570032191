// Elementwise ops at the edges: NaN propagates (relu, maximum, minimum, abs) in the one-op
// kernels and in fused chains; integer + - · and negation wrap around; INT_MIN / -1 is defined;
// a C++ number an integer tensor cannot hold exactly is a build-time error, never a truncation;
// round takes halves to even, mod and fmod follow their sign rules, isnan and isinf classify.
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>

#include <fovea/ops/functors.h>

#include "passes/optimize_testing.h"

using namespace fovea;

namespace {

constexpr std::int32_t i32_min = std::numeric_limits<std::int32_t>::min();
constexpr std::int32_t i32_max = std::numeric_limits<std::int32_t>::max();
constexpr std::int64_t i64_min = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t i64_max = std::numeric_limits<std::int64_t>::max();

// The fused graph of `outputs` (elementwise fusion only), run on `feeds`.
std::vector<Tensor> run_fused(const Graph& g, const std::vector<Value>& outputs, const Feeds& feeds,
                              std::size_t expected_fused_nodes) {
  passes::PassManager pm;
  pm.add("elementwise_fusion",
         [](const Graph& graph, std::span<const ValueRef> roots) { return passes::fuse_elementwise(graph, roots); });
  passes::OptimizedGraph opt = pm.run(g, outputs);
  CHECK(testing::count_op(*opt.graph, ops::fused_elementwise) == expected_fused_nodes);
  std::vector<Value> counterparts;
  for (const Value& v : outputs) counterparts.push_back(opt.value(v));
  return testing::run(*opt.graph, counterparts, testing::mapped_feeds(opt, feeds));
}

// The message of the error `build` throws (or "(no error)").
template <typename F>
std::string error_of(F&& build) {
  return testing::error_of(std::forward<F>(build));
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

// --- NaN ---------------------------------------------------------------------------------------

TEST_CASE("relu propagates NaN (as PyTorch does) and still clamps negatives, in f32 and f64") {
  for (DType t : {f32, f64}) {
    Graph g;
    Value x = g.placeholder("x", t, {4});
    const double nan = std::nan("");
    Tensor got = testing::run1(g, relu(x), {{x, Tensor::from<double>({nan, -2.0, 3.0, -0.0}, {4}).to(t)}});
    CHECK(std::isnan(got.at(0)));
    CHECK(got.at(1) == 0.0);
    CHECK(got.at(2) == 3.0);
    CHECK(got.at(3) == 0.0);
  }
  CHECK(std::isnan(fn::Relu{}(std::nanf(""))));
  CHECK(fn::Relu{}(std::int32_t{-5}) == 0);
}

TEST_CASE("abs, maximum and minimum keep NaN from either side") {
  Graph g;
  Value a = g.placeholder("a", f32, {3}), b = g.placeholder("b", f32, {3});
  const float nan = std::nanf("");
  auto got = testing::run(g, {abs(a), maximum(a, b), minimum(a, b)},
                          {{a, Tensor::from<float>({nan, 1, -nan}, {3})}, {b, Tensor::from<float>({1, nan, 2}, {3})}});
  CHECK(std::isnan(got[0].at(0)));
  CHECK(got[0].at(1) == 1.0);
  CHECK(std::isnan(got[0].at(2)));
  for (const Tensor& t : {got[1], got[2]})
    for (std::int64_t i = 0; i < 3; ++i) CHECK(std::isnan(t.at(i)));
}

TEST_CASE("relu, abs, maximum and minimum propagate NaN inside a fused_elementwise chain") {
  const double nan = std::nan("");
  for (DType t : {f32, f64}) {
    // Each op in a chain of its own (x·2 → op → ·1), so that a NaN cannot reach the output by
    // another path; s is 0 for the binary ops.
    const std::vector<std::function<Value(Value, Value)>> chains = {
        [](Value x, Value) { return relu(x * 2.0) * 1.0; },
        [](Value x, Value) { return abs(x * 2.0) * 1.0; },
        [](Value x, Value s) { return maximum(x * 2.0, s) * 1.0; },
        [](Value x, Value s) { return maximum(s, x * 2.0) * 1.0; },
        [](Value x, Value s) { return minimum(x * 2.0, s) * 1.0; },
        [](Value x, Value s) { return minimum(s, x * 2.0) * 1.0; },
    };
    for (std::size_t k = 0; k < chains.size(); ++k) {
      CAPTURE(k);
      Graph g;
      Value x = g.placeholder("x", t, {3});
      Value s = g.placeholder("s", t, {3});
      auto got = run_fused(g, {chains[k](x, s)},
                           {{x, Tensor::from<double>({nan, 1.0, -1.0}, {3}).to(t)},
                            {s, Tensor::from<double>({0.0, 0.0, 0.0}, {3}).to(t)}},
                           1);
      CHECK(std::isnan(got[0].at(0)));
      CHECK(!std::isnan(got[0].at(1)));
      CHECK(!std::isnan(got[0].at(2)));
    }
  }
}

// --- Integer arithmetic ----------------------------------------------------------------------

TEST_CASE("integer add, sub, mul and neg wrap around (two's complement), i32 and i64") {
  Graph g;
  Value a = g.placeholder("a", i32, {3}), b = g.placeholder("b", i32, {3});
  auto got = testing::run(g, {a + b, a - b, a * b, -a, abs(a)},
                          {{a, Tensor::from<std::int32_t>({i32_max, i32_min, 65536}, {3})},
                           {b, Tensor::from<std::int32_t>({1, 1, 65536}, {3})}});
  CHECK(got[0].at(0) == i32_min);  // INT_MAX + 1
  CHECK(got[1].at(1) == i32_max);  // INT_MIN - 1
  CHECK(got[2].at(2) == 0);        // 2^16 · 2^16 = 2^32 ≡ 0
  CHECK(got[3].at(1) == i32_min);  // -INT_MIN
  CHECK(got[4].at(1) == i32_min);  // |INT_MIN|
  CHECK(got[2].at(0) == i32_max);  // ordinary values are untouched

  Graph h;
  Value c = h.placeholder("c", i64, {2}), d = h.placeholder("d", i64, {2});
  auto wide = testing::run(
      h, {c + d, c - d, c * d, -c},
      {{c, Tensor::from<std::int64_t>({i64_max, i64_min}, {2})}, {d, Tensor::from<std::int64_t>({1, 1}, {2})}});
  CHECK(wide[0].data<std::int64_t>()[0] == i64_min);
  CHECK(wide[1].data<std::int64_t>()[1] == i64_max);
  CHECK(wide[2].data<std::int64_t>()[1] == i64_min);
  CHECK(wide[3].data<std::int64_t>()[1] == i64_min);
}

TEST_CASE("INT_MIN / -1 wraps to INT_MIN instead of trapping, i32 and i64, kernel and functor") {
  Graph g;
  Value a = g.placeholder("a", i32, {3}), b = g.placeholder("b", i32, {3});
  Tensor got = testing::run1(
      g, a / b,
      {{a, Tensor::from<std::int32_t>({i32_min, 7, i32_min}, {3})}, {b, Tensor::from<std::int32_t>({-1, -1, 1}, {3})}});
  CHECK(got.at(0) == i32_min);
  CHECK(got.at(1) == -7);
  CHECK(got.at(2) == i32_min);

  Graph h;
  Value c = h.placeholder("c", i64, {1});
  Tensor wide = testing::run1(h, c / -1.0, {{c, Tensor::from<std::int64_t>({i64_min}, {1})}});
  CHECK(wide.data<std::int64_t>()[0] == i64_min);

  CHECK(fn::Div{}(i32_min, std::int32_t{-1}) == i32_min);
  CHECK(fn::Div{}(i64_min, std::int64_t{-1}) == i64_min);
  CHECK(fn::Div{}(std::int32_t{-9}, std::int32_t{-1}) == 9);
}

// --- C++ numbers meeting integer tensors --------------------------------------------------------

TEST_CASE("a non-integral number with an integer tensor is a build-time error naming op, tensor, number, line") {
  Graph g;
  Value x = g.placeholder("x", i32, {3});
  const int line = __LINE__ + 1;
  const std::string what = error_of([&] { (void)(x * 0.5); });
  CHECK(contains(what, "mul"));
  CHECK(contains(what, "0.5"));
  CHECK(contains(what, "'x'"));
  CHECK(contains(what, "i32[3]"));
  CHECK(contains(what, "cast("));
  CHECK(contains(what, std::string("elementwise_edge_cases_test.cpp:") + std::to_string(line)));
  // Every operator, on either side.
  CHECK(contains(error_of([&] { (void)(x / 2.7); }), "div"));
  CHECK(contains(error_of([&] { (void)(0.5 + x); }), "add"));
  CHECK(contains(error_of([&] { (void)(x - 0.25); }), "sub"));
  CHECK(contains(error_of([&] { (void)(1.5 / x); }), "div"));
  CHECK(contains(error_of([&] { (void)(2.5 * x); }), "mul"));
}

TEST_CASE("every way a number becomes an integer constant rejects what would be truncated") {
  Graph g;
  Value x = g.placeholder("x", i32, {3});
  // scalar_like feeds comparisons, maximum/minimum, pow and where.
  CHECK(contains(error_of([&] { (void)less(x, scalar_like(x, 0.5)); }), "0.5 is not an integer"));
  CHECK(contains(error_of([&] { (void)maximum(x, scalar_like(x, 2.5)); }), "2.5"));
  CHECK(contains(error_of([&] { (void)full_like(x, 0.5); }), "fill"));
  CHECK(contains(error_of([&] { (void)fill(g, {2}, -0.1, i64); }), "cannot fill a tensor of i64"));
  CHECK(contains(error_of([&] { (void)g.scalar(0.5, i32); }), "cast()"));
  CHECK(contains(error_of([&] { (void)g.scalar(2.0, boolean); }), "neither 0 nor 1"));
}

TEST_CASE("a number outside the integer dtype's range, or not finite, is an error too") {
  Graph g;
  Value x = g.placeholder("x", i32, {3});
  Value w = g.placeholder("w", i64, {3});
  CHECK(contains(error_of([&] { (void)(x * 1e20); }), "outside the range of i32"));
  CHECK(contains(error_of([&] { (void)(x + 2147483648.0); }), "outside the range of i32"));
  CHECK(contains(error_of([&] { (void)(w + 1e19); }), "outside the range of i64"));
  CHECK(contains(error_of([&] { (void)(w + 9223372036854775808.0); }), "outside the range of i64"));
  CHECK(contains(error_of([&] { (void)(x * std::nan("")); }), "not a finite number"));
  CHECK(contains(error_of([&] { (void)(w * std::numeric_limits<double>::infinity()); }), "not a finite number"));
  // The edges of the range are fine.
  CHECK(error_of([&] { (void)(x + -2147483648.0); }) == "(no error)");
  CHECK(error_of([&] { (void)(x + 2147483647.0); }) == "(no error)");
  CHECK(error_of([&] { (void)(w + 3e9); }) == "(no error)");
  CHECK(error_of([&] { (void)(w + -9223372036854775808.0); }) == "(no error)");
}

TEST_CASE("integral numbers with integer tensors build and compute as before, and floats take any number") {
  Graph g;
  Value x = g.placeholder("x", i32, {3});
  Value y = (x * 2.0 + 1.0) / 2.0 - 3.0;
  Value c = maximum(x, scalar_like(x, 0.0));
  Value z = fill(g, {2}, -4.0, i64);
  auto got = testing::run(g, {y, c, z}, {{x, Tensor::from<std::int32_t>({-3, 0, 5}, {3})}});
  testing::check_close(got[0], Tensor::from<std::int32_t>({-5, -3, 2}, {3}));
  testing::check_close(got[1], Tensor::from<std::int32_t>({0, 0, 5}, {3}));
  testing::check_close(got[2], Tensor::from<std::int64_t>({-4, -4}, {2}));
  Value f = g.placeholder("f", f32, {1});
  CHECK(error_of([&] { (void)(f * 0.1 + 1e20); }) == "(no error)");
}

// --- Rounding, remainders, sign and classification ---------------------------------------------

TEST_CASE("round takes halves to the even integer (ONNX Round), in f32 and f64, kernel and fused chain") {
  const std::vector<double> xs = {0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.4999, 2.6, -3.7};
  const std::vector<double> rounded = {0, 2, 2, -0.0, -2, -2, 0, 3, -4};
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    Graph g;
    const std::int64_t n = static_cast<std::int64_t>(xs.size());
    Value x = g.placeholder("x", t, {n});
    const Feeds feeds = {{x, Tensor::from<double>(xs, {n}).to(t)}};
    const Tensor alone = testing::run1(g, round(x), feeds);
    // In a chain: x·1 → round → +0 becomes one fused_elementwise node.
    const Tensor fused = run_fused(g, {round(x * 1.0) + 0.0}, feeds, 1)[0];
    for (std::int64_t i = 0; i < n; ++i) {
      CAPTURE(xs[static_cast<std::size_t>(i)]);
      CHECK(alone.at(i) == rounded[static_cast<std::size_t>(i)]);
      CHECK(fused.at(i) == rounded[static_cast<std::size_t>(i)]);
    }
  }
}

TEST_CASE("mod takes the divisor's sign and fmod the dividend's, with negative operands, in f32 and i64") {
  // a and b as in Python: -7 % 3 == 2, 7 % -3 == -2, -7 % -3 == -1; math.fmod keeps a's sign.
  const std::vector<double> a = {-7, 7, -7, 7, 6, -6, 0};
  const std::vector<double> b = {3, -3, -3, 3, 3, 3, -5};
  const std::vector<double> mod_expected = {2, -2, -1, 1, 0, 0, 0};
  const std::vector<double> fmod_expected = {-1, 1, -1, 1, 0, 0, 0};
  for (DType t : {f32, i64}) {
    CAPTURE(dtype_name(t));
    Graph g;
    const std::int64_t n = static_cast<std::int64_t>(a.size());
    Value va = g.placeholder("a", t, {n}), vb = g.placeholder("b", t, {n});
    auto got = testing::run(g, {mod(va, vb), fmod(va, vb)},
                            {{va, Tensor::from<double>(a, {n}).to(t)}, {vb, Tensor::from<double>(b, {n}).to(t)}});
    for (std::int64_t i = 0; i < n; ++i) {
      CAPTURE(a[static_cast<std::size_t>(i)]);
      CAPTURE(b[static_cast<std::size_t>(i)]);
      CHECK(got[0].at(i) == mod_expected[static_cast<std::size_t>(i)]);
      CHECK(got[1].at(i) == fmod_expected[static_cast<std::size_t>(i)]);
    }
  }
  // Fractional floats, and a divisor of -1 at INT_MIN (whose C++ % is undefined).
  CHECK(fn::Mod{}(-5.5f, 2.0f) == 0.5f);
  CHECK(fn::Fmod{}(-5.5f, 2.0f) == -1.5f);
  CHECK(fn::Mod{}(5.5, -2.0) == -0.5);
  CHECK(fn::Mod{}(i64_min, std::int64_t{-1}) == 0);
  CHECK(fn::Fmod{}(i32_min, std::int32_t{-1}) == 0);
  CHECK(fn::Mod{}(i32_min, std::int32_t{3}) == 1);  // -2147483648 = 3·(-715827883) + 1
  CHECK(std::isnan(fn::Mod{}(1.0, 0.0)));
}

TEST_CASE("integer mod and fmod by zero are run-time errors naming the node, as div is") {
  for (DType t : {i32, i64}) {
    CAPTURE(dtype_name(t));
    Graph g;
    Value a = g.placeholder("a", t, {2}), b = g.placeholder("b", t, {2});
    for (Value r : {mod(a, b), fmod(a, b)}) {
      Executable exe = compile(g, {r});
      try {
        exe.run({{a, Tensor::from<double>({1, 2}, {2}).to(t)}, {b, Tensor::from<double>({1, 0}, {2}).to(t)}});
        FAIL("expected fovea::Error");
      } catch (const Error& e) {
        CHECK(contains(e.what(), "integer modulo by zero"));
        CHECK(e.node() == r.name());
      }
    }
  }
  // The shared functors give 0 there, so that a GPU's remainder can run to its end.
  CHECK(fn::Mod{}(std::int32_t{7}, std::int32_t{0}) == 0);
  CHECK(fn::Fmod{}(std::int64_t{-7}, std::int64_t{0}) == 0);
}

TEST_CASE("sign is -1, 0 or 1, keeps NaN, and works on integers") {
  Graph g;
  Value x = g.placeholder("x", f32, {5});
  const Tensor got =
      testing::run1(g, sign(x), {{x, Tensor::from<float>({-3.5f, 0.0f, -0.0f, 1e-30f, std::nanf("")}, {5})}});
  CHECK(got.at(0) == -1.0);
  CHECK(got.at(1) == 0.0);
  CHECK(got.at(2) == 0.0);
  CHECK(got.at(3) == 1.0);
  CHECK(std::isnan(got.at(4)));
  Graph h;
  Value w = h.placeholder("w", i64, {3});
  testing::check_close(testing::run1(h, sign(w), {{w, Tensor::from<std::int64_t>({i64_min, 0, 9}, {3})}}),
                       Tensor::from<std::int64_t>({-1, 0, 1}, {3}));
}

TEST_CASE("isnan and isinf tell NaN, +inf, -inf and finite values apart, alone and fused, f32 and f64") {
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    Graph g;
    Value x = g.placeholder("x", t, {5});
    const Feeds feeds = {{x, Tensor::from<double>({nan, inf, -inf, 0.0, -1e30}, {5}).to(t)}};
    const std::vector<std::uint8_t> nan_expected = {1, 0, 0, 0, 0}, inf_expected = {0, 1, 1, 0, 0};
    auto alone = testing::run(g, {isnan(x), isinf(x)}, feeds);
    // x·1 → isnan → logical_or with isinf: one fused node with a bool output.
    Value either = logical_or(isnan(x * 1.0), isinf(x * 1.0));
    auto fused = run_fused(g, {either}, feeds, 1);
    CHECK(alone[0].dtype() == boolean);
    CHECK(fused[0].dtype() == boolean);
    for (std::int64_t i = 0; i < 5; ++i) {
      CAPTURE(i);
      CHECK(alone[0].at(i) == nan_expected[static_cast<std::size_t>(i)]);
      CHECK(alone[1].at(i) == inf_expected[static_cast<std::size_t>(i)]);
      CHECK(fused[0].at(i) == (nan_expected[static_cast<std::size_t>(i)] | inf_expected[static_cast<std::size_t>(i)]));
    }
  }
  Graph g;
  Value ids = g.placeholder("ids", i32, {3});
  CHECK(contains(error_of([&] { (void)isnan(ids); }), "must be f32 or f64"));
}

TEST_CASE("floor, ceil, round and sign have a zero gradient, so a graph holding them still differentiates") {
  Graph g;
  Value x = g.placeholder("x", f64, {3});
  Value y = reduce_sum(x * x + floor(x) + ceil(x) * 2.0 + round(x) + sign(x));
  const std::vector<Value> dx = grad(y, {x});
  const Tensor got = testing::run1(g, dx[0], {{x, Tensor::from<double>({-1.3, 0.2, 2.7}, {3})}});
  testing::check_close(got, Tensor::from<double>({-2.6, 0.4, 5.4}, {3}), 1e-12);
}
