// Attention fusion, watched pass by pass: one attention layer written the plain way, optimized,
// differentiated, and timed against the unoptimized layer.
//
//   build/examples/attention_fusion                      # N = 1024, 8 heads of 64 dims
//   build/examples/attention_fusion --n 256 --runs 5 --json fusion.json
//   FOVEA_DISABLE_PASSES=attention_fusion build/examples/attention_fusion   # see what fusion buys
//   build/examples/attention_fusion --mixed-precision     # + the mixed_precision pass: bf16 attention
//   build/examples/attention_fusion --device cuda         # compare and time on the GPU
//
// What it shows:
//   1. build    nn::MultiHeadAttention on x [1, N, 512]: q, k, v projections, split heads,
//               matmul → scale → softmax → matmul, merge heads, output projection, and an MSE loss;
//   2. optimize the forward pipeline (dce, simplify, cse, fold, attention_fusion, normalization_fusion,
//               [mixed_precision], dce), printing
//               the graph after every pass and writing it to --out as NN-<pass>.txt and .svg;
//   3. train    autodiff on both graphs: the unfused one keeps [8, N, N] score matrices for its
//               backward; the fused one differentiates fused_attention into fused_attention_backward;
//   4. compare  loss and gradients of both, their planned peak memory, and the median time of
//               forward + backward.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <fovea/engine.h>
#include <CLI/CLI.hpp>

#include "device.h"
#include "explore_option.h"
#include "report.h"

namespace {

using namespace fovea;

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A tensor of uniform numbers in [-1, 1), the same on every machine.
Tensor random_tensor(const Shape& shape, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  Tensor t = Tensor::empty(f32, shape);
  for (float& v : t.data<float>()) v = uniform(rng);
  return t;
}

// The nodes compile() would run for `outputs` (of one op, when given).
std::size_t live_nodes(const Graph& g, const std::vector<Value>& outputs, const OpDef* op = nullptr) {
  const std::vector<bool> needed = nodes_needed_by(g, outputs);
  std::size_t count = 0;
  for (std::uint32_t id = 0; id < g.size(); ++id) count += needed[id] && (!op || g.node(id).op == op);
  return count;
}

double mib(std::size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

// The median milliseconds of `runs` runs of forward + backward (after one warm-up run).
double time_runs(Executable& exe, const Feeds& feeds, int runs) {
  exe.run(feeds);
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    exe.run(feeds);
    const auto stop = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
  }
  return median(ms);
}

// max |a - b| / (max |b| + 1e-6): how far apart two tensors are, relative to their size. The
// floor matters for the key projection's bias, whose gradient is exactly 0 in exact arithmetic
// (adding one vector to every key shifts a row of scores by a constant, which softmax ignores),
// so both graphs give rounding noise there.
double relative_difference(const Tensor& a, const Tensor& b) {
  double diff = 0, scale = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, std::abs(a.at(i) - b.at(i)));
    scale = std::max(scale, std::abs(b.at(i)));
  }
  return diff / (scale + 1e-6);
}

