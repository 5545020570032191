// Autodiff as a graph transform: gradients are graphs, fan-out accumulates, broadcasting is
// undone, non-differentiable paths stop, and gradients can be differentiated again.
#include "gradcheck.h"

using namespace fovea;
using testing::gradcheck;
using testing::GradcheckInput;

TEST_CASE("every differentiable elementwise unary op passes the f64 finite-difference check") {
  struct Case {
    const char* name;
    Value (*f)(Value);
    double low, high;
  };
  const Case cases[] = {
      {"neg", [](Value x) { return neg(x); }, -2, 2},
      {"abs", [](Value x) { return fovea::abs(x); }, 0.1, 2},  // away from the kink at 0
      {"abs_negative", [](Value x) { return fovea::abs(x); }, -2, -0.1},
      {"relu", [](Value x) { return relu(x); }, 0.1, 2},
      {"relu_negative", [](Value x) { return relu(x); }, -2, -0.1},
      {"exp", [](Value x) { return fovea::exp(x); }, -2, 2},
      {"log", [](Value x) { return fovea::log(x); }, 0.2, 3},
      {"sqrt", [](Value x) { return fovea::sqrt(x); }, 0.2, 3},
      {"rsqrt", [](Value x) { return rsqrt(x); }, 0.2, 3},
      {"tanh", [](Value x) { return fovea::tanh(x); }, -2, 2},
      {"sigmoid", [](Value x) { return sigmoid(x); }, -4, 4},
      {"sin", [](Value x) { return fovea::sin(x); }, -3, 3},
      {"cos", [](Value x) { return fovea::cos(x); }, -3, 3},
  };
  for (const Case& c : cases)
    gradcheck(c.name, [&](Graph&, const std::vector<Value>& x) { return c.f(x[0]); }, {{Shape{3, 4}, c.low, c.high}});
}

TEST_CASE("every differentiable binary op passes the gradient check with broadcasting both ways") {
  struct Case {
    const char* name;
    Value (*f)(Value, Value);
    double low, high;
  };
  const Case cases[] = {
      {"add", [](Value a, Value b) { return a + b; }, -2, 2},
      {"sub", [](Value a, Value b) { return a - b; }, -2, 2},
      {"mul", [](Value a, Value b) { return a * b; }, -2, 2},
      {"div", [](Value a, Value b) { return a / b; }, 0.5, 2},
      {"pow", [](Value a, Value b) { return fovea::pow(a, b); }, 0.5, 2},
      {"maximum", [](Value a, Value b) { return maximum(a, b); }, -2, 2},
      {"minimum", [](Value a, Value b) { return minimum(a, b); }, -2, 2},
  };
  const std::pair<Shape, Shape> shapes[] = {
      {Shape{2, 3}, Shape{2, 3}}, {Shape{2, 3}, Shape{3}}, {Shape{4, 1, 3}, Shape{2, 1}}, {Shape{}, Shape{2, 2}}};
  for (const Case& c : cases)
    for (const auto& [sa, sb] : shapes)
      gradcheck(std::string(c.name) + " " + sa.to_string() + " " + sb.to_string(),
                [&](Graph&, const std::vector<Value>& x) { return c.f(x[0], x[1]); },
                {{sa, c.low, c.high}, {sb, c.low, c.high}});
}

TEST_CASE("a value used several times gets the sum of its gradients") {
  gradcheck("fan-out", [](Graph&, const std::vector<Value>& x) { return x[0] * x[0] + fovea::exp(x[0]) * x[0]; },
            {{Shape{5}}});
}

