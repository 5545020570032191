// Small ONNX models built by hand in the tests, with the protobuf classes: a model is a few
// lines, and the tests need no Python or fixture file to make one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <variant>
#include <vector>

#include <fovea/onnx/proto.h>
#include <fovea/onnx/tensor_proto.h>

namespace fovea::testing {

namespace proto = ::ONNX_NAMESPACE;

class OnnxModel {
 public:
  explicit OnnxModel(int opset = 17) {
    model_.set_ir_version(8);
    model_.set_producer_name("fovea tests");
    auto* import = model_.add_opset_import();
    import->set_domain("");
    import->set_version(opset);
    model_.mutable_graph()->set_name("test");
  }

  // An input of element type `type` (proto::TensorProto::FLOAT, ...) whose dims are numbers or
  // symbolic names.
  void input(const std::string& name, int type, const std::vector<std::variant<std::int64_t, std::string>>& dims) {
    auto* info = model_.mutable_graph()->add_input();
    info->set_name(name);
    auto* tensor = info->mutable_type()->mutable_tensor_type();
    tensor->set_elem_type(type);
    auto* shape = tensor->mutable_shape();
    for (const auto& d : dims) {
      auto* dim = shape->add_dim();
      if (std::holds_alternative<std::int64_t>(d))
        dim->set_dim_value(std::get<std::int64_t>(d));
      else
        dim->set_dim_param(std::get<std::string>(d));
    }
  }

  // An output whose shape is left to inference: every dim is named, none is sized.
  void output(const std::string& name, int type, int rank) {
    auto* info = model_.mutable_graph()->add_output();
    info->set_name(name);
    auto* tensor = info->mutable_type()->mutable_tensor_type();
    tensor->set_elem_type(type);
    auto* shape = tensor->mutable_shape();
    for (int i = 0; i < rank; ++i) shape->add_dim()->set_dim_param(name + "_" + std::to_string(i));
  }

  proto::TensorProto& initializer(const std::string& name, const Tensor& value) {
    auto* t = model_.mutable_graph()->add_initializer();
    onnx::tensor_to_proto(value, *t);
    t->set_name(name);
    return *t;
  }

  proto::NodeProto& node(const std::string& op, const std::vector<std::string>& inputs,
                         const std::vector<std::string>& outputs, const std::string& name = "") {
    auto* n = model_.mutable_graph()->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const auto& i : inputs) n->add_input(i);
    for (const auto& o : outputs) n->add_output(o);
    return *n;
  }

  static void attribute(proto::NodeProto& node, const std::string& name, std::int64_t value) {
    auto* a = node.add_attribute();
    a->set_name(name);
    a->set_type(proto::AttributeProto::INT);
    a->set_i(value);
  }

  static void attribute(proto::NodeProto& node, const std::string& name, const std::vector<std::int64_t>& values) {
    auto* a = node.add_attribute();
    a->set_name(name);
    a->set_type(proto::AttributeProto::INTS);
    for (auto v : values) a->add_ints(v);
  }

  proto::ModelProto& proto() { return model_; }
  std::string bytes() const { return model_.SerializeAsString(); }
  void save(const std::filesystem::path& path) const {
    std::ofstream out(path, std::ios::binary);
    out << bytes();
  }

 private:
  proto::ModelProto model_;
};

}  // namespace fovea::testing
