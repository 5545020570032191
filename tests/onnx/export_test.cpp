// ONNX export: every exported model passes ONNX's checker (export_model runs it), and runs in
// onnxruntime (tests/onnx/run_onnxruntime.py) with outputs that agree with Fovea's own within
// 1e-5 relative: the models the examples build (an MLP, a CNN, a GPT, a translator), each also
// after the inference optimizer, and the ops one by one.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "fovea/io/checkpoint.h"
#include "fovea/onnx/export.h"
#include "fovea/onnx/import.h"
#include "nn/translator_testing.h"
#include "testing.h"

namespace fovea::testing {
namespace {

namespace fs = std::filesystem;

// A folder of its own for one test case's files.
fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("fovea_onnx_export_{}_{}", name, ::getpid());
  fs::create_directories(dir);
  return dir;
}

// The outputs of `model` run by onnxruntime on `inputs` (named as the model's inputs), by output
// name; nothing (and the test case is skipped) when the test's Python has no onnxruntime.
std::optional<std::map<std::string, Tensor>> run_onnxruntime(
    const fs::path& model, const std::vector<std::pair<std::string, Tensor>>& inputs) {
  const std::string python = FOVEA_ONNX_PYTHON;
  if (python.empty()) {
    skip_test_case("no Python to run onnxruntime with (make .venv with tools/install_deps.sh)");
    return std::nullopt;
  }
  const fs::path in = model.parent_path() / "inputs.safetensors", out = model.parent_path() / "outputs.safetensors";
  save_safetensors(in.string(), inputs);
  const std::string command = fmt::format("'{}' '{}/run_onnxruntime.py' '{}' '{}' '{}'", python, FOVEA_ONNX_TEST_DIR,
                                          model.string(), in.string(), out.string());
  const int status = std::system(command.c_str());
  if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
    skip_test_case(fmt::format("{} cannot import onnxruntime and numpy (tools/install_deps.sh makes .venv)", python));
    return std::nullopt;
  }
  REQUIRE_MESSAGE(status == 0, "onnxruntime failed on " << model.string());
  std::map<std::string, Tensor> results;
  for (auto& [name, tensor] : load_safetensors(out.string()).tensors) results[name] = tensor;
  return results;
}

// The relative error of `actual` at the scale of `expected`: max |actual - expected| over
// max |expected|. (Element by element, a relative error means little for the outputs near zero,
// such as logits that cancel: f32 rounding alone moves them by more than 1e-5 of themselves.)
double max_relative_error(const Tensor& actual, const Tensor& expected) {
  REQUIRE(actual.shape().to_string() == expected.shape().to_string());
  double difference = 0, scale = 0;
  for (std::int64_t i = 0; i < expected.numel(); ++i) {
    const double a = actual.at(i), e = expected.at(i);
    if (std::isnan(e) && std::isnan(a)) continue;
    difference = std::max(difference, std::isnan(a - e) ? INFINITY : std::abs(a - e));
    scale = std::max(scale, std::abs(e));
  }
  return scale == 0 ? difference : difference / scale;
}

// The largest relative error (as max_relative_error) over all outputs after a round trip: the
// exported model imported again (onnx/import.h) into a graph of its own and run by Fovea.
double round_trip_difference(const fs::path& model, const Feeds& feeds, const std::vector<Tensor>& expected) {
  Graph imported("imported");
  const onnx::ImportedModel m = onnx::import_model(imported, model);
  Feeds imported_feeds;
  for (const auto& [value, tensor] : feeds) imported_feeds.emplace_back(m.input(value.name()), tensor);
  const std::vector<Tensor> actual = run(imported, m.outputs, imported_feeds);
  REQUIRE(actual.size() == expected.size());
  double worst = 0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    REQUIRE(dtype_name(actual[i].dtype()) == dtype_name(expected[i].dtype()));
    worst = std::max(worst, max_relative_error(actual[i], expected[i]));
  }
  return worst;
}

struct Comparison {
  double max_relative_error = 0;
  bool ran = false;
};

