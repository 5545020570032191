// Convolutional training steps (forward, backward and an SGD-with-momentum update, compiled as
// one optimized executable each), and the same steps in PyTorch when --torch finds it:
//
//   cnn        the Fashion-MNIST CNN of examples/fashion_mnist --model cnn (conv 1→32 and 32→64,
//              batch norm, ReLU, max-pool, dropout, two linear layers, cross-entropy), batch 128
//   resnet     a ResNet basic block: conv 3x3 · BN · ReLU · conv 3x3 · BN, plus the input, ReLU;
//              64 channels, 56x56, batch 8 (loss: the mean square of the output)
//   depthwise  a MobileNet depthwise-separable block: depthwise 3x3 · BN · ReLU · pointwise 1x1
//              · BN · ReLU; 32 → 64 channels, 56x56, batch 8
//
//   build/bench/conv [--rounds 5] [--steps 5] [--torch] [--python python3] [--profile] [--json FILE]
//
// Each round times --steps steps of every model (the figure is the median of the rounds' medians),
// and with --torch asks bench/reference/conv_torch.py, running beside it as a coprocess with
// PyTorch's best thread setting and memory format, for the same steps right after: the two
// engines alternate, so machine noise hits both alike. Keys: cnn_step_ms, resnet_block_ms,
// depthwise_block_ms, and with --torch the same with a torch_ prefix and the ratios
// `<model>_speedup_vs_torch` (> 1: Fovea is faster). Without PyTorch the torch keys are absent.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fovea/fovea.h>
#include <CLI/CLI.hpp>

#include "report.h"

extern char** environ;

namespace nn = fovea::nn;
using fovea::Tensor;
using fovea::Value;

namespace {

// One model's training step, compiled, with its feeds.
struct Bench {
  std::string name, key;
  std::unique_ptr<fovea::Graph> graph;
  std::unique_ptr<fovea::passes::CompiledTrainingStep> step;
  fovea::Feeds feeds;
  std::vector<double> ms;  // each round's median
};

using Builder = std::function<Value(fovea::Graph&, fovea::Feeds&, std::vector<Value>& running)>;

Tensor random(fovea::Shape shape, std::uint64_t seed) {
  Tensor t = Tensor::empty(fovea::f32, shape);
  std::uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& v : t.data<float>()) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    v = static_cast<float>(static_cast<double>(state >> 40) / static_cast<double>(1ull << 24) * 2 - 1);
  }
  return t;
}

Value cnn(fovea::Graph& g, fovea::Feeds& feeds, std::vector<Value>& running) {
  const Value x = g.placeholder("x", fovea::f32, {128, 1, 28, 28});
  const Value y = g.placeholder("y", fovea::i32, {128});
  const Value step = g.placeholder("step", fovea::i64, {});
  Tensor labels = Tensor::empty(fovea::i32, {128});
  for (std::int64_t i = 0; i < 128; ++i)
    labels.data<std::int32_t>()[static_cast<std::size_t>(i)] = static_cast<int>(i % 10);
  feeds = {{x, random({128, 1, 28, 28}, 1)}, {y, labels}, {step, Tensor::scalar<std::int64_t>(0)}};
  const nn::Mode mode{.training = true, .step = step, .updates = &running};
  nn::Conv2d conv1(g, "conv1", 1, 32, {3, 3}, {.padding = 1}, false),
      conv2(g, "conv2", 32, 64, {3, 3}, {.padding = 1}, false);
  nn::BatchNorm2d norm1(g, "norm1", 32), norm2(g, "norm2", 64);
  nn::Linear hidden(g, "hidden", 64 * 49, 128), out(g, "out", 128, 10);
  const nn::MaxPool2d pool({2, 2});
  const nn::Dropout drop(0.25);
  Value h = pool(fovea::relu(norm1(conv1(x), mode)));
  h = pool(fovea::relu(norm2(conv2(h), mode)));
  h = drop(fovea::reshape(h, {128, 64 * 49}), mode);
  return nn::cross_entropy(out(drop(fovea::relu(hidden(h)), mode)), y);
}

