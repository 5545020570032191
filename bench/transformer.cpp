// The training step of the two Transformer models of issue 4, each compiled as one executable
// (forward, backward and the AdamW update), on synthetic token ids:
//
//   translator  nn::Transformer, encoder-decoder: source and target windows of --seq tokens
//   gpt         nn::GPT, decoder-only: windows of --seq tokens
//
// Reported per model: milliseconds per step (the median of --steps timed steps after
// --warmup untimed ones), examples and tokens per second (the translator's tokens count both
// the source and the target), and the planned peak of the step's memory arena.
//
//   build/bench/transformer [--steps 7] [--big] [--json FILE]
//
// Configurations:
//   small  d_model 128, 4 heads, d_ff 512, 2 layers (per stack), seq 64,  batch 32
//   big    d_model 512, 8 heads, d_ff 2048, 4 layers (per stack), seq 256, batch 8   (--big: slow on 2 cores)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fovea/fovea.h>
#include <CLI/CLI.hpp>

#include "report.h"

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
  double examples_per_second = 0, tokens_per_second = 0;
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

// Compiles the step. This is where the graph optimizer (passes/) will run once it exists:
// an --unoptimized comparison then measures the same step compiled with and without it, and
// reports the `*_unoptimized_*` figures beside these.
fovea::Executable compile_step(fovea::Graph& g, Value loss, const nn::TrainStep& step) {
  return fovea::compile(g, {loss}, fovea::cpu(), {.updates = step.updates});
}

// Runs `run` `warmup` times untimed, then `steps` times timed; the median in milliseconds.
double median_ms(const std::function<void()>& run, int warmup, int steps) {
  for (int i = 0; i < warmup; ++i) run();
  std::vector<double> ms;
  for (int i = 0; i < steps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    run();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

std::int64_t count_parameters(fovea::Graph& g) {
  std::int64_t n = 0;
  for (Value p : g.parameters()) n += p.shape().numel();
  return n;
}

Measurement translator_step(const Config& c, int warmup, int steps) {
  fovea::Graph g("translator");
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
  const Value loss = nn::cross_entropy(logits, target_out, {.ignore_index = 0});
  const nn::TrainStep step = nn::adamw(loss, g.parameters(), {.lr = nn::constant_lr(1e-4), .weight_decay = 0.01});
  fovea::Executable exe = compile_step(g, loss, step);

  const Tensor s = token_ids(c.batch, c.seq, c.vocab, 1), ti = token_ids(c.batch, c.seq, c.vocab, 2),
               to = token_ids(c.batch, c.seq, c.vocab, 3);
  std::int64_t counter = 0;
  Measurement m;
  m.ms_per_step = median_ms(
      [&] {
        exe.run({{source, s}, {target_in, ti}, {target_out, to}, {step_number, Tensor::scalar(counter++)}});
      },
      warmup, steps);
  m.examples_per_second = 1000.0 * static_cast<double>(c.batch) / m.ms_per_step;
  m.tokens_per_second = 1000.0 * static_cast<double>(2 * c.batch * c.seq) / m.ms_per_step;
  m.planned_peak_bytes = exe.planned_peak_bytes();
  m.nodes = exe.schedule().size();
  m.parameters = count_parameters(g);
  return m;
}

Measurement gpt_step(const Config& c, int warmup, int steps) {
  fovea::Graph g("gpt");
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
  const Value loss = nn::cross_entropy(model(ids, {.training = true, .step = step_number}), next);
  const nn::TrainStep step = nn::adamw(loss, g.parameters(), {.lr = nn::constant_lr(1e-4), .weight_decay = 0.01});
  fovea::Executable exe = compile_step(g, loss, step);

  const Tensor x = token_ids(c.batch, c.seq, c.vocab, 4), y = token_ids(c.batch, c.seq, c.vocab, 5);
  std::int64_t counter = 0;
  Measurement m;
  m.ms_per_step = median_ms(
      [&] {
        exe.run({{ids, x}, {next, y}, {step_number, Tensor::scalar(counter++)}});
      },
      warmup, steps);
  m.examples_per_second = 1000.0 * static_cast<double>(c.batch) / m.ms_per_step;
  m.tokens_per_second = 1000.0 * static_cast<double>(c.batch * c.seq) / m.ms_per_step;
  m.planned_peak_bytes = exe.planned_peak_bytes();
  m.nodes = exe.schedule().size();
  m.parameters = count_parameters(g);
  return m;
}

void print(const char* model, const Config& c, const Measurement& m) {
  std::printf("%-10s %-5s %s params, %5zu nodes: %9.2f ms/step  %8.1f examples/s  %9s tokens/s  peak %7.2f MB\n", model,
              c.name.c_str(), fovea::with_thousands(m.parameters).c_str(), m.nodes, m.ms_per_step,
              m.examples_per_second, fovea::with_thousands(static_cast<std::int64_t>(m.tokens_per_second)).c_str(),
              static_cast<double>(m.planned_peak_bytes) / 1e6);
}

void record(fovea::tools::Report& report, const std::string& prefix, const Measurement& m) {
  report.set(prefix + "_ms_per_step", m.ms_per_step);
  report.set(prefix + "_examples_per_second", m.examples_per_second);
  report.set(prefix + "_tokens_per_second", m.tokens_per_second);
  report.set(prefix + "_planned_peak_bytes", m.planned_peak_bytes);
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"Training-step time of the translator (encoder-decoder Transformer) and a GPT"};
  int steps = 7, warmup = 2;
  bool big = false;
  std::string json;
  app.add_option("--steps", steps, "timed steps per model (the median is reported; at least 5)")
      ->check(CLI::Range(5, 100000));
  app.add_option("--warmup", warmup, "untimed steps first");
  app.add_flag("--big", big, "also the big configuration (d_model 512, 4 layers, seq 256: slow on 2 cores)");
  app.add_option("--json", json, "write the figures to this JSON file");
  CLI11_PARSE(app, argc, argv);

  std::vector<Config> configs = {{"small", 128, 4, 512, 2, 64, 32}};
  if (big) configs.push_back({"big", 512, 8, 2048, 4, 256, 8});
  std::printf("training steps (forward + backward + AdamW, dropout 0.1), %d threads; median of %d after %d warm-up\n",
              fovea::configured_thread_count(), steps, warmup);
  fovea::tools::Report report;
  report.set("threads", fovea::configured_thread_count());
  for (const Config& c : configs) {
    std::printf("%s: d_model %lld, %lld heads, d_ff %lld, %lld layers, seq %lld, batch %lld, vocab %lld\n",
                c.name.c_str(), static_cast<long long>(c.d_model), static_cast<long long>(c.heads),
                static_cast<long long>(c.d_ff), static_cast<long long>(c.layers), static_cast<long long>(c.seq),
                static_cast<long long>(c.batch), static_cast<long long>(c.vocab));
    const Measurement translator = translator_step(c, warmup, steps);
    print("translator", c, translator);
    const Measurement gpt = gpt_step(c, warmup, steps);
    print("gpt", c, gpt);
    record(report, c.name, translator);
    record(report, c.name + "_gpt", gpt);
  }
  report.finish(json);
  return 0;
} catch (const fovea::Error& e) {
  std::fprintf(stderr, "fovea::Error: %s\n", e.what());
  return 1;
}
