// Translating dates written the way people write them into ISO 8601 with an encoder-decoder
// Transformer, character by character, the task attention was invented for:
//
//   "tuesday, 3rd of march 1998"  →  "1998-03-03"
//   "march 3, 1998"               →  "1998-03-03"
//
//   build/examples/translate [--steps 3000] [--batch 64] [--out translate_out] [--json FILE] [--quick]
//
// The corpus is generated in code (dates.h): twelve formats over the years 1950–2049, train
// and held-out sentences drawn from disjoint (date, format) pairs. The model is nn::Transformer
// (pre-norm, sinusoidal positions) trained with teacher forcing: the decoder reads BOS + the
// ISO string and predicts the ISO string + EOS, with cross-entropy ignoring PAD and AdamW. The
// source's padding is masked out of the encoder's self-attention and the decoder's
// cross-attention.
//
// Evaluation decodes greedily: the encoder runs once; a decode graph compiled once for fixed
// shapes [B, 11] runs 11 times, fed BOS + the prefix predicted so far padded with PAD (the
// causal mask makes the padding irrelevant), and the argmax of position t is taken on the host.
// Training stops once a validation set (held-out pairs, its own seed) is translated with at least
// --target exact-match accuracy; the 2,000 test sentences (another seed) are translated last.
//
// The training step is compiled through the graph optimizer's training pipeline (fusion before
// autodiff, then elementwise fusion of the whole step); --no-optimize compiles it as written.
//
// Writes to --out: the forward and training-step graphs (text IR, and SVG folded so that
// `encoder/layer0` is one box), encoder_layer0.svg (one encoder layer, fully expanded),
// metrics.csv, validation.csv, loss.svg, validation.svg, and heatmaps of the decoder's cross-attention
// (cross_attention_<example>_layer<l>.svg: output characters down, source characters across).
//
// Data-parallel (docs/distributed.md):
//
//   mpirun -np 2 build/examples/translate --data-parallel [--batch 64]
//
// Every rank draws the same global batch of --batch sentences and trains on its share of the
// rows; the gradients are averaged over the ranks (nn::DataParallelOptions), so the run follows
// the one-process run at the same global batch. Rank 0 prints and writes --out and --json; the
// loss it prints is the mean over the ranks. The other ranks write their files under
// --out/rank<r>. Dropout draws the same masks for local row i on every rank (they are keyed by
// the graph's seed, the step and the node), so with dropout the run differs from one process's;
// --dropout 0 makes it match to float rounding.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fovea/fovea.h>
#include <CLI/CLI.hpp>

#include "data_parallel.h"
#include "dates.h"
#include "device.h"
#include "explore_option.h"
#include "report.h"

namespace nn = fovea::nn;
using fovea::Tensor;
using fovea::Value;

namespace {

constexpr std::int64_t decoder_length = dates::target_length + 1;  // BOS + 10 characters, or 10 + EOS

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

Tensor ids_tensor(const std::vector<std::int32_t>& ids, std::int64_t rows, std::int64_t columns) {
  return Tensor::from(ids, {rows, columns});
}

// Rows [first, first + rows) of a batch's ids, `columns` per row.
Tensor ids_tensor(const std::vector<std::int32_t>& ids, std::int64_t first, std::int64_t rows, std::int64_t columns) {
  const auto begin = ids.begin() + first * columns;
  return Tensor::from(std::vector<std::int32_t>(begin, begin + rows * columns), {rows, columns});
}

// The last node built so far in `scope` (or a scope inside it): the output of a layer, since a
// layer's final op (its residual add) is the last one it builds.
Value last_node_in_scope(fovea::Graph& g, const std::string& scope) {
  for (std::size_t id = g.size(); id-- > 0;) {
    const fovea::Node& n = g.node(static_cast<std::uint32_t>(id));
    if (n.scope == scope || n.scope.starts_with(scope + "/")) return g.value({static_cast<std::uint32_t>(id), 0});
  }
  throw fovea::Error("no node in scope " + scope);
}

// Greedy decoding with two executables compiled once for `rows` sentences: the encoder, and
// the decoder over the whole [rows, 11] target window. Also hands back the decoder's
// cross-attention weights of the final pass, when every position sees its real prefix.
class GreedyDecoder {
 public:
  GreedyDecoder(fovea::Graph& g, const nn::Transformer& model, std::int64_t rows, std::int64_t source_length,
                std::shared_ptr<fovea::Backend> backend)
      : rows_(rows), source_length_(source_length) {
    auto scope = g.scope("decode");
    source_ = g.placeholder("source", fovea::i32, {rows, source_length});
    const nn::AttentionMask mask = nn::padding_mask(fovea::equal(source_, fovea::scalar_like(source_, dates::pad)));
    const Value memory = model.encode(source_, mask);
    memory_ = g.placeholder("memory", memory.dtype(), memory.shape());
    prefix_ = g.placeholder("prefix", fovea::i32, {rows, decoder_length});
    nn::AttentionMaps maps;
    const Value logits = model.decode(prefix_, memory_, mask, {}, &maps);
    encoder_ = std::make_unique<fovea::Executable>(fovea::compile(g, {memory}, backend));
    std::vector<Value> outputs = {logits};
    outputs.insert(outputs.end(), maps.decoder_cross.begin(), maps.decoder_cross.end());
    decoder_ = std::make_unique<fovea::Executable>(fovea::compile(g, outputs, std::move(backend)));
  }

