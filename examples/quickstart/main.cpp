// Quickstart: a two-layer MLP classifier, built as a graph, printed, drawn, compiled and run.
//
//   build/examples/quickstart                       # prints everything, draws quickstart_out/
//   build/examples/quickstart --runs 1000 --json quickstart.json
//
// It walks through the life of a Fovea graph:
//   1. build   x ─ matmul ─ +b1 ─ relu ─ matmul ─ +b2 ─ softmax, under the scopes mlp/layer1,
//              mlp/layer2 and mlp/softmax; shapes are checked as each line runs;
//   2. look    the text IR (one line per node, with your file:line) and a Graphviz drawing;
//   3. mistake what a shape error says: the op, the node and the line that made it;
//   4. compile the memory plan, whose peak is known before the first run;
//   5. run     a deterministic random batch; every row of probabilities must sum to 1;
//   6. time    the median latency of --runs runs.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <fovea/fovea.h>
#include <CLI/CLI.hpp>

#include "explore_option.h"
#include "report.h"

namespace {

struct Mlp {
  fovea::Value x;      // the input batch: f32[batch, 784], e.g. flattened 28×28 images
  fovea::Value w2;     // kept to show a mistake with it below
  fovea::Value probs;  // f32[batch, 10]: one probability per class, each row summing to 1
};

Mlp build_mlp(fovea::Graph& g, std::int64_t batch) {
  using namespace fovea;
  Mlp m;
  m.x = g.placeholder("x", f32, {batch, 784});
  auto mlp = g.scope("mlp");

  Value hidden;
  {
    auto layer = g.scope("layer1");
    auto w1 = g.parameter("w1", f32, {784, 256}, init::kaiming_normal());
    auto b1 = g.parameter("b1", f32, {256}, init::zeros());
    hidden = relu(matmul(m.x, w1) + b1);  // b1 broadcasts over the batch
  }

  Value logits;
  {
    auto layer = g.scope("layer2");
    m.w2 = g.parameter("w2", f32, {256, 10}, init::kaiming_normal(1.0));  // no ReLU after: gain 1
    auto b2 = g.parameter("b2", f32, {10}, init::zeros());
    logits = matmul(hidden, m.w2) + b2;
  }

  {
    // softmax(z)[i] = exp(z[i] - max_j z[j]) / Σ_k exp(z[k] - max_j z[j])
    // Subtracting the row's maximum changes nothing mathematically but keeps exp() ≤ 1, so
    // large logits cannot overflow. keepdims leaves f32[batch, 1] columns that broadcast.
    auto softmax = g.scope("softmax");
    auto shifted = logits - reduce_max(logits, {-1}, /*keepdims=*/true);
    auto e = exp(shifted);
    m.probs = e / reduce_sum(e, {-1}, /*keepdims=*/true);
  }
  return m;
}

// A batch of "pixels" uniform in [0, 1), the same on every machine run after run.
fovea::Tensor random_batch(std::int64_t batch, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
  fovea::Tensor t = fovea::Tensor::empty(fovea::f32, {batch, 784});
  for (float& v : t.data<float>()) v = pixel(rng);
  return t;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

int run(int argc, char** argv) {
  CLI::App app{"Fovea quickstart: build, print, draw, compile and run a two-layer MLP"};
  std::string out_dir = "quickstart_out";
  std::string json_path;
  int runs = 100;
  std::int64_t batch = 32;
  std::uint32_t seed = 42;
  app.add_option("--out", out_dir, "folder for quickstart.dot and quickstart.svg")->capture_default_str();
  app.add_option("--runs", runs, "timed runs")->check(CLI::Range(1, 1000000))->capture_default_str();
  app.add_option("--batch", batch, "rows in the input batch")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20))
      ->capture_default_str();
  app.add_option("--seed", seed, "seed of the random input batch")->capture_default_str();
  app.add_option("--json", json_path, "write the final figures to this JSON file");
  fovea::tools::ExploreOption explore;
  explore.add_to(app);
  CLI11_PARSE(app, argc, argv);

  // 1. Build.
  fovea::Graph g("quickstart");
  g.set_seed(seed);
  const Mlp m = build_mlp(g, batch);

