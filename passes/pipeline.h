// The standard pipelines, and how a training program uses them.
//
// Attention fusion must see the forward graph BEFORE autodiff (DESIGN.md, decision 4): once
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

#include "fovea/passes/attention_fusion.h"
#include "fovea/passes/constant_folding.h"
#include "fovea/passes/pass_manager.h"

namespace fovea::passes {

struct PipelineOptions {
  FoldOptions fold{};
  AttentionFusionOptions attention{};
};

// dce · simplify · cse · fold · attention_fusion · dce. The first dce drops nodes nobody needs
// before fusion counts uses (a forgotten debug value could otherwise block a fusion).
PassManager forward_pipeline(const PipelineOptions& options = {});
// simplify · cse · fold · dce: safe on any graph, after autodiff too (a training step).
PassManager cleanup_pipeline(const PipelineOptions& options = {});

// forward_pipeline().run(graph, outputs): the forward graph optimized, ready for autodiff.
OptimizedGraph optimize_forward(const Graph& graph, const std::vector<Value>& outputs,
                                const PipelineOptions& options = {});
// cleanup_pipeline().run(graph, outputs, updates): for a whole training step.
OptimizedGraph optimize(const Graph& graph, const std::vector<Value>& outputs, const std::vector<Value>& updates = {},
                        const PipelineOptions& options = {});

}  // namespace fovea::passes
