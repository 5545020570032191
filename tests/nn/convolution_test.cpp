// nn::Conv2d, nn::BatchNorm2d and nn::MaxPool2d (nn/convolution.h): what they compute, what they
// keep, and how they fail.
#include <cmath>
#include <cstring>
#include <filesystem>

#include <fovea/nn/convolution.h>
#include <fovea/ops/state.h>

#include "gradcheck.h"
#include "ops/convolution_reference.h"
#include "testing.h"

using namespace fovea;

namespace {

// Per channel c of x [N, C, ...]: the mean and the biased variance over every other axis.
void channel_moments(const Tensor& x, std::int64_t c, double& mean, double& variance) {
  const Shape& s = x.shape();
  const std::int64_t channels = s[1], inner = s.numel() / (s[0] * channels);
  double sum = 0, squares = 0;
  for (std::int64_t n = 0; n < s[0]; ++n)
    for (std::int64_t i = 0; i < inner; ++i) sum += x.at((n * channels + c) * inner + i);
  const double count = static_cast<double>(s[0] * inner);
  mean = sum / count;
  for (std::int64_t n = 0; n < s[0]; ++n)
    for (std::int64_t i = 0; i < inner; ++i) squares += std::pow(x.at((n * channels + c) * inner + i) - mean, 2);
  variance = squares / count;
}

}  // namespace

TEST_CASE("BatchNorm2d in training normalises each channel with the batch's statistics and moves its running ones") {
  Graph g;
  nn::BatchNorm2d norm(g, "norm", 3, /*momentum=*/0.25, /*eps=*/1e-5, f64);
  CHECK(norm.state.gamma.name() == "norm/gamma");
  CHECK(norm.state.running_mean.name() == "norm/running_mean");
  CHECK(g.parameters().size() == 2);  // gamma and beta train; the running statistics are state
  Tensor& gamma = g.parameter_value(norm.state.gamma);
  Tensor& beta = g.parameter_value(norm.state.beta);
  for (std::int64_t c = 0; c < 3; ++c) {
    gamma.data<double>()[static_cast<std::size_t>(c)] = 1.0 + 0.5 * static_cast<double>(c);
    beta.data<double>()[static_cast<std::size_t>(c)] = -0.25 * static_cast<double>(c);
  }
  const Value x = g.placeholder("x", f64, {4, 3, 2, 5});
  std::vector<Value> running;
  const Value y = norm(x, {.training = true, .updates = &running});
  REQUIRE(running.size() == 2);
  const Tensor tx = testing::random_tensor(f64, {4, 3, 2, 5}, 7, -2.0, 3.0);
  Executable exe = compile(g, {y}, cpu(), {.updates = running});
  const Tensor got = exe.run({{x, tx}})[0];
  const double n = 4 * 2 * 5;
  for (std::int64_t c = 0; c < 3; ++c) {
    double mean = 0, variance = 0;
    channel_moments(tx, c, mean, variance);
    for (std::int64_t b = 0; b < 4; ++b)
      for (std::int64_t i = 0; i < 10; ++i) {
        const std::int64_t at = (b * 3 + c) * 10 + i;
        const double expected = (tx.at(at) - mean) / std::sqrt(variance + 1e-5) * gamma.at(c) + beta.at(c);
        CHECK(got.at(at) == doctest::Approx(expected).epsilon(1e-12));
      }
    CHECK(g.parameter_value(norm.state.running_mean).at(c) == doctest::Approx(0.25 * mean).epsilon(1e-12));
    CHECK(g.parameter_value(norm.state.running_var).at(c) ==
          doctest::Approx(0.75 + 0.25 * variance * n / (n - 1)).epsilon(1e-12));
  }
}

TEST_CASE("BatchNorm2d in inference uses the running statistics, and leaves them alone") {
  Graph g;
  nn::BatchNorm2d norm(g, "norm", 2, 0.1, 1e-3, f64);
  g.parameter_value(norm.state.running_mean).data<double>()[1] = 0.5;
  g.parameter_value(norm.state.running_var).data<double>()[1] = 4.0;
  const Value x = g.placeholder("x", f64, {1, 2, 1, 2});
  const Value y = norm(x, {});
  const Tensor got = testing::run1(g, y, {{x, Tensor::from<double>({1, 2, 3, 4.5}, {1, 2, 1, 2})}});
  CHECK(got.at(0) == doctest::Approx(1 / std::sqrt(1 + 1e-3)));
  CHECK(got.at(3) == doctest::Approx((4.5 - 0.5) / std::sqrt(4 + 1e-3)));
  CHECK(g.parameter_value(norm.state.running_mean).at(1) == 0.5);
}

