// The ONNX importer on models built by hand (tests/onnx/onnx_model.h): names and scopes,
// trainable initializers and their gradients, dims from the options, external data, the
// values it computes at import, and the errors it gives for what it does not support.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fovea/onnx/import.h>

#include "onnx/onnx_model.h"
#include "testing.h"

namespace fs = std::filesystem;
using namespace fovea;
using fovea::testing::OnnxModel;
namespace proto = ::ONNX_NAMESPACE;

namespace {

constexpr int kFloat = proto::TensorProto::FLOAT;
constexpr int kDouble = proto::TensorProto::DOUBLE;

// A temporary directory of this file's tests (tests/testing.h).
struct TempDir : fovea::testing::TempDir {
  explicit TempDir(const std::string& tag) : fovea::testing::TempDir("onnx-" + tag) {}
};

// y = relu(x·W1ᵀ + b1)·W2 + b2 in f64 (Gemm with transB, then MatMul and Add), under
// PyTorch-style node names.
OnnxModel mlp(std::uint64_t seed) {
  OnnxModel m;
  m.input("x", kDouble, {"batch", 4});
  m.initializer("fc1.weight", fovea::testing::random_tensor(DType::f64, {5, 4}, seed));
  m.initializer("fc1.bias", fovea::testing::random_tensor(DType::f64, {5}, seed + 1));
  m.initializer("fc2.weight", fovea::testing::random_tensor(DType::f64, {5, 3}, seed + 2));
  m.initializer("fc2.bias", fovea::testing::random_tensor(DType::f64, {3}, seed + 3));
  auto& gemm = m.node("Gemm", {"x", "fc1.weight", "fc1.bias"}, {"h"}, "/fc1/Gemm");
  OnnxModel::attribute(gemm, "transB", std::int64_t{1});
  m.node("Relu", {"h"}, {"r"}, "/act/Relu");
  m.node("MatMul", {"r", "fc2.weight"}, {"z"}, "/fc2/MatMul");
  m.node("Add", {"z", "fc2.bias"}, {"y"}, "/fc2/Add");
  m.output("y", kDouble, 2);
  return m;
}

double run_loss(Graph& g, Value loss, Value x, const Tensor& batch) {
  return fovea::testing::run(g, {loss}, {{x, batch}})[0].item();
}

}  // namespace

TEST_CASE("onnx import: inputs, initializers and nodes keep the model's names and scopes") {
  Graph g("mlp");
  const auto model = fovea::onnx::import_model_bytes(g, mlp(1).bytes(), ".", {.dims = {{"batch", 2}}});
  REQUIRE(model.input_names == std::vector<std::string>{"x"});
  CHECK(model.inputs[0].shape() == Shape{2, 4});
  CHECK(model.inputs[0].name() == "x");
  REQUIRE(model.parameters.size() == 4);
  CHECK(model.parameters[0].name() == "fc1.weight");
  CHECK(model.opset == 17);
  CHECK(model.op_counts.at("Gemm") == 1);
  CHECK(model.output("y").shape() == Shape{2, 3});
  // Every node of the Gemm is built under its scope, and records the line that imported it.
  const Node* matmul = nullptr;
  for (std::uint32_t i = 0; i < g.size(); ++i)
    if (g.node(i).scope == "fc1/Gemm" && g.node(i).op_name() == "matmul") matmul = &g.node(i);
  REQUIRE(matmul != nullptr);
  CHECK(std::string(matmul->where.file).find("import_test.cpp") != std::string::npos);
}

TEST_CASE("onnx import: the values agree with the same model written in Fovea") {
  Graph g("mlp");
  const auto model = fovea::onnx::import_model_bytes(g, mlp(2).bytes(), ".", {.dims = {{"batch", 3}}});
  const Tensor batch = fovea::testing::random_tensor(DType::f64, {3, 4}, 9);
  const Tensor got = fovea::testing::run(g, model.outputs, {{model.inputs[0], batch}})[0];

  Graph h("reference");
  const Value x = h.constant(batch);
  auto w = [&](int i) { return h.constant(g.parameter_value(model.parameters[static_cast<std::size_t>(i)])); };
  const Value y = matmul(relu(matmul(x, w(0), false, true) + w(1)), w(2)) + w(3);
  fovea::testing::check_close(got, fovea::testing::run(h, {y})[0], 1e-14, 0);
}