Value resnet(fovea::Graph& g, fovea::Feeds& feeds, std::vector<Value>& running) {
  const Value x = g.placeholder("x", fovea::f32, {8, 64, 56, 56});
  feeds = {{x, random({8, 64, 56, 56}, 2)}};
  const nn::Mode mode{.training = true, .updates = &running};
  nn::Conv2d conv1(g, "conv1", 64, 64, {3, 3}, {.padding = 1}, false),
      conv2(g, "conv2", 64, 64, {3, 3}, {.padding = 1}, false);
  nn::BatchNorm2d norm1(g, "norm1", 64), norm2(g, "norm2", 64);
  const Value h = fovea::relu(norm1(conv1(x), mode));
  const Value o = fovea::relu(norm2(conv2(h), mode) + x);
  return fovea::reduce_mean(o * o);
}

Value depthwise(fovea::Graph& g, fovea::Feeds& feeds, std::vector<Value>& running) {
  const Value x = g.placeholder("x", fovea::f32, {8, 32, 56, 56});
  feeds = {{x, random({8, 32, 56, 56}, 3)}};
  const nn::Mode mode{.training = true, .updates = &running};
  nn::Conv2d dw(g, "depthwise", 32, 32, {3, 3}, {.padding = 1, .groups = 32}, false);
  nn::Conv2d pw(g, "pointwise", 32, 64, {1, 1}, {}, false);
  nn::BatchNorm2d norm1(g, "norm1", 32), norm2(g, "norm2", 64);
  const Value o = fovea::relu(norm2(pw(fovea::relu(norm1(dw(x), mode))), mode));
  return fovea::reduce_mean(o * o);
}

Bench make_bench(const std::string& name, const std::string& key, const Builder& build) {
  Bench b{name, key, std::make_unique<fovea::Graph>(name), nullptr, {}, {}};
  std::vector<Value> running;
  const Value loss = build(*b.graph, b.feeds, running);
  std::vector<Value> forward{loss};
  forward.insert(forward.end(), running.begin(), running.end());
  auto build_step = [](fovea::Graph& graph, const std::vector<Value>& values) {
    const nn::TrainStep step = nn::sgd(values[0], graph.parameters(), {.lr = nn::constant_lr(1e-3), .momentum = 0.9});
    std::vector<Value> updates = step.updates;
    updates.insert(updates.end(), values.begin() + 1, values.end());
    return fovea::passes::StepParts{{values[0]}, updates};
  };
  b.step = std::make_unique<fovea::passes::CompiledTrainingStep>(
      fovea::passes::compile_training_step(*b.graph, forward, build_step, fovea::cpu()));
  for (int i = 0; i < 2; ++i) b.step->run(b.feeds);  // warm-up: first-touch of the arena
  return b;
}

