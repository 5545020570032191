// A character-level GPT trained on any text, by default the fortune cookies of Debian's
// `fortunes` package, then asked to write more of it.
//
//   build/examples/char_gpt [--text FILE_OR_FOLDER] [--steps 2000] [--prompt "Q: "] [--temperature 0.8]
//                           [--out char_gpt_out] [--json FILE] [--quick]
//
// The text is read as bytes; the vocabulary is the set of bytes it uses. Training draws random
// contiguous windows of --context characters (seeded) from the first 95% of the text and
// predicts every next character (nn::GPT: decoder-only, causal, pre-norm, learned positions),
// with AdamW, warmup then cosine decay, and dropout. The last 5% is held out: its loss, in bits
// per character, is compared with the unigram entropy of the text, H = -Σ p(c) log₂ p(c), what a
// model that knows only character frequencies would pay.
//
// Sampling runs a forward graph compiled once for shape [1, context]: the text so far (its last
// `context` characters) is fed left-aligned, the rest padded; the causal mask makes the padding
// irrelevant, and the next character is drawn from softmax(logits / temperature) at the last
// real position.
//
// Writes to --out: the forward graph (text IR, and SVG folded so that `gpt/block0` is one box),
// metrics.csv, validation.csv, loss.svg, and sample.txt.
//
//   mpirun -np 2 build/examples/char_gpt --data-parallel     (docs/distributed.md)
//
// trains on every rank: each draws the same --batch windows per step and takes its share, the
// gradients are averaged over the ranks, and rank 0 prints and writes the figures (the others
// write under --out/rank<r>). Every rank validates and samples the same way.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fovea/fovea.h>
#include <fovea/io/text.h>
#include <CLI/CLI.hpp>

#include "data_parallel.h"
#include "device.h"
#include "explore_option.h"
#include "report.h"

namespace nn = fovea::nn;
using fovea::Tensor;
using fovea::Value;

namespace {

const char* const default_text = "/usr/share/games/fortunes";

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// H = -Σ_c p(c) log₂ p(c) over the byte frequencies of `text`.
double unigram_entropy_bits(const std::string& text) {
  std::array<double, 256> count{};
  for (char c : text) count[static_cast<unsigned char>(c)] += 1;
  double h = 0;
  for (double n : count)
    if (n > 0) {
      const double p = n / static_cast<double>(text.size());
      h -= p * std::log2(p);
    }
  return h;
}

// Inputs and next-character targets for windows of `length` starting at `starts`.
void fill_windows(const std::vector<std::int32_t>& ids, const std::vector<std::int64_t>& starts, std::int64_t length,
                  Tensor& inputs, Tensor& targets) {
  auto in = inputs.data<std::int32_t>();
  auto out = targets.data<std::int32_t>();
  for (std::size_t b = 0; b < starts.size(); ++b)
    for (std::int64_t t = 0; t < length; ++t) {
      const auto at = static_cast<std::size_t>(starts[b] + t);
      in[b * static_cast<std::size_t>(length) + static_cast<std::size_t>(t)] = ids[at];
      out[b * static_cast<std::size_t>(length) + static_cast<std::size_t>(t)] = ids[at + 1];
    }
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"Train a character-level GPT with Fovea and sample from it"};
  std::string text_path = default_text, prompt = "Q: ", out_dir = "char_gpt_out", json;
  std::int64_t d_model = 128, heads = 4, d_ff = 512, layers = 2, context = 64, batch = 16, steps = 2000;
  std::int64_t warmup = 100, eval_every = 100, eval_batches = 8, final_eval_batches = 64, sample_length = 400;
  double lr = 4e-3, weight_decay = 0.05, dropout = 0.05, temperature = 0.8, held_out_fraction = 0.05;
  std::uint64_t seed = 1;
  bool quick = false, no_optimize = false;
  app.add_option("--text", text_path, "a text file, or a folder whose files without an extension are concatenated");
  app.add_option("--d-model", d_model, "model width");
  app.add_option("--heads", heads, "attention heads");
  app.add_option("--d-ff", d_ff, "feed-forward hidden width");
  app.add_option("--layers", layers, "Transformer blocks");
  app.add_option("--context", context, "characters per training window (and the sampling window)");
  app.add_option("--batch", batch, "windows per step");
  app.add_option("--steps", steps, "training steps (the learning rate decays over these)");
  app.add_option("--warmup", warmup, "steps of linear learning-rate warmup");
  app.add_option("--lr", lr, "peak learning rate (AdamW)");
  app.add_option("--weight-decay", weight_decay, "AdamW's decoupled weight decay");
  app.add_option("--dropout", dropout, "dropout on embeddings, attention weights and sub-layer outputs");
  app.add_option("--eval-every", eval_every, "steps between validation estimates");
  app.add_option("--held-out", held_out_fraction, "the fraction at the end of the text kept for validation");
  app.add_option("--seed", seed, "seed for the weights, the dropout masks, the windows and the sampling");
  app.add_option("--prompt", prompt, "text the sample starts from");
  app.add_option("--temperature", temperature, "sampling temperature (<= 0: always the likeliest character)");
  app.add_option("--sample-length", sample_length, "characters to sample");
  app.add_option("--out", out_dir, "folder for graphs, metrics, the loss curve and the sample");
  app.add_option("--json", json, "write the final figures to this JSON file");
  fovea::tools::ExploreOption explore;
  explore.add_to(app);
  app.add_flag("--quick", quick, "a smoke test: a tiny model, a few steps, a short sample");
  app.add_flag("--no-optimize", no_optimize, "compile the training step without the graph optimizer");
  fovea::tools::DeviceOptions device;
  device.add_to(app);
  fovea::tools::Ranks ranks;
  ranks.add_to(app);
  CLI11_PARSE(app, argc, argv);
  const std::shared_ptr<fovea::Backend> backend = device.backend();
  if (quick) {
    d_model = 32, heads = 2, d_ff = 64, layers = 1, context = 32, batch = 8, steps = 20, warmup = 5;
    eval_every = 10, eval_batches = 2, final_eval_batches = 4, sample_length = 60;
  }
  ranks.join(batch, out_dir, json);
  const std::int64_t local_batch = batch / ranks.size();  // this rank's windows of every step
  std::filesystem::create_directories(out_dir);

