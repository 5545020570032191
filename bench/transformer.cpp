// The training step of the two Transformer models of issue 4, each compiled as one executable
// (forward, backward and the AdamW update), on synthetic token ids, with the graph optimizer
// on and off:
//
//   gpt         nn::GPT, decoder-only: windows of --seq tokens
//   translator  nn::Transformer, encoder-decoder: source and target windows of --seq tokens
//
// Reported per model and mode: milliseconds per step (the median of --steps timed steps
// after --warmup untimed ones; the two modes are timed in alternating rounds so that machine
// noise hits both alike), tokens per second, GFLOP/s of the matmul work, and the planned
// peak of the step's memory arena.
//
//   build/bench/transformer [--steps 7] [--big] [--profile] [--backend cpu|cuda] [--mixed-precision]
//                           [--capture] [--check-finite] [--torch] [--json FILE]
//
// --backend cuda runs both modes on the GPU (the same keys; "backend" says which), where
// --mixed-precision puts the optimized step's attention in bf16 (passes/mixed_precision.h) and
// --capture records each step as one CUDA Graph (CompileOptions::capture_graph).
// --check-finite also times the optimized GPT step in anomaly mode (CompileOptions::check_finite)
// against the same step without it, in alternating rounds: keys `small_ms_per_step_check_finite`,
// `small_ms_per_step_check_finite_off` and their ratio `small_check_finite_cost`.
//
// Configurations:
//   small  d_model 128, 4 heads, d_ff 512, 2 layers (per stack), seq 64,  batch 32
//   big    d_model 512, 8 heads, d_ff 2048, 4 layers (per stack), seq 256, batch 8   (--big: slow on 2 cores)
//
// The headline keys: `small_ms_per_step` and `small_ms_per_step_unoptimized` (the GPT, whose
// small configuration is the 5.3 GFLOP step PyTorch was measured on, 78 ms with 2 threads),
// `big_ms_per_step`, and `small_optimizer_speedup`. The translator's keys carry
// `_translator_`.
//
// --torch runs bench/reference/transformer_torch.py right after, on the same configurations
// and steps (bench/torch_reference.h: a Python with PyTorch 2.x, from FOVEA_TORCH_PYTHON or
// python3 on PATH, run with the same thread count in PyTorch's default setting and with
// GOMP_SPINCOUNT=0), and prints its GPT step beside ours. Keys per configuration:
// `torch_small_ms_per_step` (PyTorch's best: the faster of written-out and SDPA attention, in
// the faster setting), `torch_small_ms_per_step_default` and `_gomp_spincount_0`,
// `torch_small_sdpa_ms_per_step` and `torch_small_plain_attention_ms_per_step`,
// `torch_small_setting`, and `small_speedup_vs_torch` = PyTorch's best / our optimized step
// (> 1: Fovea is faster). Without such a Python it says why and the torch keys are absent.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fovea/fovea.h>
#include <CLI/CLI.hpp>

#include "report.h"
#include "torch_reference.h"

namespace nn = fovea::nn;
using fovea::Tensor;
using fovea::Value;

namespace {

struct Config {
  std::string name;
  std::int64_t d_model, heads, d_ff, layers, seq, batch;
  std::int64_t vocab = 128;  // character-level
  double dropout = 0.1;
};

struct Measurement {
  double ms_per_step = 0;
  double tokens_per_second = 0, gflops = 0;
  std::size_t planned_peak_bytes = 0, nodes = 0;
  std::int64_t parameters = 0;
};

// Token ids in [0, vocab) from a fixed linear congruential sequence: the step's cost does not
// depend on their values.
Tensor token_ids(std::int64_t rows, std::int64_t columns, std::int64_t vocab, std::uint64_t seed) {
  Tensor t = Tensor::empty(fovea::i32, {rows, columns});
  std::uint64_t x = seed;
  for (std::int32_t& id : t.data<std::int32_t>()) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    id = static_cast<std::int32_t>((x >> 33) % static_cast<std::uint64_t>(vocab));
  }
  return t;
}

// One model's training step, built in a graph: the loss, the placeholders to feed and
// fresh feeds for step number `step`.
struct Model {
  std::unique_ptr<fovea::Graph> graph;
  Value loss;
  std::function<fovea::Feeds(std::int64_t step)> feeds;
  std::int64_t tokens_per_step = 0;
  double flops_per_step = 0;  // the matmuls' multiply-adds ×2, forward and backward (×3)
};