// bench/reference/conv_torch.py running beside this process, spoken to over two pipes.
class TorchCoprocess {
 public:
  TorchCoprocess(const std::string& python, const std::string& script) {
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to_child[0], 0);
    posix_spawn_file_actions_adddup2(&actions, from_child[1], 1);
    posix_spawn_file_actions_addclose(&actions, to_child[1]);
    posix_spawn_file_actions_addclose(&actions, from_child[0]);
    std::vector<std::string> args{python, script, "--threads", "2"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int spawned = posix_spawnp(&pid_, python.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(to_child[0]);
    close(from_child[1]);
    if (spawned != 0) {
      close(to_child[1]);
      close(from_child[0]);
      pid_ = -1;
      return;
    }
    in_ = fdopen(to_child[1], "w");
    out_ = fdopen(from_child[0], "r");
    const std::string hello = read_line();
    ready_ = hello.rfind("ready", 0) == 0;
    if (ready_) std::printf("PyTorch coprocess: %s\n", hello.c_str());
  }
  ~TorchCoprocess() {
    if (in_) std::fclose(in_);
    if (out_) std::fclose(out_);
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
  }
  TorchCoprocess(const TorchCoprocess&) = delete;
  TorchCoprocess& operator=(const TorchCoprocess&) = delete;

  bool ready() const { return ready_; }
  // The median ms per step of `steps` PyTorch steps of `model` in its faster memory format.
  double time(const std::string& model, int steps, std::string& format) {
    std::fprintf(in_, "%s %d\n", model.c_str(), steps);
    std::fflush(in_);
    const std::string line = read_line();
    char name[64] = {}, fmt_name[64] = {};
    double ms = -1;
    if (std::sscanf(line.c_str(), "%63s %lf %63s", name, &ms, fmt_name) != 3)
      throw fovea::Error("conv_torch.py answered '" + line + "' to '" + model + "'");
    format = fmt_name;
    return ms;
  }

 private:
  std::string read_line() {
    std::string line;
    if (!out_) return line;
    for (int c = std::fgetc(out_); c != EOF && c != '\n'; c = std::fgetc(out_)) line.push_back(static_cast<char>(c));
    return line;
  }
  pid_t pid_ = -1;
  FILE* in_ = nullptr;
  FILE* out_ = nullptr;
  bool ready_ = false;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"Convolutional training steps, Fovea and (with --torch) PyTorch side by side"};
  int rounds = 5, steps = 5;
  bool torch = false, profile = false;
  std::string python = "python3", json;
  std::string script = std::string(FOVEA_SOURCE_DIR) + "/bench/reference/conv_torch.py";
  app.add_option("--rounds", rounds, "alternating rounds of timed steps");
  app.add_option("--steps", steps, "timed steps per model per round");
  app.add_flag("--torch", torch, "time PyTorch's steps too, interleaved (needs a Python with torch)");
  app.add_option("--python", python, "the Python that runs bench/reference/conv_torch.py");
  app.add_option("--script", script, "where conv_torch.py is");
  app.add_option("--json", json, "write the final figures to this JSON file");
  app.add_flag("--profile", profile, "after the timed rounds, print where each model's step time goes, by op and node");
  CLI11_PARSE(app, argc, argv);

  std::vector<Bench> benches;
  benches.push_back(make_bench("cnn", "cnn_step_ms", cnn));
  benches.push_back(make_bench("resnet", "resnet_block_ms", resnet));
  benches.push_back(make_bench("depthwise", "depthwise_block_ms", depthwise));
  std::unique_ptr<TorchCoprocess> reference;
  if (torch) {
    reference = std::make_unique<TorchCoprocess>(python, script);
    if (!reference->ready()) {
      std::printf("--torch: %s could not run %s with PyTorch; timing Fovea alone\n", python.c_str(), script.c_str());
      reference.reset();
    }
  }
  std::vector<std::vector<double>> torch_ms(benches.size());
  std::vector<std::string> torch_format(benches.size());
  for (int round = 0; round < rounds; ++round) {
    for (std::size_t i = 0; i < benches.size(); ++i) {
      Bench& b = benches[i];
      std::vector<double> round_ms;
      for (int s = 0; s < steps; ++s) {
        const auto t0 = std::chrono::steady_clock::now();
        b.step->run(b.feeds);
        round_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      b.ms.push_back(median(round_ms));  // per round, as the coprocess reports PyTorch's
      if (reference) torch_ms[i].push_back(reference->time(b.name, steps, torch_format[i]));
      std::printf(
          "round %d  %-10s fovea %8.2f ms%s\n", round + 1, b.name.c_str(), median(b.ms),
          reference ? fmt::format("   torch {:8.2f} ms ({})", torch_ms[i].back(), torch_format[i]).c_str() : "");
    }
  }

  if (profile)
    for (Bench& b : benches) {
      b.step->executable().set_profiling(true);
      for (int s = 0; s < steps; ++s) b.step->run(b.feeds);
      std::printf("\n--- %s ---\n%s", b.name.c_str(), b.step->executable().profile_report(15).c_str());
    }

  fovea::tools::Report report;
  for (std::size_t i = 0; i < benches.size(); ++i) {
    const double ours = median(benches[i].ms);
    report.set(benches[i].key, ours);
    if (!reference) continue;
    const double theirs = median(torch_ms[i]);
    report.set("torch_" + benches[i].key, theirs);
    report.set("torch_" + benches[i].name + "_format", torch_format[i]);
    report.set(benches[i].name + "_speedup_vs_torch", theirs / ours);
  }
  report.set("rounds", rounds);
  report.set("steps_per_round", steps);
  report.finish(json);
  return 0;
} catch (const fovea::Error& e) {
  std::fprintf(stderr, "fovea::Error: %s\n", e.what());
  return 1;
}
