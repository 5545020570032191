// Fused vs unfused attention, forward + backward, on the GPU (the CUDA backend).
//
// The graphs of bench/attention.cpp, for q, k, v of [1, heads, N, head_dim] in f32: the loss
// Σ o ⊙ r and its gradients with respect to q, k and v, with
//
//   fused:    o = fused_attention(q, k, v)                  (attention.cu: a warp per row)
//   unfused:  o = matmul(softmax(matmul(q, kᵀ)·scale), v)   (cuBLAS and the elementwise and
//                                                            reduction kernels)
//
// Each is compiled for fovea::cuda(), run once to warm up, then timed `reps` times, the median
// reported. A run is what a user's step costs: it includes copying the four feeds to the GPU
// and the loss and three gradients back. The first run of the fused graph is also checked
// against the CPU backend (--check-n, small N, since the CPU is slow). Without a GPU the
// benchmark says why and exits 0.
//
//   build/bench/attention_cuda [--reps 5] [--sizes 512 1024 ...] [--heads 8] [--head-dim 64] [--json FILE]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <fovea/fovea.h>
#include <CLI/CLI.hpp>

#include "report.h"

namespace {

// Uniform numbers in [-1, 1), reproducible from `seed`.
fovea::Tensor random_uniform(const fovea::Shape& shape, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  fovea::Tensor t = fovea::Tensor::empty(fovea::f32, shape);
  for (float& x : t.data<float>()) x = dist(rng);
  return t;
}

// One forward + backward graph, its outputs (loss, dq, dk, dv) and its feeds.
struct Program {
  std::unique_ptr<fovea::Graph> graph;
  std::vector<fovea::Value> outputs;
  fovea::Feeds feeds;
};

Program build(bool fused, std::int64_t heads, std::int64_t n, std::int64_t head_dim) {
  Program p;
  p.graph = std::make_unique<fovea::Graph>(fused ? "fused" : "unfused");
  fovea::Graph& g = *p.graph;
  const fovea::Shape shape{1, heads, n, head_dim};
  auto q = g.placeholder("q", fovea::f32, shape), k = g.placeholder("k", fovea::f32, shape);
  auto v = g.placeholder("v", fovea::f32, shape), r = g.placeholder("r", fovea::f32, shape);
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  fovea::Value o;
  if (fused)
    o = fovea::fused_attention(q, k, v, {}, scale, false).output;
  else
    o = fovea::matmul(fovea::nn::softmax(fovea::matmul(q, k, false, true) * scale), v);
  auto loss = fovea::reduce_sum(o * r);
  p.outputs = fovea::grad(loss, {q, k, v});
  p.outputs.insert(p.outputs.begin(), loss);
  std::uint64_t seed = 1;
  for (auto x : {q, k, v, r}) p.feeds.emplace_back(x, random_uniform(shape, seed++));
  return p;
}

double run_ms(fovea::Executable& exe, const fovea::Feeds& feeds) {
  const auto start = std::chrono::steady_clock::now();
  exe.run(feeds);
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

double median(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  return xs[xs.size() / 2];
}

// The largest |gpu - cpu| / (1 + |cpu|) over every output.
double max_difference(const std::vector<fovea::Tensor>& gpu, const std::vector<fovea::Tensor>& cpu) {
  double worst = 0;
  for (std::size_t i = 0; i < gpu.size(); ++i)
    for (std::int64_t j = 0; j < gpu[i].numel(); ++j)
      worst = std::max(worst, std::abs(gpu[i].at(j) - cpu[i].at(j)) / (1 + std::abs(cpu[i].at(j))));
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Fused vs unfused attention, forward + backward, on the GPU"};
  int reps = 5;
  std::int64_t heads = 8, head_dim = 64, check_n = 256;
  std::vector<std::int64_t> sizes{512, 1024, 2048, 4096};
  std::string json;
  app.add_option("--sizes", sizes, "sequence lengths N (default 512 1024 2048 4096)");
  app.add_option("--reps", reps, "timed runs per size (the median is reported; at least 3)");
  app.add_option("--heads", heads, "attention heads (the batch is 1)");
  app.add_option("--head-dim", head_dim, "dims per head");
  app.add_option("--check-n", check_n, "N of the run checked against the CPU backend (0: no check)");
  app.add_option("--json", json, "write the figures to this JSON file");
  CLI11_PARSE(app, argc, argv);
  reps = std::max(reps, 3);

  std::string reason;
  if (!fovea::cuda_available(&reason)) {
    std::printf("skipped: %s\n", reason.c_str());
    return 0;
  }
  const auto gpu = fovea::cuda();
  fovea::tools::Report report;
  report.set("heads", heads);
  report.set("head_dim", head_dim);
  report.set("reps", reps);

  if (check_n > 0) {
    Program p = build(true, heads, check_n, head_dim);
    fovea::Executable on_gpu = fovea::compile(*p.graph, p.outputs, gpu);
    fovea::Executable on_cpu = fovea::compile(*p.graph, p.outputs, fovea::cpu());
    const double difference = max_difference(on_gpu.run(p.feeds), on_cpu.run(p.feeds));
    std::printf("N = %lld: largest difference from the CPU backend %.2e (relative to 1 + |value|)\n",
                static_cast<long long>(check_n), difference);
    report.set("check_max_difference", difference);
  }

  std::printf("fused vs unfused attention fwd+bwd on %s, f32, [1,%lld,N,%lld], median of %d runs\n",
              std::string(gpu->name()).c_str(), static_cast<long long>(heads), static_cast<long long>(head_dim), reps);
  std::printf("%6s  %10s %10s %8s  %9s %9s\n", "N", "fused ms", "unfused ms", "speedup", "fused GF/s", "unfus GF/s");
  for (const std::int64_t n : sizes) {
    const std::string key = "n" + std::to_string(n) + "_";
    const double flops = 12.0 * static_cast<double>(heads) * static_cast<double>(n) * static_cast<double>(n) *
                         static_cast<double>(head_dim);
    Program fused = build(true, heads, n, head_dim), unfused = build(false, heads, n, head_dim);
    fovea::Executable fused_exe = fovea::compile(*fused.graph, fused.outputs, gpu);
    fovea::Executable unfused_exe = fovea::compile(*unfused.graph, unfused.outputs, gpu);
    run_ms(fused_exe, fused.feeds);  // warm-up
    run_ms(unfused_exe, unfused.feeds);
    std::vector<double> fused_ms, unfused_ms;
    for (int i = 0; i < reps; ++i) {
      fused_ms.push_back(run_ms(fused_exe, fused.feeds));
      unfused_ms.push_back(run_ms(unfused_exe, unfused.feeds));
    }
    const double f = median(fused_ms), u = median(unfused_ms);
    report.set(key + "fused_ms", f);
    report.set(key + "unfused_ms", u);
    report.set(key + "fused_gflops", flops / f / 1e6);
    report.set(key + "unfused_gflops", flops / u / 1e6);
    report.set(key + "fused_peak_bytes", fused_exe.planned_peak_bytes());
    report.set(key + "unfused_peak_bytes", unfused_exe.planned_peak_bytes());
    std::printf("%6lld  %10.2f %10.2f %7.2fx  %9.1f %9.1f\n", static_cast<long long>(n), f, u, u / f, flops / f / 1e6,
                flops / u / 1e6);
    std::fflush(stdout);
  }
  report.finish(json);
  return 0;
}
