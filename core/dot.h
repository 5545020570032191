// The graph drawn with Graphviz: DOT source, and an SVG when the `dot` tool is installed.
//
//   fovea::write_svg(fovea::to_dot(g, {probs}, {.title = "quickstart"}), "out/quickstart.svg");
//
// What the drawing shows:
//  - nodes grouped in nested boxes by scope: "enc/l0/attn" sits in "attn" inside "l0" inside
//    "enc" (each box labelled with its last component);
//  - placeholders as green "invhouse" arrows, parameters as orange cylinders, constants as
//    small grey boxes, ops as rounded boxes labelled with the op and the node's own name;
//  - ops filled by role: forward light blue, backward light red, optimizer update light
//    yellow, with a legend of the kinds that appear;
//  - every edge labelled with the type of the value it carries ("f32[32,784]");
//  - outputs (when asked for) with a double border; a hover tooltip with the node's scoped
//    name, the user's file:line and, for a backward node, the forward node whose gradient
//    rule built it.
//
// Big graphs fold: with max_scope_depth = 1, every scope two levels deep ("encoder/layer0")
// becomes one box saying how many nodes it holds, and the edges between boxes are merged.
#pragma once

#include <string>
#include <vector>

#include "fovea/core/graph.h"

namespace fovea {

struct DotOptions {
  // How many levels of scopes to draw as nested clusters; nodes in deeper scopes fold into
  // one box per scope at depth max_scope_depth + 1 (and per role, so that a scope's forward
  // and backward nodes stay apart). 0 folds every top-level scope; -1 folds nothing.
  int max_scope_depth = -1;
  // Types on edges (and on the nodes whose values nothing in the drawing consumes).
  bool show_shapes = true;
  // The caption; the graph's name when empty.
  std::string title{};
  // A small table explaining the colours and shapes that appear.
  bool legend = true;
};

// The whole graph. Name the options' type when no outputs are given:
// to_dot(g, DotOptions{.max_scope_depth = 1}); GCC 12 reads a bare {.max_scope_depth = 1} as
// a possible std::vector<Value> too, and rejects the call as ambiguous.
std::string to_dot(const Graph& g, const DotOptions& options = {});
// Only the nodes `outputs` depend on; the outputs get a double border.
std::string to_dot(const Graph& g, const std::vector<Value>& outputs, const DotOptions& options = {});

// Writes `dot_source` to `svg_path` with ".svg" replaced by ".dot" (appended when the path
// has no ".svg"), then renders it with `dot -Tsvg` into `svg_path`. Returns false, and says
// why in `*error`, when the tool is missing, it fails, or a file cannot be written; never
// throws for any of these: a drawing is a nicety, not a reason to stop a program.
bool write_svg(const std::string& dot_source, const std::string& svg_path, std::string* error = nullptr);

// Writes `content` to `path` through a temporary file and a rename, so that a reader never
// sees half a file. Throws fovea::Error naming the path when it cannot be written.
void write_text_file(const std::string& path, const std::string& content);

}  // namespace fovea