std::int64_t count_parameters(fovea::Graph& g) {
  std::int64_t n = 0;
  for (Value p : g.parameters()) n += p.shape().numel();
  return n;
}

// Matmul FLOPs of one training step: 2 per multiply-add, ×3 for forward and backward.
// Per token and layer: the projections (4·d² for attention, 2·d·d_ff for the feed-forward;
// the decoder's cross-attention another 4·d²), and attention's two T×T products (4·T·d).
double step_flops(const Config& c, bool translator) {
  const double d = static_cast<double>(c.d_model), T = static_cast<double>(c.seq), ff = static_cast<double>(c.d_ff);
  const double tokens = static_cast<double>(c.batch) * T, layers = static_cast<double>(c.layers);
  const double self_block = 4 * d * d + 2 * d * ff + 2 * T * d;  // multiply-adds per token
  double per_token = layers * self_block + d * static_cast<double>(c.vocab);
  if (translator) per_token += layers * (self_block + 4 * d * d + 2 * T * d);
  return 3 * 2 * tokens * per_token;
}

Model gpt_model(const Config& c) {
  Model m;
  m.graph = std::make_unique<fovea::Graph>("gpt");
  fovea::Graph& g = *m.graph;
  g.set_seed(1);
  const nn::GPT model(g, {.vocab = c.vocab,
                          .d_model = c.d_model,
                          .heads = c.heads,
                          .d_ff = c.d_ff,
                          .layers = c.layers,
                          .max_len = c.seq,
                          .dropout = c.dropout});
  const Value ids = g.placeholder("ids", fovea::i32, {c.batch, c.seq});
  const Value next = g.placeholder("next", fovea::i32, {c.batch, c.seq});
  const Value step_number = g.placeholder("step", fovea::i64, {});
  m.loss = nn::cross_entropy(model(ids, {.training = true, .step = step_number}), next);
  const Tensor x = token_ids(c.batch, c.seq, c.vocab, 4), y = token_ids(c.batch, c.seq, c.vocab, 5);
  m.feeds = [=](std::int64_t step) { return fovea::Feeds{{ids, x}, {next, y}, {step_number, Tensor::scalar(step)}}; };
  m.tokens_per_step = c.batch * c.seq;
  m.flops_per_step = step_flops(c, false);
  return m;
}

Model translator_model(const Config& c) {
  Model m;
  m.graph = std::make_unique<fovea::Graph>("translator");
  fovea::Graph& g = *m.graph;
  g.set_seed(1);
  const nn::Transformer model(g, {.source_vocab = c.vocab,
                                  .target_vocab = c.vocab,
                                  .d_model = c.d_model,
                                  .heads = c.heads,
                                  .d_ff = c.d_ff,
                                  .layers = c.layers,
                                  .max_len = c.seq,
                                  .dropout = c.dropout});
  const Value source = g.placeholder("source", fovea::i32, {c.batch, c.seq});
  const Value target_in = g.placeholder("target_in", fovea::i32, {c.batch, c.seq});
  const Value target_out = g.placeholder("target_out", fovea::i32, {c.batch, c.seq});
  const Value step_number = g.placeholder("step", fovea::i64, {});
  const nn::AttentionMask mask = nn::padding_mask(fovea::equal(source, fovea::scalar_like(source, 0.0)));
  const Value logits = model(source, target_in, mask, {.training = true, .step = step_number});
  m.loss = nn::cross_entropy(logits, target_out, {.ignore_index = 0});
  const Tensor s = token_ids(c.batch, c.seq, c.vocab, 1), ti = token_ids(c.batch, c.seq, c.vocab, 2),
               to = token_ids(c.batch, c.seq, c.vocab, 3);
  m.feeds = [=](std::int64_t step) {
    return fovea::Feeds{{source, s}, {target_in, ti}, {target_out, to}, {step_number, Tensor::scalar(step)}};
  };
  m.tokens_per_step = 2 * c.batch * c.seq;
  m.flops_per_step = step_flops(c, true);
  return m;
}

struct Compiled {
  Model model;
  fovea::passes::TrainingGraph optimized;  // empty when compiled straight from the user's graph
  std::unique_ptr<fovea::Executable> exe;
  std::int64_t counter = 0;
  Measurement m;
  std::vector<double> ms;
};

