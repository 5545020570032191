#include "fovea/core/printer.h"

#include <algorithm>

#include <fmt/format.h>

#include "fovea/core/needed.h"

namespace fovea {

namespace {

// Lines whose code is longer than this do not push everyone's comment further right.
constexpr std::size_t max_comment_column = 64;
// Constants with at most this many elements print their value inline.
constexpr std::int64_t max_inline_elements = 8;

bool is_plain_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == '/' || c == '-';
}

// A name as the IR writes it: bare when it cannot be misread, quoted otherwise. A leading
// digit would look like a node id ("%2"), so it is quoted too.
std::string quote_if_needed(const std::string& name) {
  const bool plain =
      !name.empty() && !(name[0] >= '0' && name[0] <= '9') && std::all_of(name.begin(), name.end(), is_plain_name_char);
  if (plain) return name;
  std::string s = "\"";
  for (char c : name) {
    if (c == '"' || c == '\\') s += '\\';
    if (c == '\n') {
      s += "\\n";
      continue;
    }
    s += c;
  }
  return s + "\"";
}

std::string element_to_string(const Tensor& t, std::int64_t i) {
  const double v = t.at(i);
  if (t.dtype() == DType::boolean) return v != 0 ? "true" : "false";
  if (is_integer(t.dtype())) return fmt::format("{}", static_cast<long long>(v));
  return fmt::format("{:g}", v);
}

// Elements [first, first + count of this dim's block) as nested brackets: "[[1, 2], [3, 4]]".
std::string nested_values(const Tensor& t, int axis, std::int64_t first) {
  if (axis == t.rank()) return element_to_string(t, first);
  const std::vector<std::int64_t> strides = t.shape().strides();
  std::string s = "[";
  for (std::int64_t i = 0; i < t.shape()[axis]; ++i) {
    if (i) s += ", ";
    s += nested_values(t, axis + 1, first + i * strides[static_cast<std::size_t>(axis)]);
  }
  return s + "]";
}

// The right-hand side of a source node: "parameter normal(0, 0.02)", "constant 1".
std::string source_text(const Node& n) {
  if (n.op == &parameter_op) {
    const std::string kind = is_state(n) ? "state" : "parameter";
    const Attribute* init = n.attrs.find("init");
    const std::string* description = init ? std::get_if<std::string>(init) : nullptr;
    return description && !description->empty() ? fmt::format("{} {}", kind, *description) : kind;
  }
  if (n.op == &constant_op) {
    const Tensor& value = n.attrs.get_tensor("value");
    if (value.numel() <= max_inline_elements) return fmt::format("constant {}", nested_values(value, 0, 0));
    return "constant";
  }
  return std::string(n.op_name());
}

std::string role_tag(NodeRole role) {
  switch (role) {
    case NodeRole::forward:
      return "";
    case NodeRole::backward:
      return "[backward]";
    case NodeRole::update:
      return "[update]";
  }
  return "";
}

// One node's statement, without the comment: "%4 = add(%2, %3) : f32[32,10]".
std::string statement(const Graph& g, std::uint32_t id, const TextOptions& options) {
  const Node& n = g.node(id);
  std::vector<std::string> results, types;
  for (std::uint32_t k = 0; k < n.outputs.size(); ++k) {
    results.push_back(value_name(g, {id, k}));
    types.push_back(n.outputs[k].to_string());
  }
  std::string s = results.empty() ? "" : fmt::format("{} = ", fmt::join(results, ", "));
  if (n.op->source) {
    s += source_text(n);
  } else {
    std::vector<std::string> args;
    for (const ValueRef& in : n.inputs) args.push_back(value_name(g, in));
    s += fmt::format("{}({})", n.op_name(), fmt::join(args, ", "));
    if (options.show_attributes && !n.attrs.items().empty()) s += fmt::format(" {}", n.attrs.to_string());
  }
  s += fmt::format(" : {}", fmt::join(types, ", "));
  if (options.roles && n.role != NodeRole::forward) s += fmt::format(" {}", role_tag(n.role));
  return s;
}

std::string print(const Graph& g, const std::vector<bool>& shown, const std::vector<Value>* outputs,
                  const TextOptions& options) {
  std::vector<std::string> arguments;
  struct Line {
    std::string code, name, location;
  };
  std::vector<Line> lines;
  for (std::uint32_t id = 0; id < g.size(); ++id) {
    if (!shown[id]) continue;
    const Node& n = g.node(id);
    if (n.op == &placeholder_op) {
      arguments.push_back(fmt::format("{}: {}", value_name(g, {id, 0}), n.outputs[0].to_string()));
      continue;
    }
    std::string location = short_location(n.where);
    // A backward node also names the forward node whose gradient rule built it.
    if (!n.gradient_of.empty())
      location += fmt::format("{}(gradient of {})", location.empty() ? "" : "  ", n.gradient_of);
    lines.push_back({statement(g, id, options), n.name, std::move(location)});
  }

  std::size_t column = 0, name_width = 0;
  for (const Line& line : lines) {
    if (line.code.size() <= max_comment_column) column = std::max(column, line.code.size());
    name_width = std::max(name_width, line.name.size());
  }

  std::string s = fmt::format("graph {}({}) {{\n", quote_if_needed(g.name()), fmt::join(arguments, ", "));
  for (const Line& line : lines) {
    std::string text = fmt::format("  {}", line.code);
    if (options.show_locations) {
      text += std::string(column > line.code.size() ? column - line.code.size() : 0, ' ');
      text += "  # ";
      if (line.location.empty())
        text += line.name;
      else
        text += fmt::format("{:<{}}  {}", line.name, name_width, line.location);
    }
    s += text + "\n";
  }
  if (outputs) {
    std::vector<std::string> names;
    for (const Value& v : *outputs) names.push_back(value_name(g, v.ref()));
    s += names.empty() ? "  return\n" : fmt::format("  return {}\n", fmt::join(names, ", "));
  }
  return s + "}\n";
}

}  // namespace

