// Converting between ONNX TensorProtos and Fovea Tensors (onnx/ internal).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "fovea/core/dtype.h"
#include "fovea/core/tensor.h"
#include "fovea/onnx/proto.h"

namespace fovea::onnx {

// ONNX's name for an element type (TensorProto::DataType): "float", "uint8", ...
std::string element_type_name(std::int32_t element_type);
// Whether Fovea has a dtype for the ONNX element type.
bool has_dtype(std::int32_t element_type);
// The Fovea dtype of an ONNX element type; fovea::Error naming `what` (the tensor or input it
// belongs to) when Fovea has none.
DType dtype_from_element_type(std::int32_t element_type, std::string_view what);
std::int32_t element_type_of(DType dtype);

// The values of a TensorProto: inline (raw_data or the typed repeated fields) or in an external
// data file, whose location is taken relative to `directory` and may not leave it. Checks that
// the data holds exactly as many elements as the dims say.
Tensor tensor_from_proto(const proto::TensorProto& tensor, const std::filesystem::path& directory);
// `tensor` as a TensorProto with raw_data (little-endian, row-major, as ONNX specifies).
void tensor_to_proto(const Tensor& tensor, proto::TensorProto& out);

}  // namespace fovea::onnx