// Where and how the steps run.
struct Settings {
  std::shared_ptr<fovea::Backend> backend = fovea::cpu();
  bool mixed_precision = false;  // the optimized step's attention in bf16
  bool capture = false;          // one CUDA Graph per step
  bool check_finite = false;     // anomaly mode (CompileOptions::check_finite)
};

// Compiles the step (forward, backward, AdamW) either straight from the user's graph or
// through the optimizer: the forward pipeline (attention and normalisation fusion) before
// autodiff, the step pipeline (elementwise fusion) after it.
void compile_step(Compiled& c, bool optimized, const Settings& settings) {
  fovea::Graph& g = *c.model.graph;
  auto build_step = [](fovea::Graph& graph, const std::vector<Value>& outputs) {
    const nn::TrainStep step =
        nn::adamw(outputs[0], graph.parameters(), {.lr = nn::constant_lr(1e-4), .weight_decay = 0.01});
    return fovea::passes::StepParts{{outputs[0]}, step.updates};
  };
  if (optimized) {
    fovea::passes::PipelineOptions pipeline;
    if (settings.mixed_precision) pipeline.mixed_precision = fovea::passes::MixedPrecisionOptions{};
    c.optimized = fovea::passes::optimize_training(g, {c.model.loss}, build_step, pipeline);
    const fovea::passes::OptimizedGraph& s = c.optimized.step;
    c.exe = std::make_unique<fovea::Executable>(fovea::compile(
        *s.graph, s.outputs, settings.backend,
        {.updates = s.updates, .check_finite = settings.check_finite, .capture_graph = settings.capture}));
  } else {
    const fovea::passes::StepParts parts = build_step(g, {c.model.loss});
    c.exe = std::make_unique<fovea::Executable>(fovea::compile(
        g, parts.outputs, settings.backend,
        {.updates = parts.updates, .check_finite = settings.check_finite, .capture_graph = settings.capture}));
  }
  c.m.planned_peak_bytes = c.exe->planned_peak_bytes();
  c.m.nodes = c.exe->schedule().size();
  c.m.parameters = count_parameters(g);
}

void run_step(Compiled& c) {
  fovea::Feeds feeds = c.model.feeds(c.counter++);
  if (c.optimized.step.graph)
    for (auto& [value, tensor] : feeds) value = c.optimized.step.value(value);
  c.exe->run(feeds);
}

