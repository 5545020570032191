// A PyTorch TransformerEncoderLayer exported by torch.onnx.export (tests/onnx/make_fixtures.py
// made the files once): imported, it computes PyTorch's output, its gradients agree with
// PyTorch's, and a few steps of fine-tuning with Fovea's optimizer lower the loss.
#include <doctest/doctest.h>

#include <filesystem>

#include <fovea/onnx/import.h>
#include <fovea/onnx/tensors.h>

#include "testing.h"

namespace fs = std::filesystem;
using namespace fovea;

namespace {

const fs::path kFixture = fs::path(FOVEA_ONNX_FIXTURES) / "encoder_layer";

Tensor fixture(const std::string& name) { return fovea::onnx::read_tensor(kFixture / (name + ".pb")); }

}  // namespace

TEST_CASE("onnx import: a PyTorch encoder layer computes PyTorch's output and gradients") {
  Graph g("encoder");
  const auto model = fovea::onnx::import_model(g, kFixture / "model.onnx");
  REQUIRE(model.parameters.size() == 12);
  const Value x = model.input("x");
  const Value y = model.output("y");
  const Value loss = reduce_sum(y * g.constant(fixture("r")));
  const auto grads = grad(loss, model.parameters);
  std::vector<Value> outputs{y};
  outputs.insert(outputs.end(), grads.begin(), grads.end());
  const auto got = fovea::testing::run(g, outputs, {{x, fixture("x")}});
  fovea::testing::check_close(got[0], fixture("y"), 1e-5, 1e-5);
  double worst = 0;  // the largest difference relative to the largest value, over every gradient
  for (std::size_t i = 0; i < grads.size(); ++i) {
    INFO("the gradient of " << model.parameters[i].name());
    const Tensor expected = fixture("grad." + model.parameters[i].name());
    fovea::testing::check_close(got[i + 1], expected, 1e-4, 1e-5);
    double difference = 0, scale = 0;
    for (std::int64_t k = 0; k < expected.numel(); ++k) {
      difference = std::max(difference, std::abs(got[i + 1].at(k) - expected.at(k)));
      scale = std::max(scale, std::abs(expected.at(k)));
    }
    worst = std::max(worst, difference / scale);
  }
  MESSAGE("gradients agree with PyTorch's to " << worst << " of their largest magnitude");
}

TEST_CASE("onnx import: an imported encoder layer fine-tunes, optimized or not, to the same loss") {
  auto fine_tune = [](bool optimize) {
    Graph g("encoder");
    const auto model = fovea::onnx::import_model(g, kFixture / "model.onnx");
    const Value target = g.constant(fixture("r"));
    const Value diff = model.output("y") - target;
    const Value loss = reduce_mean(diff * diff);
    auto train = passes::compile_training_step(g, {loss},
                                               [&](Graph& fg, const std::vector<Value>& out) {
                                                 auto step =
                                                     nn::sgd(out[0], fg.parameters(), {.lr = nn::constant_lr(0.05)});
                                                 return passes::StepParts{.outputs = {out[0]}, .updates = step.updates};
                                               },
                                               cpu(), {.optimize = optimize});
    std::vector<double> losses;
    for (int i = 0; i < 5; ++i) losses.push_back(train.run({{model.input("x"), fixture("x")}})[0].item());
    return losses;
  };
  const auto plain = fine_tune(false), optimized = fine_tune(true);
  CHECK(plain.back() < plain.front());
  for (std::size_t i = 0; i < plain.size(); ++i) CHECK(optimized[i] == doctest::Approx(plain[i]).epsilon(1e-5));
}