  // --- The text, its vocabulary, the split.
  if (!std::filesystem::exists(text_path))
    throw fovea::Error(
        fmt::format("{} does not exist: install Debian's `fortunes` package (tools/install_deps.sh "
                    "does) or pass --text FILE",
                    text_path));
  const fovea::TextCorpus corpus = fovea::load_text_corpus(text_path, held_out_fraction, context);
  const std::string& text = corpus.text;
  const std::vector<std::int32_t>& ids = corpus.ids;
  const std::int64_t total = corpus.size(), held_out_begin = corpus.held_out_begin;
  // The prompt, checked now rather than after training (an empty one starts from the text's
  // first character).
  std::vector<std::int32_t> prompt_ids;
  for (char c : prompt) {
    const std::int32_t id = corpus.id[static_cast<unsigned char>(c)];
    if (id < 0)
      throw fovea::Error(
          fmt::format("the prompt's byte 0x{:02x} never occurs in {}", static_cast<unsigned char>(c), text_path));
    prompt_ids.push_back(id);
  }
  if (prompt_ids.empty()) prompt_ids.push_back(ids[0]);
  const double unigram_bits = unigram_entropy_bits(text);
  std::printf("%s: %s characters, %lld distinct; training on the first %s, validating on the last %s\n",
              text_path.c_str(), fovea::with_thousands(total).c_str(), static_cast<long long>(corpus.vocabulary_size()),
              fovea::with_thousands(held_out_begin).c_str(), fovea::with_thousands(total - held_out_begin).c_str());
  std::printf("unigram entropy: %.3f bits per character\n", unigram_bits);

  // --- The graph: training step, validation loss and the sampler share one model.
  fovea::Graph g("char_gpt");
  g.set_seed(seed);
  const nn::GPT model(g, {.vocab = corpus.vocabulary_size(),
                          .d_model = d_model,
                          .heads = heads,
                          .d_ff = d_ff,
                          .layers = layers,
                          .max_len = context,
                          .dropout = dropout});
  const Value inputs = g.placeholder("inputs", fovea::i32, {local_batch, context});
  const Value targets = g.placeholder("targets", fovea::i32, {local_batch, context});
  const Value step_number = g.placeholder("step", fovea::i64, {});
  Value loss;
  {
    const Value logits = model(inputs, {.training = true, .step = step_number});
    auto scope = g.scope("loss");
    loss = nn::cross_entropy(logits, targets);
  }
  // The training step, through the optimizer's training pipeline (or as written, --no-optimize).
  auto build_step = [&](fovea::Graph& graph, const std::vector<Value>& forward) {
    const nn::TrainStep step =
        nn::adamw(forward[0], graph.parameters(),
                  {.lr = nn::warmup_cosine(lr, static_cast<double>(warmup), static_cast<double>(steps), lr * 0.1),
                   .weight_decay = weight_decay,
                   .data_parallel = ranks.averaging()});
    // The loss over the global batch: the mean of the ranks' losses.
    return fovea::passes::StepParts{{ranks.global_mean(forward[0]), step.learning_rate}, step.updates};
  };
  if (ranks.enabled()) nn::broadcast_parameters(g, *ranks.world());  // rank 0's weights everywhere
  fovea::passes::CompiledTrainingStep train_step = fovea::passes::compile_training_step(
      g, {loss}, build_step, backend,
      {.optimize = !no_optimize, .pipeline = device.pipeline(), .explore = explore.option()});

