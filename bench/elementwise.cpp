// Elementwise fusion, measured: GELU, dropout and GELU's backward on one [n] tensor, each as
// the plain chain of ops and as the one fused_elementwise node the step pipeline makes of it.
// Reports the median time of each, the bytes the fused kernel moves per second, and the
// speed-up. Fused and unfused runs alternate so machine noise hits both alike.
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
  std::function<std::vector<Value>(fovea::Graph&, Value x, Value step)> build;
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

  const std::vector<Chain> chains = {
      {"gelu", [](fovea::Graph&, Value x, Value) { return std::vector<Value>{nn::gelu(x)}; }, 2},
      {"dropout",
       [](fovea::Graph&, Value x, Value step) {
         return std::vector<Value>{nn::dropout(x, 0.1, {.training = true, .step = step})};
       },
       2},
      {"gelu_backward",
       [](fovea::Graph& g, Value x, Value) {
         const Value dy = g.placeholder("dy", fovea::f32, x.shape());
         return fovea::vjp({nn::gelu(x)}, {dy}, {x});
       },
       3},
  };

  fovea::tools::Report report;
  report.set("isa", std::string(fovea::isa_name(fovea::active_isa())));
  std::printf("elementwise chains on f32[%lld], %d threads, %s kernels, median of %d\n", static_cast<long long>(n),
              fovea::configured_thread_count(), std::string(fovea::isa_name(fovea::active_isa())).c_str(), reps);
  for (const Chain& chain : chains) {
    fovea::Graph g(chain.name);
    const Value x = g.placeholder("x", fovea::f32, {n});
    const Value step = g.placeholder("step", fovea::i64, {});
    const std::vector<Value> outputs = chain.build(g, x, step);
    fovea::Feeds feeds{{x, fovea::Tensor::full(fovea::f32, {n}, 0.3)}, {step, fovea::Tensor::scalar(std::int64_t{1})}};
    for (std::uint32_t id = 0; id < g.size(); ++id)
      if (g.node(id).op == &fovea::placeholder_op && g.node(id).name == "dy")
        feeds.emplace_back(g.value({id, 0}), fovea::Tensor::full(fovea::f32, {n}, 1.0));

    fovea::passes::OptimizedGraph opt = fovea::passes::optimize(g, outputs);
    fovea::Executable plain = fovea::compile(g, outputs, fovea::cpu(), {.check_finite_feeds = false});
    fovea::Executable fused = fovea::compile(*opt.graph, opt.outputs, fovea::cpu(), {.check_finite_feeds = false});
    fovea::Feeds fused_feeds;
    for (const auto& [v, t] : feeds)
      if (opt.has(v)) fused_feeds.emplace_back(opt.value(v), t);

    std::vector<double> plain_ms, fused_ms;
    auto time = [](fovea::Executable& e, const fovea::Feeds& f) {
      const auto start = std::chrono::steady_clock::now();
      e.run(f);
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    };
    for (int i = 0; i < 3; ++i) time(plain, feeds), time(fused, fused_feeds);
    for (int i = 0; i < reps; ++i) {
      plain_ms.push_back(time(plain, feeds));
      fused_ms.push_back(time(fused, fused_feeds));
    }
    const double p = median(plain_ms), f = median(fused_ms);
    const double gbps = static_cast<double>(chain.tensors_moved) * 4.0 * static_cast<double>(n) / (f * 1e6);
    std::printf("  %-14s unfused %7.3f ms (%3zu kernels)   fused %7.3f ms (%zu kernels, %5.1f GB/s)   %.2fx\n",
                chain.name.c_str(), p, plain.schedule().size(), f, fused.schedule().size(), gbps, p / f);
    report.set(chain.name + "_unfused_ms", p);
    report.set(chain.name + "_fused_ms", f);
    report.set(chain.name + "_speedup", p / f);
    report.set(chain.name + "_fused_gbps", gbps);
  }
  report.finish(json);
  return 0;
} catch (const fovea::Error& e) {
  std::fprintf(stderr, "fovea::Error: %s\n", e.what());
  return 1;
}