// How the model imported again must agree with Fovea's own outputs: exactly when the graph is made
// of primitives, which the importer builds again one for one; within rounding (1e-5 relative)
// when it has fused nodes, which come back as the primitive chains of their ONNX ops and sum in
// another order than the fused kernels.
enum class RoundTrip { exact, rounding };

// Exports `outputs` of `g`, runs the model in onnxruntime on `feeds` and compares each output with
// Fovea's own; imports it again and compares likewise. Returns the largest relative error.
Comparison export_and_compare(Graph& g, const std::vector<Value>& outputs, const Feeds& feeds, const std::string& name,
                              const onnx::ExportOptions& options = {},
                              RoundTrip round_trip_agreement = RoundTrip::exact) {
  const fs::path dir = scratch(name);
  const fs::path model = dir / "model.onnx";
  onnx::export_model(g, outputs, model, options);
  const std::vector<Tensor> expected = run(g, outputs, feeds);
  const double round_trip = round_trip_difference(model, feeds, expected);
  MESSAGE(name << ": relative error after export and import " << round_trip);
  CHECK(round_trip <= (round_trip_agreement == RoundTrip::exact ? 0.0 : 1e-5));
  std::vector<std::pair<std::string, Tensor>> inputs;
  for (const auto& [value, tensor] : feeds) inputs.emplace_back(value.name(), tensor);
  const auto results = run_onnxruntime(model, inputs);
  if (!results) return {};
  Comparison comparison{0, true};
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const std::string output_name = !options.output_names.empty() ? options.output_names[i]
                                    : outputs[i].ref().output == 0
                                        ? outputs[i].name()
                                        : fmt::format("{}:{}", outputs[i].name(), outputs[i].ref().output);
    REQUIRE_MESSAGE(results->contains(output_name), "onnxruntime gave no output " << output_name);
    const Tensor& actual = results->at(output_name);
    CHECK(dtype_name(actual.dtype()) == dtype_name(expected[i].dtype()));
    if (is_floating(expected[i].dtype()))
      comparison.max_relative_error = std::max(comparison.max_relative_error, max_relative_error(actual, expected[i]));
    else
      check_close(actual, expected[i], 0, 0);
  }
  MESSAGE(name << ": max relative error " << comparison.max_relative_error);
  CHECK(comparison.max_relative_error <= 1e-5);
  fs::remove_all(dir);
  return comparison;
}

// The same after passes::optimize_inference, which must have made each of `fused_ops`: the fused
// nodes export as their standard ONNX ops, each of `onnx_ops` among them.
void export_optimized_and_compare(Graph& g, const std::vector<Value>& outputs, const Feeds& feeds,
                                  const std::string& name, const std::vector<std::string>& fused_ops,
                                  const std::vector<std::string>& onnx_ops) {
  const passes::OptimizedGraph opt = passes::optimize_inference(g, outputs);
  std::set<std::string> made;
  for (std::uint32_t id = 0; id < opt.graph->size(); ++id) made.insert(std::string(opt.graph->node(id).op_name()));
  for (const std::string& op : fused_ops) CHECK_MESSAGE(made.contains(op), "the optimizer made no " << op);
  const std::string bytes = onnx::export_model_bytes(*opt.graph, opt.outputs);
  for (const std::string& op : onnx_ops) CHECK_MESSAGE(bytes.find(op) != std::string::npos, "no ONNX " << op);
  Feeds optimized_feeds;
  for (const auto& [value, tensor] : feeds)
    if (opt.has(value)) optimized_feeds.emplace_back(opt.value(value), tensor);
  export_and_compare(*opt.graph, opt.outputs, optimized_feeds, name, {}, RoundTrip::rounding);
}

// Gives every parameter and state tensor (batch norm's running statistics too) values in
// [0.5, 1.5) or [-1, 1), so that nothing is trivially zero or one.
void randomize_parameters(Graph& g) {
  std::uint64_t seed = 100;
  for (Value p : g.persistent_values()) {
    const bool positive = p.name().find("running_var") != std::string::npos;
    g.parameter_value(p) = random_tensor(p.dtype(), p.shape(), seed++, positive ? 0.5 : -1.0, positive ? 1.5 : 1.0);
  }
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t count = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++count;
  return count;
}

}  // namespace

