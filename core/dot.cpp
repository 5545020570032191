#include "fovea/core/dot.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>

#include <fmt/format.h>

#include "fovea/core/printer.h"

namespace fovea {

namespace {

// --- Colours and shapes ----------------------------------------------------------------------

constexpr const char* placeholder_colour = "#c7e9c0";  // green
constexpr const char* parameter_colour = "#fdd0a2";    // orange
constexpr const char* state_colour = "#f2e6d9";        // pale brown
constexpr const char* constant_colour = "#e0e0e0";     // grey

const char* role_colour(NodeRole role) {
  switch (role) {
    case NodeRole::forward:
      return "#deebf7";  // light blue
    case NodeRole::backward:
      return "#fcd5d5";  // light red
    case NodeRole::update:
      return "#fff2b3";  // light yellow
  }
  return "#ffffff";
}

const char* role_name(NodeRole role) {
  switch (role) {
    case NodeRole::forward:
      return "forward";
    case NodeRole::backward:
      return "backward";
    case NodeRole::update:
      return "update";
  }
  return "?";
}

// A DOT quoted string. Inside quotes only '"' needs escaping for the parser, but labels give
// '\' a meaning of its own ("\n", "\l", "\N"), so a literal backslash is written "\\"; a
// newline becomes the label line break "\n".
std::string quote(std::string_view text) {
  std::string s = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\')
      s += {'\\', c};
    else if (c == '\n')
      s += "\\n";
    else if (c != '\r')
      s += c;
  }
  return s + "\"";
}

std::vector<std::string> split_scope(const std::string& scope) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start < scope.size()) {
    std::size_t slash = scope.find('/', start);
    if (slash == std::string::npos) slash = scope.size();
    parts.push_back(scope.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

std::string join_path(const std::vector<std::string>& parts, std::size_t count) {
  std::string s;
  for (std::size_t i = 0; i < count && i < parts.size(); ++i) s += (i ? "/" : "") + parts[i];
  return s;
}

std::string leaf_name(const std::string& name) {
  const std::size_t slash = name.rfind('/');
  return slash == std::string::npos ? name : name.substr(slash + 1);
}

// --- The drawing, before it is written ---------------------------------------------------------

// A scope drawn as a cluster: the statements of the items directly inside it, then its
// sub-scopes, in the order they first appear in the graph.
struct Cluster {
  std::string path;  // "enc/l0"
  std::vector<std::string> items;
  std::vector<std::size_t> folded;  // indices of the folded boxes directly inside
  std::vector<std::unique_ptr<Cluster>> children;

  Cluster& child(const std::string& name) {
    const std::string child_path = path.empty() ? name : fmt::format("{}/{}", path, name);
    for (auto& c : children)
      if (c->path == child_path) return *c;
    children.push_back(std::make_unique<Cluster>());
    children.back()->path = child_path;
    return *children.back();
  }
};

// The nodes of one folded scope (and role), drawn as a single box.
struct FoldedScope {
  std::string path;
  NodeRole role = NodeRole::forward;
  std::size_t nodes = 0;
  bool output = false;
};

// Which kinds of thing the drawing holds, for the legend.
struct Kinds {
  bool placeholder = false, parameter = false, state = false, constant = false, folded = false;
  std::set<NodeRole> roles;
};

std::string node_statement(const Graph& g, std::uint32_t id, bool is_output, bool is_sink, const DotOptions& options,
                           Kinds& kinds) {
  const Node& n = g.node(id);
  std::string label, style;
  if (n.op == &placeholder_op) {
    kinds.placeholder = true;
    label = leaf_name(n.name);
    style = fmt::format("shape=invhouse, style=filled, fillcolor=\"{}\"", placeholder_colour);
  } else if (n.op == &parameter_op) {
    const bool state = is_state(n);
    (state ? kinds.state : kinds.parameter) = true;
    label = leaf_name(n.name);
    style = fmt::format("shape=cylinder, style=filled, fillcolor=\"{}\"", state ? state_colour : parameter_colour);
  } else if (n.op == &constant_op) {
    kinds.constant = true;
    const Tensor& value = n.attrs.get_tensor("value");
    label = value.numel() == 1 ? attribute_to_string(value) : "constant";
    style = fmt::format("shape=box, style=filled, fillcolor=\"{}\", fontsize=8, height=0.2, margin=\"0.04,0.02\"",
                        constant_colour);
  } else {
    kinds.roles.insert(n.role);
    label = std::string(n.op_name());
    const std::string leaf = leaf_name(n.name);
    if (leaf != label) label += fmt::format("\n{}", leaf);
    style = fmt::format("shape=box, style=\"rounded,filled\", fillcolor=\"{}\"", role_colour(n.role));
  }
  // Placeholders and parameters always show their type: it is what they declare.
  const bool declares = n.op == &placeholder_op || n.op == &parameter_op;
  if (options.show_shapes && (declares || is_sink)) {
    std::vector<std::string> types;
    for (const TensorType& t : n.outputs) types.push_back(t.to_string());
    label += fmt::format("\n{}", fmt::join(types, ", "));
  }
  std::string tooltip = n.name;
  if (const std::string where = short_location(n.where); !where.empty()) tooltip += fmt::format(" at {}", where);
  if (!n.gradient_of.empty()) tooltip += fmt::format("\ngradient of {}", n.gradient_of);
  // A fused loop's program (ops/fused_elementwise.h): hovering shows what the node computes.
  if (const Attribute* program = n.attrs.find("program"); program && std::holds_alternative<std::string>(*program))
    tooltip += "\n" + std::get<std::string>(*program);
  return fmt::format("n{} [label={}, {}{}, tooltip={}];", id, quote(label), style, is_output ? ", peripheries=2" : "",
                     quote(tooltip));
}

std::string folded_statement(std::size_t index, const FoldedScope& box) {
  std::string label = fmt::format("{}\n{} node{}", box.path, box.nodes, box.nodes == 1 ? "" : "s");
  if (box.role != NodeRole::forward) label += fmt::format("\n[{}]", role_name(box.role));
  return fmt::format("f{} [label={}, shape=box3d, style=filled, fillcolor=\"{}\"{}, tooltip={}];", index, quote(label),
                     role_colour(box.role), box.output ? ", peripheries=2" : "", quote(box.path));
}

void write_cluster(const Cluster& cluster, const std::vector<FoldedScope>& folded, int depth, std::string& out) {
  const std::string indent(static_cast<std::size_t>(2 * depth), ' ');
  const bool is_root = cluster.path.empty();
  if (!is_root) {
    out += fmt::format("{}subgraph {} {{\n", indent, quote(fmt::format("cluster_{}", cluster.path)));
    out += fmt::format("{}  label={}; tooltip={};\n", indent, quote(leaf_name(cluster.path)), quote(cluster.path));
    out += fmt::format("{}  style=rounded; color=\"#9e9e9e\"; fontcolor=\"#616161\";\n", indent);
  }
  const std::string inner = is_root ? indent : indent + "  ";
  for (const std::string& item : cluster.items) out += inner + item + "\n";
  for (std::size_t box : cluster.folded) out += inner + folded_statement(box, folded[box]) + "\n";
  for (const auto& child : cluster.children) write_cluster(*child, folded, is_root ? depth : depth + 1, out);
  if (!is_root) out += indent + "}\n";
}

std::string legend_statement(const Kinds& kinds) {
  std::string rows;
  auto row = [&](const char* colour, const char* text) {
    rows += fmt::format("<tr><td bgcolor=\"{}\">{}</td></tr>", colour, text);
  };
  for (NodeRole role : kinds.roles) row(role_colour(role), fmt::format("{} op", role_name(role)).c_str());
  if (kinds.folded) row("#ffffff", "folded scope (node count)");
  if (kinds.placeholder) row(placeholder_colour, "placeholder (fed input)");
  if (kinds.parameter) row(parameter_colour, "parameter");
  if (kinds.state) row(state_colour, "state (not trained)");
  if (kinds.constant) row(constant_colour, "constant");
  if (rows.empty()) return "";
  return "legend [shape=plaintext, label=<<table border=\"0\" cellborder=\"1\" cellspacing=\"0\" cellpadding=\"4\">"
         "<tr><td><b>legend</b></td></tr>" +
         rows + "</table>>];";
}

// Edges: one per (drawn source, drawn destination), labelled with the types it carries. A
// value used twice by one node, or many values crossing between two folded boxes, make one
// edge; edges inside a folded box vanish.
void write_edges(const Graph& g, const std::vector<bool>& shown, const std::vector<std::string>& drawn_as,
                 const DotOptions& options, std::string& out) {
  std::vector<std::pair<std::string, std::string>> order;
  std::map<std::pair<std::string, std::string>, std::vector<std::string>> carried;
  for (std::uint32_t id = 0; id < g.size(); ++id) {
    if (!shown[id]) continue;
    for (const ValueRef& in : g.node(id).inputs) {
      const auto key = std::make_pair(drawn_as[in.node], drawn_as[id]);
      if (key.first == key.second) continue;
      const Node& source = g.node(in.node);
      std::string type = source.outputs[in.output].to_string();
      if (source.outputs.size() > 1) type = fmt::format(".{} {}", in.output, type);
      auto [it, added] = carried.emplace(key, std::vector<std::string>{});
      if (added) order.push_back(key);
      if (std::find(it->second.begin(), it->second.end(), type) == it->second.end()) it->second.push_back(type);
    }
  }
  for (const auto& key : order) {
    const std::vector<std::string>& types = carried[key];
    std::string label;
    if (options.show_shapes) {
      constexpr std::size_t max_types = 3;
      for (std::size_t i = 0; i < types.size() && i < max_types; ++i) label += (i ? "\n" : "") + types[i];
      if (types.size() > max_types) label += fmt::format("\n(+{} more)", types.size() - max_types);
    }
    out += fmt::format("  {} -> {}{};\n", key.first, key.second,
                       label.empty() ? "" : fmt::format(" [label={}]", quote(label)));
  }
}

std::string draw(const Graph& g, const std::vector<bool>& shown, const std::vector<Value>* outputs,
                 const DotOptions& options) {
  std::vector<bool> is_output(g.size(), false), consumed(g.size(), false);
  if (outputs)
    for (const Value& v : *outputs) is_output[v.ref().node] = true;
  for (std::uint32_t id = 0; id < g.size(); ++id)
    if (shown[id])
      for (const ValueRef& in : g.node(id).inputs) consumed[in.node] = true;

  // Place every shown node: as itself inside its scope's cluster, or into a folded box.
  Cluster root;
  Kinds kinds;
  std::vector<FoldedScope> folded;
  std::map<std::pair<std::string, NodeRole>, std::size_t> folded_index;
  std::vector<std::string> drawn_as(g.size());
  for (std::uint32_t id = 0; id < g.size(); ++id) {
    if (!shown[id]) continue;
    const Node& n = g.node(id);
    const std::vector<std::string> scope = split_scope(n.scope);
    const bool fold = options.max_scope_depth >= 0 && scope.size() > static_cast<std::size_t>(options.max_scope_depth);
    const std::size_t cluster_depth = fold ? static_cast<std::size_t>(options.max_scope_depth) : scope.size();
    Cluster* cluster = &root;
    for (std::size_t i = 0; i < cluster_depth; ++i) cluster = &cluster->child(scope[i]);
    if (!fold) {
      drawn_as[id] = fmt::format("n{}", id);
      cluster->items.push_back(node_statement(g, id, is_output[id], !consumed[id], options, kinds));
      continue;
    }
    const auto key = std::make_pair(join_path(scope, cluster_depth + 1), n.role);
    auto [it, added] = folded_index.emplace(key, folded.size());
    if (added) {
      folded.push_back({key.first, n.role, 0, false});
      cluster->folded.push_back(it->second);  // written once every node is counted
    }
    kinds.roles.insert(n.role);
    FoldedScope& box = folded[it->second];
    box.nodes += 1;
    box.output = box.output || is_output[id];
    drawn_as[id] = fmt::format("f{}", it->second);
  }
  kinds.folded = !folded.empty();

  std::string out = fmt::format("digraph {} {{\n", quote(g.name()));
  out += fmt::format("  graph [label={}, labelloc=t, fontname=\"Helvetica\", fontsize=14, rankdir=TB, newrank=true];\n",
                     quote(options.title.empty() ? fmt::format("graph {}", g.name()) : options.title));
  out += "  node [fontname=\"Helvetica\", fontsize=10];\n";
  out += "  edge [fontname=\"Helvetica\", fontsize=8, color=\"#616161\"];\n";
  write_cluster(root, folded, 1, out);

  write_edges(g, shown, drawn_as, options, out);
  if (options.legend)
    if (const std::string legend = legend_statement(kinds); !legend.empty()) out += fmt::format("  {}\n", legend);
  return out + "}\n";
}

// --- Files ---------------------------------------------------------------------------------------

// A name beside `path` that no other writer in this process or another one uses.
std::string temporary_name(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  return fmt::format("{}.tmp.{}.{}", path, static_cast<long>(::getpid()), counter++);
}

// A shell word: single quotes, with each ' written as '\''.
std::string shell_quote(const std::string& word) {
  std::string s = "'";
  for (char c : word) s += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return s + "'";
}

}  // namespace

std::string to_dot(const Graph& g, const DotOptions& options) {
  return draw(g, std::vector<bool>(g.size(), true), nullptr, options);
}

std::string to_dot(const Graph& g, const std::vector<Value>& outputs, const DotOptions& options) {
  return draw(g, nodes_needed_by(g, outputs), &outputs, options);
}

void write_text_file(const std::string& path, const std::string& content) {
  const std::string temporary = temporary_name(path);
  {
    std::ofstream out(temporary, std::ios::binary);
    if (!out) throw Error(fmt::format("cannot write '{}': {}", path, std::strerror(errno)));
    out << content;
    out.close();
    if (!out) {
      std::remove(temporary.c_str());
      throw Error(fmt::format("cannot write '{}': writing '{}' failed", path, temporary));
    }
  }
  std::error_code ec;
  std::filesystem::rename(temporary, path, ec);
  if (ec) {
    std::remove(temporary.c_str());
    throw Error(fmt::format("cannot write '{}': {}", path, ec.message()));
  }
}

bool write_svg(const std::string& dot_source, const std::string& svg_path, std::string* error) {
  auto fail = [&](const std::string& why) {
    if (error) *error = why;
    return false;
  };
  const std::string suffix = ".svg";
  const bool has_suffix = svg_path.size() > suffix.size() && svg_path.ends_with(suffix);
  const std::string dot_path = (has_suffix ? svg_path.substr(0, svg_path.size() - suffix.size()) : svg_path) + ".dot";
  try {
    write_text_file(dot_path, dot_source);
  } catch (const Error& e) {
    return fail(e.what());
  }
  if (std::system("command -v dot >/dev/null 2>&1") != 0)
    return fail(fmt::format("Graphviz 'dot' is not installed; wrote {} only (render it with: dot -Tsvg -o {} {})",
                            dot_path, svg_path, dot_path));

  const std::string temporary = temporary_name(svg_path);
  const std::string command = fmt::format("dot -Tsvg -o {} {} 2>&1", shell_quote(temporary), shell_quote(dot_path));
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return fail(fmt::format("could not start dot: {}", std::strerror(errno)));
  std::string messages;
  char buffer[256];
  while (std::fgets(buffer, sizeof buffer, pipe)) messages += buffer;
  const int status = ::pclose(pipe);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::remove(temporary.c_str());
    const int code = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return fail(fmt::format("dot failed on {} (exit status {}): {}", dot_path, code, messages));
  }
  std::error_code ec;
  std::filesystem::rename(temporary, svg_path, ec);
  if (ec) {
    std::remove(temporary.c_str());
    return fail(fmt::format("cannot write '{}': {}", svg_path, ec.message()));
  }
  if (error) error->clear();
  return true;
}

}  // namespace fovea