TEST_CASE("onnx import: initializers are trainable, with gradients that match finite differences") {
  Graph g("mlp");
  const auto model = fovea::onnx::import_model_bytes(g, mlp(3).bytes(), ".", {.dims = {{"batch", 3}}});
  const Value x = model.inputs[0];
  const Value loss = reduce_sum(model.outputs[0] * model.outputs[0]);
  const auto grads = grad(loss, model.parameters);
  const Tensor batch = fovea::testing::random_tensor(DType::f64, {3, 4}, 11);
  const auto analytic = fovea::testing::run(g, grads, {{x, batch}});
  for (std::size_t p = 0; p < model.parameters.size(); ++p) {
    Tensor& value = g.parameter_value(model.parameters[p]);
    for (std::int64_t i = 0; i < value.numel(); i += 2) {
      const double saved = value.at(i), h = 1e-6;
      value.data<double>()[i] = saved + h;
      const double up = run_loss(g, loss, x, batch);
      value.data<double>()[i] = saved - h;
      const double down = run_loss(g, loss, x, batch);
      value.data<double>()[i] = saved;
      CHECK(analytic[p].at(i) == doctest::Approx((up - down) / (2 * h)).epsilon(1e-7));
    }
  }
}

TEST_CASE("onnx import: a shape computed by Shape, Gather and Concat is known at import") {
  OnnxModel m;
  m.input("x", kFloat, {2, 3, 4});
  m.initializer("zero", Tensor::scalar<std::int64_t>(0));
  m.initializer("minus_one", Tensor::from<std::int64_t>({-1}, {1}));
  m.node("Shape", {"x"}, {"shape"});
  m.node("Gather", {"shape", "zero"}, {"batch"});
  auto& unsqueeze = m.node("Unsqueeze", {"batch", "axes"}, {"batch_1"});
  m.initializer("axes", Tensor::from<std::int64_t>({0}, {1}));
  (void)unsqueeze;
  m.node("Concat", {"batch_1", "minus_one"}, {"target"}).add_attribute()->CopyFrom([] {
    proto::AttributeProto a;
    a.set_name("axis");
    a.set_type(proto::AttributeProto::INT);
    a.set_i(0);
    return a;
  }());
  m.node("Reshape", {"x", "target"}, {"y"});
  m.output("y", kFloat, 2);
  Graph g("shapes");
  const auto model = fovea::onnx::import_model_bytes(g, m.bytes(), ".");
  CHECK(model.outputs[0].shape() == Shape{2, 12});
}

TEST_CASE("onnx import: symbolic dims need sizes, and the error says how to give them") {
  Graph g("mlp");
  CHECK_THROWS_WITH_AS(fovea::onnx::import_model_bytes(g, mlp(1).bytes(), "."), doctest::Contains("'batch'"), Error);
  try {
    Graph h("mlp");
    fovea::onnx::import_model_bytes(h, mlp(1).bytes(), ".");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("ImportOptions::dims") != std::string::npos);
  }
  Graph h("mlp");
  const auto model = fovea::onnx::import_model_bytes(h, mlp(1).bytes(), ".", {.input_shapes = {{"x", Shape{7, 4}}}});
  CHECK(model.outputs[0].shape() == Shape{7, 3});
}

TEST_CASE("onnx import: an unsupported op names the op, the node and the opset") {
  OnnxModel m;
  m.input("x", kFloat, {4});
  m.node("Unique", {"x"}, {"y"}, "/dedupe/Unique");
  m.output("y", kFloat, 1);
  Graph g("unique");
  try {
    fovea::onnx::import_model_bytes(g, m.bytes(), ".");
    FAIL("no error");
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK(what.find("Unique") != std::string::npos);
    CHECK(what.find("/dedupe/Unique") != std::string::npos);
    CHECK(what.find("opset 17") != std::string::npos);
    CHECK(e.op() == "Unique");
  }
}

TEST_CASE("onnx import: an attribute the converter does not read is refused, never ignored") {
  OnnxModel m;
  m.input("x", kFloat, {4});
  auto& relu = m.node("Relu", {"x"}, {"y"}, "relu");
  OnnxModel::attribute(relu, "slope", std::int64_t{2});  // not an attribute of Relu
  m.output("y", kFloat, 1);
  Graph g("relu");
  CHECK_THROWS_WITH_AS(fovea::onnx::import_model_bytes(g, m.bytes(), ".", {.check_model = false}),
                       doctest::Contains("'slope' is not supported"), Error);
  Graph h("relu");
  CHECK_THROWS_WITH_AS(fovea::onnx::import_model_bytes(h, m.bytes(), "."), doctest::Contains("checker"), Error);
}

