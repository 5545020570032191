#include "fovea/passes/pipeline.h"

#include "fovea/passes/cse.h"
#include "fovea/passes/dead_code.h"
#include "fovea/passes/simplify.h"

namespace fovea::passes {

PassManager forward_pipeline(const PipelineOptions& options) {
  PassManager pm;
  pm.add("dce", eliminate_dead_code)
      .add("simplify", simplify)
      .add("cse", eliminate_common_subexpressions)
      .add("fold", [fold = options.fold](const Graph& g,
                                         std::span<const ValueRef> roots) { return fold_constants(g, roots, fold); })
      .add("attention_fusion",
           [attention = options.attention](const Graph& g, std::span<const ValueRef> roots) {
             return fuse_attention(g, roots, attention);
           })
      .add("dce", eliminate_dead_code);
  return pm;
}

PassManager cleanup_pipeline(const PipelineOptions& options) {
  PassManager pm;
  pm.add("simplify", simplify)
      .add("cse", eliminate_common_subexpressions)
      .add("fold", [fold = options.fold](const Graph& g,
                                         std::span<const ValueRef> roots) { return fold_constants(g, roots, fold); })
      .add("dce", eliminate_dead_code);
  return pm;
}

OptimizedGraph optimize_forward(const Graph& graph, const std::vector<Value>& outputs, const PipelineOptions& options) {
  return forward_pipeline(options).run(graph, outputs);
}

OptimizedGraph optimize(const Graph& graph, const std::vector<Value>& outputs, const std::vector<Value>& updates,
                        const PipelineOptions& options) {
  return cleanup_pipeline(options).run(graph, outputs, updates);
}

}  // namespace fovea::passes
