#include "fovea/backends/backend.h"

namespace fovea {

void KernelRegistry::add(std::string_view op, DType dtype, Kernel kernel) {
  kernels_[{std::string(op), dtype}] = kernel;
}

Kernel KernelRegistry::find(std::string_view op, DType dtype) const {
  auto it = kernels_.find(std::pair<std::string, DType>{std::string(op), dtype});
  return it == kernels_.end() ? nullptr : it->second;
}

DType kernel_dtype(const Graph& graph, const Node& node) {
  return (node.inputs.empty() || node.op->key_on_output) ? node.outputs[0].dtype : graph.type(node.inputs[0]).dtype;
}

}  // namespace fovea
