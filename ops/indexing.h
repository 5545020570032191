// Indexing ops: gather (NumPy's take), its adjoint scatter_add, and where (a three-way select).
//
//   gather(x, ids, axis)           out[a.., p.., b..] = x[a.., ids[p..], b..]
//   scatter_add(t, ids, u, axis)   out = t;  out[a.., ids[p..], b..] += u[a.., p.., b..]
//   where(cond, a, b)              out[i] = cond[i] ? a[i] : b[i]   (NumPy broadcasting)
//
// `a..` stands for the dims before `axis`, `b..` for those after it, and `p..` for every
// position of the index tensor. An embedding lookup is gather(table [V,D], ids [B,T], 0),
// giving [B,T,D]; its gradient is scatter_add(zeros [V,D], ids, grad [B,T,D], 0).
//
// Gradient rules (beside the OpDefs): gather and scatter_add are each other's adjoints, where
// routes ḡ to the branch it took; no gradient flows to indices or to the condition.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "fovea/ops/elementwise.h"

namespace fovea {

// Picks slices of `x` along `axis` at `indices` (i32 or i64): the output's shape is
// x.shape[:axis] + indices.shape + x.shape[axis+1:]. An index outside [0, x.shape[axis])
// raises fovea::Error when the graph runs, naming the index, its position and the valid range.
Value gather(Value x, Value indices, std::int64_t axis, Loc where = Loc::current());

// The adjoint of gather: a copy of `target` with every slice of `updates` added into the
// slice of `target` its index names. Repeated indices accumulate. `updates` must have the
// shape target.shape[:axis] + indices.shape + target.shape[axis+1:]. Numeric dtypes only;
// integer sums wrap around on overflow. The result is the same on any thread count.
Value scatter_add(Value target, Value indices, Value updates, std::int64_t axis, Loc where = Loc::current());

// Elementwise select: cond ? a : b, with `cond` bool and `a`, `b` of one dtype; the output's
// shape is the NumPy broadcast of all three shapes.
Value where(Value cond, Value a, Value b, Loc where = Loc::current());

// `indices` unchanged, once every element has been checked to lie in [0, count) or to equal
// `allowed` (an ignore index). A class index a loss would otherwise treat as "no class" raises
// fovea::Error when the graph runs, naming the node, the value and its position. `what` names the
// values in that message ("target class"), `allowed_what` the allowed value ("the ignore_index").
// The output shares the input's buffer (a view); no gradient flows through it.
Value check_indices(Value indices, std::int64_t count, std::optional<std::int64_t> allowed = std::nullopt,
                    const std::string& what = "index", const std::string& allowed_what = "the allowed value",
                    Loc where = Loc::current());
// The message both backends raise when gather or scatter_add finds `index` at flat position
// `position` of `indices`, outside [0, x.shape[axis]); `what` names x ("x", "target").
std::string gather_index_message(const TensorType& x, const TensorType& indices, int axis, std::int64_t position,
                                 std::int64_t index, const char* what);

// What check_indices's kernels read (core/op.h, decoded attributes); gather and scatter_add's
// axis is an AxisParams.
struct CheckIndicesParams {
  std::int64_t count = 0;
  std::optional<std::int64_t> allowed;
  std::string what, allowed_what;
  static CheckIndicesParams decode(const DecodeContext& context);
};
// The message both backends raise when check_indices finds `value` at flat position `position`.
std::string check_indices_message(const CheckIndicesParams& params, const TensorType& indices, std::int64_t position,
                                  std::int64_t value);

namespace ops {
extern const OpDef gather, scatter_add, where, check_indices;
}  // namespace ops

}  // namespace fovea
