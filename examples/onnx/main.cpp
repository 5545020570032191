// ONNX in and out: import a model, look at it, run it, fine-tune it, export it again.
//
//   build/examples/onnx model.onnx                                   # random inputs
//   build/examples/onnx model.onnx --dim batch=4 --input x=batch.npy --save-outputs out/
//   build/examples/onnx model.onnx --input x=x.npy --fine-tune 20 --targets y.npy --export tuned.onnx
//   build/examples/onnx model.onnx --json onnx.json
//
// The walk:
//   1. import   fovea::onnx::import_model: placeholders named after the model's inputs, its
//               floating-point initializers as trainable parameters, its nodes as scopes;
//   2. look     the text IR (one line per node, under the ONNX node's scope) and a drawing of
//               the graph, grouped by those scopes (onnx_out/model.svg);
//   3. run      on the inputs given as .npy or .npz files (--input NAME=FILE), or on random ones;
//               the graph as imported and as the optimizer rewrites it must agree; each output
//               is written as OUTPUT.npy (--save-outputs DIR);
//   4. tune     a few AdamW steps on the mean squared error between the first output and
//               --targets (a .npy, or an .npz holding an array named after the output);
//   5. export   fovea::onnx::export_model writes the (tuned) model again, which is imported
//               back and must compute what the graph computes.
// It exits with 1 when the optimized graph or the export disagrees with the graph as imported.
// The model can come from PyTorch in three lines (README, "ONNX"):
//   model = torchvision.models.resnet18().eval(); x = torch.randn(1, 3, 224, 224)
//   torch.onnx.export(model, (x,), "resnet18.onnx", input_names=["x"], output_names=["y"], opset_version=17)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fovea/fovea.h>
#include <fovea/io/npy.h>
#include <fovea/onnx/export.h>
#include <fovea/onnx/import.h>
#include <CLI/CLI.hpp>

#include "explore_option.h"
#include "report.h"

namespace fs = std::filesystem;

namespace {

struct Flags {
  std::string model, out_dir = "onnx_out", save_outputs, targets, export_path, json;
  fovea::tools::ExploreOption explore;
  std::vector<std::string> dims, inputs;
  int fine_tune = 0, runs = 10;
  double lr = 1e-3;
  bool quiet = false;
};

// "NAME=VALUE" split at its first '='.
std::pair<std::string, std::string> split_assignment(const std::string& text, const char* flag) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) throw fovea::Error(fmt::format("{} wants NAME=VALUE, got '{}'", flag, text));
  return {text.substr(0, eq), text.substr(eq + 1)};
}

// The array of a .npy file, or the one named `name` in an .npz (its only one, if just one).
fovea::Tensor read_array(const std::string& path, const std::string& name) {
  if (!path.ends_with(".npz")) return fovea::read_npy(path);
  const fovea::NamedArrays arrays = fovea::read_npz(path);
  for (const auto& [member, tensor] : arrays)
    if (member == name) return tensor;
  if (arrays.size() == 1) return arrays[0].second;
  throw fovea::Error(fmt::format("{} holds no array named '{}'", path, name));
}

// Random inputs: normal numbers for floats, zeros for integers (ids of class 0, say), which
// every model accepts.
fovea::Tensor random_input(const fovea::Value& input, std::uint32_t seed) {
  fovea::Tensor t = fovea::Tensor::zeros(input.dtype(), input.shape());
  if (input.dtype() != fovea::DType::f32 && input.dtype() != fovea::DType::f64) return t;
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    if (input.dtype() == fovea::DType::f32)
      t.data<float>()[i] = static_cast<float>(normal(rng));
    else
      t.data<double>()[i] = normal(rng);
  }
  return t;
}

fovea::Feeds make_feeds(const fovea::onnx::ImportedModel& model, const Flags& flags) {
  std::map<std::string, std::string> files;
  for (const auto& text : flags.inputs) files.insert(split_assignment(text, "--input"));
  fovea::Feeds feeds;
  for (std::size_t i = 0; i < model.inputs.size(); ++i) {
    const std::string& name = model.input_names[i];
    auto file = files.find(name);
    fovea::Tensor t = file != files.end() ? read_array(file->second, name)
                                          : random_input(model.inputs[i], 1234 + static_cast<std::uint32_t>(i));
    std::printf("input %-12s %s%s\n", name.c_str(), model.inputs[i].type().to_string().c_str(),
                file != files.end() ? (" from " + file->second).c_str() : " (random)");
    feeds.emplace_back(model.inputs[i], std::move(t));
  }
  for (const auto& [name, file] : files)
    if (std::none_of(model.input_names.begin(), model.input_names.end(), [&](const auto& n) { return n == name; }))
      throw fovea::Error(fmt::format("--input {}: the model has no input of that name", name));
  return feeds;
}

