#include <fmt/format.h>

#include "fovea/onnx/converter.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/indexing.h"

namespace fovea::onnx {

std::int64_t normalize_axis(const NodeContext& ctx, std::int64_t axis, std::int64_t rank) {
  if (axis < -rank || axis >= rank) ctx.invalid(fmt::format("axis {} is outside [-{}, {})", axis, rank, rank));
  return axis < 0 ? axis + rank : axis;
}

Value int64_constant(Graph& graph, const std::vector<std::int64_t>& values, std::optional<Shape> shape) {
  Shape s = shape ? *shape : Shape{static_cast<std::int64_t>(values.size())};
  return graph.constant(Tensor::from<std::int64_t>(values, std::move(s)));
}

Value wrap_negative_indices(Value indices, std::int64_t dim) {
  if (indices.dtype() != DType::i64) indices = cast(indices, DType::i64);
  return where(less(indices, scalar_like(indices, 0.0)), indices + static_cast<double>(dim), indices);
}

Value flat_positions(Value indices, const Shape& data_shape, std::int64_t axis) {
  const Shape& shape = indices.shape();
  Value position = wrap_negative_indices(indices, data_shape[static_cast<int>(axis)]);
  std::int64_t stride = 1;
  Value flat;
  for (int d = shape.rank() - 1; d >= 0; --d) {
    const Value coordinate = d == axis ? position : iota(indices.graph(), shape, d, DType::i64);
    const Value term = stride == 1 ? coordinate : coordinate * static_cast<double>(stride);
    flat = flat.defined() ? flat + term : term;
    stride *= data_shape[d];
  }
  return flat;
}

}  // namespace fovea::onnx
