// Importing ONNX models: a model file becomes nodes of a Fovea graph.
//
//   fovea::Graph g("encoder");
//   auto model = fovea::onnx::import_model(g, "encoder.onnx", {.dims = {{"batch", 8}, {"sequence", 128}}});
//   auto exe = fovea::compile(g, model.outputs);
//   auto out = exe.run({{model.input("tokens"), tokens}});
//
// What a model becomes:
//   - each graph input that no initializer provides: a placeholder of the same name, with the
//     model's symbolic dims ("batch") replaced by the sizes the options give;
//   - each floating-point initializer: a trainable parameter of the same name, holding the
//     model's values, so that an imported model can be fine-tuned with Fovea's autodiff and
//     optimizers (ImportOptions::trainable_initializers turns that off); integer and boolean
//     initializers (shapes, indices) become constants;
//   - each node: the Fovea ops that compute it, built under a scope named after the ONNX node
//     ("/encoder/layers.0/self_attn/MatMul" becomes the scope encoder/layers.0/self_attn/MatMul),
//     so the text IR, the drawings and the errors name the model's own nodes. Every node built
//     records the line that called import_model.
//
// Which ONNX ops and versions are supported is listed by supported_ops(). The importer refuses
// what it cannot compute exactly as ONNX specifies: an op, an op version (the opset the model
// imports picks it), an attribute value or a dtype it does not support, or an input it cannot
// know when it builds the graph (a Reshape's target shape that depends on a placeholder's
// values) is a fovea::Error naming the ONNX op, the ONNX node and the opset. Never a graph that
// computes something else.
//
// Shapes are static in Fovea: values that ONNX computes at run time from shapes (Shape, Size,
// the Gather/Concat chains that exporters emit around Reshape) are computed once, at import,
// from the sizes the options give.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <source_location>
#include <string>
#include <string_view>
#include <vector>

#include "fovea/core/graph.h"
#include "fovea/core/tensor.h"

namespace fovea::onnx {

struct ImportOptions {
  // Sizes of the model's symbolic dims, by name: {"batch", 8}. They apply to every input that
  // names the dim.
  std::map<std::string, std::int64_t> dims = {};
  // Whole shapes of inputs, by input name; they win over `dims` and over the model's own shape.
  std::map<std::string, Shape> input_shapes = {};
  // Values of inputs, by input name, for the ops that need a value when the graph is built (a
  // Reshape's target shape, a Slice's bounds, a TopK's k) and find a graph input there. Such an
  // input stays a placeholder for every other use.
  std::map<std::string, Tensor> constant_inputs = {};
  // Floating-point initializers become trainable parameters (true) or constants (false).
  bool trainable_initializers = true;
  // Run ONNX's own model checker on the file first (onnx::checker::check_model).
  bool check_model = true;
};

struct ImportedModel {
  std::vector<std::string> input_names;  // the model's inputs that are not initializers, in order
  std::vector<Value> inputs;             // their placeholders
  std::vector<std::string> output_names;
  std::vector<Value> outputs;
  std::vector<Value> parameters;         // the trainable initializers, in the file's order
  std::int64_t opset = 0;                // the version of the default ONNX domain the model imports
  std::string producer;                  // "pytorch 2.5.1", as the file says
  std::map<std::string, int> op_counts;  // ONNX op type -> number of nodes imported

  // The placeholder of input `name` / the value of output `name`; fovea::Error if none.
  Value input(std::string_view name) const;
  Value output(std::string_view name) const;
};

// Reads an ONNX model file (external data files are looked up next to it) and adds its graph
// to `graph`. Raises fovea::Error for an unreadable, truncated or invalid file, and for anything
// the importer does not support (see above). `where` is recorded as the line of every node.
ImportedModel import_model(Graph& graph, const std::filesystem::path& path, const ImportOptions& options = {},
                           std::source_location where = std::source_location::current());

// The same from the bytes of a model; external data files are looked up in `directory`.
ImportedModel import_model_bytes(Graph& graph, std::string_view bytes, const std::filesystem::path& directory,
                                 const ImportOptions& options = {},
                                 std::source_location where = std::source_location::current());

// One supported op: its ONNX type and the opset versions of it (ONNX's since_version) the
// importer implements.
struct SupportedOp {
  std::string op_type;
  std::vector<int> versions;
};
std::vector<SupportedOp> supported_ops();

}  // namespace fovea::onnx
