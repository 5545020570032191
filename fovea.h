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

// What a user builds, trains, saves and looks at models with. The fused-op builders the optimizer
// emits (fused_attention, fused_softmax, fused_elementwise, ...), the rewriter and the individual
// passes are internals: reach them under their own paths, or all at once through
// <fovea/engine.h>, when extending the engine.
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
#include "fovea/explore/explorer.h"
#include "fovea/io/checkpoint.h"
#include "fovea/io/dataset.h"
#include "fovea/io/idx.h"
#include "fovea/io/npy.h"
#include "fovea/io/plot.h"
#include "fovea/io/progress.h"
#include "fovea/io/text.h"
#include "fovea/nn/attention.h"
#include "fovea/nn/convolution.h"
#include "fovea/nn/layers.h"
#include "fovea/nn/linear.h"
#include "fovea/nn/losses.h"
#include "fovea/nn/optim.h"
#include "fovea/nn/schedule.h"
#include "fovea/nn/transformer.h"
#include "fovea/ops/convolution.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/indexing.h"
#include "fovea/ops/matmul.h"
#include "fovea/ops/reduce.h"
#include "fovea/ops/shape_ops.h"
#include "fovea/ops/state.h"
#include "fovea/passes/pipeline.h"
#include "fovea/runtime/executable.h"
