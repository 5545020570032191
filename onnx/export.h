// Exporting Fovea graphs as ONNX models, for onnxruntime, Netron and other ONNX tools.
//
//   fovea::Graph g("mlp");
//   auto x = g.placeholder("x", fovea::f32, {8, 784});
//   auto logits = model(x);
//   fovea::onnx::export_model(g, {logits}, "mlp.onnx", {.model_name = "mlp"});
//
// What the model holds:
//   - the placeholders the outputs depend on, as graph inputs of the same names, types and shapes
//     (only those: a training graph's targets and step counter are left out when the outputs do
//     not read them);
//   - every parameter, state tensor and constant the outputs depend on, as an initializer named
//     after its node, scopes kept ("mlp/layer1/w1");
//   - one or more ONNX nodes per Fovea node the outputs need, named after it: an op that ONNX
//     has becomes that op ("mlp/layer1/matmul" is a Gemm or a MatMul of that name), and one that
//     takes several ONNX ops becomes a chain whose extra nodes are named "<node>/<ONNX op>".
//     The optimizer's fused nodes become their standard equivalents: fused_layer_norm a
//     LayerNormalization, fused_softmax a Softmax, fused_attention its MatMul, Mul, Add or Where,
//     Softmax, MatMul chain, fused_conv2d a Conv and a Relu, fused_elementwise its program op by
//     op. Each node's doc_string is the file:line of the code that built it;
//   - the outputs, named after their nodes ("<node>:<k>" for a node's output k > 0, lse of a
//     fused_attention say) or as ExportOptions::output_names says.
// Tensors keep their dtypes: f32, f64, i32, i64, bool, f16 and bf16.
//
// Export is for forward (inference) graphs: a backward op, an optimizer's update (assign), a
// random op (dropout in training mode) or a training batch norm has no ONNX equivalent, and
// exporting one raises fovea::Error naming the node and its op. Build the model in inference
// mode (nn::Mode{} with training off), or export the optimized inference graph
// (passes::optimize_inference), whose fused nodes export as well as the plain ones.
//
// Numbers: ONNX runtimes compute the same math, but not always in the same order (a Gemm may sum
// in another order than Fovea's matmul), so outputs agree to rounding, not bit for bit. A row of
// attention that every mask forbids is 0 in Fovea and NaN in ONNX's Softmax.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "fovea/core/graph.h"

namespace fovea::onnx {

struct ExportOptions {
  // The version of the default ONNX domain the model imports; 13 to 17 (17 brings
  // LayerNormalization, which fused_layer_norm needs).
  int opset = 17;
  std::string producer_name = "fovea";
  std::string producer_version{};
  // The ONNX graph's name; empty: the Fovea graph's name.
  std::string model_name{};
  std::string doc_string{};
  // Written as the model's metadata_props.
  std::map<std::string, std::string> metadata{};
  // Names of the outputs, one per output; empty: each output is named after its node.
  std::vector<std::string> output_names{};
  // Run ONNX's model checker (onnx::checker::check_model) on the result; a model it rejects is a
  // fovea::Error carrying its message.
  bool check = true;
};

// Writes the ONNX model of `outputs` (values of `graph`) to `path`, atomically: a reader never
// sees half a file, and a failed export leaves any earlier file in place.
void export_model(const Graph& graph, const std::vector<Value>& outputs, const std::filesystem::path& path,
                  const ExportOptions& options = {});

// The serialized ModelProto.
std::string export_model_bytes(const Graph& graph, const std::vector<Value>& outputs,
                               const ExportOptions& options = {});

}  // namespace fovea::onnx
