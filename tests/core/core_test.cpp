// Core types: shapes, tensors, attributes, names and scopes, parameters, the verifier.
#include "testing.h"

using namespace fovea;

TEST_CASE("shapes broadcast by NumPy's rules and print compactly") {
  Shape out;
  CHECK(broadcast_shapes(Shape{4, 1, 3}, Shape{5, 1}, out));
  CHECK(out == Shape{4, 5, 3});
  CHECK(broadcast_shapes(Shape{0, 3}, Shape{1}, out));
  CHECK(out == Shape{0, 3});
  CHECK_FALSE(broadcast_shapes(Shape{2, 3}, Shape{4}, out));
  CHECK(Shape{}.to_string() == "[]");
  CHECK(Shape{32, 784}.to_string() == "[32,784]");
  CHECK(Shape{2, 3, 4}.strides() == std::vector<std::int64_t>{12, 4, 1});
  CHECK(Shape{2, 0}.numel() == 0);
  CHECK(Shape{}.numel() == 1);
  CHECK(normalize_axis(-1, 3) == 2);
  CHECK(normalize_axis(3, 3) == -1);
}

TEST_CASE("tensors check their dtype on typed access and print their values") {
  Tensor t = Tensor::from<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(t.nbytes() == 24);
  CHECK(t.data<float>()[4] == 5.0f);
  CHECK_THROWS_WITH_AS(t.data<double>(), doctest::Contains("data<f64>() asked of a f32 tensor"), Error);
  CHECK_THROWS_AS(Tensor::from<float>({1, 2, 3}, {2, 2}), Error);
  CHECK(t.to_string() == "f32[2,3] [[1, 2, 3], [4, 5, 6]]");
  CHECK(t.to(i32).to_string() == "i32[2,3] [[1, 2, 3], [4, 5, 6]]");
  Tensor shared = t;
  Tensor copy = t.clone();
  t.data<float>()[0] = 9.0f;
  CHECK(shared.at(0) == 9.0);
  CHECK(copy.at(0) == 1.0);
  CHECK_THROWS_AS(t.reshape({4}), Error);
  CHECK(t.reshape({3, 2}).shape() == Shape{3, 2});
  CHECK_THROWS_AS(Tensor::zeros(f32, {2, -1}), Error);
}

TEST_CASE("attributes are typed, sorted and printable") {
  Attributes a{{"keepdims", true}, {"axes", std::vector<std::int64_t>{0, 2}}};
  CHECK(a.get_bool("keepdims"));
  CHECK(a.get_ints("axes").size() == 2);
  CHECK(a.to_string() == "{axes=[0,2], keepdims=true}");
  CHECK_THROWS_WITH_AS(a.get_int("keepdims"), doctest::Contains("is not of type int"), Error);
  CHECK_THROWS_WITH_AS(a.get_int("missing"), doctest::Contains("'missing' is missing"), Error);
}

TEST_CASE("names are scoped and made unique, and parameter names must be unique") {
  Graph g;
  Value x = g.placeholder("x", f32, {2});
  Value a, b;
  {
    auto encoder = g.scope("encoder");
    auto layer = g.scope("layer0");
    a = fovea::exp(x);
    b = fovea::exp(x);
    (void)g.parameter("w", f32, {2}, init::zeros());
    CHECK_THROWS_WITH_AS(g.parameter("w", f32, {2}, init::zeros()), doctest::Contains("must be unique"), Error);
  }
  CHECK(a.name() == "encoder/layer0/exp");
  CHECK(b.name() == "encoder/layer0/exp_1");
  CHECK(a.node().scope == "encoder/layer0");
  CHECK(fovea::exp(x).name() == "exp");
  CHECK(g.find("encoder/layer0/w") != nullptr);
  CHECK_THROWS_AS(g.scope("a/b"), Error);
}

TEST_CASE("parameters are initialised from Philox keyed by seed and name, independent of other nodes") {
  auto build = [](Graph& g, bool extra) {
    if (extra) (void)g.parameter("other", f32, {100}, init::normal(0, 1));
    return g.parameter("w", f32, {64, 32}, init::xavier_uniform());
  };
  Graph g1, g2, g3;
  g3.set_seed(1);
  Value w1 = build(g1, false), w2 = build(g2, true), w3 = build(g3, false);
  const Tensor &t1 = g1.parameter_value(w1), &t2 = g2.parameter_value(w2), &t3 = g3.parameter_value(w3);
  bool same12 = true, same13 = true;
  double max_abs = 0;
  for (std::int64_t i = 0; i < t1.numel(); ++i) {
    same12 &= t1.at(i) == t2.at(i);
    same13 &= t1.at(i) == t3.at(i);
    max_abs = std::max(max_abs, std::abs(t1.at(i)));
  }
  CHECK(same12);
  CHECK_FALSE(same13);
  const double bound = std::sqrt(6.0 / (64 + 32));
  CHECK(max_abs <= bound);
  CHECK(max_abs > 0.9 * bound);
}

TEST_CASE("the initializers have the moments they promise") {
  Graph g;
  Value w = g.parameter("w", f64, {400, 100}, init::kaiming_normal());
  Value n = g.parameter("n", f64, {10000}, init::normal(2.0, 0.5));
  Value c = g.parameter("c", f64, {3}, init::constant(1.5));
  auto moments = [](const Tensor& t, double& mean, double& var) {
    mean = var = 0;
    for (std::int64_t i = 0; i < t.numel(); ++i) mean += t.at(i);
    mean /= static_cast<double>(t.numel());
    for (std::int64_t i = 0; i < t.numel(); ++i) var += (t.at(i) - mean) * (t.at(i) - mean);
    var /= static_cast<double>(t.numel());
  };
  double mean, var;
  moments(g.parameter_value(w), mean, var);
  CHECK(mean == doctest::Approx(0).epsilon(0.01).scale(1));
  CHECK(var == doctest::Approx(2.0 / 400).epsilon(0.05));
  moments(g.parameter_value(n), mean, var);
  CHECK(mean == doctest::Approx(2.0).epsilon(0.02));
  CHECK(var == doctest::Approx(0.25).epsilon(0.05));
  CHECK(g.parameter_value(c).at(2) == 1.5);
  CHECK_THROWS_WITH_AS(g.parameter("ids", i32, {3}, init::zeros()), doctest::Contains("must be f32 or f64"), Error);
}

TEST_CASE("the verifier accepts built graphs") {
  Graph g;
  Value x = g.placeholder("x", f32, {2, 3});
  Value w = g.parameter("w", f32, {3}, init::ones());
  (void)fovea::relu(x * w + 1.0f);
  CHECK_NOTHROW(g.verify());
}

TEST_CASE("a negative placeholder dimension is rejected where it is declared") {
  Graph g;
  CHECK_THROWS_WITH_AS(g.placeholder("x", f32, {2, -3}), doctest::Contains("core_test.cpp"), Error);
}
