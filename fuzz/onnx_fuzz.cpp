#include <string_view>

#include "fovea/onnx/import.h"
#include "fovea/runtime/executable.h"
#include "fuzz_targets.h"

namespace fovea::fuzz {

namespace {

// What an import must hold together: as many placeholders as input names, outputs of the
// graph it was given; and a model whose inputs are small runs, on zeros, or refuses with an
// Error (an index out of range, say).
void check_model(Graph& g, const onnx::ImportedModel& model) {
  require(model.inputs.size() == model.input_names.size() && model.outputs.size() == model.output_names.size(),
          "names and values of an imported model disagree in number");
  Feeds feeds;
  for (const Value& input : model.inputs) {
    require(&input.graph() == &g, "an input of another graph");
    if (input.shape().numel() > 4096) return;
    feeds.emplace_back(input, Tensor::zeros(input.dtype(), input.shape()));
  }
  for (const Value& output : model.outputs)
    if (output.shape().numel() > (1 << 20)) return;
  Executable exe = compile(g, model.outputs, cpu(), {.check_finite_feeds = false});
  const auto values = exe.run(feeds);
  require(values.size() == model.outputs.size(), "a run returns another number of outputs");
}

}  // namespace

// The bytes as an ONNX model, imported with ONNX's checker and without it (so that the
// importer's own checks meet what the checker would have refused), then run when small.
int fuzz_onnx(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (bool check : {true, false}) {
    try {
      Graph g("fuzz");
      const auto model =
          onnx::import_model_bytes(g, bytes, "/nonexistent", {.dims = {{"batch", 2}}, .check_model = check});
      check_model(g, model);
    } catch (const Error&) {
      // A clear refusal is a correct answer to bad bytes.
    }
  }
  return 0;
}

}  // namespace fovea::fuzz
