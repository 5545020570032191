// Fashion-MNIST with a multi-layer perceptron (784-256-128-10, ReLU, AdamW) or, with --model cnn,
// a small convolutional network (two conv · batch norm · ReLU · max-pool stages, then a hidden
// layer with dropout), trained end to end by one compiled graph per step: forward, backward
// (derived by fovea::grad), the optimizer's in-place updates and the batch norms' running
// statistics. The step goes through the graph optimizer's training pipeline (its elementwise
// chains, AdamW's updates included, become fused loops); --no-optimize compiles the graph as
// written.
//
//   build/examples/fashion_mnist [--model mlp|cnn] [--epochs N] [--batch 128] [--out DIR] [--json FILE]
//   mpirun -np 2 build/examples/fashion_mnist --data-parallel     (docs/distributed.md: each rank
//       trains on its share of every batch, rank 0 prints, writes the checkpoint and the figures;
//       the CNN's batch norms keep running statistics of their own rank's rows)
//
// The MLP trains 3 epochs by default, the CNN 8.
//
// Writes to --out: the forward and training-step graphs (text IR and SVG), the optimized
// evaluation graph and its pass log (evaluation.txt, evaluation_passes.txt), metrics.csv, a
// loss curve (loss.svg) and a checkpoint after every epoch (checkpoint.safetensors); the CNN
// also draws its first layer's learned filters (filters.svg) and one test image's feature maps
// after each stage (feature_maps.svg). With --stop-after N the run stops after N steps and saves
// a checkpoint; --resume FILE continues from one exactly as if the run had never stopped.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <fovea/fovea.h>
#include <CLI/CLI.hpp>

#include "data_parallel.h"
#include "device.h"
#include "explore_option.h"
#include "report.h"

namespace nn = fovea::nn;
using fovea::Value;

