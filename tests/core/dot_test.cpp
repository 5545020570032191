#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include <fovea/fovea.h>

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::size_t count(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (std::size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++n;
  return n;
}

// Braces outside quoted strings balance and never close more than they opened.
bool braces_balance(const std::string& dot) {
  int depth = 0;
  bool quoted = false;
  for (std::size_t i = 0; i < dot.size(); ++i) {
    const char c = dot[i];
    if (quoted) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        quoted = false;
    } else if (c == '"') {
      quoted = true;
    } else if (c == '{') {
      ++depth;
    } else if (c == '}' && --depth < 0) {
      return false;
    }
  }
  return depth == 0 && !quoted;
}

// How many lines of the drawing declare a node whose id matches `id` ("n12 [label=...").
std::size_t declarations(const std::string& dot, const std::string& id = R"(n\d+)") {
  const std::regex declaration("(^|\n)\\s*" + id + " \\[");
  return static_cast<std::size_t>(
      std::distance(std::sregex_iterator(dot.begin(), dot.end(), declaration), std::sregex_iterator()));
}
std::size_t declared_nodes(const std::string& dot) { return declarations(dot); }

bool dot_installed() { return std::system("command -v dot >/dev/null 2>&1") == 0; }

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A fresh folder under the system's temporary directory, removed when the test ends.
struct TemporaryFolder {
  std::filesystem::path path;
  explicit TemporaryFolder(const std::string& name)
      : path(std::filesystem::temp_directory_path() / ("fovea_dot_test_" + name + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TemporaryFolder() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

// A small encoder-like graph: enc/l0/attn, enc/l0/mlp and enc/l1 scopes, 2 nodes each.
struct ScopedGraph {
  fovea::Graph g;
  fovea::Value x, y;
  ScopedGraph() {
    x = g.placeholder("x", fovea::f32, {2, 3});
    auto enc = g.scope("enc");
    fovea::Value h = x;
    {
      auto l0 = g.scope("l0");
      {
        auto attn = g.scope("attn");
        h = fovea::tanh(fovea::exp(h));
      }
      {
        auto mlp = g.scope("mlp");
        h = fovea::relu(fovea::neg(h));
      }
    }
    {
      auto l1 = g.scope("l1");
      y = fovea::sigmoid(fovea::sin(h));
    }
  }
};

}  // namespace

TEST_CASE("to_dot draws a nested cluster per scope, every node once and typed edges") {
  ScopedGraph s;
  const std::string dot = fovea::to_dot(s.g);

  CHECK(dot.starts_with("digraph \"main\" {"));
  CHECK(braces_balance(dot));
  CHECK(count(dot, "subgraph \"cluster_enc\" {") == 1);
  CHECK(count(dot, "subgraph \"cluster_enc/l0\" {") == 1);
  CHECK(count(dot, "subgraph \"cluster_enc/l0/attn\" {") == 1);
  CHECK(count(dot, "subgraph \"cluster_enc/l0/mlp\" {") == 1);
  CHECK(count(dot, "subgraph \"cluster_enc/l1\" {") == 1);
  CHECK(count(dot, "subgraph \"cluster_") == 5);
  // Clusters are labelled with their last component.
  CHECK(contains(dot, "label=\"attn\""));
  // "attn" sits inside "l0", which sits inside "enc".
  const auto enc = dot.find("cluster_enc\""), l0 = dot.find("cluster_enc/l0\""), attn = dot.find("cluster_enc/l0/attn");
  CHECK(enc < l0);
  CHECK(l0 < attn);

  for (std::uint32_t id = 0; id < s.g.size(); ++id) CHECK(declarations(dot, "n" + std::to_string(id)) == 1);
  CHECK(declared_nodes(dot) == s.g.size());
  CHECK(contains(dot, "n0 -> n1 [label=\"f32[2,3]\"];"));
  CHECK(count(dot, " -> ") == s.g.size() - 1);
  // Ops show their op name; the placeholder is a green "invhouse" with its type.
  CHECK(contains(dot, "label=\"exp\""));
  CHECK(contains(dot, "n0 [label=\"x\\nf32[2,3]\", shape=invhouse"));
  // The final value, consumed by nothing, shows its type on the node.
  CHECK(contains(dot, "label=\"sigmoid\\nf32[2,3]\""));
}

TEST_CASE("to_dot tells parameters, constants and placeholders apart and colours ops by role") {
  fovea::Graph g;
  auto x = g.placeholder("x", fovea::f32, {4});
  auto w = g.parameter("w", fovea::f32, {4}, fovea::init::ones());
  auto y = fovea::mul(x, w) + 1.0f;
  g.set_role(fovea::NodeRole::backward);
  auto grad = fovea::exp(y);
  g.set_role(fovea::NodeRole::update);
  auto step = fovea::sub(w, grad);
  g.set_role(fovea::NodeRole::forward);
  const std::string dot = fovea::to_dot(g, {step}, {.title = "roles"});

  CHECK(contains(dot, "label=\"roles\""));
  CHECK(contains(dot, "shape=invhouse"));
  CHECK(contains(dot, "shape=cylinder"));
  CHECK(contains(dot, "label=\"1\", shape=box, style=filled, fillcolor=\"#e0e0e0\""));
  CHECK(contains(dot, "label=\"mul\", shape=box, style=\"rounded,filled\", fillcolor=\"#deebf7\""));
  CHECK(contains(dot, "label=\"exp\", shape=box, style=\"rounded,filled\", fillcolor=\"#fcd5d5\""));
  CHECK(contains(dot, "fillcolor=\"#fff2b3\", peripheries=2"));  // the update node, an output
  for (const char* entry : {"forward op", "backward op", "update op", "placeholder", "parameter", "constant"})
    CHECK(contains(dot, entry));
  CHECK_FALSE(contains(dot, "state (not trained)"));

  fovea::Graph h;
  auto moment = h.state("moment", fovea::f32, {4}, fovea::init::zeros());
  const std::string with_state = fovea::to_dot(h, {fovea::exp(moment)});
  CHECK(contains(with_state, "shape=cylinder, style=filled, fillcolor=\"#f2e6d9\""));
  CHECK(contains(with_state, "state (not trained)"));
  CHECK(braces_balance(dot));
}

TEST_CASE("to_dot with outputs leaves out the nodes they do not depend on") {
  fovea::Graph g;
  auto x = g.placeholder("x", fovea::f32, {4});
  auto other = g.placeholder("other", fovea::f32, {4});
  auto kept = fovea::exp(x);
  fovea::cos(other);
  const std::string dot = fovea::to_dot(g, {kept});
  CHECK(declared_nodes(dot) == 2);
  CHECK_FALSE(contains(dot, "other"));
  CHECK_FALSE(contains(dot, "cos"));
  CHECK(contains(dot, "n2 [label=\"exp\\nf32[4]\""));
  CHECK(contains(dot, "peripheries=2"));
}

TEST_CASE("to_dot with max_scope_depth folds deeper scopes into one box each with merged edges") {
  ScopedGraph s;
  const std::string full = fovea::to_dot(s.g);
  const std::string folded = fovea::to_dot(s.g, fovea::DotOptions{.max_scope_depth = 1});

  CHECK(braces_balance(folded));
  CHECK(declared_nodes(folded) < declared_nodes(full));
  CHECK(declared_nodes(folded) == 1);  // only the placeholder stays a node of its own
  CHECK(contains(folded, "label=\"enc/l0\\n4 nodes\""));
  CHECK(contains(folded, "label=\"enc/l1\\n2 nodes\""));
  CHECK(count(folded, "subgraph \"cluster_") == 1);  // "enc" still drawn as a cluster
  CHECK_FALSE(contains(folded, "cluster_enc/l0"));
  CHECK(count(folded, "shape=box3d") == 2);
  // One edge from the placeholder into enc/l0, one from enc/l0 to enc/l1, none inside a box.
  CHECK(count(folded, " -> ") == 2);
  CHECK(contains(folded, "n0 -> f0 [label=\"f32[2,3]\"];"));
  CHECK(contains(folded, "f0 -> f1 [label=\"f32[2,3]\"];"));
  CHECK(contains(folded, "folded scope"));

  const std::string top = fovea::to_dot(s.g, fovea::DotOptions{.max_scope_depth = 0});
  CHECK(contains(top, "label=\"enc\\n6 nodes\""));
  CHECK(count(top, "subgraph \"cluster_") == 0);
}

TEST_CASE("to_dot merges the edges between two folded boxes into one listing the types") {
  fovea::Graph g;
  auto x = g.placeholder("x", fovea::f32, {3});
  auto x64 = g.placeholder("x64", fovea::f64, {3});
  fovea::Value a, b;
  {
    auto s = g.scope("first");
    a = fovea::exp(x);
    b = fovea::exp(x64);
  }
  {
    auto s = g.scope("second");
    fovea::add(a, a);
    fovea::mul(a, a);
    fovea::neg(b);
  }
  const std::string dot = fovea::to_dot(g, fovea::DotOptions{.max_scope_depth = 0});
  CHECK(count(dot, "f0 -> f1") == 1);
  CHECK(contains(dot, "f0 -> f1 [label=\"f32[3]\\nf64[3]\"];"));
  CHECK(contains(fovea::to_dot(g, fovea::DotOptions{.max_scope_depth = 0, .show_shapes = false}), "f0 -> f1;"));
}

TEST_CASE("to_dot escapes quotes, backslashes and newlines in names") {
  fovea::Graph g("say \"hi\"");
  auto x = g.placeholder("a\"b\\c", fovea::f32, {2});
  fovea::Value y;
  {
    auto s = g.scope("odd \"scope\"");
    y = fovea::exp(x);
  }
  const std::string dot = fovea::to_dot(g, {.title = "line one\nline \"two\""});
  CHECK(contains(dot, "digraph \"say \\\"hi\\\"\" {"));
  CHECK(contains(dot, "label=\"a\\\"b\\\\c\\nf32[2]\""));
  CHECK(contains(dot, "subgraph \"cluster_odd \\\"scope\\\"\" {"));
  CHECK(contains(dot, "label=\"line one\\nline \\\"two\\\"\""));
  CHECK(braces_balance(dot));

  if (dot_installed()) {
    TemporaryFolder folder("escape");
    std::string error;
    CHECK_MESSAGE(fovea::write_svg(dot, (folder.path / "odd.svg").string(), &error), error);
  }
}

TEST_CASE("write_svg writes the DOT source beside the SVG and renders it when dot is installed") {
  ScopedGraph s;
  TemporaryFolder folder("svg");
  const auto svg = folder.path / "graph.svg";
  std::string error;
  const bool rendered = fovea::write_svg(fovea::to_dot(s.g), svg.string(), &error);

  CHECK(std::filesystem::exists(folder.path / "graph.dot"));
  CHECK(read_file(folder.path / "graph.dot") == fovea::to_dot(s.g));
  if (dot_installed()) {
    REQUIRE_MESSAGE(rendered, error);
    const std::string content = read_file(svg);
    CHECK((content.starts_with("<?xml") || contains(content, "<svg")));
    CHECK(contains(content, "enc/l0/attn"));  // a cluster's tooltip
  } else {
    CHECK_FALSE(rendered);
    CHECK(contains(error, "dot"));
  }
  // Only the two files remain: the temporary ones were renamed.
  CHECK(std::distance(std::filesystem::directory_iterator(folder.path), std::filesystem::directory_iterator()) ==
        (rendered ? 2 : 1));
}

TEST_CASE("write_svg reports a failure of dot or an unwritable path instead of throwing") {
  TemporaryFolder folder("fail");
  std::string error;
  bool ok = true;
  CHECK_NOTHROW(ok = fovea::write_svg("digraph {", (folder.path / "broken.svg").string(), &error));
  CHECK_FALSE(ok);
  CHECK_FALSE(error.empty());
  CHECK_FALSE(std::filesystem::exists(folder.path / "broken.svg"));

  error.clear();
  CHECK_NOTHROW(ok = fovea::write_svg("digraph {}", (folder.path / "missing" / "g.svg").string(), &error));
  CHECK_FALSE(ok);
  CHECK(contains(error, "missing"));
}

TEST_CASE("write_text_file replaces a file's content and throws fovea::Error naming an unwritable path") {
  TemporaryFolder folder("text");
  const auto path = folder.path / "note.txt";
  fovea::write_text_file(path.string(), "first");
  fovea::write_text_file(path.string(), "second\n");
  CHECK(read_file(path) == "second\n");

  const std::string bad = (folder.path / "no_such_folder" / "note.txt").string();
  CHECK_THROWS_AS(fovea::write_text_file(bad, "x"), fovea::Error);
  try {
    fovea::write_text_file(bad, "x");
  } catch (const fovea::Error& e) {
    CHECK(contains(e.what(), bad));
  }
}
