// The text IR: a graph printed one node per line, to read, diff and paste into a bug report.
//
//   graph main(%x: f32[32,784]) {
//     @mlp/w = parameter normal(0, 0.02) : f32[784,10]  # mlp/w        quickstart/main.cpp:20
//     %2 = matmul(%x, @mlp/w) {transpose_a=false, transpose_b=false} : f32[32,10]  # mlp/matmul quickstart/main.cpp:21
//     %3 = constant 1 : f32[]                           # mlp/constant quickstart/main.cpp:21
//     %4 = add(%2, %3) : f32[32,10]                     # mlp/add      quickstart/main.cpp:21
//     return %4
//   }
//
// Names follow SSA conventions:
//   %x      a placeholder (a graph argument, listed in the header with its type)
//   @mlp/w  a parameter (or non-trainable state), by its scoped name
//   %4      the output of node 4 (node ids are the graph's creation order)
//   %4.1    output 1 of a node with several outputs
// A name that could be misread (spaces, quotes, a leading digit) is quoted: %"my x".
// Every line shows its types; the comment gives the node's scoped name and the user's
// file:line (the file as its last two path components), aligned in a column that a few very
// long lines may overshoot (one line per node matters more than a perfect column). A node a
// gradient rule built ends its comment with "(gradient of mlp/matmul)": the forward node whose
// rule it was (Node::gradient_of).
#pragma once

#include <string>
#include <vector>

#include "fovea/core/graph.h"

namespace fovea {

struct TextOptions {
  // The "# name  file:line" comment after each node (with "(gradient of ...)" on backward nodes).
  bool show_locations = true;
  // The "{axis=1, keepdims=true}" attributes of ops.
  bool show_attributes = true;
  // A "[backward]" or "[update]" tag on nodes autodiff or an optimizer built (forward nodes,
  // the common case, carry no tag).
  bool roles = true;
};

// The whole graph, every node in creation order. No return line: a graph has no outputs of
// its own until someone asks for some. Without outputs, name the options' type:
// to_text(g, TextOptions{.show_locations = false}) (GCC 12 finds the bare braces ambiguous).
std::string to_text(const Graph& g, const TextOptions& options = {});

// Only the nodes `outputs` depend on, ending with "return %a, %b".
std::string to_text(const Graph& g, const std::vector<Value>& outputs, const TextOptions& options = {});

// The nodes that `outputs` depend on (outputs included): needed[id] is true for each.
// Throws fovea::Error when an output is undefined or belongs to another graph.
std::vector<bool> nodes_needed_by(const Graph& g, const std::vector<Value>& outputs);

// The IR's name for a value: "%x", "@mlp/w", "%4" or "%4.1".
std::string value_name(const Graph& g, ValueRef v);

// True for persistent buffers that optimizers skip (Graph::state): both printers show them
// apart from trainable parameters.
bool is_state(const Node& n);

// "quickstart/main.cpp:21": the file's last two path components and the line; "" if unknown.
std::string short_location(const SourceLoc& where);

}  // namespace fovea
