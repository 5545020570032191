// Fovea for those who extend it: the user's API (fovea.h) plus the engine's internals, the
// fused-op builders the passes emit, the gradient rules' context, the pattern rewriter and every
// pass on its own. The tests include this; a model needs only <fovea/fovea.h>.
#pragma once

#include "fovea/fovea.h"
#include "fovea/ops/attention.h"
#include "fovea/ops/fused_elementwise.h"
#include "fovea/ops/normalization.h"
#include "fovea/ops/vjp.h"
#include "fovea/passes/attention_fusion.h"
#include "fovea/passes/constant_folding.h"
#include "fovea/passes/cse.h"
#include "fovea/passes/dead_code.h"
#include "fovea/passes/elementwise_fusion.h"
#include "fovea/passes/mixed_precision.h"
#include "fovea/passes/normalization_fusion.h"
#include "fovea/passes/pass_manager.h"
#include "fovea/passes/pattern.h"
#include "fovea/passes/rewriter.h"
#include "fovea/passes/simplify.h"