TEST_CASE("gradients are ordinary backward nodes under gradients/<scope>, located at the forward line") {
  Graph g;
  Value x = g.placeholder("x", f64, {3});
  Value w = g.parameter("w", f64, {3}, init::ones());
  Value loss;
  const int line = __LINE__ + 3;
  {
    auto s = g.scope("model");
    loss = reduce_sum(fovea::tanh(x * w));
  }
  const std::size_t before = g.size();
  auto grads = grad(loss, {w});
  REQUIRE(g.size() > before);
  bool saw_tanh_rule = false;
  for (std::uint32_t id = static_cast<std::uint32_t>(before); id < g.size(); ++id) {
    const Node& n = g.node(id);
    CHECK(n.role == NodeRole::backward);
    CHECK(n.name.rfind("gradients", 0) == 0);
    if (n.scope == "gradients/model" && n.op_name() == "mul" && n.where.line == static_cast<unsigned>(line))
      saw_tanh_rule = true;
  }
  CHECK(saw_tanh_rule);
  CHECK(grads[0].shape() == Shape{3});
  g.verify();
}

// A layer may differentiate inside its LocationScope: autodiff locates each gradient node at
// its forward node's line, and leaves the layer's location in force afterwards.
TEST_CASE("grad inside a LocationScope locates gradients at the forward line and restores the scope's location") {
  Graph g;
  Value x = g.placeholder("x", f64, {3});
  Value w = g.parameter("w", f64, {3}, init::ones());
  const int line = __LINE__ + 1;
  const Value loss = reduce_sum(fovea::tanh(x * w));
  const SourceLoc layer = std::source_location::current();
  auto at = g.at(layer);
  const std::size_t before = g.size();
  (void)grad(loss, {w});
  bool saw_forward_line = false;
  for (std::uint32_t id = static_cast<std::uint32_t>(before); id < g.size(); ++id)
    saw_forward_line = saw_forward_line || g.node(id).where.line == static_cast<unsigned>(line);
  CHECK(saw_forward_line);
  CHECK(g.location_override().line == layer.line);
  CHECK(fovea::exp(x).node().where.line == layer.line);
}

TEST_CASE("unconnected targets get zeros by default, or an error when asked") {
  Graph g;
  Value x = g.placeholder("x", f64, {2});
  Value unused = g.parameter("unused", f64, {2, 2}, init::ones());
  Value loss = reduce_sum(x * x);
  auto grads = grad(loss, {unused});
  Tensor zero = testing::run1(g, grads[0], {});
  CHECK(zero.shape() == Shape{2, 2});
  for (int i = 0; i < 4; ++i) CHECK(zero.at(i) == 0.0);
  CHECK_THROWS_WITH_AS(grad(loss, {unused}, {.unconnected = Unconnected::error}),
                       doctest::Contains("do not depend on 'unused'"), Error);
}

TEST_CASE("no gradient flows through stop_gradient or comparisons") {
  Graph g;
  Value x = g.placeholder("x", f64, {3});
  Value loss = reduce_sum(stop_gradient(x) * x);  // d/dx = stop_gradient(x) = x
  auto gx = grad(loss, {x});
  Tensor tx = Tensor::from<double>({1, -2, 3}, {3});
  Tensor got = testing::run1(g, gx[0], {{x, tx}});
  for (int i = 0; i < 3; ++i) CHECK(got.at(i) == tx.at(i));

  Value mask_loss = reduce_sum(cast(greater(x, scalar_like(x, 0.0)), f64));
  Tensor zero = testing::run1(g, grad(mask_loss, {x})[0], {{x, tx}});
  for (int i = 0; i < 3; ++i) CHECK(zero.at(i) == 0.0);
}

TEST_CASE("grad rejects non-scalar losses and integer losses with a clear message") {
  Graph g;
  Value x = g.placeholder("x", f64, {3});
  const int line = __LINE__ + 1;
  CHECK_THROWS_WITH_AS(grad(x * x, {x}), doctest::Contains("must have one element"), Error);
  try {
    (void)grad(x * x, {x});
  } catch (const Error& e) {
    CHECK(e.where().line == static_cast<unsigned>(line + 2));
  }
  Value ids = g.placeholder("ids", i64, {});
  CHECK_THROWS_WITH_AS(grad(ids, {x}), doctest::Contains("only f32 and f64"), Error);
}

