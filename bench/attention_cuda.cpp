// Fused vs unfused attention on the GPU (the CUDA backend), forward and forward + backward,
// in f32 and in mixed precision (bf16 or f16 operands, f32 sums).
//
// For q, k, v of [1, heads, N, head_dim] and every N of --sizes and head dim of --head-dims:
//
//   fused:    o = fused_attention(q, k, v)                  (attention.cu; attention_mma.cu, the
//                                                            tensor cores, for bf16 and f16)
//   unfused:  o = matmul(softmax(matmul(q, kᵀ)·scale), v)   (cuBLAS, the elementwise and
//                                                            reduction kernels; f32 only)
//
// timed two ways: the forward alone (loss = Σ o ⊙ r), and the forward with the gradients of q,
// k and v. The operands are parameters, so they live on the GPU and no run copies them; the
// gradients are assigned into GPU-resident state (updates), so the only copy back per run is
// the loss. A run is therefore the kernels plus one scalar copy: what TFLOP/s measure. In bf16
// and f16 the forward reads constants of the half type (resident on the GPU too); the forward +
// backward casts f32 parameters to the half type, three O(N·d) conversions, so that the
// gradients have somewhere to go.
//
// FLOPs follow the FlashAttention papers: the forward's two matmuls are 4·N²·d per head, the
// backward's five 2.5× that, so forward + backward is 14·N²·d per head (non-causal). For the
// half types the forward's TFLOP/s are also given as a fraction of --peak-tflops, the GPU's
// dense bf16/f16 tensor-core peak (989 for an H100 SXM or an H200; 312 for an A100).
//
// The unfused graph holds [heads, N, N] score matrices; when its planned arena exceeds
// --max-unfused-bytes it is not built (reported as skipped), and when the GPU cannot allocate
// it the error is reported and the size is skipped. The first size is also checked against the
// CPU backend (--check-n), in every dtype. Without a GPU the benchmark says why and exits 0.
//
//   build/bench/attention_cuda [--reps 5] [--sizes 1024 ... 16384] [--head-dims 64 128]
//                              [--dtypes f32 bf16] [--peak-tflops 989] [--tiled] [--json FILE]
//
// --tiled also times the f32 fused attention on the opt-in FlashAttention-2-style kernels
// (FOVEA_CUDA_ATTENTION=tiled; keys _fused_tiled_ms, _fused_tiled_tflops), side by side with
// the default ones, so that one run says which should be the default.
//
// JSON keys per size and head dim, e.g. n8192_d64_fused_tflops, n8192_d64_unfused_tflops,
// n8192_d64_fused_ms, n8192_d64_unfused_ms (forward + backward), the same with _fwd_ for the
// forward alone, and _fused_peak_bytes, _unfused_peak_bytes, _unfused_skipped. The half types
// add n8192_d64_bf16_fwd_fused_tflops, n8192_d64_bf16_fwd_fused_ms,
// n8192_d64_bf16_fwd_peak_fraction and n8192_d64_bf16_fused_tflops / _ms (forward + backward).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fovea/engine.h>
#include <CLI/CLI.hpp>

#include "report.h"

