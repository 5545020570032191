#include "fovea/passes/pipeline.h"

#include <atomic>

#include <fmt/format.h>

#include "fovea/passes/conv_fusion.h"
#include "fovea/passes/cse.h"
#include "fovea/passes/dead_code.h"
#include "fovea/passes/mixed_precision.h"
#include "fovea/passes/normalization_fusion.h"
#include "fovea/passes/simplify.h"

namespace fovea::passes {

namespace {

// `second` ran on `first`'s graph: the value map from the user's graph through both, and both
// pass tables, on `second`'s graph. Recorded stages are first's, then second's; second's input
// stage is dropped unless it is named `second_input` (its graph differs from first's last stage
// when something was built on it in between). first's graph, when it still owns it, is kept
// for the stages that point at it.
OptimizedGraph compose(OptimizedGraph first, OptimizedGraph second, const std::string& second_input = "") {
  std::map<ValueRef, ValueRef> through;
  for (const auto& [user, middle] : first.value_map)
    if (auto it = second.value_map.find(middle); it != second.value_map.end()) through.emplace(user, it->second);
  second.value_map = std::move(through);
  first.passes.insert(first.passes.end(), second.passes.begin(), second.passes.end());
  second.passes = std::move(first.passes);
  if (!first.stages.empty() && !second.stages.empty()) {
    if (second_input.empty())
      second.stages.erase(second.stages.begin());
    else
      second.stages.front().name = second_input;
    first.stages.insert(first.stages.end(), second.stages.begin(), second.stages.end());
    second.stages = std::move(first.stages);
    if (first.graph) first.stage_graphs.push_back(std::move(first.graph));
    first.stage_graphs.insert(first.stage_graphs.end(), second.stage_graphs.begin(), second.stage_graphs.end());
    second.stage_graphs = std::move(first.stage_graphs);
  }
  return second;
}

}  // namespace

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
      .add("normalization_fusion", fuse_normalizations)
      .add("conv_fusion", fuse_convolutions)
      .add("conv_epilogue_fusion", fuse_conv_epilogues)
      .record_stages(options.record_stages)
      .pipeline_name("forward");
  if (options.mixed_precision)
    pm.add("mixed_precision", [mixed = *options.mixed_precision](const Graph& g, std::span<const ValueRef> roots) {
      return mixed_precision(g, roots, mixed);
    });
  pm.add("dce", eliminate_dead_code);
  return pm;
}

PassManager cleanup_pipeline(const PipelineOptions& options) {
  PassManager pm;
  pm.add("simplify", simplify)
      .add("cse", eliminate_common_subexpressions)
      .add("fold", [fold = options.fold](const Graph& g,
                                         std::span<const ValueRef> roots) { return fold_constants(g, roots, fold); })
      .add("dce", eliminate_dead_code)
      .record_stages(options.record_stages)
      .pipeline_name("cleanup");
  return pm;
}

PassManager step_pipeline(const PipelineOptions& options) {
  PassManager pm = cleanup_pipeline(options);
  pm.pipeline_name("step");
  pm.add("elementwise_fusion", [elementwise = options.elementwise](const Graph& g, std::span<const ValueRef> roots) {
      return fuse_elementwise(g, roots, elementwise);
    }).add("dce", eliminate_dead_code);
  return pm;
}

OptimizedGraph optimize_forward(const Graph& graph, const std::vector<Value>& outputs, const PipelineOptions& options) {
  return forward_pipeline(options).run(graph, outputs);
}

OptimizedGraph optimize(const Graph& graph, const std::vector<Value>& outputs, const std::vector<Value>& updates,
                        const PipelineOptions& options) {
  return step_pipeline(options).run(graph, outputs, updates);
}

OptimizedGraph optimize_inference(const Graph& graph, const std::vector<Value>& outputs,
                                  const PipelineOptions& options) {
  OptimizedGraph forward = optimize_forward(graph, outputs, options);
  OptimizedGraph result = step_pipeline(options).run(*forward.graph, forward.outputs);
  return compose(std::move(forward), std::move(result));
}

