// The standard pipelines, and how a training program uses them.
//
// Attention fusion must see the forward graph BEFORE autodiff (docs/architecture.md, decision 4): once
// gradients are built, they read the attention probabilities, which blocks the fusion (an inner
// value used outside), and the [Tq,Tk] matrices stay alive for the backward pass. So a training
// program optimizes its forward graph first, then differentiates the optimized graph, whose
// fused_attention nodes differentiate into fused_attention_backward nodes:
//
//   Graph g;                                         // 1. build the forward graph as usual
//   Value x = g.placeholder("x", f32, {B, T, D});
//   Value loss = nn::mse_loss(attn(x, x), target);
//
//   auto opt = passes::optimize_forward(g, {loss});  // 2. simplify, CSE, fold, fuse, DCE
//   Graph& fg = *opt.graph;                          //    a new graph; parameters SHARE g's buffers
//   Value floss = opt.outputs[0];
//
//   auto step = nn::adamw(floss, fg.parameters());   // 3. autodiff + optimizer on the optimized graph
//   auto exe = compile(fg, {floss}, cpu(), {.updates = step.updates});   // 4. compile
//   exe.run({{opt.value(x), batch}, {opt.value(target), y}});           //    feed its placeholders
//
// Because the optimized graph's parameters are bound to the same Tensors as the user's graph,
// training through it updates the weights of `g` too: a checkpoint saved from g (or from fg)
// holds the trained values, and an evaluation executable compiled from g sees them.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "fovea/passes/attention_fusion.h"
#include "fovea/passes/constant_folding.h"
#include "fovea/passes/elementwise_fusion.h"
#include "fovea/passes/mixed_precision.h"
#include "fovea/passes/pass_manager.h"
#include "fovea/runtime/executable.h"

namespace fovea::passes {

struct PipelineOptions {
  FoldOptions fold{};
  AttentionFusionOptions attention{};
  ElementwiseFusionOptions elementwise{};
  // Fused attention in bf16 or f16 with f32 sums (passes/mixed_precision.h); off: all f32.
  std::optional<MixedPrecisionOptions> mixed_precision = std::nullopt;
  // Every pipeline built from these options records its stages (PassManager::record_stages):
  // each intermediate graph is kept for a viewer such as the explorer. Off: only the result.
  bool record_stages = false;
};

// The managers below name their stages' pipeline "forward", "cleanup" and "step".
//
// dce · simplify · cse · fold · attention_fusion · normalization_fusion · conv_fusion · conv_epilogue_fusion ·
//   [mixed_precision] · dce.
// Attention fusion comes first: it consumes the softmax inside attention, which normalization
// fusion would take. The first dce drops nodes nobody needs before fusion counts uses (a
// forgotten debug value could otherwise block a fusion). mixed_precision runs only when asked.
PassManager forward_pipeline(const PipelineOptions& options = {});
// simplify · cse · fold · dce: safe on any graph, after autodiff too (a training step).
PassManager cleanup_pipeline(const PipelineOptions& options = {});
// The cleanup, then elementwise_fusion · dce: for a graph nobody differentiates any more (a
// whole training step, or an inference graph after the forward pipeline).
PassManager step_pipeline(const PipelineOptions& options = {});

// forward_pipeline().run(graph, outputs): the forward graph optimized, ready for autodiff.
OptimizedGraph optimize_forward(const Graph& graph, const std::vector<Value>& outputs,
                                const PipelineOptions& options = {});
// step_pipeline().run(graph, outputs, updates): for a whole training step.
OptimizedGraph optimize(const Graph& graph, const std::vector<Value>& outputs, const std::vector<Value>& updates = {},
                        const PipelineOptions& options = {});
// The forward pipeline, then the step pipeline: an inference graph, ready to compile. Recorded
// stages are the forward pipeline's, then the step pipeline's after its input (the same graph
// as the forward pipeline's last stage).
OptimizedGraph optimize_inference(const Graph& graph, const std::vector<Value>& outputs,
                                  const PipelineOptions& options = {});

// --- The training pipeline in one call -------------------------------------------------------
//
//   auto tg = passes::optimize_training(g, {loss}, [&](Graph& fg, const std::vector<Value>& out) {
//     nn::TrainStep step = nn::adamw(out[0], fg.parameters());     // autodiff on the fused forward
//     return passes::StepParts{{out[0], step.grad_norm}, step.updates};
//   });
//   auto exe = compile(*tg.step.graph, tg.step.outputs, cpu(), {.updates = tg.step.updates});
//   exe.run({{tg.step.value(x), batch}});        // the user's placeholders, mapped
//
// 1. the forward pipeline optimizes `outputs` (attention and normalisation fusion happen here,
//    before autodiff, so the gradient graph holds the fused backward kernels);
// 2. `build_step` appends autodiff and the optimizer to that optimized forward graph and says
//    which values the step returns and which updates it applies;
// 3. the step pipeline cleans the whole step up and fuses its elementwise chains, forward and
//    backward together.
struct StepParts {
  std::vector<Value> outputs;
  std::vector<Value> updates;
};
using BuildStep = std::function<StepParts(Graph& forward, const std::vector<Value>& outputs)>;

struct TrainingGraph {
  // The optimized forward graph that build_step extended (the optimizer's state lives in it).
  std::unique_ptr<Graph> forward;
  // The step, optimized. Its outputs and updates are build_step's, in order; value() maps a
  // value of the USER's graph (a placeholder to feed) into it, through both pipelines.
  OptimizedGraph step;