  // 2. Look: the text IR of everything the probabilities depend on, and a drawing of it.
  std::printf("== text IR ==\n%s\n", fovea::to_text(g, {m.probs}).c_str());

  std::filesystem::create_directories(out_dir);
  const std::string svg_path = (std::filesystem::path(out_dir) / "quickstart.svg").string();
  const std::string dot = fovea::to_dot(g, {m.probs}, {.title = "quickstart: a two-layer MLP"});
  std::string why;
  if (fovea::write_svg(dot, svg_path, &why))
    std::printf("== drawing ==\nwrote %s and its source %s/quickstart.dot\n\n", svg_path.c_str(), out_dir.c_str());
  else
    std::printf("== drawing ==\nno SVG: %s\n\n", why.c_str());

  // 3. A mistake: x is [batch, 784] and w2 is [256, 10], so x·w2 cannot be formed. The graph
  // refuses the node where it is built, and says so in terms of this file and line.
  std::printf("== a deliberate mistake ==\n");
  try {
    fovea::matmul(m.x, m.w2);
    std::printf("unexpected: matmul(x, w2) was accepted\n");
    return 1;
  } catch (const fovea::Error& e) {
    std::printf("caught fovea::Error:\n%s\n\n", e.what());
  }

  // 4. Compile: schedule, memory plan and kernels, all decided before the first run.
  // With --explore FILE the first run is profiled and observed, and the explorer written to FILE.
  fovea::Executable exe = fovea::compile(g, {m.probs}, fovea::cpu(), {.explore = explore.option()});
  std::printf("== memory plan ==\n%s", exe.memory_plan().to_string(g).c_str());
  std::printf("planned peak: %zu bytes (%.1f KiB)\n\n", exe.planned_peak_bytes(), exe.planned_peak_bytes() / 1024.0);

  // 5. Run on one batch and check the probabilities.
  const fovea::Tensor input = random_batch(batch, seed);
  const fovea::Tensor probs = exe.run({{m.x, input}})[0];
  const auto p = probs.data<float>();
  double max_error = 0.0;
  for (std::int64_t row = 0; row < batch; ++row) {
    double sum = 0.0;
    for (std::int64_t k = 0; k < 10; ++k) sum += p[static_cast<std::size_t>(row * 10 + k)];
    max_error = std::max(max_error, std::abs(sum - 1.0));
  }
  std::printf("== probabilities (first rows of %lld) ==\n", static_cast<long long>(batch));
  for (std::int64_t row = 0; row < std::min<std::int64_t>(batch, 4); ++row) {
    std::printf("row %lld:", static_cast<long long>(row));
    std::int64_t best = 0;
    for (std::int64_t k = 0; k < 10; ++k) {
      const float v = p[static_cast<std::size_t>(row * 10 + k)];
      std::printf(" %.4f", v);
      if (v > p[static_cast<std::size_t>(row * 10 + best)]) best = k;
    }
    std::printf("   -> class %lld\n", static_cast<long long>(best));
  }
  const double tolerance = 1e-5;
  std::printf("largest |row sum - 1| = %.3g (%s)\n\n", max_error, max_error <= tolerance ? "ok" : "FAILED");

  // 6. Time: each run copies the batch in, runs every kernel and copies the result out.
  std::vector<double> micros;
  micros.reserve(static_cast<std::size_t>(runs));
  for (int i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    exe.run({{m.x, input}});
    const auto stop = std::chrono::steady_clock::now();
    micros.push_back(std::chrono::duration<double, std::micro>(stop - start).count());
  }
  const double median_us = median(micros);
  std::printf("== timing ==\n%d runs of batch %lld: median %.1f us, fastest %.1f us\n", runs,
              static_cast<long long>(batch), median_us, *std::min_element(micros.begin(), micros.end()));

  fovea::tools::Report report;
  report.set("planned_peak_bytes", exe.planned_peak_bytes());
  report.set("median_run_us", median_us);
  report.set("nodes", g.size());
  report.set("prob_row_sum_max_error", max_error);
  report.finish(json_path);
  return max_error <= tolerance ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "quickstart: %s\n", e.what());
    return 1;
  }
}