  Value eval_loss;
  {
    auto scope = g.scope("validation");
    eval_loss = nn::cross_entropy(model(inputs), targets);
  }
  fovea::Executable evaluate = fovea::compile(g, {eval_loss}, backend);

  const Value prefix = g.placeholder("prefix", fovea::i32, {1, context});
  Value sample_logits;
  {
    auto scope = g.scope("sample");
    sample_logits = model(prefix);
  }
  fovea::Executable sampler = fovea::compile(g, {sample_logits}, backend);

  std::int64_t parameter_count = 0;
  for (Value p : g.parameters()) parameter_count += p.shape().numel();
  std::printf("model: d_model %lld, %lld heads, d_ff %lld, %lld layers, context %lld, %s parameters\n",
              static_cast<long long>(d_model), static_cast<long long>(heads), static_cast<long long>(d_ff),
              static_cast<long long>(layers), static_cast<long long>(context),
              fovea::with_thousands(parameter_count).c_str());
  std::printf("training step (%s): %zu nodes, planned peak %.2f MB\n",
              train_step.optimized() ? "optimized" : "not optimized", train_step.executable().schedule().size(),
              static_cast<double>(train_step.executable().planned_peak_bytes()) / 1e6);
  fovea::write_text_file(out_dir + "/forward.txt", fovea::to_text(g, {loss}));
  std::string why;
  if (!fovea::write_svg(fovea::to_dot(g, {loss}, {.max_scope_depth = 1, .title = "char_gpt: forward"}),
                        out_dir + "/forward.svg", &why))
    std::printf("(no SVG drawing: %s)\n", why.c_str());

  // Validation windows: consecutive, from the start of the held-out part.
  Tensor batch_inputs = Tensor::empty(fovea::i32, {local_batch, context});
  Tensor batch_targets = Tensor::empty(fovea::i32, {local_batch, context});
  const std::int64_t held_out_windows = (total - 1 - held_out_begin) / context;
  auto validation_bits = [&](std::int64_t batches) {
    batches = std::min(batches, held_out_windows / local_batch);
    double sum = 0;
    for (std::int64_t k = 0; k < batches; ++k) {
      std::vector<std::int64_t> starts;
      for (std::int64_t b = 0; b < local_batch; ++b) starts.push_back(held_out_begin + (k * local_batch + b) * context);
      fill_windows(ids, starts, context, batch_inputs, batch_targets);
      sum += evaluate.run({{inputs, batch_inputs}, {targets, batch_targets}})[0].item();
    }
    return sum / static_cast<double>(std::max<std::int64_t>(batches, 1)) / std::log(2.0);
  };