  struct Result {
    std::vector<std::string> translations;  // up to (not including) EOS
    std::vector<Tensor> cross_attention;    // per decoder layer: [rows, heads, 11, source_length]
  };

  Result translate(const dates::Batch& batch) {
    const Tensor source = ids_tensor(batch.source, rows_, source_length_);
    const Tensor memory = encoder_->run({{source_, source}})[0];
    std::vector<std::int32_t> prefix(static_cast<std::size_t>(rows_ * decoder_length), dates::pad);
    std::vector<std::int32_t> predicted(prefix.size(), dates::pad);
    for (std::int64_t b = 0; b < rows_; ++b) prefix[static_cast<std::size_t>(b * decoder_length)] = dates::bos;
    std::vector<Tensor> out;
    for (std::int64_t t = 0; t < decoder_length; ++t) {
      out = decoder_->run({{source_, source}, {memory_, memory}, {prefix_, ids_tensor(prefix, rows_, decoder_length)}});
      const auto logits = out[0].data<float>();
      const std::int64_t vocab = out[0].shape()[2];
      for (std::int64_t b = 0; b < rows_; ++b) {
        const float* row = logits.data() + (b * decoder_length + t) * vocab;
        const auto best = static_cast<std::int32_t>(std::max_element(row, row + vocab) - row);
        predicted[static_cast<std::size_t>(b * decoder_length + t)] = best;
        if (t + 1 < decoder_length) prefix[static_cast<std::size_t>(b * decoder_length + t + 1)] = best;
      }
    }
    Result result;
    for (std::int64_t b = 0; b < rows_; ++b) {
      std::string text;
      for (std::int64_t t = 0; t < decoder_length; ++t) {
        const std::int32_t id = predicted[static_cast<std::size_t>(b * decoder_length + t)];
        if (id == dates::eos) break;
        text += dates::target_vocabulary().character(id);
      }
      result.translations.push_back(std::move(text));
    }
    result.cross_attention.assign(out.begin() + 1, out.end());
    return result;
  }

  std::int64_t rows() const { return rows_; }
  std::size_t planned_peak_bytes() const {
    return std::max(encoder_->planned_peak_bytes(), decoder_->planned_peak_bytes());
  }

