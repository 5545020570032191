// Fused vs unfused attention, forward + backward, on the CPU.
//
// For q, k, v of [1, heads, N, head_dim] in f32, two graphs compute the loss Σ o ⊙ r and its
// gradients with respect to q, k and v:
//
//   fused:    o = fused_attention(q, k, v)             (its gradient: fused_attention_backward)
//   unfused:  o = matmul(softmax(matmul(q, kᵀ)·scale), v)   (nn::softmax; gradients by autodiff)
//
// Each is compiled once, run once to warm up, then timed `reps` times, the two interleaved so
// that a noisy neighbour slows both alike; the median is reported. The unfused graph holds
// [heads, N, N] score tensors and is skipped when its planned arena exceeds --max-unfused-bytes.
// GFLOP/s counts the nominal work of attention: 4·H·N²·D forward (q·kᵀ and P·v) and 8·H·N²·D
// backward (dv, dP, dq, dk), the same for both graphs.
//
// Measured on the 2-core development machine (AMD EPYC Zen 4, AVX-512), N = 4096, 3 runs: fused
// 647-666 ms (155-159 GFLOP/s, 73-75% of the measured multiply-add peak of 211; 86-88% counting the
// backward's recomputed q·kᵀ), unfused 1000-1128 ms (1.54-1.74x, the unfused time moving most
// between runs); PyTorch 2.15's SDPA in the same run (--torch) 811 ms (1.22x). With
// FOVEA_ISA=avx2 fused 758-855 ms. Planned peak 50 MB vs 2.19 GB (43x).
//
// --torch then times the same forward + backward in PyTorch at the same sizes
// (bench/reference/attention_torch.py: F.scaled_dot_product_attention and the written-out
// matmul/softmax/matmul; bench/torch_reference.h: a Python with PyTorch 2.x, from
// FOVEA_TORCH_PYTHON or python3 on PATH, run with the same thread count in PyTorch's default
// setting and with GOMP_SPINCOUNT=0, the faster kept) and prints it beside ours. Keys per size:
// `n<N>_torch_sdpa_ms` and `n<N>_torch_unfused_ms` (each also `_default` and
// `_gomp_spincount_0`; the unfused null when skipped) and `n<N>_fused_speedup_vs_sdpa` =
// PyTorch's SDPA / our fused kernel (> 1: Fovea is faster). Without such a Python it says why and
// the torch keys are absent.
//
//   build/bench/attention [--reps 3] [--big] [--sizes 512 1024 ...] [--heads 8] [--head-dim 64]
//                         [--max-unfused-bytes 6442450944] [--torch] [--json FILE]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <fovea/engine.h>
#include <fovea/runtime/machine.h>
#include <CLI/CLI.hpp>

#include "report.h"
#include "torch_reference.h"

