// Typed node attributes: the compile-time parameters of an op (axes, flags, a constant's
// value). Kept in a small sorted list so that printing and hashing are deterministic.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "fovea/core/dtype.h"
#include "fovea/core/tensor.h"

namespace fovea {

using Attribute = std::variant<std::int64_t, double, bool, std::string, std::vector<std::int64_t>, DType, Tensor>;

class Attributes {
 public:
  Attributes() = default;
  Attributes(std::initializer_list<std::pair<std::string, Attribute>> items);

  void set(const std::string& name, Attribute value);
  bool has(const std::string& name) const;
  const Attribute* find(const std::string& name) const;

  // Typed getters; they throw fovea::Error naming the attribute when absent or mistyped.
  std::int64_t get_int(const std::string& name) const;
  double get_float(const std::string& name) const;
  bool get_bool(const std::string& name) const;
  const std::string& get_string(const std::string& name) const;
  const std::vector<std::int64_t>& get_ints(const std::string& name) const;
  DType get_dtype(const std::string& name) const;
  const Tensor& get_tensor(const std::string& name) const;

  const std::vector<std::pair<std::string, Attribute>>& items() const { return items_; }

  // "{axes=[0,1], keepdims=true}"; tensors print as their type only, or their value if tiny.
  // "{name=value, ...}". Attributes whose name starts with '_' are left out: they encode for
  // kernels what another attribute shows for people (fused_elementwise's program).
  std::string to_string() const;

 private:
  template <typename T>
  const T& get(const std::string& name, const char* type) const;
  std::vector<std::pair<std::string, Attribute>> items_;  // sorted by name
};

std::string attribute_to_string(const Attribute& a);

}  // namespace fovea
