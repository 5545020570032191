// Fovea: a static computational-graph engine. Include this one header.
//
//   #include <fovea/fovea.h>
//
//   fovea::Graph g;
//   auto x = g.placeholder("x", fovea::f32, {32, 784});
//   auto w = g.parameter("w", fovea::f32, {784, 10}, fovea::init::normal(0.0, 0.02));
//   auto y = fovea::relu(fovea::matmul(x, w) + 1.0f);
//   auto exe = fovea::compile(g, {y}, fovea::cpu());
//   auto out = exe.run({{x, batch}});
#pragma once

#include "fovea/autograd/grad.h"
#include "fovea/backends/backend.h"
#include "fovea/core/dot.h"
#include "fovea/core/dtype.h"
#include "fovea/core/error.h"
#include "fovea/core/graph.h"
#include "fovea/core/half.h"
#include "fovea/core/init.h"
#include "fovea/core/printer.h"
#include "fovea/core/shape.h"
#include "fovea/core/tensor.h"
#include "fovea/io/checkpoint.h"
#include "fovea/io/dataset.h"
#include "fovea/io/idx.h"
#include "fovea/io/plot.h"
#include "fovea/io/progress.h"
#include "fovea/nn/attention.h"
#include "fovea/nn/layers.h"
#include "fovea/nn/linear.h"
#include "fovea/nn/losses.h"
#include "fovea/nn/optim.h"
#include "fovea/nn/schedule.h"
#include "fovea/nn/transformer.h"
#include "fovea/ops/attention.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/fused_elementwise.h"
#include "fovea/ops/indexing.h"
#include "fovea/ops/matmul.h"
#include "fovea/ops/normalization.h"
#include "fovea/ops/reduce.h"
#include "fovea/ops/shape_ops.h"
#include "fovea/ops/state.h"
#include "fovea/passes/attention_fusion.h"
#include "fovea/passes/constant_folding.h"
#include "fovea/passes/cse.h"
#include "fovea/passes/dead_code.h"
#include "fovea/passes/elementwise_fusion.h"
#include "fovea/passes/mixed_precision.h"
#include "fovea/passes/normalization_fusion.h"
#include "fovea/passes/pass_manager.h"
#include "fovea/passes/pattern.h"
#include "fovea/passes/pipeline.h"
#include "fovea/passes/rewriter.h"
#include "fovea/passes/simplify.h"
#include "fovea/runtime/executable.h"
