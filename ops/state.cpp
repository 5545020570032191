#include "fovea/ops/state.h"

#include <array>

#include <fmt/format.h>

namespace fovea {

namespace ops {
const OpDef assign{.name = "assign",
                   .min_inputs = 2,
                   .max_inputs = 2,
                   .infer =
                       [](const InferContext& ctx) {
                         if (ctx.input(0) != ctx.input(1))
                           ctx.fail(fmt::format("the new value is {}, but the target is {}", ctx.input(1).to_string(),
                                                ctx.input(0).to_string()));
                         return std::vector<TensorType>{ctx.input(0)};
                       },
                   .impure = true,
                   .assigns = true,
                   .differentiable = false};
}  // namespace ops

Value assign(Value target, Value value, Loc where) {
  if (!target.defined() || !value.defined()) throw Error("an undefined Value was passed", "assign", "", where);
  if (target.node().op != &parameter_op)
    throw Error(fmt::format("the target '{}' is a {} node; only parameters and state can be assigned", target.name(),
                            target.node().op->name),
                "assign", target.name(), where);
  const std::array<Value, 2> in{target, value};
  return target.graph().apply1(ops::assign, in, {}, where,
                               "assign_" + target.name().substr(target.name().rfind('/') + 1));
}

namespace ops {
const OpDef stop_gradient{.name = "stop_gradient",
                          .min_inputs = 1,
                          .max_inputs = 1,
                          .infer = [](const InferContext& ctx) { return std::vector<TensorType>{ctx.input(0)}; },
                          .view = true,
                          .differentiable = false};
}  // namespace ops

Value stop_gradient(Value x, Loc where) {
  const std::array<Value, 1> in{x};
  return x.graph().apply1(ops::stop_gradient, in, {}, where);
}

}  // namespace fovea