namespace {

// Uniform numbers in [-1, 1), reproducible from `seed`.
fovea::Tensor random_uniform(const fovea::Shape& shape, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  fovea::Tensor t = fovea::Tensor::empty(fovea::f32, shape);
  for (float& x : t.data<float>()) x = dist(rng);
  return t;
}

// One compiled forward + backward graph and its feeds.
struct Program {
  std::unique_ptr<fovea::Graph> graph;
  std::optional<fovea::Executable> executable;
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
  std::vector<fovea::Value> outputs = fovea::grad(loss, {q, k, v});
  outputs.insert(outputs.begin(), loss);
  p.executable.emplace(fovea::compile(g, outputs));
  std::uint64_t seed = 1;
  for (auto x : {q, k, v, r}) p.feeds.emplace_back(x, random_uniform(shape, seed++));
  return p;
}

double run_ms(Program& p) {
  const auto start = std::chrono::steady_clock::now();
  p.executable->run(p.feeds);
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

double median(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  return xs[xs.size() / 2];
}

// Attention in PyTorch (bench/reference/attention_torch.py) at the same sizes, beside the fused
// kernel's figures already in `report`.
void compare_with_torch(fovea::tools::Report& report, const std::vector<std::int64_t>& sizes, std::int64_t heads,
                        std::int64_t head_dim, int reps, double max_unfused_bytes) {
  std::vector<std::string> arguments{"--sizes"};
  for (const std::int64_t n : sizes) arguments.push_back(std::to_string(n));
  for (const std::string& a : {std::string("--heads"), std::to_string(heads), std::string("--head-dim"),
                               std::to_string(head_dim), std::string("--reps"), std::to_string(reps),
                               std::string("--max-unfused-bytes"), std::to_string(max_unfused_bytes)})
    arguments.push_back(a);
  const fovea::bench::TorchReference torch =
      fovea::bench::run_torch_reference("attention_torch.py", arguments, fovea::cpu()->pool().size());
  if (!torch.ran()) {
    std::printf("--torch: no comparison: %s\n", torch.why_not.c_str());
    return;
  }
  report.set("torch_version", torch.version);
  std::printf("\nfused attention against PyTorch %s (the faster of its default and GOMP_SPINCOUNT=0 settings)\n",
              torch.version.c_str());
  std::printf("%6s  %10s %10s %10s %10s  %-16s %14s\n", "N", "fused ms", "sdpa ms", "unfused ms", "sdpa GF/s",
              "sdpa setting", "fused vs sdpa");
  for (const std::int64_t n : sizes) {
    const std::string key = "n" + std::to_string(n) + "_";
    const fovea::bench::TorchTime* sdpa = torch.find(key + "sdpa_ms");
    if (!sdpa) {
      std::printf("%6lld  attention_torch.py reported no time\n", static_cast<long long>(n));
      continue;
    }
    const fovea::bench::TorchTime* unfused = torch.find(key + "unfused_ms");
    const double fused = report.json().at(key + "fused_ms").get<double>();
    const double flops = 12.0 * static_cast<double>(heads) * static_cast<double>(n) * static_cast<double>(n) *
                         static_cast<double>(head_dim);
    fovea::bench::record(report, key + "torch_sdpa_ms", *sdpa);
    fovea::bench::record(report, key + "torch_unfused_ms", unfused ? *unfused : fovea::bench::TorchTime{});
    report.set(key + "fused_speedup_vs_sdpa", sdpa->ms / fused);
    char unfused_text[32] = "-";
    if (unfused) std::snprintf(unfused_text, sizeof unfused_text, "%.1f", unfused->ms);
    std::printf("%6lld  %10.1f %10.1f %10s %10.1f  %-16s %13.2fx\n", static_cast<long long>(n), fused, sdpa->ms,
                unfused_text, flops / sdpa->ms / 1e6, sdpa->setting.c_str(), sdpa->ms / fused);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Fused vs unfused attention, forward + backward, on the CPU"};
  int reps = 3;
  bool big = false, torch = false;
  std::int64_t heads = 8, head_dim = 64;
  double max_unfused_bytes = 6.0 * (1ull << 30);
  std::vector<std::int64_t> sizes{512, 1024, 2048, 4096};
  std::string json;
  app.add_option("--sizes", sizes, "sequence lengths N (default 512 1024 2048 4096)");
  app.add_option("--reps", reps, "timed runs per size (the median is reported; at least 3)");
  app.add_flag("--big", big, "also run N = 8192");
  app.add_option("--heads", heads, "attention heads (the batch is 1)");
  app.add_option("--head-dim", head_dim, "dims per head");
  app.add_option("--max-unfused-bytes", max_unfused_bytes,
                 "skip the unfused graph when its planned arena exceeds this");
  app.add_flag("--torch", torch, "then time the same in PyTorch (bench/reference/attention_torch.py) and compare");
  app.add_option("--json", json, "write the figures to this JSON file");
  CLI11_PARSE(app, argc, argv);
  reps = std::max(reps, 3);

  if (big) sizes.push_back(8192);
  const fovea::MachinePeak& peak = fovea::machine_peak();
  fovea::tools::Report report;
  report.set("heads", heads);
  report.set("head_dim", head_dim);
  report.set("threads", fovea::cpu()->pool().size());
  report.set("reps", reps);
  report.set("isa", std::string(fovea::isa_name(fovea::active_isa())));
  std::printf("fused vs unfused attention fwd+bwd, f32, [1,%lld,N,%lld], %d threads, %s kernels, median of %d runs\n",
              static_cast<long long>(heads), static_cast<long long>(head_dim), fovea::cpu()->pool().size(),
              std::string(fovea::isa_name(fovea::active_isa())).c_str(), reps);
  std::printf("%6s  %10s %10s %8s  %9s %9s  %12s %12s\n", "N", "fused ms", "unfused ms", "speedup", "fused GF/s",
              "unfus GF/s", "fused peak", "unfused peak");

  for (const std::int64_t n : sizes) {
    const std::string key = "n" + std::to_string(n) + "_";
    const double flops = 12.0 * static_cast<double>(heads) * static_cast<double>(n) * static_cast<double>(n) *
                         static_cast<double>(head_dim);
    Program fused = build(true, heads, n, head_dim);
    Program unfused = build(false, heads, n, head_dim);
    const std::size_t fused_peak = fused.executable->planned_peak_bytes();
    const std::size_t unfused_peak = unfused.executable->planned_peak_bytes();
    const bool run_unfused = static_cast<double>(unfused_peak) <= max_unfused_bytes;
    if (!run_unfused) unfused.executable.reset();  // frees its arena

    run_ms(fused);  // warm-up
    if (run_unfused) run_ms(unfused);
    std::vector<double> fused_ms, unfused_ms;
    for (int i = 0; i < reps; ++i) {
      fused_ms.push_back(run_ms(fused));
      if (run_unfused) unfused_ms.push_back(run_ms(unfused));
    }
    const double f = median(fused_ms);
    report.set(key + "fused_ms", f);
    report.set(key + "fused_peak_bytes", fused_peak);
    report.set(key + "unfused_peak_bytes", unfused_peak);
    report.set(key + "fused_gflops", flops / f / 1e6);
    report.set(key + "unfused_skipped", !run_unfused);
    if (run_unfused) {
      const double u = median(unfused_ms);
      report.set(key + "unfused_ms", u);
      report.set(key + "unfused_gflops", flops / u / 1e6);
      report.set(key + "speedup", u / f);
      std::printf("%6lld  %10.1f %10.1f %7.2fx  %9.1f %9.1f  %12zu %12zu\n", static_cast<long long>(n), f, u, u / f,
                  flops / f / 1e6, flops / u / 1e6, fused_peak, unfused_peak);
    } else {
      report.set(key + "unfused_ms", nullptr);
      std::printf("%6lld  %10.1f %10s %8s  %9.1f %9s  %12zu %12zu  (unfused skipped: planned peak > %.0f bytes)\n",
                  static_cast<long long>(n), f, "-", "-", flops / f / 1e6, "-", fused_peak, unfused_peak,
                  max_unfused_bytes);
    }
    report.set(key + "peak_ratio", static_cast<double>(unfused_peak) / static_cast<double>(fused_peak));
    report.set(key + "fused_fraction_of_fma_peak", flops / f / 1e6 / peak.gflops);
    std::fflush(stdout);
  }
  std::printf("the machine's f32 multiply-add peak, measured (runtime/machine.h): %.1f GFLOP/s on %d threads\n",
              peak.gflops, peak.threads);
  report.set("machine_fma_peak_gflops", peak.gflops);
  if (torch) compare_with_torch(report, sizes, heads, head_dim, reps, max_unfused_bytes);
  report.finish(json);
  return 0;
}