TEST_CASE("onnx import: a Reshape whose shape is a model input needs that input's value") {
  OnnxModel m;
  m.input("x", kFloat, {2, 6});
  m.input("shape", proto::TensorProto::INT64, {2});
  m.node("Reshape", {"x", "shape"}, {"y"}, "reshape");
  m.output("y", kFloat, 2);
  Graph g("reshape");
  CHECK_THROWS_WITH_AS(fovea::onnx::import_model_bytes(g, m.bytes(), "."), doctest::Contains("constant_inputs"), Error);
  Graph h("reshape");
  const auto model = fovea::onnx::import_model_bytes(
      h, m.bytes(), ".", {.constant_inputs = {{"shape", Tensor::from<std::int64_t>({3, 4}, {2})}}});
  CHECK(model.outputs[0].shape() == Shape{3, 4});
}

TEST_CASE("onnx import: truncated, corrupt and too-new models are errors") {
  const std::string bytes = mlp(1).bytes();
  Graph g("bad");
  CHECK_THROWS_AS(fovea::onnx::import_model_bytes(g, bytes.substr(0, bytes.size() / 2), "."), Error);
  CHECK_THROWS_WITH_AS(fovea::onnx::import_model_bytes(g, "not a model at all", "."), doctest::Contains("ONNX"), Error);
  OnnxModel future(99);
  future.input("x", kFloat, {4});
  future.node("Relu", {"x"}, {"y"});
  future.output("y", kFloat, 1);
  CHECK_THROWS_WITH_AS(fovea::onnx::import_model_bytes(g, future.bytes(), ".", {.check_model = false}),
                       doctest::Contains("opset 99"), Error);
  CHECK_THROWS_WITH_AS(fovea::onnx::import_model(g, "/nonexistent/model.onnx"), doctest::Contains("cannot open"),
                       Error);
}

TEST_CASE("onnx import: initializers in an external data file beside the model") {
  TempDir dir("external");
  const Tensor weight = fovea::testing::random_tensor(DType::f32, {3, 2}, 5);
  {
    std::ofstream data(dir.path / "weights.bin", std::ios::binary);
    data << "pad!";  // the tensor starts at offset 4
    data.write(reinterpret_cast<const char*>(weight.raw()), static_cast<std::streamsize>(weight.nbytes()));
  }
  auto make = [&](const std::string& location) {
    OnnxModel m;
    m.input("x", kFloat, {1, 3});
    auto& w = m.initializer("w", weight);
    w.clear_raw_data();
    w.set_data_location(proto::TensorProto::EXTERNAL);
    for (auto [key, value] :
         {std::pair{"location", location}, {"offset", std::string("4")}, {"length", std::string("24")}}) {
      auto* entry = w.add_external_data();
      entry->set_key(key);
      entry->set_value(value);
    }
    m.node("MatMul", {"x", "w"}, {"y"});
    m.output("y", kFloat, 2);
    return m;
  };
  make("weights.bin").save(dir.path / "model.onnx");
  Graph g("external");
  const auto model = fovea::onnx::import_model(g, dir.path / "model.onnx", {.check_model = false});
  fovea::testing::check_close(g.parameter_value(model.parameters[0]), weight, 0, 0);

  make("../weights.bin").save(dir.path / "escape.onnx");
  Graph h("escape");
  CHECK_THROWS_WITH_AS(fovea::onnx::import_model(h, dir.path / "escape.onnx", {.check_model = false}),
                       doctest::Contains("beside the model"), Error);
}

TEST_CASE("onnx import: supported_ops lists each op with the versions it implements") {
  const auto ops = fovea::onnx::supported_ops();
  auto find = [&](const std::string& name) {
    for (const auto& op : ops)
      if (op.op_type == name) return op.versions;
    return std::vector<int>{};
  };
  CHECK(find("Softmax") == std::vector<int>{1, 11, 13});
  CHECK(find("LayerNormalization") == std::vector<int>{17});
  CHECK(find("Unique").empty());
}

TEST_CASE("onnx import: a model of a newer IR version than the checker knows (PyTorch writes 10) imports") {
  OnnxModel m = mlp(4);
  m.proto().set_ir_version(10);
  Graph g("mlp");
  const auto model = fovea::onnx::import_model_bytes(g, m.bytes(), ".", {.dims = {{"batch", 2}}});
  CHECK(model.outputs[0].shape() == Shape{2, 3});
}