TEST_CASE("second derivatives: d²/dx² of x³ is 6x, and gradients of gradients are graphs too") {
  Graph g;
  Value x = g.placeholder("x", f64, {4});
  Value y = reduce_sum(x * x * x);
  Value dy = grad(y, {x})[0];                // 3x²
  Value d2y = grad(reduce_sum(dy), {x})[0];  // 6x
  Tensor tx = Tensor::from<double>({-1.5, 0.5, 2, 3}, {4});
  auto got = testing::run(g, {dy, d2y}, {{x, tx}});
  for (int i = 0; i < 4; ++i) {
    CHECK(got[0].at(i) == doctest::Approx(3 * tx.at(i) * tx.at(i)).epsilon(1e-14));
    CHECK(got[1].at(i) == doctest::Approx(6 * tx.at(i)).epsilon(1e-14));
  }
}

TEST_CASE("a Hessian-vector product by double backward matches finite differences of the gradient") {
  // f(x) = Σ tanh(x)·sin(x) + (Σ x)²; Hv = ∇(∇f · v), checked against (∇f(x+εv) - ∇f(x-εv)) / 2ε.
  Graph g;
  Value x = g.placeholder("x", f64, {5});
  Value v = g.placeholder("v", f64, {5});
  Value s = reduce_sum(x);
  Value f = reduce_sum(fovea::tanh(x) * fovea::sin(x)) + s * s;
  Value gf = grad(f, {x})[0];
  Value hv = grad(reduce_sum(gf * v), {x})[0];
  Tensor tx = testing::random_tensor(f64, {5}, 11), tv = testing::random_tensor(f64, {5}, 12);
  Tensor got = testing::run1(g, hv, {{x, tx}, {v, tv}});
  auto exe = compile(g, {gf});
  const double eps = 1e-5;
  Tensor xp = tx.clone(), xm = tx.clone();
  for (int i = 0; i < 5; ++i) {
    xp.data<double>()[i] += eps * tv.at(i);
    xm.data<double>()[i] -= eps * tv.at(i);
  }
  Tensor gp = exe.run({{x, xp}})[0], gm = exe.run({{x, xm}})[0];
  for (int i = 0; i < 5; ++i) CHECK(got.at(i) == doctest::Approx((gp.at(i) - gm.at(i)) / (2 * eps)).epsilon(1e-7));
}

TEST_CASE("vjp with an explicit cotangent equals the weighted gradient") {
  Graph g;
  Value x = g.placeholder("x", f64, {3});
  Value y = x * x;
  Value ct = g.constant(Tensor::from<double>({1, 2, 3}, {3}));
  Value gx = vjp({y}, {ct}, {x})[0];
  Tensor got = testing::run1(g, gx, {{x, Tensor::from<double>({1, 1, 2}, {3})}});
  CHECK(got.at(0) == 2.0);
  CHECK(got.at(1) == 4.0);
  CHECK(got.at(2) == 12.0);
  CHECK_THROWS_WITH_AS(vjp({y}, {g.constant(Tensor::from<double>({1, 2}, {2}))}, {x}), doctest::Contains("cotangent"),
                       Error);
}

TEST_CASE("gradients in f32 agree with f64 gradients to f32 precision") {
  auto build = [](DType t) {
    auto g = std::make_unique<Graph>();
    Value x = g->placeholder("x", t, {4});
    Value loss = reduce_sum(sigmoid(x) * fovea::exp(x * 0.5));
    Value gx = grad(loss, {x})[0];
    Tensor tx = Tensor::from<double>({-1, 0.25, 0.5, 2}, {4}).to(t);
    Tensor out = testing::run1(*g, gx, {{x, tx}});
    return out.to(f64);
  };
  testing::check_close(build(f32), build(f64), 1e-5, 1e-6);
}
