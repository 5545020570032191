#include "fovea/nn/linear.h"

#include <cmath>

#include "fovea/ops/elementwise.h"
#include "fovea/ops/matmul.h"
#include "fovea/ops/shape_ops.h"

namespace fovea::nn {

Linear::Linear(Graph& g, const std::string& layer_name, std::int64_t in, std::int64_t out, bool with_bias, DType dtype,
               std::source_location where)
    : name(layer_name) {
  auto at = g.at(where);
  auto scope = g.scope(layer_name);
  weight = g.parameter("weight", dtype, {in, out}, init::kaiming_uniform(1.0));
  // PyTorch's default bias is U(-1/√in, 1/√in); zeros train as well and are easier to reason about.
  if (with_bias) bias = g.parameter("bias", dtype, {out}, init::zeros());
}

Value Linear::operator()(Value x, std::source_location where) const {
  if (!x.defined()) throw Error("the input is an undefined Value", "linear", name, where);
  auto at = x.graph().at(where);
  auto scope = x.graph().scope(name);
  Value y;
  if (x.rank() == 2) {
    y = matmul(x, weight);
  } else {
    // Fold leading dims into the rows of one matrix product: [..., in] → [N, in] → [..., out].
    const Shape& s = x.shape();
    std::vector<std::int64_t> out_dims(s.dims().begin(), s.dims().end() - 1);
    out_dims.push_back(weight.shape()[1]);
    y = reshape(matmul(reshape(x, {-1, s[s.rank() - 1]}), weight), Shape(out_dims));
  }
  return bias.defined() ? y + bias : y;
}

}  // namespace fovea::nn
