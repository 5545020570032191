#include "fovea/ops/vjp.h"

#include "fovea/ops/reduce.h"
#include "fovea/ops/shape_ops.h"

namespace fovea {

Value unbroadcast(Value grad, const Shape& shape) {
  const Shape& from = grad.shape();
  if (from == shape) return grad;
  const int added = from.rank() - shape.rank();
  std::vector<std::int64_t> axes;
  for (int i = 0; i < from.rank(); ++i)
    if (i < added || (shape[i - added] == 1 && from[i] != 1)) axes.push_back(i);
  Value summed = axes.empty() ? grad : reduce_sum(grad, axes, /*keepdims=*/false);
  return summed.shape() == shape ? summed : reshape(summed, shape);
}

}  // namespace fovea