namespace {

// Pixels are standardised with the training set's mean and deviation (0.2860, 0.3530)
// inside the graph, so callers feed raw [0, 1] images.
Value standardised(Value x) { return (x - 0.2860) / 0.3530; }

struct Mlp {
  nn::Linear layer1, layer2, layer3;
  explicit Mlp(fovea::Graph& g)
      : layer1(g, "layer1", 784, 256), layer2(g, "layer2", 256, 128), layer3(g, "layer3", 128, 10) {}
  Value operator()(Value x) const { return layer3(fovea::relu(layer2(fovea::relu(layer1(standardised(x)))))); }
};

// [B, 784] → [B,1,28,28] → conv 3x3 (c1) · BN · ReLU · pool 2 → [B,c1,14,14]
// → conv 3x3 (c2) · BN · ReLU · pool 2 → [B,c2,7,7] → dropout · linear 128 · ReLU · dropout · linear 10.
// The convolutions have no bias: the batch norm's β takes its place.
struct Cnn {
  std::int64_t c1, c2;
  nn::Conv2d conv1, conv2;
  nn::BatchNorm2d norm1, norm2;
  nn::MaxPool2d pool{{2, 2}};
  nn::Linear hidden, out;
  nn::Dropout drop;
  Cnn(fovea::Graph& g, std::int64_t channels1, std::int64_t channels2, double dropout)
      : c1(channels1),
        c2(channels2),
        conv1(g, "conv1", 1, c1, {3, 3}, {.padding = 1}, /*with_bias=*/false),
        conv2(g, "conv2", c1, c2, {3, 3}, {.padding = 1}, /*with_bias=*/false),
        norm1(g, "norm1", c1),
        norm2(g, "norm2", c2),
        hidden(g, "hidden", c2 * 7 * 7, 128),
        out(g, "out", 128, 10),
        drop(dropout) {}
  // The activations after each stage, for the feature-map picture; the logits last.
  std::vector<Value> stages(Value x, const nn::Mode& mode) const {
    const Value image = fovea::reshape(standardised(x), {x.shape()[0], 1, 28, 28});
    const Value a1 = pool(fovea::relu(norm1(conv1(image), mode)));
    const Value a2 = pool(fovea::relu(norm2(conv2(a1), mode)));
    const Value flat = fovea::reshape(a2, {x.shape()[0], c2 * 7 * 7});
    return {a1, a2, out(drop(fovea::relu(hidden(drop(flat, mode))), mode))};
  }
  Value operator()(Value x, const nn::Mode& mode) const { return stages(x, mode).back(); }
};

struct Model {
  std::optional<Mlp> mlp;
  std::optional<Cnn> cnn;
  Value operator()(Value x, const nn::Mode& mode) const { return cnn ? (*cnn)(x, mode) : (*mlp)(x); }
};

// The number of rows whose label's logit is the row maximum (the prediction is right).
Value count_correct(Value logits, Value labels) {
  const Value best = fovea::reduce_max(logits, {-1});
  const Value picked = fovea::reduce_sum(logits * nn::one_hot(labels, 10, logits.dtype()), {-1});
  return fovea::reduce_sum(fovea::cast(fovea::greater_equal(picked, best), fovea::f32));
}

// What the CNN learned, as pictures: the first layer's 3x3 filters (blue negative, red
// positive), and one test image with its feature maps after each conv · BN · ReLU · pool stage.
void draw_cnn(fovea::Graph& g, const Cnn& cnn, const fovea::Dataset& test,
              const std::shared_ptr<fovea::Backend>& backend, const std::string& out_dir) {
  const fovea::Tensor filters = g.parameter_value(cnn.conv1.weight).reshape({cnn.c1, 3, 3});
  fovea::write_text_file(
      out_dir + "/filters.svg",
      fovea::image_grid_svg(
          filters, {.title = "conv1: the learned 3x3 filters (blue < 0 < red)", .tile = 48, .diverging = true}));
  const Value one = g.placeholder("picture/x", fovea::f32, {1, 784});
  std::vector<Value> stages;
  {
    auto scope = g.scope("picture");
    stages = cnn.stages(one, {});
  }
  fovea::Executable look = fovea::compile(g, {stages[0], stages[1]}, backend);
  fovea::Tensor image = fovea::Tensor::empty(fovea::f32, {1, 784});
  std::copy_n(test.images.data<float>().begin(), 784, image.data<float>().begin());
  const std::vector<fovea::Tensor> maps = look.run({{one, image}});
  std::string svg = fovea::image_grid_svg(image.reshape({1, 28, 28}), {.title = "a test image", .tile = 112});
  svg += fovea::image_grid_svg(maps[0].reshape({cnn.c1, 14, 14}),
                               {.title = "after conv1 · norm1 · ReLU · pool: 14x14 feature maps", .tile = 56});
  svg += fovea::image_grid_svg(
      maps[1].reshape({cnn.c2, 7, 7}),
      {.title = "after conv2 · norm2 · ReLU · pool: 7x7 feature maps", .columns = 16, .tile = 40});
  // Three drawings stacked in one page: an HTML file a browser shows as is.
  fovea::write_text_file(out_dir + "/feature_maps.html",
                         "<!doctype html><meta charset=\"utf-8\"><body>\n" + svg + "</body>\n");
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"Train an MLP or a CNN on Fashion-MNIST with Fovea"};
  std::string model_kind = "mlp";
  std::vector<std::int64_t> channels{32, 64};
  double dropout = 0.25;
  int epochs = 3;
  std::int64_t batch = 128, stop_after = 0;
  double lr = 2e-3, weight_decay = 1e-4, label_smoothing = 0.1;
  std::uint64_t seed = 1;
  double min_accuracy = 0.0;
  bool no_optimize = false;
  std::string data_dir = fovea::fashion_mnist_default_dir, out_dir = "fashion_mnist_out", json, resume;
  app.add_option("--model", model_kind, "mlp or cnn")->check(CLI::IsMember({"mlp", "cnn"}));
  app.add_option("--channels", channels, "the CNN's channels after its first and second convolution")->expected(2);
  app.add_option("--dropout", dropout, "the CNN's dropout before and after its hidden layer");
  app.add_option("--epochs", epochs, "passes over the 60,000 training images (default: 3 for the MLP, 8 for the CNN)");
  app.add_option("--batch", batch, "examples per step");
  app.add_option("--lr", lr, "peak learning rate (AdamW, warmup then cosine decay)");
  app.add_option("--weight-decay", weight_decay, "AdamW's decoupled weight decay");
  app.add_option("--label-smoothing", label_smoothing, "cross-entropy label smoothing");
  app.add_option("--seed", seed, "seed for the initial weights and the batch order");
  app.add_option("--data", data_dir, "folder with the Fashion-MNIST .gz files");
  app.add_option("--out", out_dir, "folder for graphs, metrics, plots and checkpoints");
  app.add_option("--stop-after", stop_after, "stop (and save a checkpoint) after this many steps");
  app.add_option("--resume", resume, "continue from this checkpoint");
  app.add_option("--json", json, "write the final figures to this JSON file");
  fovea::tools::ExploreOption explore;
  explore.add_to(app);
  app.add_option("--min-accuracy", min_accuracy, "exit with status 2 if the test accuracy ends below this");
  app.add_flag("--no-optimize", no_optimize, "compile the training step without the graph optimizer");
  fovea::tools::DeviceOptions device;
  device.add_to(app, /*offer_mixed_precision=*/false);  // an MLP has no attention
  fovea::tools::Ranks ranks;
  ranks.add_to(app);
  CLI11_PARSE(app, argc, argv);
  ranks.join(batch, out_dir, json);
  const std::int64_t local_batch = batch / ranks.size();              // this rank's share of every batch
  if (model_kind == "cnn" && app.count("--epochs") == 0) epochs = 8;  // the CNN's default run
  const std::shared_ptr<fovea::Backend> backend = device.backend();
  std::filesystem::create_directories(out_dir);

