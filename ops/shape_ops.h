// Shape ops: rearrange a tensor's elements without computing anything.
//
// Five primitives (docs/architecture.md, decision 1) and a few conveniences composed from them:
//
//   reshape       y = the same row-major elements under a new shape   [2,3,4] -> [6,4]
//   permute       y[i_0..i_{n-1}] = x[j] with j_{axes[k]} = i_k           [2,3,4] -> [4,2,3]
//   broadcast_to  NumPy broadcasting of x to a larger shape             [3,1]   -> [2,3,5]
//   slice         every step-th index in [start, end) along one axis    [7,5]   -> [3,5]
//   concat        inputs side by side along one axis                    [2,3],[4,3] -> [6,3]
//
//   transpose, squeeze, unsqueeze, flatten: built from permute and reshape, no ops of their own.
//
// Every one of them is linear, so each gradient is the op's transpose: a reshape back, the
// inverse permutation, a sum over the broadcast dims, a scatter into zeros, slices of ḡ.
//
// Every function takes the user's source location as a defaulted last argument, so that a
// bad shape or axis is reported at the user's line. Axes may be negative (-1 is the last).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "fovea/ops/elementwise.h"

namespace fovea {

// The same elements in row-major order under `shape`. One dim may be -1: it is inferred from
// the element count, which must not change. The output shares its input's buffer when the
// memory planner can arrange it (the op is a view).
Value reshape(Value x, Shape shape, Loc where = Loc::current());

// Reorders the axes: output dim i is input dim axes[i], so y[i_0, .., i_{n-1}] = x[j] with
// j[axes[k]] = i_k. `axes` must be a permutation of 0..rank-1.
Value permute(Value x, std::vector<std::int64_t> axes, Loc where = Loc::current());

// Swaps two axes (by default the last two: a batched matrix transpose).
Value transpose(Value x, std::int64_t axis0 = -2, std::int64_t axis1 = -1, Loc where = Loc::current());

// NumPy broadcasting to `shape`: x's dims are aligned to the right of `shape`, and each must
// equal the target's dim or be 1; missing leading dims are added.
Value broadcast_to(Value x, Shape shape, Loc where = Loc::current());

// Python's x[start:end:step] along `axis`: negative bounds count from the end, then bounds are
// clamped to [0, dim]; step must be at least 1. The result has ceil((end - start) / step)
// elements along `axis`, or none when end <= start.
Value slice(Value x, std::int64_t axis, std::int64_t start, std::int64_t end, std::int64_t step = 1,
            Loc where = Loc::current());

// Joins one or more tensors of the same dtype and rank along `axis`; their other dims must be
// equal.
Value concat(std::vector<Value> values, std::int64_t axis, Loc where = Loc::current());

// Removes the listed size-1 axes; with no axes, every size-1 axis. (A reshape.)
Value squeeze(Value x, std::vector<std::int64_t> axes = {}, Loc where = Loc::current());
// Inserts a size-1 axis so that it becomes output axis `axis` (-1: a new last axis). (A reshape.)
Value unsqueeze(Value x, std::int64_t axis, Loc where = Loc::current());
// Merges axes start_axis..end_axis (inclusive) into one; a scalar becomes [1]. (A reshape.)
Value flatten(Value x, std::int64_t start_axis = 0, std::int64_t end_axis = -1, Loc where = Loc::current());

// Python's rule for a slice bound: a negative index counts from the end of a dim of size
// `dim`, then the result is clamped to [0, dim]. Shared by shape inference and the kernels.
inline std::int64_t slice_bound(std::int64_t index, std::int64_t dim) {
  if (index < 0) index += dim;
  return std::clamp<std::int64_t>(index, 0, dim);
}

// What the kernels read (core/op.h, decoded attributes); concat's axis is an AxisParams.
struct PermuteParams {
  std::vector<std::int64_t> axes;  // output dim i is input dim axes[i], each in [0, rank)
  static PermuteParams decode(const DecodeContext& context);
};
struct SliceParams {
  int axis = 0;
  std::int64_t start = 0, step = 1;  // start resolved by slice_bound
  static SliceParams decode(const DecodeContext& context);
};

// The op definitions, for passes and tests that match on them.
namespace ops {
extern const OpDef reshape, permute, broadcast_to, slice, concat;
}  // namespace ops

}  // namespace fovea
