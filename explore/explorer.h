// The explorer: one self-contained HTML file that shows every stage of a compiled graph.
//
//   auto train = passes::compile_training_step(g, {loss}, build_step, cpu(),
//                                              {.pipeline = {.record_stages = true}});
//   train.executable().set_profiling(true);
//   train.executable().set_value_statistics(true);
//   train.run(feeds);                                   // one profiled, observed step
//   fovea::write_explorer("step.html", train, {.title = "translator step"});
//
// Open step.html from disk in any current browser: no server, no network, nothing to install.
// The file holds the data as JSON, the page's JavaScript and CSS (explore/page/, written here)
// and the Graphviz-like layered layout engine dagre (Debian's node-dagre-layout, copied into the
// library when it is built), so the layout of whatever the reader unfolds is computed in the
// page. What it shows:
//
//  - Graph: the graph with scopes as boxes, folded to the top scopes at first; click a box to
//    unfold it, a node for its op, types, attributes, the user's file:line, FLOPs and bytes; pan,
//    zoom, search by name. Selecting a forward node highlights the gradient nodes its rule built
//    (Node::gradient_of), and selecting a gradient node highlights its forward node.
//  - Passes: the graph before the first pass and after every pass (and, for a training step,
//    after autodiff), each one's added and rewritten nodes marked and its removed ones listed,
//    with the fusion log: every candidate a fusion pass considered, fused or rejected and why.
//  - Memory: the plan as a timeline, each arena buffer a bar from the step that writes it to its
//    last reader at its offset, the peak marked, in-place and aliased buffers told apart.
//  - Time (when the executable was profiled): time per node and per scope, each node on a
//    roofline of this machine (runtime/machine.h says how its peak and bandwidth are measured).
//  - Values (when the executable recorded them): each value's min, max, mean, NaN and Inf
//    counts and a histogram; the first node that made a NaN or an infinity is flagged.
//
// Without a line of code: FOVEA_EXPLORE=path makes every compile() and compile_training_step()
// of a program write one (CompileOptions::explore, TrainingStepOptions::explore), and every
// example takes --explore FILE. docs/explorer.md walks through one.
#pragma once

#include <string>
#include <vector>

#include "fovea/core/graph.h"
#include "fovea/passes/pipeline.h"
#include "fovea/runtime/executable.h"

namespace fovea {

struct ExplorerOptions {
  // The page's title; the graph's name when empty.
  std::string title{};
  // Measure this machine's FMA peak and memory bandwidth for the roofline (runtime/machine.h,
  // about 0.3 s once per process). Only done when the executable was profiled.
  bool roofline = true;
  // A run that stopped in anomaly mode: the error's message, shown at the top of the page.
  std::string anomaly{};
};

// Everything the page can show. Only `graph` is required; each other part adds a view.
struct ExplorerContent {
  const Graph* graph = nullptr;
  // The values the page marks as outputs (and, without stages, the roots of the view).
  std::vector<ValueRef> outputs{};
  // The passes that produced `graph` (PassManager::record_stages): the last stage must be
  // `graph` itself. Empty: the page shows `graph` alone, as one stage.
  std::vector<passes::PassStage> stages{};
  // The compiled graph: its schedule, memory plan, profile and value statistics.
  const Executable* executable = nullptr;
};

// Writes the page to `path` (through a temporary file and a rename). Throws fovea::Error when the
// file cannot be written, or when this build of Fovea lacks dagre (Debian's node-dagre-layout
// was not installed when it was built: tools/install_deps.sh installs it).
void write_explorer(const std::string& path, const ExplorerContent& content, const ExplorerOptions& options = {});
// The compiled training step: its graph, the stages it recorded, its executable.
void write_explorer(const std::string& path, passes::CompiledTrainingStep& step, const ExplorerOptions& options = {});
// A compiled graph without a record of passes.
void write_explorer(const std::string& path, const Executable& executable, const ExplorerOptions& options = {});

// The page's JSON alone (what write_explorer embeds), for tools and tests.
std::string explorer_json(const ExplorerContent& content, const ExplorerOptions& options = {});

// Whether this build holds the layout engine (false: write_explorer throws).
bool explorer_available();

namespace detail {
// Hands the runtime and the training pipeline the functions that write pages for
// CompileOptions::explore and TrainingStepOptions::explore (they live below this layer and
// cannot call it). Done once in every program that includes this header, before main().
bool install_explore_writers();
inline const bool explore_writers_installed = install_explore_writers();
}  // namespace detail

}  // namespace fovea
