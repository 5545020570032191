// Anomaly mode (CompileOptions::check_finite, runtime/anomaly.cpp): a run stops at the first
// node that makes a NaN or an infinity out of finite inputs, naming it, its output and its
// inputs; values that are non-finite by design (attention masks of -inf) flow on.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fake_device.h"
#include "testing.h"

using namespace fovea;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Sets an environment variable for the life of a scope, restoring what was there before.
class ScopedEnvironment {
 public:
  ScopedEnvironment(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) previous_ = old;
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~ScopedEnvironment() {
    if (previous_)
      setenv(name_, previous_->c_str(), 1);
    else
      unsetenv(name_);
  }
  ScopedEnvironment(const ScopedEnvironment&) = delete;
  ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;

 private:
  const char* name_;
  std::optional<std::string> previous_;
};

// A scalar model whose SGD steps drive w below 0, where log(relu(w)) is log(0) = -inf: the loss
// w + 0.01·log(relu(w))² has gradient 1 + 0.02·log(w)/w, so w goes 1, 0.7, 0.403, 0.117, -0.073.
// (Squared, so that the backward needs the log's output and cannot run before it.)
struct Collapsing {
  Graph g;
  Value loss;
  std::vector<Value> updates;
  unsigned log_line = 0;

  Collapsing() {
    Value w = g.parameter("w", f32, {}, init::constant(1.0));
    NameScope scope(g, "model");
    Value shifted = fovea::relu(w);
    log_line = __LINE__ + 1;
    Value log_w = fovea::log(shifted);
    loss = w + log_w * log_w * g.scalar(0.01, f32);
    updates = nn::sgd(loss, {w}, {.lr = nn::constant_lr(0.3)}).updates;
  }
};

}  // namespace

TEST_CASE("anomaly mode stops a training run at the log whose argument reached 0, with the user's line") {
  ScopedEnvironment off("FOVEA_CHECK_FINITE", nullptr);
  Collapsing model;
  Executable exe = compile(model.g, {model.loss}, cpu(), {.updates = model.updates, .check_finite = true});
  for (int step = 0; step < 4; ++step) CHECK(std::isfinite(exe.run({})[0].item()));
  try {
    exe.run({});
    FAIL("expected fovea::Error");
  } catch (const Error& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(e.op() == "log");
    CHECK(e.node() == "model/log");
    CHECK(contains(what, "in scope 'model'"));
    CHECK(contains(what, "holds -inf at element 0"));
    CHECK(contains(what, "'model/relu' f32[]: all finite"));
    CHECK(contains(what, "anomaly_test.cpp:" + std::to_string(model.log_line)));
  }

  // Without it the same run goes on silently, with a loss of +inf.
  Collapsing unchecked;
  Executable plain = compile(unchecked.g, {unchecked.loss}, cpu(), {.updates = unchecked.updates});
  for (int step = 0; step < 4; ++step) plain.run({});
  CHECK(std::isinf(plain.run({})[0].item()));
}

TEST_CASE("anomaly mode reports the node that made a NaN, not the many nodes after it") {
  ScopedEnvironment off("FOVEA_CHECK_FINITE", nullptr);
  Graph g;
  Value x = g.placeholder("x", f32, {4});
  Value root = fovea::sqrt(x);
  Value y = root;
  for (int i = 0; i < 10; ++i) y = fovea::tanh(y * g.scalar(2.0, f32) + g.scalar(1.0, f32));
  Value total = fovea::reduce_sum(y);
  Executable exe = compile(g, {total}, cpu(), {.check_finite = true});
  const Tensor fed = Tensor::from<float>({1.0, 4.0, -1.0, 9.0}, {4});
  CHECK_THROWS_WITH_AS(exe.run({{x, fed}}),
                       doctest::Contains("output 0 (f32[4]) of this node holds NaN at element 2 (index [2])"), Error);
  try {
    exe.run({{x, fed}});
  } catch (const Error& e) {
    CHECK(e.node() == root.node().name);
    CHECK(e.op() == "sqrt");
  }
  CHECK(exe.run({{x, Tensor::from<float>({1.0, 4.0, 0.0, 9.0}, {4})}})[0].defined());
}