TEST_CASE("batch_norm's training gradient, through the batch statistics, passes the f64 gradient check") {
  for (const Shape& shape : {Shape{3, 2, 2, 3}, Shape{5, 4}, Shape{2, 3, 4}}) {
    testing::gradcheck("batch_norm " + shape.to_string(),
                       [&](Graph& g, const std::vector<Value>& v) {
                         nn::BatchNormState s{v[1], v[2], g.state("mean", f64, {shape[1]}, init::zeros()),
                                              g.state("var", f64, {shape[1]}, init::ones())};
                         std::vector<Value> running;
                         return nn::batch_norm(v[0], s, {.training = true, .updates = &running});
                       },
                       {{shape}, {{shape[1]}, 0.5, 1.5}, {{shape[1]}}});
  }
}

TEST_CASE("a training batch norm without a place for its updates is an error at the user's line") {
  Graph g;
  nn::BatchNorm2d norm(g, "norm", 2);
  const Value x = g.placeholder("x", f32, {2, 2, 3, 3});
  const int line = __LINE__ + 1;
  const std::string message = testing::error_of([&] { norm(x, {.training = true}); });
  CHECK(message.find("updates") != std::string::npos);
  CHECK(message.find("convolution_test.cpp:" + std::to_string(line)) != std::string::npos);
  const std::string wrong = testing::error_of([&] { norm(g.placeholder("x3", f32, {2, 3, 3, 3}), {}); });
  CHECK(wrong.find("C = 2 channels") != std::string::npos);
}

TEST_CASE("Conv2d declares a He-uniform weight and a zero bias, and adds the bias per channel") {
  Graph g;
  nn::Conv2d conv(g, "conv", 4, 6, {3, 3}, {.padding = 1, .groups = 2}, true, f64);
  CHECK(conv.weight.name() == "conv/weight");
  CHECK(conv.weight.shape() == Shape{6, 2, 3, 3});
  CHECK(conv.bias.shape() == Shape{6});
  const Tensor& w = g.parameter_value(conv.weight);
  const double bound = std::sqrt(6.0 / (2 * 9));
  double largest = 0;
  for (std::int64_t i = 0; i < w.numel(); ++i) largest = std::max(largest, std::abs(w.at(i)));
  CHECK(largest <= bound);
  CHECK(largest > 0.5 * bound);
  Tensor& b = g.parameter_value(conv.bias);
  for (std::int64_t k = 0; k < 6; ++k) b.data<double>()[static_cast<std::size_t>(k)] = static_cast<double>(k);
  const Value x = g.placeholder("x", f64, {2, 4, 5, 5});
  const Value y = conv(x);
  CHECK(y.name().starts_with("conv/"));
  const Tensor tx = testing::random_tensor(f64, {2, 4, 5, 5}, 3);
  const Tensor got = testing::run1(g, y, {{x, tx}});
  const Tensor expected = testing::conv2d_reference(tx, w, {{1, 1}, {1, 1, 1, 1}, {1, 1}, 2});
  for (std::int64_t i = 0; i < got.numel(); ++i)
    CHECK(got.at(i) == doctest::Approx(expected.at(i) + static_cast<double>((i / 25) % 6)).epsilon(1e-12));
}