TEST_CASE("onnx export: the quickstart MLP keeps its names and runs in onnxruntime") {
  Graph g("quickstart");
  const Value x = g.placeholder("x", f32, {4, 64});
  Value probs;
  {
    auto mlp = g.scope("mlp");
    Value hidden;
    {
      auto layer = g.scope("layer1");
      hidden = relu(matmul(x, g.parameter("w1", f32, {64, 32}, init::kaiming_normal())) +
                    g.parameter("b1", f32, {32}, init::zeros()));
    }
    Value logits;
    {
      auto layer = g.scope("layer2");
      logits = matmul(hidden, g.parameter("w2", f32, {32, 10}, init::kaiming_normal(1.0))) +
               g.parameter("b2", f32, {10}, init::zeros());
    }
    auto softmax = g.scope("softmax");
    const Value e = exp(logits - reduce_max(logits, {-1}, true));
    probs = e / reduce_sum(e, {-1}, true);
  }
  randomize_parameters(g);
  const std::string bytes = onnx::export_model_bytes(g, {probs}, {.model_name = "mlp", .metadata = {{"task", "demo"}}});
  for (const char* name : {"mlp/layer1/w1", "mlp/layer1/b1", "mlp/layer2/w2", "mlp/softmax/exp", "Gemm", "task"})
    CHECK_MESSAGE(bytes.find(name) != std::string::npos, name << " is not in the model");
  const Feeds feeds{{x, random_tensor(f32, {4, 64}, 1)}};
  export_and_compare(g, {probs}, feeds, "mlp");
  export_optimized_and_compare(g, {probs}, feeds, "mlp_optimized", {"fused_softmax", "fused_elementwise"}, {"Softmax"});
}

TEST_CASE("onnx export: the Fashion-MNIST CNN in inference mode runs in onnxruntime") {
  Graph g("cnn");
  const Value x = g.placeholder("x", f32, {2, 784});
  const nn::Conv2d conv1(g, "conv1", 1, 4, {3, 3}, {.padding = 1}, false),
      conv2(g, "conv2", 4, 8, {3, 3}, {.padding = 1}, false);
  const nn::BatchNorm2d norm1(g, "norm1", 4), norm2(g, "norm2", 8);
  const nn::MaxPool2d pool{{2, 2}};
  const nn::Linear hidden(g, "hidden", 8 * 7 * 7, 16), out(g, "out", 16, 10);
  const nn::Dropout drop(0.25);
  const nn::Mode mode{};
  const Value image = reshape((x - 0.2860) / 0.3530, {2, 1, 28, 28});
  const Value a1 = pool(relu(norm1(conv1(image), mode)));
  const Value a2 = pool(relu(norm2(conv2(a1), mode)));
  const Value logits = out(drop(relu(hidden(drop(reshape(a2, {2, 8 * 7 * 7}), mode))), mode));
  randomize_parameters(g);
  const Feeds feeds{{x, random_tensor(f32, {2, 784}, 2, 0, 1)}};
  export_and_compare(g, {logits}, feeds, "cnn");
  export_optimized_and_compare(g, {logits}, feeds, "cnn_optimized", {"fused_conv2d"}, {"Conv", "MaxPool"});
}

TEST_CASE("onnx export: a tiny GPT with causal attention runs in onnxruntime") {
  Graph g("gpt");
  const nn::GPT gpt(g, tiny_gpt_config());
  const Value ids = g.placeholder("ids", i64, {2, 8});
  const Value logits = gpt(ids);
  const Feeds feeds{{ids, random_tensor(i64, {2, 8}, 3, 0, 11)}};
  export_and_compare(g, {logits}, feeds, "gpt");
  export_optimized_and_compare(g, {logits}, feeds, "gpt_optimized",
                               {"fused_attention", "fused_layer_norm", "fused_elementwise"},
                               {"LayerNormalization", "Softmax", "Where"});
}