// Times two compiled steps in alternating rounds, so that machine noise hits both alike.
void time_alternating(Compiled& off, Compiled& on, int warmup, int steps) {
  for (int i = 0; i < warmup; ++i) run_step(off), run_step(on);
  for (int i = 0; i < steps; ++i)
    for (Compiled* c : {&off, &on}) {
      const auto start = std::chrono::steady_clock::now();
      run_step(*c);
      c->ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
}

// Times the unoptimized and the optimized step of one model in alternating rounds.
std::pair<Measurement, Measurement> measure(const std::function<Model()>& make, int warmup, int steps, bool profile,
                                            const Settings& settings) {
  Compiled off, on;
  off.model = make();
  on.model = make();
  compile_step(off, false, settings);
  compile_step(on, true, settings);
  time_alternating(off, on, warmup, steps);
  for (Compiled* c : {&off, &on}) {
    std::sort(c->ms.begin(), c->ms.end());
    c->m.ms_per_step = c->ms[c->ms.size() / 2];
    c->m.tokens_per_second = 1000.0 * static_cast<double>(c->model.tokens_per_step) / c->m.ms_per_step;
    c->m.gflops = c->model.flops_per_step / (c->m.ms_per_step * 1e6);
    if (profile) {
      c->exe->set_profiling(true);
      for (int i = 0; i < 3; ++i) run_step(*c);
      std::printf("%s", c->exe->profile_report(20).c_str());
    }
  }
  return {off.m, on.m};
}

// The median milliseconds of the optimized step without and with anomaly mode
// (CompileOptions::check_finite), timed in alternating rounds.
std::pair<double, double> measure_check_finite(const std::function<Model()>& make, int warmup, int steps,
                                               const Settings& settings) {
  Compiled off, on;
  off.model = make();
  on.model = make();
  Settings checked = settings;
  checked.check_finite = true;
  compile_step(off, true, settings);
  compile_step(on, true, checked);
  time_alternating(off, on, warmup, steps);
  for (Compiled* c : {&off, &on}) std::sort(c->ms.begin(), c->ms.end());
  return {off.ms[off.ms.size() / 2], on.ms[on.ms.size() / 2]};
}

void print(const char* model, const char* mode, const Measurement& m) {
  std::printf("  %-10s %-11s %s params, %5zu nodes: %8.2f ms/step  %8s tokens/s  %6.1f GFLOP/s  peak %7.2f MB\n", model,
              mode, fovea::with_thousands(m.parameters).c_str(), m.nodes, m.ms_per_step,
              fovea::with_thousands(static_cast<std::int64_t>(m.tokens_per_second)).c_str(), m.gflops,
              static_cast<double>(m.planned_peak_bytes) / 1e6);
}

void record(fovea::tools::Report& report, const std::string& prefix, const std::string& suffix, const Measurement& m) {
  report.set(prefix + "_ms_per_step" + suffix, m.ms_per_step);
  report.set(prefix + "_tokens_per_second" + suffix, m.tokens_per_second);
  report.set(prefix + "_gflops" + suffix, m.gflops);
  report.set(prefix + "_planned_peak_bytes" + suffix, m.planned_peak_bytes);
  report.set(prefix + "_nodes" + suffix, m.nodes);
}

// The GPT step of each configuration in PyTorch (bench/reference/transformer_torch.py), beside
// the optimized step already in `report`.
void compare_with_torch(fovea::tools::Report& report, const std::vector<Config>& configs, int warmup, int steps) {
  std::vector<std::string> arguments{"--steps", std::to_string(steps), "--warmup", std::to_string(warmup)};
  if (configs.size() > 1) arguments.push_back("--big");
  const fovea::bench::TorchReference torch =
      fovea::bench::run_torch_reference("transformer_torch.py", arguments, fovea::configured_thread_count());
  if (!torch.ran()) {
    std::printf("--torch: no comparison: %s\n", torch.why_not.c_str());
    return;
  }
  report.set("torch_version", torch.version);
  std::printf("\nGPT training step, Fovea (optimized) and PyTorch %s (best of written-out and SDPA attention)\n",
              torch.version.c_str());
  std::printf("  %-6s %10s %10s %10s %16s  %-30s %8s\n", "config", "fovea ms", "torch ms", "default",
              "GOMP_SPINCOUNT=0", "torch's best", "speed-up");
  for (const Config& c : configs) {
    const fovea::bench::TorchTime* best = torch.find(c.name + "_torch_ms_per_step");
    const fovea::bench::TorchTime* sdpa = torch.find(c.name + "_torch_sdpa_ms_per_step");
    const fovea::bench::TorchTime* plain = torch.find(c.name + "_torch_plain_attention_ms_per_step");
    if (!best || !sdpa || !plain) {
      std::printf("  %-6s transformer_torch.py reported no time\n", c.name.c_str());
      continue;
    }
    const double ours = report.json().at(c.name + "_ms_per_step").get<double>();
    const std::string attention = sdpa->ms <= plain->ms ? "sdpa" : "written-out";
    fovea::bench::record(report, "torch_" + c.name + "_ms_per_step", *best);
    report.set("torch_" + c.name + "_sdpa_ms_per_step", sdpa->ms);
    report.set("torch_" + c.name + "_plain_attention_ms_per_step", plain->ms);
    report.set("torch_" + c.name + "_setting", attention + ", " + best->setting);
    report.set(c.name + "_speedup_vs_torch", best->ms / ours);
    std::printf("  %-6s %10.2f %10.2f %10.2f %16.2f  %-30s %7.2fx\n", c.name.c_str(), ours, best->ms, best->default_ms,
                best->gomp_spincount_0_ms, (attention + ", " + best->setting).c_str(), best->ms / ours);
  }
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"Training-step time of a GPT and the translator (encoder-decoder Transformer), optimizer on and off"};
  int steps = 7, warmup = 2;
  bool big = false, profile = false, skip_translator = false, check_finite = false, torch = false;
  std::string json, backend = "cpu";
  Settings settings;
  app.add_option("--steps", steps, "timed steps per model and mode (the median is reported; at least 5)")
      ->check(CLI::Range(5, 100000));
  app.add_option("--warmup", warmup, "untimed steps first");
  app.add_flag("--big", big, "also the big configuration (d_model 512, 4 layers, seq 256: slow on 2 cores)");
  app.add_flag("--gpt-only", skip_translator, "skip the translator");
  app.add_flag("--profile", profile, "print where each step's time goes, by op and by node");
  app.add_option("--backend", backend, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_flag("--mixed-precision", settings.mixed_precision, "the optimized step's attention in bf16");
  app.add_flag("--capture", settings.capture, "record each step as one CUDA Graph (CUDA only)");
  app.add_flag("--check-finite", check_finite,
               "also time the optimized GPT step in anomaly mode (CompileOptions::check_finite) against it without");
  app.add_flag("--torch", torch,
               "then time the GPT step in PyTorch (bench/reference/transformer_torch.py; CPU only) and compare");
  app.add_option("--json", json, "write the figures to this JSON file");
  CLI11_PARSE(app, argc, argv);
  if (torch && backend != "cpu") {
    std::printf("--torch: transformer_torch.py times the CPU step only; no comparison with --backend %s\n",
                backend.c_str());
    torch = false;
  }
  if (backend == "cuda") {
    std::string reason;
    if (!fovea::cuda_available(&reason)) {
      std::printf("skipped: %s\n", reason.c_str());
      return 0;
    }
    settings.backend = fovea::cuda();
  }

  std::vector<Config> configs = {{"small", 128, 4, 512, 2, 64, 32}};
  if (big) configs.push_back({"big", 512, 8, 2048, 4, 256, 8});
  std::printf(
      "training steps (forward + backward + AdamW, dropout 0.1) on %s%s%s, %d threads; median of %d after %d "
      "warm-up\n",
      backend.c_str(), settings.mixed_precision ? ", attention in bf16 when optimized" : "",
      settings.capture ? ", captured" : "", fovea::configured_thread_count(), steps, warmup);
  fovea::tools::Report report;
  report.set("threads", fovea::configured_thread_count());
  report.set("backend", backend);
  report.set("mixed_precision", settings.mixed_precision);
  report.set("capture", settings.capture);
  for (const Config& c : configs) {
    std::printf("%s: d_model %lld, %lld heads, d_ff %lld, %lld layers, seq %lld, batch %lld, vocab %lld\n",
                c.name.c_str(), static_cast<long long>(c.d_model), static_cast<long long>(c.heads),
                static_cast<long long>(c.d_ff), static_cast<long long>(c.layers), static_cast<long long>(c.seq),
                static_cast<long long>(c.batch), static_cast<long long>(c.vocab));
    const auto [gpt_off, gpt_on] = measure([&] { return gpt_model(c); }, warmup, steps, profile, settings);
    print("gpt", "unoptimized", gpt_off);
    print("gpt", "optimized", gpt_on);
    std::printf("  gpt optimizer speed-up: %.2fx\n", gpt_off.ms_per_step / gpt_on.ms_per_step);
    record(report, c.name, "", gpt_on);
    record(report, c.name, "_unoptimized", gpt_off);
    report.set(c.name + "_optimizer_speedup", gpt_off.ms_per_step / gpt_on.ms_per_step);
    if (check_finite) {
      const auto [plain, checked] = measure_check_finite([&] { return gpt_model(c); }, warmup, steps, settings);
      std::printf("  gpt optimized, anomaly mode off %.2f ms/step, on %.2f ms/step: %.2fx\n", plain, checked,
                  checked / plain);
      report.set(c.name + "_ms_per_step_check_finite_off", plain);
      report.set(c.name + "_ms_per_step_check_finite", checked);
      report.set(c.name + "_check_finite_cost", checked / plain);
    }
    if (skip_translator) continue;
    const auto [tr_off, tr_on] = measure([&] { return translator_model(c); }, warmup, steps, profile, settings);
    print("translator", "unoptimized", tr_off);
    print("translator", "optimized", tr_on);
    std::printf("  translator optimizer speed-up: %.2fx\n", tr_off.ms_per_step / tr_on.ms_per_step);
    record(report, c.name + "_translator", "", tr_on);
    record(report, c.name + "_translator", "_unoptimized", tr_off);
    report.set(c.name + "_translator_optimizer_speedup", tr_off.ms_per_step / tr_on.ms_per_step);
  }
  if (torch) compare_with_torch(report, configs, warmup, steps);
  report.finish(json);
  return 0;
} catch (const fovea::Error& e) {
  std::fprintf(stderr, "fovea::Error: %s\n", e.what());
  return 1;
}
