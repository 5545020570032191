// Optimizers: the update graphs reproduce the textbook update rules step by step, the
// training step is one executable, and schedules and clipping do what they say.
#include <cmath>

#include "testing.h"

using namespace fovea;

namespace {

// A quadratic bowl L = Σ (w - target)² · scale, whose gradient is 2·scale·(w - target).
struct Bowl {
  Graph g;
  Value w, loss;
  std::vector<double> target{1.0, -2.0, 0.5};
  explicit Bowl(double scale = 1.0) {
    w = g.parameter("w", f64, {3}, init::constant(0.0));
    Value t = g.constant(Tensor::from<double>(target, {3}));
    Value d = w - t;
    loss = reduce_sum(d * d) * scale;
  }
  std::vector<double> grad_at(const std::vector<double>& p, double scale = 1.0) const {
    std::vector<double> out;
    for (std::size_t i = 0; i < p.size(); ++i) out.push_back(2 * scale * (p[i] - target[i]));
    return out;
  }
  std::vector<double> weights() {
    return {g.parameter_value(w).at(0), g.parameter_value(w).at(1), g.parameter_value(w).at(2)};
  }
};

}  // namespace

TEST_CASE("sgd with momentum, Nesterov and weight decay matches the reference update for several steps") {
  for (bool nesterov : {false, true}) {
    Bowl bowl;
    nn::SgdOptions o{.lr = nn::constant_lr(0.1), .momentum = 0.9, .nesterov = nesterov, .weight_decay = 0.01};
    nn::TrainStep step = nn::sgd(bowl.loss, {bowl.w}, o);
    auto exe = compile(bowl.g, {bowl.loss}, cpu(), {.updates = step.updates});
    std::vector<double> p{0, 0, 0}, v{0, 0, 0};
    for (int k = 0; k < 5; ++k) {
      exe.run({});
      std::vector<double> gr = bowl.grad_at(p);
      for (int i = 0; i < 3; ++i) {
        const double d = gr[i] + 0.01 * p[i];
        v[i] = 0.9 * v[i] + d;
        p[i] -= 0.1 * (nesterov ? d + 0.9 * v[i] : v[i]);
      }
      const auto got = bowl.weights();
      for (int i = 0; i < 3; ++i) CHECK(got[i] == doctest::Approx(p[i]).epsilon(1e-12));
    }
  }
}

TEST_CASE("adam and adamw match the reference update with bias correction") {
  for (bool decoupled : {false, true}) {
    Bowl bowl;
    nn::AdamOptions o{.lr = nn::constant_lr(0.05), .weight_decay = 0.1};
    nn::TrainStep step = decoupled ? nn::adamw(bowl.loss, {bowl.w}, o) : nn::adam(bowl.loss, {bowl.w}, o);
    auto exe = compile(bowl.g, {bowl.loss, step.step}, cpu(), {.updates = step.updates});
    std::vector<double> p{0, 0, 0}, m{0, 0, 0}, v{0, 0, 0};
    for (int t = 1; t <= 6; ++t) {
      auto out = exe.run({});
      CHECK(out[1].item() == t);
      std::vector<double> gr = bowl.grad_at(p);
      for (int i = 0; i < 3; ++i) {
        double d = gr[i] + (decoupled ? 0.0 : 0.1 * p[i]);
        m[i] = 0.9 * m[i] + 0.1 * d;
        v[i] = 0.999 * v[i] + 0.001 * d * d;
        const double mh = m[i] / (1 - std::pow(0.9, t)), vh = v[i] / (1 - std::pow(0.999, t));
        const double old = p[i];
        p[i] -= 0.05 * mh / (std::sqrt(vh) + 1e-8);
        if (decoupled) p[i] -= 0.05 * 0.1 * old;
      }
      const auto got = bowl.weights();
      for (int i = 0; i < 3; ++i) CHECK(got[i] == doctest::Approx(p[i]).epsilon(1e-10));
    }
  }
}

TEST_CASE("the loss returned by a training step is the loss before that step's update") {
  Bowl bowl;
  nn::TrainStep step = nn::sgd(bowl.loss, {bowl.w}, {.lr = nn::constant_lr(0.1)});
  auto exe = compile(bowl.g, {bowl.loss}, cpu(), {.updates = step.updates});
  CHECK(exe.run({})[0].item() == doctest::Approx(1 + 4 + 0.25));  // at w = 0
  CHECK(exe.run({})[0].item() < 5.25);
}

