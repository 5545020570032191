// The ONNX protobuf classes, for the .cpp files of onnx/ only: the public headers of onnx/
// speak Fovea's types, so that a user of the library needs no protobuf headers.
#pragma once

#include <onnx/onnx_pb.h>

namespace fovea::onnx {

// ::onnx, the namespace of the generated classes, by a name that cannot be confused with
// fovea::onnx.
namespace proto = ::ONNX_NAMESPACE;

}  // namespace fovea::onnx