int run(int argc, char** argv) {
  CLI::App app{"Fovea attention fusion: watch the optimizer turn an attention layer into one fused node"};
  std::int64_t n = 1024, heads = 8, head_dim = 64, batch = 1;
  int runs = 3;
  std::string out_dir = "attention_fusion_out";
  std::string json_path;
  app.add_option("--n", n, "sequence length N")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 16))
      ->capture_default_str();
  app.add_option("--heads", heads, "attention heads")->check(CLI::Range(1, 256))->capture_default_str();
  app.add_option("--head-dim", head_dim, "dims per head")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--batch", batch, "sequences per batch")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--runs", runs, "timed runs of forward + backward")->check(CLI::Range(1, 1000))->capture_default_str();
  app.add_option("--out", out_dir, "folder for the per-pass dumps (text IR and SVG)")->capture_default_str();
  app.add_option("--json", json_path, "write the final figures to this JSON file");
  tools::DeviceOptions device;
  device.add_to(app);
  tools::ExploreOption explore;
  explore.add_to(app);
  CLI11_PARSE(app, argc, argv);
  const std::shared_ptr<Backend> backend = device.backend();
  const std::int64_t d_model = heads * head_dim;

  // 1. Build one attention layer the plain way: no fused op in sight.
  Graph g("attention_layer");
  const Value x = g.placeholder("x", f32, {batch, n, d_model});
  const Value target = g.placeholder("target", f32, {batch, n, d_model});
  const nn::MultiHeadAttention attention(g, "attn", d_model, heads);
  const Value loss = nn::mse_loss(attention(x, x), target);
  std::printf("== 1. the layer as built: %zu nodes ==\n%s\n", g.size(), to_text(g, {loss}).c_str());

  // 2. Optimize the forward graph, dumping it after every pass.
  passes::PassManager pipeline = passes::forward_pipeline(device.pipeline());
  pipeline.dump_to(out_dir);
  pipeline.record_stages(explore.on());
  const passes::OptimizedGraph opt = pipeline.run(g, {loss});
  std::printf("== 2. the forward pipeline ==\n%s\n", opt.report().c_str());
  for (std::size_t i = 0; i < opt.passes.size(); ++i) {
    if (!opt.passes[i].ran) continue;
    const auto stem = fmt::format("{:02}-{}", i + 1, opt.passes[i].name);
    std::printf("-- after pass %s (%s/%s.txt, .svg) --\n%s\n", stem.c_str(), out_dir.c_str(), stem.c_str(),
                read_file(std::filesystem::path(out_dir) / (stem + ".txt")).c_str());
  }

  // 3. Differentiate both graphs with respect to their parameters, after optimizing (docs/architecture.md,
  // decision 4). The optimized graph's parameters share the user's buffers: same weights.
  Graph& fused_graph = *opt.graph;
  std::vector<Value> fused_parameters;
  for (const Value& p : g.parameters()) fused_parameters.push_back(opt.value(p));
  std::vector<Value> unfused_outputs{loss}, fused_outputs{opt.outputs[0]};
  for (const Value& gradient : grad(loss, g.parameters())) unfused_outputs.push_back(gradient);
  for (const Value& gradient : grad(opt.outputs[0], fused_parameters)) fused_outputs.push_back(gradient);
  const std::filesystem::path out(out_dir);
  write_text_file((out / "train_step_unfused.txt").string(), to_text(g, unfused_outputs));
  write_text_file((out / "train_step_fused.txt").string(), to_text(fused_graph, fused_outputs));
  write_svg(to_dot(fused_graph, fused_outputs, DotOptions{.title = "forward + backward, fused"}),
            (out / "train_step_fused.svg").string());
  std::printf("== 3. forward + backward ==\n");
  std::printf("unfused: %zu nodes (%s/train_step_unfused.txt)\n", live_nodes(g, unfused_outputs), out_dir.c_str());
  std::printf(
      "fused:   %zu nodes, with %zu fused_attention and %zu fused_attention_backward (%s/train_step_fused.txt)\n\n",
      live_nodes(fused_graph, fused_outputs), live_nodes(fused_graph, fused_outputs, &ops::fused_attention),
      live_nodes(fused_graph, fused_outputs, &ops::fused_attention_backward), out_dir.c_str());

  // 4. Compile both, check that they agree, and compare memory and time.
  Executable unfused = compile(g, unfused_outputs, backend);
  Executable fused = compile(fused_graph, fused_outputs, backend);
  const Feeds unfused_feeds{{x, random_tensor(x.shape(), 1)}, {target, random_tensor(target.shape(), 2)}};
  const Feeds fused_feeds{{opt.value(x), unfused_feeds[0].second}, {opt.value(target), unfused_feeds[1].second}};
  const std::vector<Tensor> expected = unfused.run(unfused_feeds);
  const std::vector<Tensor> actual = fused.run(fused_feeds);
  // The key projection's bias gets no gradient in exact arithmetic (adding q·b to a whole row of
  // scores leaves its softmax unchanged), so both graphs give rounding noise for it: not compared.
  double worst = 0;
  const std::vector<Value> parameters = g.parameters();
  for (std::size_t i = 0; i < expected.size(); ++i)
    if (i == 0 || !parameters[i - 1].name().ends_with("k_proj/bias"))
      worst = std::max(worst, relative_difference(actual[i], expected[i]));
  // f32 against f32 agrees to rounding; bf16 operands (--mixed-precision) to a few 2^-8 of them.
  const double tolerance = device.mixed_precision ? 2e-2 : 1e-4;
  const bool agree = worst <= tolerance;
  std::printf("== 4. fused vs unfused at N = %lld, %lld heads of %lld dims ==\n", static_cast<long long>(n),
              static_cast<long long>(heads), static_cast<long long>(head_dim));
  std::printf("loss and %zu gradients (less the key bias's): largest difference %.2g of the largest value (%s)\n",
              expected.size() - 2, worst, agree ? "agree" : "DISAGREE");
  std::printf("planned peak memory: unfused %.1f MiB, fused %.1f MiB\n", mib(unfused.planned_peak_bytes()),
              mib(fused.planned_peak_bytes()));
  const double unfused_ms = time_runs(unfused, unfused_feeds, runs);
  const double fused_ms = time_runs(fused, fused_feeds, runs);
  std::printf("forward + backward, median of %d runs: unfused %.1f ms, fused %.1f ms (%.2fx)\n", runs, unfused_ms,
              fused_ms, unfused_ms / fused_ms);

  explore.write(fused, fused_feeds, opt, fused_outputs, "attention fusion: forward + backward, fused");

  tools::Report report;
  report.set("n", n);
  report.set("heads", heads);
  report.set("head_dim", head_dim);
  report.set("unfused_ms", unfused_ms);
  report.set("fused_ms", fused_ms);
  report.set("unfused_peak_bytes", unfused.planned_peak_bytes());
  report.set("fused_peak_bytes", fused.planned_peak_bytes());
  report.set("fused_attention_nodes", live_nodes(fused_graph, fused_outputs, &ops::fused_attention));
  report.set("max_relative_difference", worst);
  report.set("device", device.device);
  report.set("mixed_precision", device.mixed_precision);
  report.finish(json_path);
  return agree ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attention_fusion: %s\n", e.what());
    return 1;
  }
}