  std::printf("loading Fashion-MNIST from %s\n", data_dir.c_str());
  fovea::Dataset train = fovea::load_fashion_mnist("train", data_dir);
  fovea::Dataset test = fovea::load_fashion_mnist("test", data_dir);

  // --- The graph: one model, a training step and an evaluation head sharing its parameters.
  fovea::Graph g("fashion_mnist");
  g.set_seed(seed);
  const bool cnn = model_kind == "cnn";
  Model model;
  if (cnn)
    model.cnn.emplace(g, channels[0], channels[1], dropout);
  else
    model.mlp.emplace(g);
  const Value x = g.placeholder("x", fovea::f32, {local_batch, 784});
  const Value y = g.placeholder("y", fovea::i32, {local_batch});
  // The CNN's dropout draws fresh masks each step from the step number; its batch norms put
  // their running statistics' updates in `running`, applied with the optimizer's.
  const Value step_number = cnn ? g.placeholder("step", fovea::i64, {}) : Value{};
  std::vector<Value> running;
  Value logits, loss;
  {
    auto scope = g.scope("train");
    logits = model(x, {.training = true, .step = step_number, .updates = &running});
    loss = nn::cross_entropy(logits, y, {.label_smoothing = label_smoothing});
  }
  const std::int64_t steps_per_epoch = train.size() / batch, total_steps = steps_per_epoch * epochs;
  const Value train_correct = count_correct(logits, y);

  const std::int64_t eval_batch = 1000;
  const Value eval_x = g.placeholder("eval_x", fovea::f32, {eval_batch, 784});
  const Value eval_y = g.placeholder("eval_y", fovea::i32, {eval_batch});
  Value eval_correct;
  {
    auto scope = g.scope("eval");
    eval_correct = count_correct(model(eval_x, {}), eval_y);
  }

  // --- The training step: autodiff and AdamW, built by the graph optimizer's training pipeline
  // (passes/pipeline.h) on the optimized forward graph, or on the user's graph with --no-optimize.
  if (ranks.enabled()) nn::broadcast_parameters(g, *ranks.world());  // rank 0's weights everywhere
  auto build_step = [&](fovea::Graph& graph, const std::vector<Value>& forward) {
    const nn::TrainStep step = nn::adamw(forward[0], graph.parameters(),
                                         {.lr = nn::warmup_cosine(lr, 100, static_cast<double>(total_steps), lr * 0.02),
                                          .weight_decay = weight_decay,
                                          .data_parallel = ranks.averaging()});
    std::vector<Value> updates = step.updates;
    updates.insert(updates.end(), forward.begin() + 2, forward.end());  // the running statistics
    // The loss over the global batch (the mean over the ranks); the batch accuracy is rank 0's.
    return fovea::passes::StepParts{{ranks.global_mean(forward[0]), forward[1], step.learning_rate}, updates};
  };
  std::vector<Value> forward_values{loss, train_correct};
  forward_values.insert(forward_values.end(), running.begin(), running.end());
  fovea::passes::CompiledTrainingStep train_step = fovea::passes::compile_training_step(
      g, forward_values, build_step, backend, {.optimize = !no_optimize, .explore = explore.option()});
  // The evaluation graph through the inference pipeline: there the CNN's batch norms use their
  // running statistics and fold into the convolutions before them (passes/conv_fusion.h).
  fovea::passes::OptimizedGraph inference;
  if (!no_optimize) inference = fovea::passes::optimize_inference(g, {eval_correct});
  const Value run_x = no_optimize ? eval_x : inference.value(eval_x);
  const Value run_y = no_optimize ? eval_y : inference.value(eval_y);
  fovea::Executable evaluate = no_optimize ? fovea::compile(g, {eval_correct}, backend)
                                           : fovea::compile(*inference.graph, inference.outputs, backend);
  std::printf("training step (%s): %zu nodes, planned peak %.2f MB; evaluation: %zu nodes\n",
              train_step.optimized() ? "optimized" : "not optimized", train_step.executable().schedule().size(),
              static_cast<double>(train_step.executable().planned_peak_bytes()) / 1e6, evaluate.schedule().size());

