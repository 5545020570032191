#include "fovea/ops/transfer.h"

namespace fovea::ops {

namespace {

// y = x, bytes moved from one memory to the other: the type does not change.
std::vector<TensorType> infer_same_type(const InferContext& ctx) { return {ctx.input(0)}; }

}  // namespace

const OpDef to_device{
    .name = "to_device", .min_inputs = 1, .max_inputs = 1, .infer = infer_same_type, .differentiable = false};
const OpDef to_host{
    .name = "to_host", .min_inputs = 1, .max_inputs = 1, .infer = infer_same_type, .differentiable = false};

}  // namespace fovea::ops