namespace {

// One attention graph on device-resident operands: forward only (outputs: the loss), or
// forward + backward (the gradients are assigned into state, so they stay on the device).
struct Program {
  std::unique_ptr<fovea::Graph> graph;
  std::vector<fovea::Value> outputs, updates;
};

Program build(bool fused, bool backward, std::int64_t heads, std::int64_t n, std::int64_t head_dim,
              fovea::DType dtype = fovea::f32) {
  Program p;
  p.graph = std::make_unique<fovea::Graph>(fused ? "fused" : "unfused");
  fovea::Graph& g = *p.graph;
  g.set_seed(1);
  const fovea::Shape shape{1, heads, n, head_dim};
  const auto init = fovea::init::uniform(-1.0, 1.0);
  auto q = g.parameter("q", fovea::f32, shape, init), k = g.parameter("k", fovea::f32, shape, init);
  auto v = g.parameter("v", fovea::f32, shape, init), r = g.state("r", fovea::f32, shape, init);
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  fovea::Value o;
  if (fovea::is_half(dtype)) {
    // The forward alone reads half constants; with the backward, the parameters cast to half.
    auto operand = [&](fovea::Value param, std::uint64_t seed) {
      if (backward) return fovea::cast(param, dtype);
      fovea::Tensor t = fovea::Tensor::empty(fovea::f32, shape);
      fovea::init::uniform(-1.0, 1.0).fill(t, 1, seed);
      return g.constant(t.to(dtype));
    };
    o = fovea::cast(fovea::fused_attention(operand(q, 1), operand(k, 2), operand(v, 3), {}, scale, false).output,
                    fovea::f32);
  } else if (fused) {
    o = fovea::fused_attention(q, k, v, {}, scale, false).output;
  } else {
    o = fovea::matmul(fovea::nn::softmax(fovea::matmul(q, k, false, true) * scale), v);
  }
  auto loss = fovea::reduce_sum(o * r);
  p.outputs = {loss};
  if (backward) {
    const std::vector<fovea::Value> grads = fovea::grad(loss, {q, k, v});
    const char* names[] = {"dq", "dk", "dv"};
    for (std::size_t i = 0; i < grads.size(); ++i)
      p.updates.push_back(fovea::assign(g.state(names[i], fovea::f32, shape, fovea::init::zeros()), grads[i]));
  }
  return p;
}

double run_ms(fovea::Executable& exe) {
  const auto start = std::chrono::steady_clock::now();
  exe.run({});
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

struct Timing {
  double ms = 0;
  std::size_t peak_bytes = 0;
  bool skipped = false;
  std::string why;
};

// Builds, compiles for `gpu` and times one variant; skipped (with the reason) when its arena
// would exceed `max_bytes` or the GPU refuses the memory.
Timing time_variant(const std::shared_ptr<fovea::Backend>& gpu, bool fused, bool backward, std::int64_t heads,
                    std::int64_t n, std::int64_t head_dim, int reps, double max_bytes,
                    fovea::DType dtype = fovea::f32) {
  Timing t;
  try {
    Program p = build(fused, backward, heads, n, head_dim, dtype);
    // Planned for the CPU first (its arena is only reserved, never touched here): within a few
    // bytes the plan the GPU gets, known before asking the GPU for the memory.
    const std::size_t planned =
        fovea::compile(*p.graph, p.outputs, fovea::cpu(), {.updates = p.updates}).planned_peak_bytes();
    t.peak_bytes = planned;
    if (static_cast<double>(planned) > max_bytes) {
      t.skipped = true;
      t.why = fmt::format("arena of {:.1f} GB over --max-unfused-bytes", static_cast<double>(planned) / 1e9);
      return t;
    }
    fovea::Executable exe = fovea::compile(*p.graph, p.outputs, gpu, {.updates = p.updates});
    run_ms(exe);  // warm-up
    std::vector<double> ms;
    for (int i = 0; i < reps; ++i) ms.push_back(run_ms(exe));
    t.ms = median(ms);
  } catch (const fovea::Error& e) {
    t.skipped = true;
    t.why = e.what();
  }
  return t;
}

// "f32", "bf16" or "f16" as a DType.
fovea::DType parse_dtype(const std::string& name) {
  for (fovea::DType t : {fovea::f32, fovea::bf16, fovea::f16})
    if (fovea::dtype_name(t) == name) return t;
  throw fovea::Error(fmt::format("--dtypes: '{}' is not f32, bf16 or f16", name));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Fused vs unfused attention, forward and forward + backward, on the GPU"};
  int reps = 5;
  std::int64_t heads = 8, check_n = 256;
  std::vector<std::int64_t> sizes{1024, 2048, 4096, 8192, 16384}, head_dims{64, 128};
  std::vector<std::string> dtype_names{"f32", "bf16"};
  double max_unfused_bytes = 60e9, peak_tflops = 989;
  bool tiled = false;
  std::string json;
  app.add_option("--sizes", sizes, "sequence lengths N (default 1024 ... 16384)");
  app.add_option("--head-dims", head_dims, "dims per head (default 64 128)");
  app.add_option("--dtypes", dtype_names, "operand types: f32 (fused and unfused), bf16, f16 (fused)");
  app.add_option("--peak-tflops", peak_tflops, "the GPU's dense bf16/f16 peak, for the fraction (H100 SXM: 989)");
  app.add_flag("--tiled", tiled, "also time the f32 fused attention on the tiled (FlashAttention-2-style) kernels");
  app.add_option("--reps", reps, "timed runs per size (the median is reported; at least 3)");
  app.add_option("--heads", heads, "attention heads (the batch is 1)");
  app.add_option("--max-unfused-bytes", max_unfused_bytes, "skip the unfused graph when its arena exceeds this");
  app.add_option("--check-n", check_n, "N of the run checked against the CPU backend (0: no check)");
  app.add_option("--json", json, "write the figures to this JSON file");
  CLI11_PARSE(app, argc, argv);
  reps = std::max(reps, 3);
  std::vector<fovea::DType> dtypes;
  try {
    for (const std::string& name : dtype_names) dtypes.push_back(parse_dtype(name));
  } catch (const fovea::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }

  std::string reason;
  if (!fovea::cuda_available(&reason)) {
    std::printf("skipped: %s\n", reason.c_str());
    return 0;
  }
  const auto gpu = fovea::cuda();
  fovea::tools::Report report;
  report.set("heads", heads);
  report.set("reps", reps);
  report.set("dtypes", fmt::format("{}", fmt::join(dtype_names, " ")));
  report.set("peak_tflops", peak_tflops);

  if (check_n > 0) {
    for (const fovea::DType dtype : dtypes) {
      Program p = build(true, false, heads, check_n, head_dims.front(), dtype);
      fovea::Executable on_gpu = fovea::compile(*p.graph, p.outputs, gpu);
      fovea::Executable on_cpu = fovea::compile(*p.graph, p.outputs, fovea::cpu());
      const double difference = max_difference(on_gpu.run({}), on_cpu.run({}));
      std::printf("%s, N = %lld: largest difference of the loss from the CPU backend %.2e (relative to 1 + |value|)\n",
                  std::string(fovea::dtype_name(dtype)).c_str(), static_cast<long long>(check_n), difference);
      report.set(fmt::format("{}check_max_difference",
                             dtype == fovea::f32 ? "" : fmt::format("{}_", fovea::dtype_name(dtype))),
                 difference);
    }
  }

  std::printf(
      "fused vs unfused attention on %s, [1,%lld,N,d], median of %d runs; TFLOP/s by the\n"
      "FlashAttention count (forward 4·N²·d per head, forward + backward 14·N²·d)\n",
      std::string(gpu->name()).c_str(), static_cast<long long>(heads), reps);
  std::printf("%5s %6s %4s  %-9s %10s %10s %8s  %9s %9s\n", "type", "N", "d", "pass", "fused ms", "unfused ms",
              "speedup", "fused TF/s", "unfus TF/s");
  for (const fovea::DType dtype : dtypes) {
    const bool half = fovea::is_half(dtype);
    const std::string prefix = half ? fmt::format("{}_", fovea::dtype_name(dtype)) : "";
    for (const std::int64_t d : head_dims) {
      for (const std::int64_t n : sizes) {
        for (const bool backward : {false, true}) {
          const std::string key = fmt::format("n{}_d{}_{}{}", n, d, prefix, backward ? "" : "fwd_");
          const double flops = (backward ? 14.0 : 4.0) * static_cast<double>(heads) * static_cast<double>(n) *
                               static_cast<double>(n) * static_cast<double>(d);
          const Timing f = time_variant(gpu, true, backward, heads, n, d, reps, 1e18, dtype);
          Timing u;
          if (half) {
            u.skipped = true;
            u.why = "the unfused graph is f32 only";
          } else {
            u = time_variant(gpu, false, backward, heads, n, d, reps, max_unfused_bytes);
          }
          auto tflops = [&](const Timing& t) { return t.skipped ? 0.0 : flops / t.ms / 1e9; };
          if (tiled && !half) {
            ::setenv("FOVEA_CUDA_ATTENTION", "tiled", 1);  // read by the kernel at every launch
            const Timing t = time_variant(gpu, true, backward, heads, n, d, reps, 1e18, dtype);
            ::unsetenv("FOVEA_CUDA_ATTENTION");
            report.set(key + "fused_tiled_ms", t.skipped ? -1.0 : t.ms);
            report.set(key + "fused_tiled_tflops", tflops(t));
            std::printf("%5s %6lld %4lld  %-9s %10s %10s %8s  %9.1f\n", "tiled", static_cast<long long>(n),
                        static_cast<long long>(d), backward ? "fwd+bwd" : "fwd",
                        t.skipped ? "failed" : fmt::format("{:.2f}", t.ms).c_str(), "", "", tflops(t));
          }
          report.set(key + "fused_ms", f.skipped ? -1.0 : f.ms);
          report.set(key + "fused_tflops", tflops(f));
          report.set(key + "fused_peak_bytes", f.peak_bytes);
          if (half) {
            if (!backward) report.set(key + "peak_fraction", tflops(f) / peak_tflops);
          } else {
            report.set(key + "unfused_ms", u.skipped ? -1.0 : u.ms);
            report.set(key + "unfused_tflops", tflops(u));
            report.set(key + "unfused_peak_bytes", u.peak_bytes);
            report.set(key + "unfused_skipped", u.skipped);
          }
          std::printf("%5s %6lld %4lld  %-9s %10s %10s %8s  %9.1f %9.1f\n",
                      std::string(fovea::dtype_name(dtype)).c_str(), static_cast<long long>(n),
                      static_cast<long long>(d), backward ? "fwd+bwd" : "fwd",
                      f.skipped ? "failed" : fmt::format("{:.2f}", f.ms).c_str(),
                      u.skipped ? "-" : fmt::format("{:.2f}", u.ms).c_str(),
                      f.skipped || u.skipped ? "-" : fmt::format("{:.2f}x", u.ms / f.ms).c_str(), tflops(f), tflops(u));
          if (f.skipped) std::printf("        fused: %s\n", f.why.c_str());
          if (u.skipped && !half) std::printf("        unfused: %s\n", u.why.c_str());
          std::fflush(stdout);
        }
      }
    }
  }
  report.finish(json);
  return 0;
}