TrainingGraph optimize_training(const Graph& graph, const std::vector<Value>& outputs, const BuildStep& build_step,
                                const PipelineOptions& options) {
  OptimizedGraph forward = optimize_forward(graph, outputs, options);
  const StepParts parts = build_step(*forward.graph, forward.outputs);
  OptimizedGraph step = step_pipeline(options).run(*forward.graph, parts.outputs, parts.updates);
  TrainingGraph result;
  result.forward = std::move(forward.graph);
  forward.graph = nullptr;
  // The step pipeline's input is the forward graph build_step extended: the "autodiff" stage.
  result.step = compose(std::move(forward), std::move(step), "autodiff");
  return result;
}

CompiledTrainingStep compile_training_step(Graph& graph, const std::vector<Value>& outputs, const BuildStep& build_step,
                                           std::shared_ptr<Backend> backend, const TrainingStepOptions& options) {
  CompiledTrainingStep step;
  step.explore_path_ = options.explore ? *options.explore : next_explore_path_from_environment();
  if (options.optimize) {
    PipelineOptions pipeline = options.pipeline;
    pipeline.record_stages = pipeline.record_stages || !step.explore_path_.empty();
    step.optimized_ = optimize_training(graph, outputs, build_step, pipeline);
    step.graph_ = step.optimized_.step.graph.get();
    step.outputs_ = step.optimized_.step.outputs;
    step.updates_ = step.optimized_.step.updates;
  } else {
    const StepParts parts = build_step(graph, outputs);
    step.graph_ = &graph;
    step.outputs_ = parts.outputs;
    step.updates_ = parts.updates;
  }
  CompileOptions compile_options = options.compile;
  compile_options.updates = step.updates_;
  compile_options.explore = "";
  step.executable_ =
      std::make_unique<Executable>(compile(*step.graph_, step.outputs_, std::move(backend), compile_options));
  return step;
}

std::vector<Tensor> CompiledTrainingStep::run(const Feeds& feeds, std::source_location where) {
  if (!explore_path_.empty() && ++runs_ == 2) return run_and_explore(feeds, where);
  return run_mapped(feeds, where);
}

std::vector<Tensor> CompiledTrainingStep::run_mapped(const Feeds& feeds, std::source_location where) {
  if (!optimized()) return executable_->run(feeds, where);
  Feeds mapped;
  mapped.reserve(feeds.size());
  for (const auto& [value, tensor] : feeds) {
    // A placeholder the step does not read is dropped (the plain executable ignores those too).
    if (!optimized_.step.has(value)) {
      if (!value.defined() || value.node().op != &placeholder_op)
        throw Error(fmt::format("'{}' is not a placeholder", value.defined() ? value.name() : "an undefined value"),
                    "run", value.defined() ? value.name() : "", SourceLoc(where));
      continue;
    }
    mapped.emplace_back(optimized_.step.value(value), tensor);
  }
  return executable_->run(mapped, where);
}

namespace {

std::atomic<TrainingStepExploreWriter> installed_step_writer{nullptr};

void write_step_page(CompiledTrainingStep& step, const std::string& path, const std::string& anomaly) {
  if (const TrainingStepExploreWriter writer = installed_step_writer.load())
    writer(step, path, anomaly);
  else
    warn_explorer_missing(path);
}

}  // namespace

void set_training_step_explore_writer(TrainingStepExploreWriter writer) { installed_step_writer.store(writer); }

// The second run, profiled and observed, then the page (runtime/explore.cpp).
std::vector<Tensor> CompiledTrainingStep::run_and_explore(const Feeds& feeds, std::source_location where) {
  const std::string path = std::exchange(explore_path_, {});
  return run_observed_for_explorer(
      *executable_, [&] { return run_mapped(feeds, where); },
      [&](const std::string& anomaly) { write_step_page(*this, path, anomaly); });
}

}  // namespace fovea::passes
