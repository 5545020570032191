#include "fovea/backends/backend.h"

#include <cstring>

namespace fovea {

void KernelRegistry::add(const OpDef& op, DType dtype, Kernel kernel, VerdictMessage verdict_message) {
  kernels_[{&op, dtype}] = {kernel, verdict_message};
}

const KernelRegistry::Entry* KernelRegistry::entry(const OpDef& op, DType dtype) const {
  auto it = kernels_.find(Key{&op, dtype});
  return it == kernels_.end() ? nullptr : &it->second;
}

Kernel KernelRegistry::find(const OpDef& op, DType dtype) const {
  const Entry* e = entry(op, dtype);
  return e ? e->kernel : nullptr;
}

VerdictMessage KernelRegistry::verdict_message(const OpDef& op, DType dtype) const {
  const Entry* e = entry(op, dtype);
  return e ? e->verdict_message : nullptr;
}

std::vector<std::pair<const OpDef*, DType>> KernelRegistry::keys() const {
  std::vector<std::pair<const OpDef*, DType>> keys;
  keys.reserve(kernels_.size());
  for (const auto& [key, entry] : kernels_) keys.push_back(key);
  return keys;
}

void Backend::clear_verdicts(Verdict* verdicts, std::size_t count) {
  if (count > 0) std::memset(static_cast<void*>(verdicts), 0xFF, count * sizeof(Verdict));
}

DType kernel_dtype(const Graph& graph, const Node& node) {
  return (node.inputs.empty() || node.op->key_on_output) ? node.outputs[0].dtype : graph.type(node.inputs[0]).dtype;
}

}  // namespace fovea