TEST_CASE("anomaly mode names every input of the node and whether it was finite") {
  ScopedEnvironment off("FOVEA_CHECK_FINITE", nullptr);
  Graph g;
  Value a = g.placeholder("numerator", f32, {3});
  Value b = g.placeholder("denominator", f32, {3});
  Value indices = g.placeholder("indices", i64, {2});
  Value quotient = a / b;
  Value picked = fovea::gather(quotient, indices, 0);
  Executable exe = compile(g, {picked}, cpu(), {.check_finite = true});
  const Feeds feeds = {{a, Tensor::from<float>({1.0, 2.0, 3.0}, {3})},
                       {b, Tensor::from<float>({1.0, 0.0, 2.0}, {3})},
                       {indices, Tensor::from<std::int64_t>({0, 2}, {2})}};
  CHECK_THROWS_WITH_AS(exe.run(feeds),
                       doctest::Contains("holds +inf at element 1 (index [1]), the first non-finite value of this run "
                                         "that a node made; its inputs were 'numerator' f32[3]: all finite, "
                                         "'denominator' f32[3]: all finite"),
                       Error);

  // A NaN that arrives from a feed (its own check turned off) is not the node's doing: it flows on.
  Executable lenient = compile(g, {picked}, cpu(), {.check_finite_feeds = false, .check_finite = true});
  const Feeds bad_feed = {{a, Tensor::from<float>({1.0, NAN, 3.0}, {3})},
                          {b, Tensor::from<float>({1.0, 1.0, 2.0}, {3})},
                          {indices, Tensor::from<std::int64_t>({1, 2}, {2})}};
  CHECK(std::isnan(lenient.run(bad_feed)[0].at(0)));
}

TEST_CASE("anomaly mode lets causal attention's -inf masks and fully masked rows through, fused or not") {
  ScopedEnvironment off("FOVEA_CHECK_FINITE", nullptr);
  constexpr std::int64_t tq = 4, tk = 2, dh = 8;  // with Tq > Tk the first two queries see no key
  Graph g;
  Value q = g.parameter("q", f32, {1, 2, tq, dh}, init::normal(0.0, 1.0));
  Value k = g.parameter("k", f32, {1, 2, tk, dh}, init::normal(0.0, 1.0));
  Value v = g.parameter("v", f32, {1, 2, tk, dh}, init::normal(0.0, 1.0));
  const nn::AttentionMask mask = nn::causal_mask(g, tq, tk, f32);
  Value unfused = nn::scaled_dot_product_attention(q, k, v, mask);
  const FusedAttentionOutputs fused = fused_attention(q, k, v, Value{}, 0.35, /*causal=*/true);
  Value loss = fovea::reduce_sum(unfused * unfused) + fovea::reduce_sum(fused.output * fused.output);
  const std::vector<Value> updates = nn::sgd(loss, {q, k, v}, {.lr = nn::constant_lr(0.1)}).updates;
  Executable exe = compile(g, {loss, fused.lse}, cpu(), {.updates = updates, .check_finite = true});
  for (int step = 0; step < 3; ++step) {
    const std::vector<Tensor> results = exe.run({});
    CHECK(std::isfinite(results[0].item()));
    CHECK(std::isinf(results[1].at(0)));  // the fully masked rows' log-sum-exp is -inf
  }
}

TEST_CASE("FOVEA_CHECK_FINITE=1 turns anomaly mode on for every compile, and it is off by default") {
  Graph g;
  Value x = g.placeholder("x", f32, {2});
  Value y = fovea::sqrt(x);
  const Feeds feeds = {{x, Tensor::from<float>({-1.0, 1.0}, {2})}};
  {
    ScopedEnvironment off("FOVEA_CHECK_FINITE", nullptr);
    Executable exe = compile(g, {y});
    CHECK(std::isnan(exe.run(feeds)[0].at(0)));
  }
  {
    ScopedEnvironment on("FOVEA_CHECK_FINITE", "1");
    Executable exe = compile(g, {y});
    CHECK_THROWS_WITH_AS(exe.run(feeds), doctest::Contains("holds NaN at element 0"), Error);
  }
  {
    ScopedEnvironment other("FOVEA_CHECK_FINITE", "0");
    CHECK_NOTHROW(compile(g, {y}).run(feeds));
  }
}

TEST_CASE("anomaly mode on a device copies each output to the host, refuses recording, and checks profiled runs") {
  ScopedEnvironment off("FOVEA_CHECK_FINITE", nullptr);
  Graph g;
  Value x = g.placeholder("x", f32, {3});
  Value log_x = fovea::log(x);
  Value y = fovea::exp(log_x * g.scalar(2.0, f32));
  Executable exe =
      compile(g, {y}, std::make_shared<testing::FakeDevice>(), {.check_finite = true, .capture_graph = true});
  CHECK(contains(exe.capture_status(), "refused: anomaly mode"));
  const Tensor good = Tensor::from<float>({1.0, 2.0, 3.0}, {3});
  const Tensor bad = Tensor::from<float>({1.0, -2.0, 3.0}, {3});
  for (int run = 0; run < 3; ++run) CHECK(exe.run({{x, good}})[0].at(2) == doctest::Approx(9.0));
  CHECK_FALSE(exe.captured());
  CHECK_THROWS_WITH_AS(exe.run({{x, bad}}), doctest::Contains("holds NaN at element 1 (index [1])"), Error);
  CHECK(exe.run({{x, good}})[0].at(1) == doctest::Approx(4.0));  // a failed run leaves the next one whole
  exe.set_profiling(true);
  try {
    exe.run({{x, bad}});
    FAIL("expected fovea::Error");
  } catch (const Error& e) {
    CHECK(e.node() == log_x.node().name);
  }
}
