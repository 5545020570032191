// OpDef: everything the engine knows about one op, in one place.
//
// An op family (ops/elementwise.cpp, ops/reduce.cpp, ...) defines one OpDef per op: its name,
// how many inputs it takes, how its output types follow from its input types and attributes
// (checked when the user builds the node, so a mistake is reported at the user's line), and
// the properties the memory planner and the optimizer rely on, and how its attributes are
// decoded for its kernels. Kernels live in the backends, keyed by the op's definition and a dtype.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fovea/core/attributes.h"
#include "fovea/core/dtype.h"
#include "fovea/core/error.h"
#include "fovea/core/shape.h"

namespace fovea {

// The type of a value: element type and shape. Prints as "f32[32,784]".
struct TensorType {
  DType dtype = DType::f32;
  Shape shape;
  std::string to_string() const;
  std::size_t nbytes() const { return static_cast<std::size_t>(shape.numel()) * dtype_size(dtype); }
  friend bool operator==(const TensorType&, const TensorType&) = default;
};

struct OpDef;
class Value;
struct VjpContext;

// A gradient rule: given the node and the gradients flowing into its outputs, build (with
// ordinary ops) the gradient of each input. Returns one Value per input; an undefined Value
// means "no gradient flows to this input" (integer indices, say). Defined in ops/vjp.h.
using VjpFn = std::vector<Value> (*)(const VjpContext&);

// What shape inference sees: the input types and attributes of the node being built, and a
// way to reject them with a message that carries the node's context.
class InferContext {
 public:
  InferContext(const OpDef& op, std::span<const TensorType> inputs, const Attributes& attrs, std::string node_name,
               SourceLoc where)
      : op_(op), inputs_(inputs), attrs_(attrs), node_name_(std::move(node_name)), where_(where) {}

  const OpDef& op() const { return op_; }
  std::span<const TensorType> inputs() const { return inputs_; }
  const TensorType& input(std::size_t i) const { return inputs_[i]; }
  const Attributes& attrs() const { return attrs_; }

  // Throws fovea::Error naming the op, the node and the user's file:line.
  [[noreturn]] void fail(const std::string& message) const;
  // Checks that every input has the same dtype; names the offending input otherwise.
  void require_same_dtype() const;
  // Checks that input `i` has a floating-point dtype.
  void require_floating(std::size_t i) const;
  // Normalises an axis of a rank-`rank` input, failing with a clear message when out of range.
  int axis(std::int64_t axis, int rank) const;

 private:
  const OpDef& op_;
  std::span<const TensorType> inputs_;
  const Attributes& attrs_;
  std::string node_name_;
  SourceLoc where_;
};

using InferFn = std::vector<TensorType> (*)(const InferContext&);

// --- Decoded attributes ----------------------------------------------------------------------
// Attributes are a list of named variants: good for printing, hashing and passes, too slow and
// too loose for a kernel to read on every run. An op whose kernels need its attributes names a
// plain struct of typed fields (MatmulParams, SliceParams, ...) with a static `decode` that reads
// them, checks them and normalises them (a negative axis becomes positive) against the node's
// types. The runtime calls it once per step when it compiles a schedule; every run's kernel then
// reads the struct through KernelContext::params<P>() (backends/backend.h).

// What a decoder sees: the node's attributes and the types its kernels will be given.
struct DecodeContext {
  const Attributes& attrs;
  std::span<const TensorType> inputs;
  std::span<const TensorType> outputs;
};

// The type-erased holder of one step's decoded struct.
class DecodedParams {
 public:
  virtual ~DecodedParams() = default;
};

template <typename P>
class Decoded final : public DecodedParams {
 public:
  explicit Decoded(P value) : value(std::move(value)) {}
  const P value;
};

using DecodeFn = std::unique_ptr<const DecodedParams> (*)(const DecodeContext&);

// The DecodeFn of a params struct: OpDef{..., .decode = decode_as<MatmulParams>}.
template <typename P>
std::unique_ptr<const DecodedParams> decode_as(const DecodeContext& context) {
  return std::make_unique<const Decoded<P>>(P::decode(context));
}

// The one attribute several op families share: an axis of input 0 (or, for ops without inputs,
// of output 0), normalised to [0, rank).
struct AxisParams {
  int axis = 0;
  static AxisParams decode(const DecodeContext& context);
};

// Work and traffic of one node, for cost reports and benchmarks.
struct Cost {
  double flops = 0;
  double bytes = 0;
};

struct OpDef {
  std::string_view name;
  int min_inputs = 0;
  int max_inputs = 0;  // -1: any number (concat)
  InferFn infer = nullptr;

  // Output i depends only on the inputs at the broadcast-matching index i: elementwise
  // fusion may merge it, and output 0 may overwrite input 0 when that input dies here.
  bool elementwise = false;
  // Output 0 is input 0's bytes, reinterpreted (reshape): the planner aliases them.
  bool view = false;
  // The node's value lives outside the arena (placeholders, parameters, constants).
  bool source = false;
  // Two nodes with this op and equal inputs and attributes may still differ (random).
  bool impure = false;
  // Kernels are looked up by the dtype of input 0, or by the dtype of output 0 when this is
  // set or the op has no inputs (where(cond, a, b) is keyed by a's type, not cond's bool).
  bool key_on_output = false;
  // Writes input 1 into input 0's persistent buffer; output 0 is that buffer (ops/state.h).
  bool assigns = false;
  // Runs as early as its inputs allow, together with the nodes that exist only to feed it,
  // rather than in graph order (runtime/schedule.h): the start of an asynchronous collective,
  // which a data-parallel step builds after the whole backward pass but wants running while
  // the backward of earlier layers goes on.
  bool schedule_early = false;
  // Takes or makes bf16/f16 tensors (core/half.h). Graph::apply refuses half tensors for every
  // other op, with a message saying to cast: the half types are for mixed precision only.
  bool half_types = false;

  // The vector-Jacobian product rule that autodiff calls (autograd/grad.h). Ops whose outputs
  // are piecewise constant in their inputs (comparisons, iota, random) set differentiable to
  // false: no gradient flows through them. A differentiable op without a rule is an error
  // when someone asks for a gradient through it, not before.
  VjpFn vjp = nullptr;
  bool differentiable = true;

  // Reads the attributes into the struct the kernels use (see DecodeContext); nullptr for ops
  // whose kernels need none.
  DecodeFn decode = nullptr;
};

std::string format_types(std::span<const TensorType> types);

}  // namespace fovea