  // With PipelineOptions::record_stages, the whole road from the user's graph to the step: the
  // forward pipeline's stages ("input", then its passes), "autodiff" (`forward` after
  // build_step: all its nodes, roots build_step's outputs then updates), then the step
  // pipeline's passes. The last forward stage is `forward` too, cut at its size before
  // build_step appended to it. Empty when not recording.
  const std::vector<PassStage>& stages() const { return step.stages; }
};

TrainingGraph optimize_training(const Graph& graph, const std::vector<Value>& outputs, const BuildStep& build_step,
                                const PipelineOptions& options = {});

// --- A training step compiled with or without the optimizer -----------------------------------
//
// What a training program holds: it feeds the USER's placeholders either way, so a flag can
// turn the optimizer off (to compare, or to rule it out while debugging):
//
//   auto train = passes::compile_training_step(g, {loss}, build_step, cpu(), {.optimize = !no_optimize});
//   double l = train.run({{x, batch}, {y, labels}})[0].item();
//   save_checkpoint(path, train.graph());   // parameters and optimizer state, by scoped name
struct TrainingStepOptions {
  bool optimize = true;
  PipelineOptions pipeline{};
  CompileOptions compile{};  // its `updates` and `explore` are ignored: build_step names them,
                             // and the step writes its own explorer (below)
  // Write the explorer of the step (explore/explorer.h), its passes included, to this path after
  // the second run, which is then profiled and observed (the first pays for first touches of
  // memory); the passes are recorded (pipeline.record_stages) for it. nullopt: FOVEA_EXPLORE
  // decides, as for compile(); "": never.
  std::optional<std::string> explore = std::nullopt;
};

class CompiledTrainingStep;
// How a training step reaches the explorer, a layer above (explore/explorer.h installs it):
// writes the page of `step` to `path`; `anomaly` is the message of the error that stopped the run.
using TrainingStepExploreWriter = void (*)(CompiledTrainingStep& step, const std::string& path,
                                           const std::string& anomaly);
void set_training_step_explore_writer(TrainingStepExploreWriter writer);

class CompiledTrainingStep {
 public:
  // Runs one step; `feeds` name placeholders of the user's graph. Returns build_step's outputs.
  std::vector<Tensor> run(const Feeds& feeds, std::source_location where = std::source_location::current());

  // The graph the step runs in: the user's graph, or the optimized step. It holds every
  // persistent value the step uses (parameters and optimizer state, under the names the
  // user's graph gives them), so checkpoints are saved from and loaded into this graph.
  Graph& graph() { return *graph_; }
  Executable& executable() { return *executable_; }
  // The compiled graph's values for build_step's outputs, and the updates.
  const std::vector<Value>& outputs() const { return outputs_; }
  const std::vector<Value>& updates() const { return updates_; }
  bool optimized() const { return optimized_.step.graph != nullptr; }
  // The table of passes (empty when not optimized).
  std::string pass_report() const { return optimized() ? optimized_.step.report() : std::string(); }
  // The optimized graph's stages (TrainingGraph::stages): empty when not optimized, or when
  // TrainingStepOptions::pipeline.record_stages is off.
  const std::vector<PassStage>& stages() const { return optimized_.stages(); }

 private:
  friend CompiledTrainingStep compile_training_step(Graph&, const std::vector<Value>&, const BuildStep&,
                                                    std::shared_ptr<Backend>, const TrainingStepOptions&);
  std::vector<Tensor> run_mapped(const Feeds& feeds, std::source_location where);
  std::vector<Tensor> run_and_explore(const Feeds& feeds, std::source_location where);
  TrainingGraph optimized_;
  Graph* graph_ = nullptr;
  std::vector<Value> outputs_, updates_;
  std::unique_ptr<Executable> executable_;
  std::string explore_path_;  // TrainingStepOptions::explore, until the run that writes it
  std::int64_t runs_ = 0;
};

CompiledTrainingStep compile_training_step(Graph& graph, const std::vector<Value>& outputs, const BuildStep& build_step,
                                           std::shared_ptr<Backend> backend = cpu(),
                                           const TrainingStepOptions& options = {});

}  // namespace fovea::passes