TEST_CASE("onnx export: the translator (encoder, decoder, padding mask) runs in onnxruntime") {
  Graph g("translator");
  const nn::Transformer::Config config = tiny_translator_config();
  const nn::Transformer model(g, config);
  const Value source = g.placeholder("source", i64, {2, 6});
  const Value target = g.placeholder("target", i64, {2, 5});
  const nn::AttentionMask mask = nn::padding_mask(equal(source, scalar_like(source, 0.0)), config.dtype);
  const Value logits = model(source, target, mask);
  Tensor source_ids = random_tensor(i64, {2, 6}, 4, 1, 13);
  source_ids.data<std::int64_t>()[5] = 0;  // the first sentence ends in padding
  const Feeds feeds{{source, source_ids}, {target, random_tensor(i64, {2, 5}, 5, 1, 12)}};
  export_and_compare(g, {logits}, feeds, "translator");
  export_optimized_and_compare(g, {logits}, feeds, "translator_optimized", {"fused_attention", "fused_layer_norm"},
                               {"LayerNormalization", "Softmax"});
}

TEST_CASE("onnx export: elementwise ops, comparisons and where") {
  Graph g("elementwise");
  const Value a = g.placeholder("a", f32, {3, 4}), b = g.placeholder("b", f32, {4});
  const Value p = g.placeholder("p", f32, {3, 4}), flags = g.placeholder("flags", boolean, {3, 4});
  std::vector<Value> outputs{neg(a),  abs(a),      relu(a),       exp(a),        log(p),
                             sqrt(p), rsqrt(p),    tanh(a),       sigmoid(a),    sin(a),
                             cos(a),  softplus(a), a + b,         a - b,         a * b,
                             a / b,   pow(p, b),   maximum(a, b), minimum(a, b), where(less(a, b), a, b)};
  for (Value c : {equal(a, b), not_equal(a, b), less(a, b), less_equal(a, b), greater(a, b), greater_equal(a, b),
                  logical_and(flags, less(a, b)), logical_or(flags, greater(a, b)), logical_not(flags),
                  less(flags, logical_not(flags))})
    outputs.push_back(c);
  outputs.push_back(cast(a, i32));
  outputs.push_back(cast(flags, f32));
  const Feeds feeds{{a, random_tensor(f32, {3, 4}, 6)},
                    {b, random_tensor(f32, {4}, 7)},
                    {p, random_tensor(f32, {3, 4}, 8, 0.5, 2)},
                    {flags, random_tensor(boolean, {3, 4}, 9)}};
  export_and_compare(g, outputs, feeds, "elementwise");
}

TEST_CASE("onnx export: shape ops, reductions, gather, fill and iota") {
  Graph g("shapes");
  const Value x = g.placeholder("x", f32, {2, 3, 5}), ids = g.placeholder("ids", i32, {4});
  const Value row = g.placeholder("row", f32, {1, 5});
  const std::vector<Value> outputs{reshape(x, {6, 5}),
                                   permute(x, {2, 0, 1}),
                                   broadcast_to(row, {4, 5}),
                                   slice(x, 2, 1, 5, 2),
                                   slice(x, 1, -2, 3),
                                   concat({x, x * 2.0}, 1),
                                   squeeze(slice(x, 1, 0, 1), {1}),
                                   unsqueeze(x, 1),
                                   reduce_sum(x, {0, 2}),
                                   reduce_max(x, {-1}, true),
                                   reduce_mean(x, {1}),
                                   reduce_sum(x),
                                   gather(x, ids, 2),
                                   fill(g, {2, 2}, 3.5),
                                   iota(g, {2, 3}, 1, i64) + ones(g, {2, 3}, i64)};
  const Feeds feeds{{x, random_tensor(f32, {2, 3, 5}, 11)},
                    {ids, Tensor::from<std::int32_t>({4, 0, 2, 2}, {4})},
                    {row, random_tensor(f32, {1, 5}, 10)}};
  export_and_compare(g, outputs, feeds, "shapes");
}

TEST_CASE("onnx export: batched matmul with transposes") {
  Graph g("matmul");
  const Value a = g.placeholder("a", f32, {2, 4, 3}), b = g.placeholder("b", f32, {5, 4});
  const Value c = g.placeholder("c", f32, {3, 4});
  const std::vector<Value> outputs{matmul(a, b, true, true), matmul(c, a), matmul(c, c, true, false),
                                   matmul(c, b, false, true)};
  const Feeds feeds{
      {a, random_tensor(f32, {2, 4, 3}, 12)}, {b, random_tensor(f32, {5, 4}, 13)}, {c, random_tensor(f32, {3, 4}, 14)}};
  export_and_compare(g, outputs, feeds, "matmul");
}

