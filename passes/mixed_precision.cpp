#include "fovea/passes/mixed_precision.h"

#include <fmt/format.h>

#include "fovea/ops/attention.h"
#include "fovea/ops/creation.h"

namespace fovea::passes {

PassResult mixed_precision(const Graph& graph, std::span<const ValueRef> roots, const MixedPrecisionOptions& options) {
  (void)roots;
  if (!is_half(options.type))
    throw Error(fmt::format("mixed precision computes attention in bf16 or f16, not {}", dtype_name(options.type)));
  GraphRewriter rw(graph);
  PassStats stats;
  const std::string kind = fmt::format("fused_attention f32 → {}", dtype_name(options.type));
  rw.rebuild([&](std::uint32_t id) {
    const Node& n = graph.node(id);
    if (n.op != &ops::fused_attention || graph.type(n.inputs[0]).dtype != DType::f32) return false;
    std::vector<Value> inputs = rw.inputs(id);
    // q, k and v become half; the mask and lse stay f32, the step i64. The casts carry the
    // node's scope and line (emit), so that the dumps and errors point at the attention.
    for (std::size_t i = 0; i < 3; ++i)
      inputs[i] = rw.emit(id, ops::cast, std::vector<Value>{inputs[i]}, {{"dtype", options.type}}, false)[0];
    const std::vector<Value> half = rw.emit(id, ops::fused_attention, inputs, n.attrs);
    const Value o = rw.emit(id, ops::cast, std::vector<Value>{half[0]}, {{"dtype", DType::f32}}, false)[0];
    rw.replace(id, {o, half[1]});
    stats.count(kind);
    return true;
  });
  return rw.finish(std::move(stats));
}

}  // namespace fovea::passes
