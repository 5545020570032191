#include "fovea/core/attributes.h"

#include <algorithm>

#include <fmt/format.h>

#include "fovea/core/error.h"

namespace fovea {

Attributes::Attributes(std::initializer_list<std::pair<std::string, Attribute>> items) {
  for (const auto& [name, value] : items) set(name, value);
}

void Attributes::set(const std::string& name, Attribute value) {
  auto it = std::lower_bound(items_.begin(), items_.end(), name,
                             [](const auto& item, const std::string& key) { return item.first < key; });
  if (it != items_.end() && it->first == name)
    it->second = std::move(value);
  else
    items_.insert(it, {name, std::move(value)});
}

const Attribute* Attributes::find(const std::string& name) const {
  auto it = std::lower_bound(items_.begin(), items_.end(), name,
                             [](const auto& item, const std::string& key) { return item.first < key; });
  return (it != items_.end() && it->first == name) ? &it->second : nullptr;
}

bool Attributes::has(const std::string& name) const { return find(name) != nullptr; }

template <typename T>
const T& Attributes::get(const std::string& name, const char* type) const {
  const Attribute* a = find(name);
  if (!a) throw Error(fmt::format("attribute '{}' is missing", name));
  const T* v = std::get_if<T>(a);
  if (!v) throw Error(fmt::format("attribute '{}' is not of type {}", name, type));
  return *v;
}

std::int64_t Attributes::get_int(const std::string& n) const { return get<std::int64_t>(n, "int"); }
double Attributes::get_float(const std::string& n) const { return get<double>(n, "float"); }
bool Attributes::get_bool(const std::string& n) const { return get<bool>(n, "bool"); }
const std::string& Attributes::get_string(const std::string& n) const { return get<std::string>(n, "string"); }
const std::vector<std::int64_t>& Attributes::get_ints(const std::string& n) const {
  return get<std::vector<std::int64_t>>(n, "int list");
}
DType Attributes::get_dtype(const std::string& n) const { return get<DType>(n, "dtype"); }
const Tensor& Attributes::get_tensor(const std::string& n) const { return get<Tensor>(n, "tensor"); }

std::string attribute_to_string(const Attribute& a) {
  struct Printer {
    std::string operator()(std::int64_t v) const { return std::to_string(v); }
    std::string operator()(double v) const { return fmt::format("{:g}", v); }
    std::string operator()(bool v) const { return v ? "true" : "false"; }
    std::string operator()(const std::string& v) const { return fmt::format("\"{}\"", v); }
    std::string operator()(const std::vector<std::int64_t>& v) const { return fmt::format("[{}]", fmt::join(v, ",")); }
    std::string operator()(DType v) const { return std::string(dtype_name(v)); }
    std::string operator()(const Tensor& v) const {
      if (v.numel() == 1)
        return is_floating(v.dtype()) ? fmt::format("{:g}", v.item())
                                      : fmt::format("{}", static_cast<long long>(v.item()));
      if (v.numel() <= 4) return v.to_string();
      return fmt::format("<{}{}>", dtype_name(v.dtype()), v.shape().to_string());
    }
  };
  return std::visit(Printer{}, a);
}

std::string Attributes::to_string() const {
  std::string s;
  for (const auto& [name, value] : items_) {
    if (name.starts_with('_')) continue;  // a machine encoding, shown readably by another attribute
    s += (s.empty() ? "{" : ", ") + name + "=" + attribute_to_string(value);
  }
  return s.empty() ? s : s + "}";
}

}  // namespace fovea
