// The training step of the Fashion-MNIST MLP (784-256-128-10, ReLU, AdamW, batch 128) on
// synthetic data: forward, backward and update in one executable, median over many steps.
// Time to 88% test accuracy on the real data is measured by examples/fashion_mnist.
//
//   build/bench/mlp [--batch 128] [--steps 300] [--json FILE]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include <fovea/fovea.h>
#include <CLI/CLI.hpp>

#include "report.h"

int main(int argc, char** argv) {
  CLI::App app{"Training-step time of the Fashion-MNIST MLP"};
  std::int64_t batch = 128;
  int steps = 300;
  std::string json;
  app.add_option("--batch", batch, "examples per step");
  app.add_option("--steps", steps, "timed steps");
  app.add_option("--json", json, "write the figures to this JSON file");
  CLI11_PARSE(app, argc, argv);

  namespace nn = fovea::nn;
  fovea::Graph g("mlp");
  nn::Linear l1(g, "layer1", 784, 256), l2(g, "layer2", 256, 128), l3(g, "layer3", 128, 10);
  auto x = g.placeholder("x", fovea::f32, {batch, 784});
  auto y = g.placeholder("y", fovea::i32, {batch});
  auto loss = nn::cross_entropy(l3(fovea::relu(l2(fovea::relu(l1(x))))), y);
  auto step = nn::adamw(loss, g.parameters(), {.lr = nn::constant_lr(1e-3), .weight_decay = 1e-4});
  auto exe = fovea::compile(g, {loss}, fovea::cpu(), {.updates = step.updates});

  fovea::Tensor images = fovea::Tensor::empty(fovea::f32, {batch, 784});
  fovea::Tensor labels = fovea::Tensor::empty(fovea::i32, {batch});
  for (std::int64_t i = 0; i < images.numel(); ++i)
    images.data<float>()[i] = static_cast<float>((i * 7919) % 256) / 255;
  for (std::int64_t i = 0; i < batch; ++i) labels.data<std::int32_t>()[i] = static_cast<std::int32_t>(i % 10);

  for (int i = 0; i < 20; ++i) exe.run({{x, images}, {y, labels}});  // warm-up
  std::vector<double> ms;
  for (int i = 0; i < steps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    exe.run({{x, images}, {y, labels}});
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  std::printf("MLP 784-256-128-10, batch %lld, AdamW: %zu scheduled nodes, planned peak %.2f MB\n",
              static_cast<long long>(batch), exe.schedule().size(), exe.planned_peak_bytes() / 1e6);
  std::printf("step: median %.3f ms, min %.3f ms, p90 %.3f ms\n", median, ms.front(), ms[ms.size() * 9 / 10]);

  fovea::tools::Report report;
  report.set("batch", batch);
  report.set("ms_per_step", median);
  report.set("examples_per_second", 1000.0 * static_cast<double>(batch) / median);
  report.set("planned_peak_bytes", exe.planned_peak_bytes());
  report.set("threads", fovea::configured_thread_count());
  report.finish(json);
  return 0;
}
