#include "fovea/ops/collective.h"

#include <fmt/format.h>

#include <array>
#include <string>

#include "fovea/ops/vjp.h"

namespace fovea {

namespace {

Reduction reduction_of(const Attributes& attrs) {
  const std::string& name = attrs.get_string("reduction");
  if (name == "sum") return Reduction::sum;
  if (name == "mean") return Reduction::mean;
  throw Error(fmt::format("unknown reduction '{}' (sum or mean)", name));
}

Communicator& communicator_in(const Attributes& attrs) { return *registered_communicator(attrs.get_int("communicator")); }

// The checks every collective shares: a dtype the communicators carry, a root among the ranks.
const Communicator& check_collective(const InferContext& ctx) {
  const DType dtype = ctx.input(0).dtype;
  if (dtype != DType::f32 && dtype != DType::f64 && dtype != DType::i32 && dtype != DType::i64)
    ctx.fail(fmt::format("{} cannot be exchanged: collectives take f32, f64, i32 or i64", ctx.input(0).to_string()));
  const Communicator& communicator = communicator_in(ctx.attrs());
  if (const Attribute* root = ctx.attrs().find("root")) {
    const std::int64_t r = std::get<std::int64_t>(*root);
    if (r < 0 || r >= communicator.size())
      ctx.fail(fmt::format("root {} is not a rank of the {} communicator of {} rank(s)", r, communicator.name(),
                           communicator.size()));
  }
  if (ctx.attrs().find("reduction") != nullptr) (void)reduction_of(ctx.attrs());
  return communicator;
}

std::vector<TensorType> infer_same(const InferContext& ctx) {
  check_collective(ctx);
  return {ctx.input(0)};
}

std::vector<TensorType> infer_all_gather(const InferContext& ctx) {
  const Communicator& communicator = check_collective(ctx);
  TensorType out = ctx.input(0);
  if (out.shape.rank() == 0) ctx.fail("cannot gather a scalar along an axis: reshape it to [1] first");
  const int axis = ctx.axis(ctx.attrs().get_int("axis"), out.shape.rank());
  out.shape[axis] *= communicator.size();
  return {out};
}

std::vector<TensorType> infer_reduce_scatter(const InferContext& ctx) {
  const Communicator& communicator = check_collective(ctx);
  TensorType out = ctx.input(0);
  if (out.shape.rank() == 0) ctx.fail("cannot scatter a scalar along an axis");
  const int axis = ctx.axis(ctx.attrs().get_int("axis"), out.shape.rank());
  if (out.shape[axis] % communicator.size() != 0)
    ctx.fail(fmt::format("dim {} of {} ({}) does not split into {} equal parts, one per rank", axis,
                         ctx.input(0).to_string(), out.shape[axis], communicator.size()));
  out.shape[axis] /= communicator.size();
  return {out};
}

std::vector<TensorType> infer_wait(const InferContext& ctx) { return {ctx.input(0)}; }

// The node's communicator, as a shared pointer for the builders of gradient nodes.
std::shared_ptr<Communicator> shared_communicator(const Node& node) {
  return registered_communicator(node.attrs.get_int("communicator"));
}

std::vector<Value> vjp_all_reduce(const VjpContext& c) {
  return {all_reduce(c.g(), shared_communicator(c.node), reduction_of(c.attrs()))};
}
std::vector<Value> vjp_broadcast_from(const VjpContext& c) {
  return {reduce_to(c.g(), shared_communicator(c.node), static_cast<int>(c.attrs().get_int("root")))};
}
std::vector<Value> vjp_reduce_to(const VjpContext& c) {
  return {broadcast_from(c.g(), shared_communicator(c.node), static_cast<int>(c.attrs().get_int("root")))};
}
std::vector<Value> vjp_all_gather(const VjpContext& c) {
  return {reduce_scatter(c.g(), shared_communicator(c.node), static_cast<int>(c.attrs().get_int("axis")))};
}
// y_r = (1/p)^[mean] Σ_s part_r(x_s): ∂L/∂x_s = the ranks' ḡ side by side, over p for a mean.
std::vector<Value> vjp_reduce_scatter(const VjpContext& c) {
  const std::shared_ptr<Communicator> communicator = shared_communicator(c.node);
  const Value gathered = all_gather(c.g(), communicator, static_cast<int>(c.attrs().get_int("axis")));
  if (reduction_of(c.attrs()) == Reduction::sum) return {gathered};
  return {gathered * (1.0 / communicator->size())};
}
std::vector<Value> vjp_wait(const VjpContext& c) { return {c.g()}; }

Value build(const OpDef& op, Value x, const std::shared_ptr<Communicator>& communicator, Attributes attrs,
            SourceLoc where) {
  if (!x.defined()) throw Error("an undefined Value was passed", std::string(op.name), "", where);
  if (!communicator) throw Error("no communicator was given", std::string(op.name), "", where);
  attrs.set("communicator", std::int64_t{register_communicator(communicator)});
  const std::array<Value, 1> in{x};
  return x.graph().apply1(op, in, std::move(attrs), where);
}

std::string reduction_attribute(Reduction reduction) { return std::string(reduction_name(reduction)); }

}  // namespace

namespace ops {
const OpDef all_reduce{.name = "all_reduce",
                       .min_inputs = 1,
                       .max_inputs = 1,
                       .infer = infer_same,
                       .impure = true,
                       .vjp = vjp_all_reduce,
                       .decode = decode_as<CollectiveParams>};
const OpDef broadcast_from{.name = "broadcast_from",
                           .min_inputs = 1,
                           .max_inputs = 1,
                           .infer = infer_same,
                           .impure = true,
                           .vjp = vjp_broadcast_from,
                           .decode = decode_as<CollectiveParams>};
const OpDef reduce_to{.name = "reduce_to",
                      .min_inputs = 1,
                      .max_inputs = 1,
                      .infer = infer_same,
                      .impure = true,
                      .vjp = vjp_reduce_to,
                      .decode = decode_as<CollectiveParams>};
const OpDef all_gather{.name = "all_gather",
                       .min_inputs = 1,
                       .max_inputs = 1,
                       .infer = infer_all_gather,
                       .impure = true,
                       .vjp = vjp_all_gather,
                       .decode = decode_as<CollectiveParams>};
const OpDef reduce_scatter{.name = "reduce_scatter",
                           .min_inputs = 1,
                           .max_inputs = 1,
                           .infer = infer_reduce_scatter,
                           .impure = true,
                           .vjp = vjp_reduce_scatter,
                           .decode = decode_as<CollectiveParams>};
// The start's gradient is the whole all_reduce's (its wait passes ḡ through).
const OpDef all_reduce_start{.name = "all_reduce_start",
                             .min_inputs = 1,
                             .max_inputs = 1,
                             .infer = infer_same,
                             .impure = true,
                             .schedule_early = true,
                             .vjp = vjp_all_reduce,
                             .decode = decode_as<CollectiveParams>};
// A view: its output is the start's buffer, which the communicator has filled by then. It names
// the start's communicator too, for the kernels that need to know where the data is.
const OpDef all_reduce_wait{.name = "all_reduce_wait",
                            .min_inputs = 1,
                            .max_inputs = 1,
                            .infer = infer_wait,
                            .view = true,
                            .impure = true,
                            .vjp = vjp_wait,
                            .decode = decode_as<CollectiveParams>};
}  // namespace ops

CollectiveParams CollectiveParams::decode(const DecodeContext& context) {
  CollectiveParams p;
  p.communicator = &communicator_in(context.attrs);
  if (context.attrs.find("reduction")) p.reduction = reduction_of(context.attrs);
  if (context.attrs.find("root")) p.root = static_cast<int>(context.attrs.get_int("root"));
  if (context.attrs.find("axis"))
    p.axis = normalize_axis(static_cast<int>(context.attrs.get_int("axis")), context.inputs[0].shape.rank());
  return p;
}

Communicator& communicator_of(const Node& node) { return communicator_in(node.attrs); }

Value all_reduce(Value x, const std::shared_ptr<Communicator>& communicator, Reduction reduction, Loc where) {
  return build(ops::all_reduce, x, communicator, {{"reduction", reduction_attribute(reduction)}}, where);
}
Value broadcast_from(Value x, const std::shared_ptr<Communicator>& communicator, int root, Loc where) {
  return build(ops::broadcast_from, x, communicator, {{"root", std::int64_t{root}}}, where);
}
Value reduce_to(Value x, const std::shared_ptr<Communicator>& communicator, int root, Loc where) {
  return build(ops::reduce_to, x, communicator, {{"root", std::int64_t{root}}}, where);
}
Value all_gather(Value x, const std::shared_ptr<Communicator>& communicator, int axis, Loc where) {
  return build(ops::all_gather, x, communicator, {{"axis", std::int64_t{axis}}}, where);
}
Value reduce_scatter(Value x, const std::shared_ptr<Communicator>& communicator, int axis, Reduction reduction,
                     Loc where) {
  return build(ops::reduce_scatter, x, communicator,
               {{"axis", std::int64_t{axis}}, {"reduction", reduction_attribute(reduction)}}, where);
}
Value all_reduce_start(Value x, const std::shared_ptr<Communicator>& communicator, Reduction reduction, Loc where) {
  return build(ops::all_reduce_start, x, communicator, {{"reduction", reduction_attribute(reduction)}}, where);
}
Value all_reduce_wait(Value started, Loc where) {
  if (!started.defined() || started.node().op != &ops::all_reduce_start)
    throw Error("all_reduce_wait takes the output of an all_reduce_start", "all_reduce_wait", "", where);
  const std::array<Value, 1> in{started};
  return started.graph().apply1(ops::all_reduce_wait, in,
                                {{"communicator", started.node().attrs.get_int("communicator")}}, where);
}

}  // namespace fovea