TEST_CASE("gradient clipping by global norm scales all gradients together") {
  Bowl bowl(100.0);  // gradients are huge: 200·(w - target)
  nn::TrainStep step = nn::sgd(bowl.loss, {bowl.w}, {.lr = nn::constant_lr(1.0), .clip_norm = 1.0});
  auto exe = compile(bowl.g, {step.grad_norm}, cpu(), {.updates = step.updates});
  const double norm = exe.run({})[0].item();
  const double expected_norm = 200 * std::sqrt(1 + 4 + 0.25);
  CHECK(norm == doctest::Approx(expected_norm));
  // The step moved w by exactly lr·(clipped gradient), a vector of norm ≈ 1 along -grad.
  const auto w = bowl.weights();
  CHECK(std::sqrt(w[0] * w[0] + w[1] * w[1] + w[2] * w[2]) == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(w[0] > 0);
  CHECK(w[1] < 0);
}

TEST_CASE("TrainStep::grads are the true gradients when clipping, and applied_grads the clipped ones") {
  Bowl bowl(100.0);  // at w = 0 the gradient is 200·(0 - target) = (-200, 400, -100)
  nn::TrainStep step = nn::sgd(bowl.loss, {bowl.w}, {.lr = nn::constant_lr(1.0), .clip_norm = 1.0});
  auto exe = compile(bowl.g, {step.grads[0], step.applied_grads[0]}, cpu(), {.updates = step.updates});
  const std::vector<Tensor> got = exe.run({});
  const std::vector<double> expected = bowl.grad_at({0, 0, 0}, 100.0);
  const double norm = std::sqrt(expected[0] * expected[0] + expected[1] * expected[1] + expected[2] * expected[2]);
  for (std::int64_t i = 0; i < 3; ++i) {
    CHECK(got[0].at(i) == doctest::Approx(expected[static_cast<std::size_t>(i)]));
    CHECK(got[1].at(i) == doctest::Approx(expected[static_cast<std::size_t>(i)] / norm).epsilon(1e-5));
  }
  // Without clipping the two are one and the same value.
  Bowl plain;
  nn::TrainStep unclipped = nn::sgd(plain.loss, {plain.w});
  CHECK(unclipped.applied_grads[0].ref() == unclipped.grads[0].ref());
}

TEST_CASE("learning-rate schedules give the documented values at chosen steps") {
  Graph g;
  Value t = g.placeholder("t", f64, {});
  auto lr_at = [&](const nn::Schedule& s, double step) {
    return testing::run1(g, s.build(t), {{t, Tensor::scalar<double>(step)}}).item();
  };
  CHECK(lr_at(nn::constant_lr(0.3), 7) == doctest::Approx(0.3));
  const nn::Schedule cosine = nn::warmup_cosine(1.0, 10, 110, 0.1);
  CHECK(lr_at(cosine, 5) == doctest::Approx(0.5));
  CHECK(lr_at(cosine, 10) == doctest::Approx(1.0));
  CHECK(lr_at(cosine, 60) == doctest::Approx(0.1 + 0.9 * 0.5));
  CHECK(lr_at(cosine, 110) == doctest::Approx(0.1));
  CHECK(lr_at(cosine, 500) == doctest::Approx(0.1));
  const nn::Schedule decay = nn::step_decay(1.0, 10, 0.5);
  CHECK(lr_at(decay, 1) == doctest::Approx(1.0));
  CHECK(lr_at(decay, 10) == doctest::Approx(1.0));
  CHECK(lr_at(decay, 11) == doctest::Approx(0.5));
  CHECK(lr_at(decay, 25) == doctest::Approx(0.25));
  CHECK(lr_at(nn::warmup_constant(2.0, 4), 1) == doctest::Approx(0.5));
  CHECK(lr_at(nn::warmup_constant(2.0, 4), 9) == doctest::Approx(2.0));
}

TEST_CASE("optimizer nodes are update-role nodes under optimizer/ and their state is persistent") {
  Bowl bowl;
  nn::TrainStep step = nn::adam(bowl.loss, {bowl.w});
  bool saw_update = false;
  for (std::uint32_t id = 0; id < bowl.g.size(); ++id) {
    const Node& n = bowl.g.node(id);
    if (n.op_name() == "assign") {
      CHECK(n.role == NodeRole::update);
      CHECK(n.name.rfind("optimizer/", 0) == 0);
      saw_update = true;
    }
  }
  CHECK(saw_update);
  CHECK(bowl.g.parameters().size() == 1);         // w only
  CHECK(bowl.g.persistent_values().size() == 4);  // w, step, m, v
  CHECK(bowl.g.find("optimizer/step") != nullptr);
}

TEST_CASE("assign rejects non-parameters and mismatched types, and its result cannot be read") {
  Graph g;
  Value x = g.placeholder("x", f32, {2});
  Value w = g.parameter("w", f32, {2}, init::zeros());
  CHECK_THROWS_WITH_AS(assign(x, x), doctest::Contains("only parameters and state"), Error);
  CHECK_THROWS_WITH_AS(assign(w, g.placeholder("y", f32, {3})), doctest::Contains("the new value is f32[3]"), Error);
  Value a = assign(w, x);
  Value bad = a + 1.0f;
  CHECK_THROWS_WITH_AS(compile(g, {bad}, cpu(), {.updates = {a}}), doctest::Contains("reads the output of assign"),
                       Error);
  CHECK_THROWS_WITH_AS(compile(g, {x}, cpu(), {.updates = {x}}), doctest::Contains("is not an assign node"), Error);
}

TEST_CASE("an optimizer refuses values that are not trainable parameters") {
  Bowl bowl;
  Value s = bowl.g.state("counter", i64, {}, init::zeros());
  CHECK_THROWS_WITH_AS(nn::sgd(bowl.loss, {s}), doctest::Contains("not a trainable parameter"), Error);
  CHECK_THROWS_AS(nn::adam(bowl.loss, {}), Error);
}
