// Elementwise fusion, measured: a feed-forward's GELU, dropout and GELU's backward on an
// [n / 512, 512] tensor plus a [512] bias, each as the plain chain of ops and as the one
// fused_elementwise node the step pipeline makes of it, that node run by the interpreter and as
// the CPU backend's compiled program (CpuOptions::compiled_programs, backends/cpu/
// compiled_programs.h). Reports the median time of each run (the three alternate, so that machine
// noise hits them alike), then the kernels' time alone (profiled runs: every run also copies the
// feeds into the arena), the bytes the compiled kernel moves per second, and the speed-ups.
//
// The speed-ups printed are unfused / interpreted and interpreted / compiled.
//
//   build/bench/elementwise [--n 1048576] [--reps 21] [--json FILE]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <fovea/fovea.h>
#include <CLI/CLI.hpp>

#include "report.h"

namespace nn = fovea::nn;
using fovea::Value;

namespace {

struct Chain {
  std::string name;
  std::function<std::vector<Value>(fovea::Graph&, Value x, Value bias, Value step)> build;
  int tensors_moved;  // full-size tensors read or written by the fused kernel
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"Fused against unfused elementwise chains"};
  std::int64_t n = 1 << 20;
  int reps = 21;
  std::string json;
  app.add_option("--n", n, "elements per tensor");
  app.add_option("--reps", reps, "timed runs of each (the median is reported)");
  app.add_option("--json", json, "write the figures to this JSON file");
  CLI11_PARSE(app, argc, argv);

  constexpr std::int64_t kWidth = 512;
  n = std::max<std::int64_t>(kWidth, n / kWidth * kWidth);
  // x is a matmul's output, b its bias; tensors_moved counts the full-size ones.
  const std::vector<Chain> chains = {
      {"gelu", [](fovea::Graph&, Value x, Value b, Value) { return std::vector<Value>{nn::gelu(x + b)}; }, 2},
      {"dropout",
       [](fovea::Graph&, Value x, Value b, Value step) {
         return std::vector<Value>{nn::dropout(x + b, 0.1, {.training = true, .step = step})};
       },
       2},
      {"gelu_backward",
       [](fovea::Graph& g, Value x, Value b, Value) {
         const Value dy = g.placeholder("dy", fovea::f32, x.shape());
         return fovea::vjp({nn::gelu(x + b)}, {dy}, {x});
       },
       3},
  };

  fovea::tools::Report report;
  report.set("isa", std::string(fovea::isa_name(fovea::active_isa())));
  std::printf("elementwise chains on f32[%lld], %d threads, %s kernels, median of %d\n", static_cast<long long>(n),
              fovea::configured_thread_count(), std::string(fovea::isa_name(fovea::active_isa())).c_str(), reps);
  for (const Chain& chain : chains) {
    fovea::Graph g(chain.name);
    const fovea::Shape shape{n / kWidth, kWidth};
    const Value x = g.placeholder("x", fovea::f32, shape);
    const Value bias = g.placeholder("bias", fovea::f32, {kWidth});
    const Value step = g.placeholder("step", fovea::i64, {});
    const std::vector<Value> outputs = chain.build(g, x, bias, step);
    fovea::Feeds feeds{{x, fovea::Tensor::full(fovea::f32, shape, 0.3)},
                       {bias, fovea::Tensor::full(fovea::f32, {kWidth}, -0.1)},
                       {step, fovea::Tensor::scalar(std::int64_t{1})}};
    for (std::uint32_t id = 0; id < g.size(); ++id)
      if (g.node(id).op == &fovea::placeholder_op && g.node(id).name == "dy")
        feeds.emplace_back(g.value({id, 0}), fovea::Tensor::full(fovea::f32, shape, 1.0));

    fovea::passes::OptimizedGraph opt = fovea::passes::optimize(g, outputs);
    fovea::Executable plain = fovea::compile(g, outputs, fovea::cpu(), {.check_finite_feeds = false});
    fovea::Executable interpreted = fovea::compile(*opt.graph, opt.outputs, fovea::cpu({.compiled_programs = false}),
                                                   {.check_finite_feeds = false});
    fovea::Executable compiled = fovea::compile(*opt.graph, opt.outputs, fovea::cpu(), {.check_finite_feeds = false});
    fovea::Feeds fused_feeds;
    for (const auto& [v, t] : feeds)
      if (opt.has(v)) fused_feeds.emplace_back(opt.value(v), t);

    std::vector<double> plain_ms, interpreted_ms, compiled_ms;
    auto time = [](fovea::Executable& e, const fovea::Feeds& f) {
      const auto start = std::chrono::steady_clock::now();
      e.run(f);
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    };
    for (int i = 0; i < 3; ++i) time(plain, feeds), time(interpreted, fused_feeds), time(compiled, fused_feeds);
    for (int i = 0; i < reps; ++i) {
      plain_ms.push_back(time(plain, feeds));
      interpreted_ms.push_back(time(interpreted, fused_feeds));
      compiled_ms.push_back(time(compiled, fused_feeds));
    }
    const double p = median(plain_ms), f = median(interpreted_ms), c = median(compiled_ms);
    // The kernels alone (the profiler's time of the steps): every run also copies the feeds into
    // the arena, which costs the three alike.
    auto kernel_ms = [&](fovea::Executable& e, const fovea::Feeds& f_feeds) {
      e.set_profiling(true);
      for (int i = 0; i < reps; ++i) e.run(f_feeds);
      double total = 0;
      for (double seconds : e.step_seconds()) total += seconds;
      return 1e3 * total / e.profiled_runs();
    };
    const double pk = kernel_ms(plain, feeds), fk = kernel_ms(interpreted, fused_feeds),
                 ck = kernel_ms(compiled, fused_feeds);
    const double gbps = static_cast<double>(chain.tensors_moved) * 4.0 * static_cast<double>(n) / (ck * 1e6);
    std::printf(
        "  %-14s runs:    unfused %7.3f ms (%2zu kernels)  interpreted %7.3f ms  compiled %7.3f ms (%zu kernels)"
        "  %.2fx, %.2fx\n",
        chain.name.c_str(), p, plain.schedule().size(), f, c, compiled.schedule().size(), p / f, f / c);
    std::printf(
        "  %-14s kernels: unfused %7.3f ms              interpreted %7.3f ms  compiled %7.3f ms (%4.1f GB/s)"
        "   %.2fx, %.2fx\n",
        "", pk, fk, ck, gbps, pk / fk, fk / ck);
    report.set(chain.name + "_unfused_ms", p);
    report.set(chain.name + "_fused_ms", f);
    report.set(chain.name + "_compiled_ms", c);
    report.set(chain.name + "_speedup", p / f);
    report.set(chain.name + "_compiled_speedup", f / c);
    report.set(chain.name + "_unfused_kernel_ms", pk);
    report.set(chain.name + "_fused_kernel_ms", fk);
    report.set(chain.name + "_compiled_kernel_ms", ck);
    report.set(chain.name + "_compiled_kernel_speedup", fk / ck);
    report.set(chain.name + "_compiled_kernel_gbps", gbps);
  }
  report.finish(json);
  return 0;
} catch (const fovea::Error& e) {
  std::fprintf(stderr, "fovea::Error: %s\n", e.what());
  return 1;
}
