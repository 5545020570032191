// Losses against plain references, gradient checks of the compositions, and stability on
// extreme logits.
#include <cmath>

#include "gradcheck.h"
#include "passes/optimize_testing.h"

using namespace fovea;

namespace {

// Reference cross-entropy with ignore index and label smoothing, in double.
double reference_cross_entropy(const Tensor& logits, const Tensor& targets, std::int64_t ignore, double eps) {
  const std::int64_t rows = targets.numel(), classes = logits.shape()[logits.rank() - 1];
  double total = 0, count = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    const auto target = static_cast<std::int64_t>(targets.at(r));
    if (target == ignore) continue;
    double mx = -INFINITY;
    for (std::int64_t c = 0; c < classes; ++c) mx = std::max(mx, logits.at(r * classes + c));
    double sum = 0;
    for (std::int64_t c = 0; c < classes; ++c) sum += std::exp(logits.at(r * classes + c) - mx);
    const double lse = mx + std::log(sum);
    double uniform = 0;
    for (std::int64_t c = 0; c < classes; ++c) uniform += lse - logits.at(r * classes + c);
    uniform /= static_cast<double>(classes);
    total += (1 - eps) * (lse - logits.at(r * classes + target)) + eps * uniform;
    count += 1;
  }
  return total / std::max(count, 1.0);
}

}  // namespace

TEST_CASE("cross_entropy matches the reference with ignore_index and label smoothing, in f32 and f64") {
  for (DType dtype : {f32, f64})
    for (double eps : {0.0, 0.1}) {
      Graph g;
      Value logits = g.placeholder("logits", dtype, {6, 5});
      Value targets = g.placeholder("targets", i64, {6});
      Value loss = nn::cross_entropy(logits, targets, {.ignore_index = -1, .label_smoothing = eps});
      Tensor tl = testing::random_tensor(dtype, {6, 5}, 3, -3, 3);
      Tensor tt = Tensor::from<std::int64_t>({0, 4, -1, 2, 2, 1}, {6});
      const double got = testing::run1(g, loss, {{logits, tl}, {targets, tt}}).item();
      CHECK(got == doctest::Approx(reference_cross_entropy(tl, tt, -1, eps)).epsilon(dtype == f64 ? 1e-12 : 1e-5));
    }
}

TEST_CASE("cross_entropy is finite for huge logits and zero when every target is ignored") {
  Graph g;
  Value logits = g.placeholder("logits", f32, {2, 3});
  Value targets = g.placeholder("targets", i32, {2});
  Value loss = nn::cross_entropy(logits, targets);
  Tensor big = Tensor::from<float>({1000, -1000, 0, 5000, 5000, 0}, {2, 3});
  const double l = testing::run1(g, loss, {{logits, big}, {targets, Tensor::from<std::int32_t>({0, 1}, {2})}}).item();
  CHECK(std::isfinite(l));
  CHECK(l == doctest::Approx(std::log(2.0) / 2).epsilon(1e-4));
  const double none =
      testing::run1(g, loss, {{logits, big}, {targets, Tensor::from<std::int32_t>({-100, -100}, {2})}}).item();
  CHECK(none == 0.0);
}

TEST_CASE("cross_entropy raises on a target that is neither a class nor the ignore_index, optimized or not") {
  for (bool optimize : {false, true}) {
    CAPTURE(optimize);
    Graph g;
    Value logits = g.placeholder("logits", f32, {2, 2, 3});
    Value targets = g.placeholder("targets", i64, {2, 2});
    Value loss = nn::cross_entropy(logits, targets);
    passes::OptimizedGraph opt;
    if (optimize) {
      opt = passes::optimize_inference(g, {loss});
      CHECK(testing::count_op(*opt.graph, ops::fused_softmax_cross_entropy) == 1);
    }
    Executable exe = optimize ? compile(*opt.graph, opt.outputs, cpu()) : compile(g, {loss}, cpu());
    auto run_with = [&](std::initializer_list<std::int64_t> values) {
      const Tensor l = testing::random_tensor(f32, {2, 2, 3}, 1), t = Tensor::from<std::int64_t>(values, {2, 2});
      return optimize ? exe.run({{opt.value(logits), l}, {opt.value(targets), t}})
                      : exe.run({{logits, l}, {targets, t}});
    };
    CHECK_NOTHROW(run_with({0, 2, -100, 1}));
    const std::string message = testing::error_of([&] { run_with({0, 2, 7, 1}); });
    CHECK(message.find("target class 7 at position [1,0]") != std::string::npos);
    CHECK(message.find("outside [0, 3)") != std::string::npos);
    CHECK(message.find("ignore_index -100") != std::string::npos);
    CHECK(message.find("losses_test.cpp") != std::string::npos);
    CHECK(testing::error_of([&] {
            run_with({-1, 0, 0, 0});
          }).find("target class -1 at position [0,0]") != std::string::npos);
  }
}

TEST_CASE("cross_entropy, log_softmax, softmax and mse pass the gradient check") {
  const Tensor targets = Tensor::from<std::int64_t>({1, 0, 3, -100}, {4});
  testing::gradcheck(
      "cross_entropy",
      [](Graph&, const std::vector<Value>& x) { return nn::cross_entropy(x[0], x[1], {.label_smoothing = 0.1}) * 1.0; },
      {{Shape{4, 5}, -2, 2}, {.shape = Shape{4}, .dtype = i64, .value = targets}});
  testing::gradcheck("log_softmax", [](Graph&, const std::vector<Value>& x) { return nn::log_softmax(x[0], 0); },
                     {{Shape{3, 4}, -2, 2}});
  testing::gradcheck("softmax", [](Graph&, const std::vector<Value>& x) { return nn::softmax(x[0]); },
                     {{Shape{2, 3, 4}, -2, 2}});
  testing::gradcheck("mse", [](Graph&, const std::vector<Value>& x) { return nn::mse_loss(x[0], x[1]); },
                     {{Shape{3, 2}}, {Shape{3, 2}}});
}

TEST_CASE("cross_entropy explains mismatched logits and targets") {
  Graph g;
  Value logits = g.placeholder("logits", f32, {4, 10});
  CHECK_THROWS_WITH_AS(nn::cross_entropy(logits, g.placeholder("t", i64, {5})),
                       doctest::Contains("must have the logits' shape without the last"), Error);
  CHECK_THROWS_WITH_AS(nn::cross_entropy(logits, g.placeholder("f", f32, {4})),
                       doctest::Contains("integer class indices"), Error);
}

TEST_CASE("Linear computes x·W + b for batches of any rank") {
  Graph g;
  nn::Linear layer(g, "proj", 3, 2, true, f64);
  g.parameter_value(layer.bias).data<double>()[1] = 1.0;
  Value x = g.placeholder("x", f64, {2, 2, 3});
  Value y = layer(x);
  CHECK(y.shape() == Shape{2, 2, 2});
  CHECK(layer.weight.name() == "proj/weight");
  Tensor tx = testing::random_tensor(f64, {2, 2, 3}, 5);
  Tensor got = testing::run1(g, y, {{x, tx}});
  const Tensor& w = g.parameter_value(layer.weight);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 2; ++c) {
      double want = c == 1 ? 1.0 : 0.0;
      for (int k = 0; k < 3; ++k) want += tx.at(r * 3 + k) * w.at(k * 2 + c);
      CHECK(got.at(r * 2 + c) == doctest::Approx(want).epsilon(1e-12));
    }
}