  // --- Look at it: the forward graph as written, and the whole training step as it runs.
  fovea::write_text_file(out_dir + "/forward.txt", fovea::to_text(g, {loss}));
  if (!no_optimize) {
    fovea::write_text_file(out_dir + "/evaluation_passes.txt", inference.report());
    fovea::write_text_file(out_dir + "/evaluation.txt", fovea::to_text(*inference.graph, inference.outputs));
  }
  std::vector<Value> step_values = train_step.outputs();
  step_values.insert(step_values.end(), train_step.updates().begin(), train_step.updates().end());
  fovea::write_text_file(out_dir + "/train_step.txt", fovea::to_text(train_step.graph(), step_values));
  std::string why;
  fovea::write_svg(fovea::to_dot(g, {loss}, fovea::DotOptions{.title = "forward"}), out_dir + "/forward.svg", &why);
  fovea::write_svg(fovea::to_dot(train_step.graph(), step_values,
                                 fovea::DotOptions{.title = "training step: forward, backward and AdamW"}),
                   out_dir + "/train_step.svg", &why);

  auto test_accuracy = [&] {
    fovea::Tensor ex = fovea::Tensor::empty(fovea::f32, {eval_batch, 784});
    fovea::Tensor ey = fovea::Tensor::empty(fovea::i32, {eval_batch});
    double correct = 0;
    for (std::int64_t start = 0; start + eval_batch <= test.size(); start += eval_batch) {
      std::copy_n(test.images.data<float>().begin() + start * 784, eval_batch * 784, ex.data<float>().begin());
      std::copy_n(test.labels.data<std::int32_t>().begin() + start, eval_batch, ey.data<std::int32_t>().begin());
      correct += evaluate.run({{run_x, ex}, {run_y, ey}})[0].item();
    }
    return correct / static_cast<double>(test.size() / eval_batch * eval_batch);
  };

