// Tensors in ONNX's own serialization: a TensorProto, the format of ONNX initializers and of
// the input_N.pb / output_N.pb files of ONNX's test suites.
#pragma once

#include <filesystem>
#include <string>

#include "fovea/core/tensor.h"

namespace fovea::onnx {

// Reads a serialized TensorProto; `name`, when given, receives the name the file records for it
// ("" when none). fovea::Error naming the file when it is unreadable, is not a TensorProto, or
// holds a dtype Fovea does not have (uint8, strings, ...).
Tensor read_tensor(const std::filesystem::path& path, std::string* name = nullptr);
// Writes `tensor` as a TensorProto named `name`, atomically (a temporary file, then a rename).
void write_tensor(const std::filesystem::path& path, const Tensor& tensor, const std::string& name = "");

}  // namespace fovea::onnx