double max_abs_difference(const std::vector<fovea::Tensor>& a, const std::vector<fovea::Tensor>& b) {
  double worst = 0;
  for (std::size_t k = 0; k < a.size(); ++k)
    for (std::int64_t i = 0; i < a[k].numel(); ++i) worst = std::max(worst, std::abs(a[k].at(i) - b[k].at(i)));
  return worst;
}

// Two computations of the outputs must agree to `rtol` of the outputs' largest magnitude (the
// optimizer's fused kernels sum in another order); otherwise the program fails.
void require_agreement(const std::vector<fovea::Tensor>& reference, double difference, double rtol, const char* what) {
  double scale = 0;
  for (const auto& t : reference)
    for (std::int64_t i = 0; i < t.numel(); ++i) scale = std::max(scale, std::abs(t.at(i)));
  if (difference > rtol * std::max(scale, 1e-30))
    throw fovea::Error(fmt::format("{} disagree: {:.3g} where the outputs reach {:.3g}", what, difference, scale));
}

// 1 and 2: import, print the text IR, draw the graph.
fovea::onnx::ImportedModel import_and_show(fovea::Graph& g, const Flags& flags, fovea::tools::Report& report) {
  fovea::onnx::ImportOptions options;
  for (const auto& text : flags.dims) {
    const auto [name, size] = split_assignment(text, "--dim");
    options.dims[name] = std::stoll(size);
  }
  auto model = fovea::onnx::import_model(g, flags.model, options);
  std::int64_t parameters = 0;
  for (const auto& p : model.parameters) parameters += p.shape().numel();
  std::printf("== imported %s ==\nproducer %s, opset %lld, %zu nodes in Fovea, %lld parameters in %zu tensors\nops:",
              flags.model.c_str(), model.producer.c_str(), static_cast<long long>(model.opset), g.size(),
              static_cast<long long>(parameters), model.parameters.size());
  for (const auto& [op, count] : model.op_counts) std::printf(" %s %d,", op.c_str(), count);
  std::printf("\n\n");
  if (!flags.quiet) std::printf("== text IR ==\n%s\n", fovea::to_text(g, model.outputs).c_str());
  fs::create_directories(flags.out_dir);
  const std::string dot = fovea::to_dot(g, model.outputs, {.title = flags.model});
  fovea::write_text_file((fs::path(flags.out_dir) / "model.dot").string(), dot);
  std::string why;
  const std::string svg = (fs::path(flags.out_dir) / "model.svg").string();
  if (fovea::write_svg(dot, svg, &why))
    std::printf("== drawing ==\nwrote %s\n\n", svg.c_str());
  else
    std::printf("== drawing ==\nno SVG (%s); the DOT source is in %s/model.dot\n\n", why.c_str(),
                flags.out_dir.c_str());
  report.set("ops_imported", model.op_counts);
  report.set("parameters", parameters);
  report.set("opset", model.opset);
  return model;
}

