// assign and stop_gradient, the two ops whose kernels copy.
//
// assign: the one op with a side effect. It writes a new value into a persistent buffer
// (a parameter or state), which is how optimizers update weights inside the training-step
// graph (docs/architecture.md, decision 5).
//
// Its output *is* the target's buffer after the write. Compile update nodes with
// CompileOptions::updates; the executable runs them after every other node, so all reads of
// the old values (forward, backward, other updates) happen first. Nothing may consume an
// assign's output inside the same graph.
#pragma once

#include "fovea/ops/elementwise.h"

namespace fovea {

// target ← value. `target` must be a parameter or state; `value` must have its type.
Value assign(Value target, Value value, Loc where = Loc::current());

// Identity in the forward pass; no gradient flows back through it (autodiff stops here). Its
// kernel copies, or does nothing where the planner gave the output the input's buffer (a view).
Value stop_gradient(Value x, Loc where = Loc::current());

namespace ops {
extern const OpDef assign, stop_gradient;
}

}  // namespace fovea