  // --- Train.
  std::int64_t start_step = 0;
  if (!resume.empty()) {
    auto meta = fovea::load_checkpoint(resume, train_step.graph());
    train_step.executable().push_state();  // on a GPU: the loaded weights and moments to the device
    start_step = std::stoll(meta.at("step"));
    std::printf("resumed from %s at step %lld\n", resume.c_str(), static_cast<long long>(start_step));
  }
  fovea::Batcher batches(train, batch, seed);
  batches.shard(ranks.rank(), ranks.size());
  fovea::Tensor bx = fovea::Tensor::empty(fovea::f32, {local_batch, 784});
  fovea::Tensor by = fovea::Tensor::empty(fovea::i32, {local_batch});
  fovea::MetricsLog metrics(out_dir + "/metrics.csv", start_step > 0);
  fovea::Progress progress(total_steps, "train");
  std::vector<double> curve_x, curve_y, acc_x, acc_y;
  double train_seconds = 0, seconds_to_88 = -1, final_accuracy = 0, smoothed = 0;
  std::int64_t done = start_step;
  for (std::int64_t s = start_step; s < total_steps; ++s) {
    const std::int64_t epoch = s / steps_per_epoch, index = s % steps_per_epoch;
    batches.batch(epoch, index, bx, by);
    const auto t0 = std::chrono::steady_clock::now();
    fovea::Feeds feeds{{x, bx}, {y, by}};
    if (cnn) feeds.emplace_back(step_number, fovea::Tensor::scalar<std::int64_t>(s));
    auto out = train_step.run(feeds);
    train_seconds += seconds_since(t0);
    done = s + 1;
    const double l = out[0].item();
    if (!std::isfinite(l))
      throw fovea::Error(
          fmt::format("training diverged at step {} (epoch {}, batch {}): the loss is {}; lower --lr "
                      "or resume from {}/checkpoint.safetensors",
                      s + 1, epoch + 1, index, l, out_dir));
    smoothed = s == start_step ? l : 0.98 * smoothed + 0.02 * l;
    metrics.write(
        done, epoch,
        {{"loss", l}, {"batch_accuracy", out[1].item() / static_cast<double>(local_batch)}, {"lr", out[2].item()}});
    curve_x.push_back(static_cast<double>(done));
    curve_y.push_back(l);
    progress.update(done, {{"epoch", static_cast<double>(epoch + 1)}, {"loss", smoothed}}, batch);
    const bool epoch_end = index + 1 == steps_per_epoch;
    if (epoch_end) {
      final_accuracy = test_accuracy();
      acc_x.push_back(static_cast<double>(done));
      acc_y.push_back(final_accuracy);
      if (final_accuracy >= 0.88 && seconds_to_88 < 0) seconds_to_88 = train_seconds;
      train_step.executable().pull_state();  // on a GPU: the trained values back to the host first
      if (ranks.writes_checkpoints())
        fovea::save_checkpoint(out_dir + "/checkpoint.safetensors", train_step.graph(),
                               {{"step", std::to_string(done)}});
      std::printf("\nepoch %lld: test accuracy %.4f after %.1f s of training\n", static_cast<long long>(epoch + 1),
                  final_accuracy, train_seconds);
    }
    if (stop_after > 0 && done - start_step >= stop_after) {
      train_step.executable().pull_state();  // on a GPU: the trained values back to the host first
      if (ranks.writes_checkpoints())
        fovea::save_checkpoint(out_dir + "/checkpoint.safetensors", train_step.graph(),
                               {{"step", std::to_string(done)}});
      std::printf("\nstopped after %lld steps; resume with --resume %s/checkpoint.safetensors\n",
                  static_cast<long long>(done - start_step), out_dir.c_str());
      break;
    }
  }
  progress.finish();
  if (done == total_steps && acc_y.empty()) final_accuracy = test_accuracy();

  fovea::write_loss_curve(out_dir + "/loss.svg", {{"training loss (per step)", curve_x, curve_y}},
                          {.title = cnn ? "Fashion-MNIST CNN: training loss" : "Fashion-MNIST MLP: training loss",
                           .x_label = "step",
                           .y_label = "cross-entropy"});
  std::printf("wrote %s/{forward,train_step}.{txt,svg}, metrics.csv, loss.svg, checkpoint.safetensors\n",
              out_dir.c_str());
  if (cnn) {
    train_step.executable().pull_state();
    draw_cnn(g, *model.cnn, test, backend, out_dir);
    std::printf("wrote %s/filters.svg and %s/feature_maps.html\n", out_dir.c_str(), out_dir.c_str());
  }

  const double steps_run = static_cast<double>(done - start_step);
  fovea::tools::Report report;
  report.set("test_accuracy", final_accuracy);
  report.set("train_seconds", train_seconds);
  report.set("examples_per_second", steps_run > 0 ? steps_run * static_cast<double>(batch) / train_seconds : 0.0);
  report.set("ms_per_step", steps_run > 0 ? 1000 * train_seconds / steps_run : 0.0);
  report.set("seconds_to_88_percent", seconds_to_88);
  report.set("steps", done);
  report.set("planned_peak_bytes", train_step.executable().planned_peak_bytes());
  report.set("optimized", train_step.optimized());
  report.set("device", device.device);
  report.set("model", model_kind);
  report.set("ranks", ranks.size());
  report.finish(json);
  if (final_accuracy < min_accuracy) {
    std::fprintf(stderr, "test accuracy %.4f is below --min-accuracy %.4f\n", final_accuracy, min_accuracy);
    return 2;
  }
  return 0;
} catch (const fovea::Error& e) {
  std::fprintf(stderr, "fovea::Error: %s\n", e.what());
  return 1;
}
