#include "fovea/onnx/tensor_proto.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <vector>

#include <fmt/format.h>

#include "fovea/core/error.h"
#include "fovea/io/checkpoint.h"
#include "fovea/onnx/tensors.h"

namespace fovea::onnx {

namespace {

using DataType = proto::TensorProto::DataType;

// Each element type ONNX defines, with its name and Fovea's dtype where there is one.
struct ElementType {
  std::int32_t onnx;
  const char* name;
  bool has_dtype;
  DType dtype;
};
constexpr ElementType kElementTypes[] = {
    {proto::TensorProto::FLOAT, "float", true, DType::f32},
    {proto::TensorProto::UINT8, "uint8", false, DType::f32},
    {proto::TensorProto::INT8, "int8", false, DType::f32},
    {proto::TensorProto::UINT16, "uint16", false, DType::f32},
    {proto::TensorProto::INT16, "int16", false, DType::f32},
    {proto::TensorProto::INT32, "int32", true, DType::i32},
    {proto::TensorProto::INT64, "int64", true, DType::i64},
    {proto::TensorProto::STRING, "string", false, DType::f32},
    {proto::TensorProto::BOOL, "bool", true, DType::boolean},
    {proto::TensorProto::FLOAT16, "float16", true, DType::f16},
    {proto::TensorProto::DOUBLE, "double", true, DType::f64},
    {proto::TensorProto::UINT32, "uint32", false, DType::f32},
    {proto::TensorProto::UINT64, "uint64", false, DType::f32},
    {proto::TensorProto::COMPLEX64, "complex64", false, DType::f32},
    {proto::TensorProto::COMPLEX128, "complex128", false, DType::f32},
    {proto::TensorProto::BFLOAT16, "bfloat16", true, DType::bf16},
};

const ElementType* find_element_type(std::int32_t onnx) {
  for (const ElementType& t : kElementTypes)
    if (t.onnx == onnx) return &t;
  return nullptr;
}

// The tensor's name for messages: "initializer 'w'", or "a tensor" when it has none.
std::string describe(const proto::TensorProto& tensor) {
  return tensor.name().empty() ? std::string("a tensor") : fmt::format("tensor '{}'", tensor.name());
}

Shape shape_of(const proto::TensorProto& tensor) {
  std::vector<std::int64_t> dims(tensor.dims().begin(), tensor.dims().end());
  std::int64_t count = 1;
  for (std::int64_t d : dims) {
    if (d < 0) throw Error(fmt::format("ONNX {} has a negative dim ({})", describe(tensor), d));
    if (d > 0 && count > std::numeric_limits<std::int64_t>::max() / d)
      throw Error(fmt::format("ONNX {} has more elements than an int64 counts", describe(tensor)));
    count *= d;
  }
  return Shape(std::move(dims));
}

// Bytes of an external data file: the keys "location", "offset" and "length" of
// external_data, the location relative to `directory` and not allowed to leave it.
std::string read_external(const proto::TensorProto& tensor, const std::filesystem::path& directory) {
  std::string location;
  std::int64_t offset = 0, length = -1;
  for (const auto& entry : tensor.external_data()) {
    if (entry.key() == "location") {
      location = entry.value();
    } else if (entry.key() == "offset" || entry.key() == "length") {
      std::int64_t& field = entry.key() == "offset" ? offset : length;
      try {
        field = std::stoll(entry.value());
      } catch (const std::exception&) {
        throw Error(fmt::format("ONNX {}: external data {} '{}' is not a number", describe(tensor), entry.key(),
                                entry.value()));
      }
    }
  }
  const std::filesystem::path relative(location);
  if (location.empty() || relative.is_absolute() || relative.lexically_normal().string().starts_with(".."))
    throw Error(fmt::format("ONNX {}: external data location '{}' must be a file beside the model", describe(tensor),
                            location));
  const std::filesystem::path file = directory / relative;
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(fmt::format("ONNX {}: cannot open its external data file {}", describe(tensor), file.string()));
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::int64_t>(in.tellg());
  if (length < 0) length = size - offset;
  if (offset < 0 || length < 0 || offset + length > size)
    throw Error(fmt::format("ONNX {}: external data [{}, {}) lies outside {} ({} bytes)", describe(tensor), offset,
                            offset + length, file.string(), size));
  std::string bytes(static_cast<std::size_t>(length), '\0');
  in.seekg(offset);
  in.read(bytes.data(), length);
  if (!in) throw Error(fmt::format("ONNX {}: cannot read its external data from {}", describe(tensor), file.string()));
  return bytes;
}

// Copies the typed repeated field holding the values into `out`, converting each element.
template <typename Field>
void copy_field(const Field& field, Tensor& out, const proto::TensorProto& tensor) {
  if (static_cast<std::int64_t>(field.size()) != out.numel())
    throw Error(
        fmt::format("ONNX {} holds {} values for its {} elements", describe(tensor), field.size(), out.numel()));
  std::byte* data = out.raw();
  for (int i = 0; i < field.size(); ++i) {
    switch (out.dtype()) {
      case DType::f32:
        reinterpret_cast<float*>(data)[i] = static_cast<float>(field[i]);
        break;
      case DType::f64:
        reinterpret_cast<double*>(data)[i] = static_cast<double>(field[i]);
        break;
      case DType::i32:
        reinterpret_cast<std::int32_t*>(data)[i] = static_cast<std::int32_t>(field[i]);
        break;
      case DType::i64:
        reinterpret_cast<std::int64_t*>(data)[i] = static_cast<std::int64_t>(field[i]);
        break;
      case DType::boolean:
        reinterpret_cast<std::uint8_t*>(data)[i] = field[i] != 0 ? 1 : 0;
        break;
      // Halves travel in int32_data as their 16-bit patterns.
      case DType::f16:
      case DType::bf16:
        reinterpret_cast<std::uint16_t*>(data)[i] = static_cast<std::uint16_t>(field[i]);
        break;
    }
  }
}

void copy_typed_fields(const proto::TensorProto& tensor, Tensor& out) {
  switch (tensor.data_type()) {
    case proto::TensorProto::FLOAT:
      copy_field(tensor.float_data(), out, tensor);
      break;
    case proto::TensorProto::DOUBLE:
      copy_field(tensor.double_data(), out, tensor);
      break;
    case proto::TensorProto::INT64:
      copy_field(tensor.int64_data(), out, tensor);
      break;
    default:
      copy_field(tensor.int32_data(), out, tensor);
      break;
  }
}

}  // namespace

std::string element_type_name(std::int32_t element_type) {
  const ElementType* t = find_element_type(element_type);
  return t ? t->name : fmt::format("element type {}", element_type);
}

bool has_dtype(std::int32_t element_type) {
  const ElementType* t = find_element_type(element_type);
  return t && t->has_dtype;
}

DType dtype_from_element_type(std::int32_t element_type, std::string_view what) {
  const ElementType* t = find_element_type(element_type);
  if (!t || !t->has_dtype)
    throw Error(
        fmt::format("{} has ONNX type {}, which Fovea does not support (it has float, double, int32, "
                    "int64, bool, float16 and bfloat16)",
                    what, element_type_name(element_type)));
  return t->dtype;
}

std::int32_t element_type_of(DType dtype) {
  for (const ElementType& t : kElementTypes)
    if (t.has_dtype && t.dtype == dtype) return t.onnx;
  throw Error(fmt::format("no ONNX element type for dtype {}", dtype_name(dtype)));
}

Tensor tensor_from_proto(const proto::TensorProto& tensor, const std::filesystem::path& directory) {
  const DType dtype = dtype_from_element_type(tensor.data_type(), "ONNX " + describe(tensor));
  if (tensor.has_segment())
    throw Error(fmt::format("ONNX {} is segmented, which Fovea does not read", describe(tensor)));
  const Shape shape = shape_of(tensor);
  const std::int64_t count = shape.numel();
  const bool external = tensor.data_location() == proto::TensorProto::EXTERNAL;
  if (external || tensor.has_raw_data()) {
    const std::string external_bytes = external ? read_external(tensor, directory) : std::string();
    const std::string& bytes = external ? external_bytes : tensor.raw_data();
    // Checked before allocating: corrupt dims must not ask for exabytes.
    if (count > static_cast<std::int64_t>(bytes.size()) ||
        bytes.size() != static_cast<std::size_t>(count) * dtype_size(dtype))
      throw Error(fmt::format("ONNX {} ({} {}) holds {} bytes of data, which is not what its dims need",
                              describe(tensor), dtype_name(dtype), shape.to_string(), bytes.size()));
    Tensor out = Tensor::empty(dtype, shape);
    if (out.nbytes() > 0) std::memcpy(out.raw(), bytes.data(), bytes.size());
    return out;
  }
  const std::int64_t values = std::max(
      {tensor.float_data_size(), tensor.double_data_size(), tensor.int64_data_size(), tensor.int32_data_size()});
  if (count != values)
    throw Error(fmt::format("ONNX {} holds {} values for its {} elements", describe(tensor), values, count));
  Tensor out = Tensor::empty(dtype, shape);
  copy_typed_fields(tensor, out);
  return out;
}

void tensor_to_proto(const Tensor& tensor, proto::TensorProto& out) {
  out.set_data_type(element_type_of(tensor.dtype()));
  out.clear_dims();
  for (std::int64_t d : tensor.shape().dims()) out.add_dims(d);
  out.set_raw_data(std::string(reinterpret_cast<const char*>(tensor.raw()), tensor.nbytes()));
}

namespace {

proto::TensorProto parse_tensor_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot open tensor file {}", path.string()));
  proto::TensorProto tensor;
  if (!tensor.ParseFromIstream(&in))
    throw Error(fmt::format("{} is not a serialized ONNX TensorProto (truncated or corrupt?)", path.string()));
  return tensor;
}

}  // namespace

Tensor read_tensor(const std::filesystem::path& path, std::string* name) {
  const proto::TensorProto tensor = parse_tensor_file(path);
  if (name) *name = tensor.name();
  try {
    return tensor_from_proto(tensor, path.parent_path());
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", path.string(), e.message()));
  }
}

void write_tensor(const std::filesystem::path& path, const Tensor& tensor, const std::string& name) {
  proto::TensorProto out;
  tensor_to_proto(tensor, out);
  out.set_name(name);
  AtomicFile file(path.string());
  file.write(out.SerializeAsString());
  file.commit();
}

}  // namespace fovea::onnx