  // --- Train.
  std::mt19937_64 random(seed);
  fovea::MetricsLog metrics(out_dir + "/metrics.csv");
  fovea::MetricsLog validation_log(out_dir + "/validation.csv");
  fovea::Progress progress(steps, "train");
  std::vector<double> curve_x, curve_y, smooth_y, val_x, val_y;
  double train_seconds = 0, smoothed = 0, val_bits = std::nan("");
  for (std::int64_t s = 0; s < steps; ++s) {
    std::vector<std::int64_t> starts;  // the global batch's windows, the same on every rank
    for (std::int64_t b = 0; b < batch; ++b)
      starts.push_back(static_cast<std::int64_t>(random() % static_cast<std::uint64_t>(held_out_begin - context)));
    starts.erase(starts.begin(), starts.begin() + ranks.rank() * local_batch);  // this rank's share
    starts.resize(static_cast<std::size_t>(local_batch));
    fill_windows(ids, starts, context, batch_inputs, batch_targets);
    const auto t0 = std::chrono::steady_clock::now();
    const auto out =
        train_step.run({{inputs, batch_inputs}, {targets, batch_targets}, {step_number, Tensor::scalar(s)}});
    train_seconds += seconds_since(t0);
    const double bits = out[0].item() / std::log(2.0);
    if (!std::isfinite(bits))
      throw fovea::Error(fmt::format("training diverged at step {}: the loss is {}; lower --lr", s + 1, bits));
    smoothed = s == 0 ? bits : 0.95 * smoothed + 0.05 * bits;
    metrics.write(s + 1, 0, {{"bits_per_char", bits}, {"lr", out[1].item()}});
    curve_x.push_back(static_cast<double>(s + 1));
    curve_y.push_back(bits);
    smooth_y.push_back(smoothed);
    if ((s + 1) % eval_every == 0 && s + 1 < steps) {
      val_bits = validation_bits(eval_batches);
      val_x.push_back(static_cast<double>(s + 1));
      val_y.push_back(val_bits);
      validation_log.write(s + 1, 0, {{"bits_per_char", val_bits}});
    }
    progress.update(s + 1, {{"bpc", smoothed}, {"val bpc", val_bits}}, batch * context);
  }
  progress.finish();
  val_bits = validation_bits(final_eval_batches);
  val_x.push_back(static_cast<double>(steps));
  val_y.push_back(val_bits);
  validation_log.write(steps, 0, {{"bits_per_char", val_bits}});
  const double tokens_per_second = static_cast<double>(steps * batch * context) / train_seconds;
  std::printf("trained %lld steps in %.1f s (%s characters/s)\n", static_cast<long long>(steps), train_seconds,
              fovea::with_thousands(static_cast<std::int64_t>(tokens_per_second)).c_str());
  std::printf("validation: %.3f bits per character (unigram entropy %.3f: %.2f of it)\n", val_bits, unigram_bits,
              val_bits / unigram_bits);
  fovea::write_loss_curve(out_dir + "/loss.svg",
                          {{"training (per step)", curve_x, curve_y},
                           {"training (moving average)", curve_x, smooth_y},
                           {"validation", val_x, val_y},
                           {"unigram entropy", {1.0, static_cast<double>(steps)}, {unigram_bits, unigram_bits}}},
                          {.title = "character GPT", .y_label = "bits per character"});

  // --- Sample.
  std::vector<std::int32_t> sequence = prompt_ids;
  std::string sample = prompt.empty() ? text.substr(0, 1) : prompt;
  Tensor window = Tensor::zeros(fovea::i32, {1, context});
  std::vector<double> probabilities(static_cast<std::size_t>(corpus.vocabulary_size()));
  for (std::int64_t n = 0; n < sample_length; ++n) {
    const auto used =
        static_cast<std::int64_t>(std::min<std::size_t>(sequence.size(), static_cast<std::size_t>(context)));
    auto cells = window.data<std::int32_t>();
    std::fill(cells.begin(), cells.end(), 0);
    std::copy(sequence.end() - used, sequence.end(), cells.begin());
    const Tensor logits = sampler.run({{prefix, window}})[0];
    const float* row = logits.data<float>().data() + (used - 1) * corpus.vocabulary_size();
    const auto best = static_cast<std::int32_t>(std::max_element(row, row + corpus.vocabulary_size()) - row);
    std::int32_t next = best;
    if (temperature > 0) {
      // p(c) ∝ exp((logit(c) - max) / temperature), drawn by inverting the cumulative sum.
      double sum = 0;
      for (std::size_t c = 0; c < probabilities.size(); ++c)
        sum += probabilities[c] = std::exp((row[c] - row[best]) / temperature);
      double u = static_cast<double>(random() >> 11) * 0x1.0p-53 * sum;
      for (next = 0; next + 1 < static_cast<std::int32_t>(probabilities.size()); ++next)
        if ((u -= probabilities[static_cast<std::size_t>(next)]) < 0) break;
    }
    sequence.push_back(next);
    sample += corpus.characters[static_cast<std::size_t>(next)];
  }
  fovea::write_text_file(out_dir + "/sample.txt", sample + "\n");
  std::printf("\nsample (temperature %.2f):\n----\n%s\n----\n", temperature, sample.c_str());
  std::printf("wrote %s/forward.{txt,svg}, metrics.csv, validation.csv, loss.svg, sample.txt\n", out_dir.c_str());

  fovea::tools::Report report;
  report.set("val_bits_per_char", val_bits);
  report.set("unigram_bits_per_char", unigram_bits);
  report.set("train_seconds", train_seconds);
  report.set("tokens_per_second", tokens_per_second);
  report.set("steps", steps);
  report.set("ms_per_step", 1000 * train_seconds / static_cast<double>(steps));
  report.set("planned_peak_bytes", train_step.executable().planned_peak_bytes());
  report.set("optimized", train_step.optimized());
  report.set("device", device.device);
  report.set("ranks", ranks.size());
  report.set("mixed_precision", device.mixed_precision);
  report.set("parameters", parameter_count);
  report.finish(json);
  return 0;
} catch (const fovea::Error& e) {
  std::fprintf(stderr, "fovea::Error: %s\n", e.what());
  return 1;
}