TEST_CASE("onnx export: convolutions, pools and pads") {
  Graph g("convolution");
  const Value x = g.placeholder("x", f32, {2, 4, 9, 8});
  const Value w = g.parameter("w", f32, {6, 2, 3, 2}, init::normal(0, 0.5));
  const Value bias = g.parameter("bias", f32, {6}, init::normal(0, 0.5));
  const ConvAttributes strided{.stride = {2, 1}, .padding = {1, 0, 2, 1}, .dilation = {1, 2}, .groups = 2};
  const std::vector<Value> outputs{
      conv2d(x, w, {.stride = {2, 1}, .padding = Padding::sides(1, 0, 2, 1), .dilation = {1, 2}, .groups = 2}),
      fused_conv2d(x, w, bias, strided, ConvActivation::relu),
      fused_conv2d(x, w, bias, strided, ConvActivation::none),
      max_pool2d(x, {3, 3}, {.stride = {2, 2}, .padding = 1, .dilation = {1, 1}}),
      max_pool2d(x, {2, 2}, {.dilation = {2, 1}}),
      avg_pool2d(x, {3, 3}, {.stride = {2, 2}, .padding = 1, .count_include_pad = true}),
      avg_pool2d(x, {3, 3}, {.stride = {2, 2}, .padding = 1, .count_include_pad = false}),
      global_avg_pool2d(x),
      pad(x, {0, 1, 2, 0}, {1, 0, 1, 3}, PadMode::constant, -1.5),
      pad(x, {0, 0, 2, 1}, {0, 0, 1, 3}, PadMode::reflect)};
  export_and_compare(g, outputs, {{x, random_tensor(f32, {2, 4, 9, 8}, 15)}}, "convolution");
}

TEST_CASE("onnx export: fused softmax, log-softmax, layer norm and attention") {
  Graph g("fused");
  const Value x = g.placeholder("x", f32, {2, 3, 8});
  const Value gamma = g.parameter("gamma", f32, {8}, init::normal(1, 0.2));
  const Value beta = g.parameter("beta", f32, {8}, init::normal(0, 0.2));
  const Value q = g.placeholder("q", f32, {2, 2, 3, 4}), k = g.placeholder("k", f32, {2, 2, 5, 4});
  const Value v = g.placeholder("v", f32, {2, 2, 5, 6}), mask = g.placeholder("mask", f32, {2, 1, 1, 5});
  const FusedLayerNormOutputs norm = fused_layer_norm(x, gamma, beta, 1e-5);
  const FusedAttentionOutputs plain = fused_attention(q, k, v, Value(), 0.5, false);
  const FusedAttentionOutputs causal = fused_attention(q, k, v, mask, 0.25, true);
  const std::vector<Value> outputs{fused_softmax(x), fused_log_softmax(x), norm.y,        norm.mean,
                                   norm.rstd,        plain.output,         causal.output, causal.lse};
  Tensor mask_values = Tensor::zeros(f32, {2, 1, 1, 5});
  mask_values.data<float>()[1] = -1e9f;
  const Feeds feeds{{x, random_tensor(f32, {2, 3, 8}, 16)},
                    {q, random_tensor(f32, {2, 2, 3, 4}, 17)},
                    {k, random_tensor(f32, {2, 2, 5, 4}, 18)},
                    {v, random_tensor(f32, {2, 2, 5, 6}, 19)},
                    {mask, mask_values}};
  export_and_compare(g, outputs, feeds, "fused", {}, RoundTrip::rounding);
  const std::string bytes = onnx::export_model_bytes(g, outputs);
  CHECK(count_of(bytes, "LayerNormalization") == 1);
  CHECK(count_of(bytes, "Softmax") >= 3);
}