// 3: run, as imported and optimized; time the optimized one; save the outputs.
std::vector<fovea::Tensor> run_and_save(fovea::Graph& g, const fovea::onnx::ImportedModel& model,
                                        const fovea::Feeds& feeds, const Flags& flags, fovea::tools::Report& report) {
  auto plain = fovea::compile(g, model.outputs);
  const auto outputs = plain.run(feeds);
  auto optimized = fovea::passes::optimize_inference(g, model.outputs, {.record_stages = flags.explore.on()});
  auto fast = fovea::compile(*optimized.graph, optimized.outputs);
  fovea::Feeds optimized_feeds;
  for (const auto& [input, tensor] : feeds)
    if (optimized.has(input)) optimized_feeds.emplace_back(optimized.value(input), tensor);
  std::vector<double> times;
  std::vector<fovea::Tensor> fast_outputs;
  for (int i = 0; i < std::max(flags.runs, 1); ++i) {
    const auto start = std::chrono::steady_clock::now();
    fast_outputs = fast.run(optimized_feeds);
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  flags.explore.write(fast, optimized_feeds, optimized, optimized.outputs, "ONNX model " + g.name() + ", optimized");
  const double difference = max_abs_difference(outputs, fast_outputs);
  std::printf(
      "== run ==\nas imported and optimized (%zu -> %zu nodes) they agree to %.3g; median %.3f ms over %d runs\n",
      g.size(), optimized.graph->size(), difference, times[times.size() / 2], flags.runs);
  for (std::size_t k = 0; k < outputs.size(); ++k) {
    std::printf("output %-12s %s\n", model.output_names[k].c_str(), model.outputs[k].type().to_string().c_str());
    if (flags.save_outputs.empty()) continue;
    fs::create_directories(flags.save_outputs);
    std::string file = model.output_names[k];
    std::replace_if(
        file.begin(), file.end(), [](char c) { return c == '/' || c == '\\' || c == ':'; }, '_');
    fovea::write_npy(fs::path(flags.save_outputs) / (file + ".npy"), outputs[k]);
  }
  require_agreement(outputs, difference, 1e-4, "the imported and the optimized graph");
  report.set("run_ms_median", times[times.size() / 2]);
  report.set("optimized_max_abs_difference", difference);
  return outputs;
}

// 4: AdamW on the mean squared error between the first output and the targets.
void fine_tune(fovea::Graph& g, const fovea::onnx::ImportedModel& model, const fovea::Feeds& feeds, const Flags& flags,
               fovea::tools::Report& report) {
  if (flags.targets.empty()) throw fovea::Error("--fine-tune needs --targets FILE");
  const fovea::Tensor target = read_array(flags.targets, model.output_names[0]);
  const fovea::Value y = model.outputs[0];
  if (target.shape() != y.shape() || target.dtype() != y.dtype())
    throw fovea::Error(fmt::format("--targets holds {}{}, the output '{}' is {}", fovea::dtype_name(target.dtype()),
                                   target.shape().to_string(), model.output_names[0], y.type().to_string()));
  const fovea::Value diff = y - g.constant(target);
  const fovea::Value loss = fovea::reduce_mean(diff * diff);
  auto train =
      fovea::passes::compile_training_step(g, {loss}, [&](fovea::Graph& fg, const std::vector<fovea::Value>& out) {
        auto step = fovea::nn::adamw(out[0], fg.parameters(), {.lr = fovea::nn::constant_lr(flags.lr)});
        return fovea::passes::StepParts{.outputs = {out[0]}, .updates = step.updates};
      });
  std::printf("\n== fine-tune: %d AdamW steps, lr %g, on the squared error of '%s' ==\n", flags.fine_tune, flags.lr,
              model.output_names[0].c_str());
  fovea::Progress progress(flags.fine_tune, "fine-tune");
  double first = 0, last = 0;
  for (int step = 1; step <= flags.fine_tune; ++step) {
    last = train.run(feeds)[0].item();
    if (step == 1) first = last;
    progress.update(step, {{"loss", last}}, 1);
  }
  progress.finish();
  std::printf("loss %.6g -> %.6g\n", first, last);
  report.set("fine_tune_loss_first", first);
  report.set("fine_tune_loss_last", last);
}

// 5: export the model as it is now, import the file back and compare.
void export_and_check(fovea::Graph& g, const fovea::onnx::ImportedModel& model, const fovea::Feeds& feeds,
                      const Flags& flags, fovea::tools::Report& report) {
  fovea::onnx::export_model(g, model.outputs, flags.export_path);
  const auto now = fovea::compile(g, model.outputs).run(feeds);
  fovea::Graph back("reimported");
  const auto again = fovea::onnx::import_model(back, flags.export_path);
  fovea::Feeds back_feeds;
  for (std::size_t i = 0; i < model.inputs.size(); ++i)
    back_feeds.emplace_back(again.input(model.input_names[i]), feeds[i].second);
  const double difference = max_abs_difference(now, fovea::compile(back, again.outputs).run(back_feeds));
  require_agreement(now, difference, 1e-6, "the graph and its export imported back");
  std::printf("\n== export ==\nwrote %s; imported back, it agrees with the graph to %.3g\n", flags.export_path.c_str(),
              difference);
  report.set("export_max_abs_difference", difference);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Fovea and ONNX: import a model, print and draw it, run it, fine-tune it, export it"};
  Flags flags;
  app.add_option("model", flags.model, "the .onnx file")->required();
  app.add_option("--dim", flags.dims, "a symbolic dim's size, NAME=SIZE (repeatable)");
  app.add_option("--input", flags.inputs, "an input's values, NAME=FILE.npy or NAME=FILE.npz (repeatable)");
  app.add_option("--out", flags.out_dir, "folder for the drawing")->capture_default_str();
  app.add_option("--save-outputs", flags.save_outputs, "write each output as OUTPUT.npy into this folder");
  app.add_option("--runs", flags.runs, "timed runs")->capture_default_str();
  app.add_option("--fine-tune", flags.fine_tune, "AdamW steps on the first output's squared error");
  app.add_option("--targets", flags.targets, "the first output's targets (.npy, or .npz by output name)");
  app.add_option("--lr", flags.lr, "the fine-tuning learning rate")->capture_default_str();
  app.add_option("--export", flags.export_path, "write the model (after fine-tuning) as ONNX here");
  app.add_flag("--quiet", flags.quiet, "leave out the text IR");
  app.add_option("--json", flags.json, "write the final figures here");
  flags.explore.add_to(app);
  CLI11_PARSE(app, argc, argv);
  try {
    fovea::tools::Report report;
    fovea::Graph g(fs::path(flags.model).stem().string());
    const auto model = import_and_show(g, flags, report);
    const fovea::Feeds feeds = make_feeds(model, flags);
    run_and_save(g, model, feeds, flags, report);
    if (flags.fine_tune > 0) fine_tune(g, model, feeds, flags, report);
    if (!flags.export_path.empty()) export_and_check(g, model, feeds, flags, report);
    report.finish(flags.json);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