 private:
  std::int64_t rows_, source_length_;
  Value source_, memory_, prefix_;
  std::unique_ptr<fovea::Executable> encoder_, decoder_;
};

// The fraction of `batches` translated exactly.
double exact_match(GreedyDecoder& decoder, const std::vector<dates::Batch>& batches) {
  std::int64_t right = 0, total = 0;
  for (const dates::Batch& batch : batches) {
    const auto result = decoder.translate(batch);
    for (std::size_t i = 0; i < batch.examples.size(); ++i, ++total)
      right += result.translations[i] == batch.examples[i].target ? 1 : 0;
  }
  return total > 0 ? static_cast<double>(right) / static_cast<double>(total) : 0.0;
}

// Writes the cross-attention of example `row` in every decoder layer, averaged over heads, as
// heatmaps: the characters produced down, the source's characters (and EOS) across.
std::vector<std::string> write_heatmaps(const std::string& out_dir, const std::string& stem,
                                        const dates::Example& example, const std::string& translation,
                                        const std::vector<Tensor>& cross_attention, std::int64_t row) {
  std::vector<std::string> written;
  const std::int64_t source_chars = static_cast<std::int64_t>(example.source.text.size()) + 1;  // + EOS
  std::vector<std::string> columns, rows;
  for (char c : example.source.text) columns.push_back(c == ' ' ? "␣" : std::string(1, c));
  columns.push_back("EOS");
  for (char c : translation) rows.push_back(std::string(1, c));
  if (rows.size() < static_cast<std::size_t>(decoder_length)) rows.push_back("EOS");
  const auto output_chars = static_cast<std::int64_t>(rows.size());
  for (std::size_t layer = 0; layer < cross_attention.size(); ++layer) {
    const Tensor& maps = cross_attention[layer];  // [B, H, T, S]
    const std::int64_t heads = maps.shape()[1], t_len = maps.shape()[2], s_len = maps.shape()[3];
    const auto data = maps.data<float>();
    Tensor average = Tensor::zeros(fovea::f32, {output_chars, source_chars});
    auto cells = average.data<float>();
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t t = 0; t < output_chars; ++t)
        for (std::int64_t s = 0; s < source_chars; ++s)
          cells[static_cast<std::size_t>(t * source_chars + s)] +=
              data[static_cast<std::size_t>(((row * heads + h) * t_len + t) * s_len + s)] / static_cast<float>(heads);
    const std::string path = fmt::format("{}/cross_attention_{}_layer{}.svg", out_dir, stem, layer);
    fovea::write_text_file(
        path, fovea::heatmap_svg(average, rows, columns,
                                 fmt::format("decoder layer {} cross-attention, mean of {} heads", layer, heads)));
    written.push_back(path);
  }
  return written;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"Translate dates into ISO 8601 with an encoder-decoder Transformer"};
  std::int64_t d_model = 64, heads = 4, d_ff = 256, layers = 2, batch = 64, steps = 3000, warmup = 200;
  std::int64_t eval_every = 100, validation_size = 1000, test_size = 2000, eval_rows = 500;
  double lr = 3e-3, weight_decay = 0.01, dropout = 0.05, target = 0.997, min_exact_match = 0.0;
  std::uint64_t seed = 1;
  bool quick = false, no_optimize = false;
  std::string out_dir = "translate_out", json;
  app.add_option("--d-model", d_model, "model width");
  app.add_option("--heads", heads, "attention heads");
  app.add_option("--d-ff", d_ff, "feed-forward hidden width");
  app.add_option("--layers", layers, "layers in the encoder and in the decoder");
  app.add_option("--batch", batch, "sentences per training step");
  app.add_option("--steps", steps, "most training steps (the learning rate decays over these)");
  app.add_option("--warmup", warmup, "steps of linear learning-rate warmup");
  app.add_option("--lr", lr, "peak learning rate (AdamW)");
  app.add_option("--weight-decay", weight_decay, "AdamW's decoupled weight decay");
  app.add_option("--dropout", dropout, "dropout on embeddings, attention weights and sub-layer outputs");
  app.add_option("--eval-every", eval_every, "steps between validation runs");
  app.add_option("--target", target, "stop once validation exact match reaches this");
  app.add_option("--test-size", test_size, "held-out test sentences translated at the end");
  app.add_option("--seed", seed, "seed for the weights, the dropout masks and the training sentences");
  app.add_option("--out", out_dir, "folder for graphs, metrics and heatmaps");
  app.add_option("--json", json, "write the final figures to this JSON file");
  fovea::tools::ExploreOption explore;
  explore.add_to(app);
  app.add_option("--min-exact-match", min_exact_match, "exit with status 2 if test exact match ends below this");
  app.add_flag("--quick", quick, "a smoke test: a tiny model, a few steps, a small test set");
  app.add_flag("--no-optimize", no_optimize, "compile the training step without the graph optimizer");
  fovea::tools::DeviceOptions device;
  device.add_to(app);
  fovea::tools::Ranks ranks;
  ranks.add_to(app);
  CLI11_PARSE(app, argc, argv);
  const std::shared_ptr<fovea::Backend> backend = device.backend();
  if (quick) {
    d_model = 32, heads = 2, d_ff = 64, layers = 1, batch = 16, steps = 20, warmup = 5;
    eval_every = 10, validation_size = 32, test_size = 64, eval_rows = 32;
  }
  eval_rows = std::min(eval_rows, test_size);  // both fixed sets come in batches of eval_rows
  ranks.join(batch, out_dir, json);
  const std::int64_t local_batch = batch / ranks.size();
  std::filesystem::create_directories(out_dir);
  const std::int64_t source_length = dates::max_source_length() + 1;  // the longest sentence + EOS

  // --- The data: training sentences drawn as needed; validation and test sets fixed.
  dates::Generator training(seed, dates::Split::train);
  dates::Generator validation_source(seed + 1000, dates::Split::held_out);
  dates::Generator test_source(seed + 2000, dates::Split::held_out);
  auto fixed_set = [&](dates::Generator& generator, std::int64_t size) {
    std::vector<dates::Batch> batches;
    for (std::int64_t done = 0; done < size; done += eval_rows)
      batches.push_back(dates::make_batch(generator, eval_rows, source_length));
    return batches;
  };
  const std::vector<dates::Batch> validation_set = fixed_set(validation_source, validation_size);
  const std::vector<dates::Batch> test_set = fixed_set(test_source, test_size);
  std::printf("%d formats, e.g. \"%s\" → \"%s\"; sources padded to %lld characters\n", dates::format_count,
              test_set[0].examples[0].source.text.c_str(), test_set[0].examples[0].target.c_str(),
              static_cast<long long>(source_length));

  // --- The graph: the model, its training step, and the decoders sharing its parameters.
  fovea::Graph g("translate");
  g.set_seed(seed);
  const nn::Transformer model(g, {.source_vocab = dates::source_vocabulary().size(),
                                  .target_vocab = dates::target_vocabulary().size(),
                                  .d_model = d_model,
                                  .heads = heads,
                                  .d_ff = d_ff,
                                  .layers = layers,
                                  .max_len = source_length,
                                  .dropout = dropout});
  const Value source = g.placeholder("source", fovea::i32, {local_batch, source_length});
  const Value decoder_input = g.placeholder("decoder_input", fovea::i32, {local_batch, decoder_length});
  const Value decoder_target = g.placeholder("decoder_target", fovea::i32, {local_batch, decoder_length});
  const Value step_number = g.placeholder("step", fovea::i64, {});
  const nn::AttentionMask source_mask = nn::padding_mask(fovea::equal(source, fovea::scalar_like(source, dates::pad)));
  const Value logits = model(source, decoder_input, source_mask, {.training = true, .step = step_number});
  Value loss;
  {
    auto scope = g.scope("loss");
    loss = nn::cross_entropy(logits, decoder_target, {.ignore_index = dates::pad});
  }
  const Value encoder_layer0 = last_node_in_scope(g, model.name + "/encoder/layer0");
  // The training step: autodiff and AdamW built by the optimizer's training pipeline on the
  // optimized forward graph (fused attention, normalisations and elementwise chains), or on the
  // graph as written with --no-optimize.
  std::vector<Value> gradients;  // in the graph build_step ran on, for the drawing below
  if (ranks.enabled()) nn::broadcast_parameters(g, *ranks.world());  // equal already (one seed)
  auto build_step = [&](fovea::Graph& graph, const std::vector<Value>& forward) {
    const nn::TrainStep step =
        nn::adamw(forward[0], graph.parameters(),
                  {.lr = nn::warmup_cosine(lr, static_cast<double>(warmup), static_cast<double>(steps), lr * 0.05),
                   .weight_decay = weight_decay,
                   .data_parallel = ranks.averaging()});
    gradients = step.grads;
    // The loss over the whole global batch: the mean of the ranks' losses over their rows.
    return fovea::passes::StepParts{{ranks.global_mean(forward[0]), step.learning_rate}, step.updates};
  };
  fovea::passes::CompiledTrainingStep train_step = fovea::passes::compile_training_step(
      g, {loss}, build_step, backend,
      {.optimize = !no_optimize, .pipeline = device.pipeline(), .explore = explore.option()});
  GreedyDecoder decoder(g, model, eval_rows, source_length, backend);
  std::int64_t parameter_count = 0;
  for (Value p : g.parameters()) parameter_count += p.shape().numel();
  std::printf("model: d_model %lld, %lld heads, d_ff %lld, %lld+%lld layers, %s parameters\n",
              static_cast<long long>(d_model), static_cast<long long>(heads), static_cast<long long>(d_ff),
              static_cast<long long>(layers), static_cast<long long>(layers),
              fovea::with_thousands(parameter_count).c_str());
  const fovea::Executable& step_exe = train_step.executable();
  std::printf("training step (%s): %zu nodes, planned peak %.2f MB; greedy decoder: planned peak %.2f MB\n",
              train_step.optimized() ? "optimized" : "not optimized", step_exe.schedule().size(),
              static_cast<double>(step_exe.planned_peak_bytes()) / 1e6,
              static_cast<double>(decoder.planned_peak_bytes()) / 1e6);

  // --- Look at it: text IR, drawings folded at depth 2, and one encoder layer in full.
  // The text holds the whole step as it runs, AdamW's updates included. Optimized, the step is
  // small enough to draw whole (each parameter's update is one fused node); as written, the
  // optimizer's nodes (about 2,500 here, all in the one scope "optimizer", so they do not fold)
  // would take Graphviz minutes, so the drawing stops at the gradients.
  std::vector<Value> step_values = train_step.outputs();
  step_values.insert(step_values.end(), train_step.updates().begin(), train_step.updates().end());
  std::vector<Value> drawn_values = train_step.optimized() ? step_values : gradients;
  if (!train_step.optimized()) drawn_values.push_back(loss);
  fovea::write_text_file(out_dir + "/forward.txt", fovea::to_text(g, {loss}));
  fovea::write_text_file(out_dir + "/train_step.txt", fovea::to_text(train_step.graph(), step_values));
  std::string why;
  const bool drawn =
      fovea::write_svg(fovea::to_dot(g, {loss}, {.max_scope_depth = 2, .title = "translate: forward"}),
                       out_dir + "/forward.svg", &why) &&
      fovea::write_svg(fovea::to_dot(train_step.graph(), drawn_values,
                                     {.max_scope_depth = 2,
                                      .title = train_step.optimized() ? "translate: the optimized training step"
                                                                      : "translate: forward + backward"}),
                       out_dir + "/train_step.svg", &why) &&
      fovea::write_svg(fovea::to_dot(g, {encoder_layer0}, {.title = "translate: encoder/layer0 in full"}),
                       out_dir + "/encoder_layer0.svg", &why);
  if (!drawn) std::printf("(no SVG drawings: %s)\n", why.c_str());
  if (train_step.optimized()) std::printf("%s", train_step.pass_report().c_str());

  // --- Train until the validation set is translated well enough.
  fovea::MetricsLog metrics(out_dir + "/metrics.csv");
  fovea::MetricsLog validation_log(out_dir + "/validation.csv");
  fovea::Progress progress(steps, "train");
  std::vector<double> curve_x, curve_y, smooth_y, validation_x, validation_y;
  double train_seconds = 0, smoothed = 0, validation = 0;
  std::int64_t done = 0;
  const auto wall_start = std::chrono::steady_clock::now();
  for (std::int64_t s = 0; s < steps; ++s) {
    const dates::Batch data = dates::make_batch(training, batch, source_length);
    const auto t0 = std::chrono::steady_clock::now();
    const std::int64_t first = ranks.rank() * local_batch;  // this rank's rows of the global batch
    const auto out =
        train_step.run({{source, ids_tensor(data.source, first, local_batch, source_length)},
                        {decoder_input, ids_tensor(data.decoder_input, first, local_batch, decoder_length)},
                        {decoder_target, ids_tensor(data.decoder_target, first, local_batch, decoder_length)},
                        {step_number, Tensor::scalar<std::int64_t>(s)}});
    train_seconds += seconds_since(t0);
    done = s + 1;
    const double l = out[0].item();
    if (!std::isfinite(l))
      throw fovea::Error(fmt::format("training diverged at step {}: the loss is {}; lower --lr", done, l));
    smoothed = s == 0 ? l : 0.95 * smoothed + 0.05 * l;
    metrics.write(done, 0, {{"loss", l}, {"lr", out[1].item()}});
    curve_x.push_back(static_cast<double>(done));
    curve_y.push_back(l);
    smooth_y.push_back(smoothed);
    if (done % eval_every == 0 || done == steps) {
      validation = exact_match(decoder, validation_set);
      validation_log.write(done, 0, {{"exact_match", validation}, {"train_seconds", train_seconds}});
      validation_x.push_back(static_cast<double>(done));
      validation_y.push_back(validation);
    }
    progress.update(done, {{"loss", smoothed}, {"val exact", validation}}, batch);
    if (done % eval_every == 0 && validation >= target) break;
  }
  progress.finish();
  const double wall_seconds = seconds_since(wall_start);
  std::printf("trained %lld steps in %.1f s (%.1f s with validation): validation exact match %.4f\n",
              static_cast<long long>(done), train_seconds, wall_seconds, validation);
  fovea::write_loss_curve(out_dir + "/loss.svg",
                          {{"loss (per step)", curve_x, curve_y}, {"loss (moving average)", curve_x, smooth_y}},
                          {.title = "date translation: training loss", .y_label = "cross-entropy", .log_y = true});
  fovea::write_loss_curve(
      out_dir + "/validation.svg", {{"validation exact match", validation_x, validation_y}},
      {.title = "date translation: greedy decoding of held-out sentences", .y_label = "exact match"});

  // --- The test set, a few translations, and where the decoder looked.
  const double test_exact = exact_match(decoder, test_set);
  const auto tested = static_cast<std::int64_t>(test_set.size()) * eval_rows;
  std::printf("\ntest: %.2f%% of %lld held-out sentences translated exactly\n\n", 100 * test_exact,
              static_cast<long long>(tested));
  const dates::Batch& shown = test_set[0];
  const auto result = decoder.translate(shown);
  std::vector<bool> format_shown(dates::format_count, false);
  std::vector<std::string> heatmaps;
  int listed = 0;
  for (std::size_t i = 0; i < shown.examples.size() && listed < 8; ++i) {
    const dates::Example& example = shown.examples[i];
    if (format_shown[static_cast<std::size_t>(example.format)]) continue;
    format_shown[static_cast<std::size_t>(example.format)] = true;
    const bool right = result.translations[i] == example.target;
    std::printf("  %-34s → %-10s %s\n", example.source.text.c_str(), result.translations[i].c_str(),
                right ? "✓" : fmt::format("✗ (expected {})", example.target).c_str());
    if (listed < 3) {
      const auto written = write_heatmaps(out_dir, fmt::format("example{}", listed), example, result.translations[i],
                                          result.cross_attention, static_cast<std::int64_t>(i));
      heatmaps.insert(heatmaps.end(), written.begin(), written.end());
    }
    ++listed;
  }
  std::printf("\ncross-attention heatmaps:\n");
  for (const std::string& path : heatmaps) std::printf("  %s\n", path.c_str());
  std::printf(
      "wrote %s/{forward,train_step}.{txt,svg}, encoder_layer0.svg, {metrics,validation}.csv, "
      "{loss,validation}.svg\n",
      out_dir.c_str());

  fovea::tools::Report report;
  report.set("exact_match", test_exact);
  report.set("test_sentences", tested);
  report.set("validation_exact_match", validation);
  report.set("train_seconds", train_seconds);
  report.set("steps", done);
  report.set("examples_per_second", train_seconds > 0 ? static_cast<double>(done * batch) / train_seconds : 0.0);
  report.set("ms_per_step", done > 0 ? 1000 * train_seconds / static_cast<double>(done) : 0.0);
  report.set("planned_peak_bytes", train_step.executable().planned_peak_bytes());
  report.set("optimized", train_step.optimized());
  report.set("device", device.device);
  report.set("mixed_precision", device.mixed_precision);
  report.set("parameters", parameter_count);
  report.set("ranks", ranks.size());
  report.finish(json);
  if (test_exact < min_exact_match) {
    std::fprintf(stderr, "test exact match %.4f is below --min-exact-match %.4f\n", test_exact, min_exact_match);
    return 2;
  }
  return 0;
} catch (const fovea::Error& e) {
  std::fprintf(stderr, "fovea::Error: %s\n", e.what());
  return 1;
}