std::vector<bool> nodes_needed_by(const Graph& g, const std::vector<Value>& outputs) {
  std::vector<ValueRef> roots;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    if (!outputs[i].defined()) throw Error(fmt::format("printer: output {} is an undefined Value", i));
    if (&outputs[i].graph() != &g)
      throw Error(fmt::format("printer: output {} ('{}') belongs to graph '{}', not '{}'", i, outputs[i].name(),
                              outputs[i].graph().name(), g.name()));
    roots.push_back(outputs[i].ref());
  }
  return needed_nodes(g, roots);
}

std::string value_name(const Graph& g, ValueRef v) {
  const Node& n = g.node(v.node);
  if (n.op == &placeholder_op) return fmt::format("%{}", quote_if_needed(n.name));
  if (n.op == &parameter_op) return fmt::format("@{}", quote_if_needed(n.name));
  if (n.outputs.size() > 1) return fmt::format("%{}.{}", v.node, v.output);
  return fmt::format("%{}", v.node);
}

bool is_state(const Node& n) {
  if (n.op != &parameter_op) return false;
  const Attribute* trainable = n.attrs.find("trainable");
  return trainable && std::holds_alternative<bool>(*trainable) && !std::get<bool>(*trainable);
}

std::string short_location(const SourceLoc& where) {
  if (!where.known()) return "";
  const std::string_view file = where.file;
  std::size_t start = 0;
  const std::size_t last = file.find_last_of("/\\");
  if (last != std::string_view::npos && last > 0) {
    const std::size_t previous = file.find_last_of("/\\", last - 1);
    start = previous == std::string_view::npos ? 0 : previous + 1;
  }
  return fmt::format("{}:{}", file.substr(start), where.line);
}

std::string to_text(const Graph& g, const TextOptions& options) {
  return print(g, std::vector<bool>(g.size(), true), nullptr, options);
}

std::string to_text(const Graph& g, const std::vector<Value>& outputs, const TextOptions& options) {
  return print(g, nodes_needed_by(g, outputs), &outputs, options);
}

}  // namespace fovea
