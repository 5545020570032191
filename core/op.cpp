#include "fovea/core/op.h"

#include <fmt/format.h>

namespace fovea {

std::string TensorType::to_string() const { return fmt::format("{}{}", dtype_name(dtype), shape.to_string()); }

std::string format_types(std::span<const TensorType> types) {
  std::string s;
  for (std::size_t i = 0; i < types.size(); ++i) {
    if (i) s += ", ";
    s += types[i].to_string();
  }
  return s;
}

void InferContext::fail(const std::string& message) const {
  throw Error(message, std::string(op_.name), node_name_, where_);
}

void InferContext::require_same_dtype() const {
  for (std::size_t i = 1; i < inputs_.size(); ++i)
    if (inputs_[i].dtype != inputs_[0].dtype)
      fail(
          fmt::format("inputs must have the same dtype, got {} (input 0) and {} (input {}); "
                      "use cast() to convert",
                      inputs_[0].to_string(), inputs_[i].to_string(), i));
}

void InferContext::require_floating(std::size_t i) const {
  if (!is_floating(inputs_[i].dtype))
    fail(fmt::format("input {} must be f32 or f64, got {}", i, inputs_[i].to_string()));
}

int InferContext::axis(std::int64_t axis, int rank) const {
  const int a = normalize_axis(static_cast<int>(axis), rank);
  if (a < 0 || axis < -rank || axis >= rank) fail(fmt::format("axis {} is out of range for rank {}", axis, rank));
  return a;
}

AxisParams AxisParams::decode(const DecodeContext& context) {
  const TensorType& type = context.inputs.empty() ? context.outputs[0] : context.inputs[0];
  return {normalize_axis(static_cast<int>(context.attrs.get_int("axis")), type.shape.rank())};
}

}  // namespace fovea
