// Creation ops: tensors made from nothing but their shape (fill, iota, random) and dtype
// conversion (cast).
//
//   cast(x, to)                    out[i] = convert<to>(x[i])
//   fill(g, shape, v)              out[i] = v
//   iota(g, shape, axis)           out[i0, ..., ik] = i_axis
//   random_uniform(g, shape)       out[i] = low + (high - low) · U(seed, stream + step, i)
//   random_normal(g, shape)        out[i] = mean + stddev · N(seed, stream + step, i)
//
// Unlike Graph::constant, fill, iota and the random ops store no tensor in the graph: a
// zeros of a billion elements costs one node until it runs.
//
// Random numbers come from Philox (core/philox.h): element i is a pure function of the
// graph's seed at build time, the node's stream and i, so every thread count (and the GPU)
// draws the same numbers. The stream is a hash of the node's scoped name: the same name under
// the same seed gives the same numbers in any graph. `step`, an optional i64 rank-0 input,
// shifts the stream so that a training loop feeding its step counter draws fresh numbers at
// every step (dropout masks).
//
// Gradients: cast between floating types (f32, f64, bf16, f16) passes ḡ through (cast back);
// fill, iota and the random ops are not differentiable.
#pragma once

#include <cstdint>

#include "fovea/ops/elementwise.h"

namespace fovea {

// Converts every element to `to`; returns x itself when it already has that dtype.
//   to bool:          x != 0 (NaN gives true)
//   bool to numbers:  0 or 1
//   float to int:     truncation toward zero, saturating at the integer type's limits; NaN gives 0
//   int to narrower:  wraps modulo 2^32 (i64 to i32), as NumPy and C++20 do
//   to float:         rounds to nearest (f64 beyond f32's range gives ±inf)
//   to bf16 or f16:   through f32, rounding to nearest-even (core/half.h); beyond the range ±inf
Value cast(Value x, DType to, Loc where = Loc::current());

// A tensor of `shape` with `value` everywhere. The value must be exact in `dtype` (integers
// take only integral numbers in range, bool 0 or 1: core/exact_number.h); an error otherwise.
Value fill(Graph& g, Shape shape, double value, DType dtype = DType::f32, Loc where = Loc::current());
Value zeros(Graph& g, Shape shape, DType dtype = DType::f32, Loc where = Loc::current());
Value ones(Graph& g, Shape shape, DType dtype = DType::f32, Loc where = Loc::current());
// Fills with the shape and dtype of `like`, in `like`'s graph.
Value zeros_like(Value like, Loc where = Loc::current());
Value ones_like(Value like, Loc where = Loc::current());
Value full_like(Value like, double value, Loc where = Loc::current());

// out[idx] = idx[axis]: counts 0, 1, 2, ... along `axis`, repeated over the other dims.
// Numeric dtypes only; iota(g, {n}, 0) is NumPy's arange(n).
Value iota(Graph& g, Shape shape, std::int64_t axis, DType dtype = DType::i64, Loc where = Loc::current());

// Uniform numbers in [low, high) (f32 or f64).
Value random_uniform(Graph& g, Shape shape, DType dtype = DType::f32, double low = 0.0, double high = 1.0,
                     Value step = {}, Loc where = Loc::current());
// Normal numbers with the given mean and standard deviation (f32 or f64).
Value random_normal(Graph& g, Shape shape, DType dtype = DType::f32, double mean = 0.0, double stddev = 1.0,
                    Value step = {}, Loc where = Loc::current());

// What the kernels read (core/op.h, decoded attributes). iota's axis is an AxisParams.
struct FillParams {
  double value = 0;
  static FillParams decode(const DecodeContext& context);
};
struct UniformParams {
  std::uint64_t seed = 0, stream = 0;  // the stream before adding the step (input 0, if any)
  double low = 0, high = 1;
  static UniformParams decode(const DecodeContext& context);
};
struct NormalParams {
  std::uint64_t seed = 0, stream = 0;
  double mean = 0, stddev = 1;
  static NormalParams decode(const DecodeContext& context);
};

namespace ops {
extern const OpDef cast, fill, iota, random_uniform, random_normal;
}  // namespace ops

}  // namespace fovea