TEST_CASE("onnx export: f64 models and half-precision attention keep their dtypes") {
  Graph g("dtypes");
  const Value x = g.placeholder("x", f64, {2, 3, 8});
  const Value w = g.parameter("w", f64, {8, 8}, init::normal(0, 0.5));
  const Value gamma = g.parameter("gamma", f64, {8}, init::normal(1, 0.2));
  const Value beta = g.parameter("beta", f64, {8}, init::normal(0, 0.2));
  const Value h = tanh(matmul(x, w) * 0.5 + 1.0);
  const Value normed = fused_layer_norm(h, gamma, beta, 1e-5).y;
  const Value q = g.placeholder("q", bf16, {1, 2, 3, 4}), k = g.placeholder("k", bf16, {1, 2, 3, 4});
  const Value v = g.placeholder("v", bf16, {1, 2, 3, 4});
  const Value attended = fused_attention(q, k, v, Value(), 0.5, true).output;
  const Feeds feeds{{x, random_tensor(f64, {2, 3, 8}, 21)},
                    {q, random_tensor(bf16, {1, 2, 3, 4}, 22)},
                    {k, random_tensor(bf16, {1, 2, 3, 4}, 23)},
                    {v, random_tensor(bf16, {1, 2, 3, 4}, 24)}};
  export_and_compare(g, {fused_softmax(normed), normed}, {feeds[0]}, "f64", {}, RoundTrip::rounding);
  // numpy has no bf16 to feed onnxruntime with; ONNX's checker and its strict shape inference
  // (export_model_bytes runs both) check the casts around the f32 chain.
  const std::string bytes = onnx::export_model_bytes(g, {attended});
  CHECK(bytes.find("Cast") != std::string::npos);
}

TEST_CASE("onnx export: output names, repeated outputs and the written file") {
  Graph g("names");
  const Value x = g.placeholder("x", f32, {3});
  const Value y = relu(x);
  const Feeds feeds{{x, random_tensor(f32, {3}, 20)}};
  export_and_compare(g, {y, y, x}, feeds, "named", {.output_names = {"first", "second", "input_again"}});
  const std::string bytes = onnx::export_model_bytes(g, {y, y});
  CHECK(count_of(bytes, "Identity") == 1);
  CHECK(error_of([&] {
          onnx::export_model_bytes(g, {y}, {.output_names = {"a", "b"}});
        }).find("2 output names") != std::string::npos);
  CHECK(error_of([&] { onnx::export_model_bytes(g, {y}, {.output_names = {"x"}}); }).find("already the name") !=
        std::string::npos);
}

TEST_CASE("onnx export: training ops and unsupported opsets are refused, naming the node") {
  Graph g("training");
  const Value x = g.placeholder("x", f32, {4, 3});
  const Value w = g.parameter("w", f32, {3, 2}, init::normal(0, 1));
  const Value loss = reduce_sum(matmul(x, w));
  const Value dw = grad(loss, {w})[0];
  const std::string backward = error_of([&] { onnx::export_model_bytes(g, {dw}); });
  CHECK(backward.find("has no ONNX equivalent") != std::string::npos);
  const Value noise = random_uniform(g, {4, 3});
  const std::string random = error_of([&] { onnx::export_model_bytes(g, {x + noise}); });
  CHECK(random.find("op random_uniform of node") != std::string::npos);
  CHECK(random.find("has no ONNX equivalent") != std::string::npos);
  const Value update = assign(w, w * 0.5);
  CHECK(error_of([&] { onnx::export_model_bytes(g, {update}); }).find("op assign of node") != std::string::npos);
  CHECK(error_of([&] { onnx::export_model_bytes(g, {loss}, {.opset = 12}); }).find("opset 12") != std::string::npos);
  const nn::Dropout drop(0.5);
  const Value step = g.placeholder("step", i64, {});
  const Value dropped = drop(x, {.training = true, .step = step});
  const passes::OptimizedGraph opt = passes::optimize_inference(g, {dropped});
  CHECK(error_of([&] { onnx::export_model_bytes(*opt.graph, opt.outputs); }).find("has no ONNX equivalent") !=
        std::string::npos);
  CHECK(onnx::export_model_bytes(g, {loss}).size() > 0);
}

}  // namespace fovea::testing