TEST_CASE("Conv2d and MaxPool2d report impossible configurations at the user's line") {
  Graph g;
  const int line = __LINE__ + 1;
  std::string message = testing::error_of([&] { nn::Conv2d(g, "bad", 3, 4, {3, 3}, {.groups = 2}); });
  CHECK(message.find("multiples of groups 2") != std::string::npos);
  CHECK(message.find("convolution_test.cpp:" + std::to_string(line)) != std::string::npos);
  nn::Conv2d conv(g, "conv", 3, 4, {5, 5});
  const Value small = g.placeholder("small", f32, {1, 3, 3, 3});
  const int conv_line = __LINE__ + 1;
  message = testing::error_of([&] { conv(small); });
  CHECK(message.find("more than the 3 rows of the input") != std::string::npos);
  CHECK(message.find("conv/") != std::string::npos);
  CHECK(message.find("convolution_test.cpp:" + std::to_string(conv_line)) != std::string::npos);
  const nn::MaxPool2d pool({2, 2}, {.padding = 2});
  message = testing::error_of([&] { pool(g.placeholder("x", f32, {1, 1, 4, 4})); });
  CHECK(message.find("at most half the kernel") != std::string::npos);
  // A rank error is raised by the builder before any node exists; it still names the user's line.
  const Value flat = g.placeholder("flat", f32, {1, 3, 8});
  const int rank_line = __LINE__ + 1;
  message = testing::error_of([&] { conv(flat); });
  CHECK(message.find("must have rank 4") != std::string::npos);
  CHECK(message.find("convolution_test.cpp:" + std::to_string(rank_line)) != std::string::npos);
  const Value wrong_channels = g.placeholder("wrong", f32, {1, 2, 8, 8});
  message = testing::error_of([&] { conv(wrong_channels); });
  CHECK(message.find("3 in all with groups 1, but x has 2 channels") != std::string::npos);
}

namespace {

// A small CNN trained with batch norm and dropout on random 8x8 images: everything a resumed
// run must restore (weights, AdamW's moments, the running statistics, the dropout step).
struct CnnRun {
  Graph g;
  Value x, y, step_number;
  std::unique_ptr<Executable> exe;

  CnnRun() {
    g.set_seed(3);
    x = g.placeholder("x", f32, {8, 1, 8, 8});
    y = g.placeholder("y", i32, {8});
    step_number = g.placeholder("step", i64, {});
    nn::Conv2d conv(g, "conv", 1, 4, {3, 3}, {.padding = 1}, false);
    nn::BatchNorm2d norm(g, "norm", 4);
    nn::Linear out(g, "out", 4 * 4 * 4, 3);
    std::vector<Value> running;
    const nn::Mode mode{.training = true, .step = step_number, .updates = &running};
    const Value h = nn::MaxPool2d({2, 2})(relu(norm(conv(x), mode)));
    const Value logits = out(nn::dropout(reshape(h, {8, 64}), 0.25, mode));
    const Value loss = nn::cross_entropy(logits, y);
    nn::TrainStep step = nn::adamw(loss, g.parameters(), {.lr = nn::constant_lr(0.01)});
    std::vector<Value> updates = step.updates;
    updates.insert(updates.end(), running.begin(), running.end());
    exe = std::make_unique<Executable>(compile(g, {loss}, cpu(), {.updates = updates}));
  }

  void train(std::int64_t from, std::int64_t to) {
    for (std::int64_t s = from; s < to; ++s) {
      const Tensor images = testing::random_tensor(f32, {8, 1, 8, 8}, 100 + static_cast<std::uint64_t>(s));
      Tensor labels = Tensor::empty(i32, {8});
      for (std::int64_t i = 0; i < 8; ++i)
        labels.data<std::int32_t>()[static_cast<std::size_t>(i)] = static_cast<int>((s + i) % 3);
      exe->run({{x, images}, {y, labels}, {step_number, Tensor::scalar<std::int64_t>(s)}});
    }
  }
};

}  // namespace

TEST_CASE("a CNN with batch norm and dropout resumed from a checkpoint ends bit-identical to an uninterrupted run") {
  const std::string path = (std::filesystem::temp_directory_path() / "fovea_cnn_resume_test.safetensors").string();
  CnnRun straight;
  straight.train(0, 12);
  CnnRun first;
  first.train(0, 5);
  save_checkpoint(path, first.g);
  CnnRun second;
  load_checkpoint(path, second.g);
  second.train(5, 12);
  std::filesystem::remove(path);
  const std::vector<Value> expected = straight.g.persistent_values(), resumed = second.g.persistent_values();
  REQUIRE(expected.size() == resumed.size());
  bool saw_running_var = false;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    CAPTURE(expected[i].name());
    const Tensor &a = straight.g.parameter_value(expected[i]), &b = second.g.parameter_value(resumed[i]);
    REQUIRE(a.nbytes() == b.nbytes());
    CHECK(std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
    if (expected[i].name() == "norm/running_var") {
      saw_running_var = true;
      CHECK(a.at(0) != 1.0);  // the statistics did move from their initial ones
    }
  }
  CHECK(saw_running_var);
}
