// ExploreOption: the --explore FILE option of every example.
//
//   tools::ExploreOption explore;
//   explore.add_to(app);
//   auto train = passes::compile_training_step(g, {loss}, build, backend, {.explore = explore.option()});
//
// The step's second run is then profiled and observed, and the explorer (explore/explorer.h: one
// HTML page of the graph, its passes, memory, time and values) is written to FILE. Without the
// flag, FOVEA_EXPLORE=FILE does the same for every executable the program compiles.
#pragma once

#include <cstdio>
#include <optional>
#include <string>

#include <fovea/fovea.h>
#include <CLI/CLI.hpp>

namespace fovea::tools {

struct ExploreOption {
  std::string path;

  void add_to(CLI::App& app) {
    app.add_option("--explore", path,
                   "write the explorer of the compiled step (graph, passes, memory, time, values) to this HTML file");
  }
  bool on() const { return !path.empty(); }
  // For CompileOptions::explore and TrainingStepOptions::explore: nullopt leaves it to FOVEA_EXPLORE.
  std::optional<std::string> option() const { return on() ? std::optional<std::string>(path) : std::nullopt; }

  // For an executable compiled from a graph the optimizer made (its passes recorded with
  // PipelineOptions::record_stages): runs it once more, profiled and observed, and writes the
  // page with the passes. Does nothing without --explore.
  void write(Executable& exe, const Feeds& feeds, const passes::OptimizedGraph& optimized,
             const std::vector<Value>& outputs, const std::string& title) const {
    if (!on()) return;
    exe.set_profiling(true);
    exe.set_value_statistics(true);
    exe.run(feeds);
    exe.set_profiling(false);
    exe.set_value_statistics(false);
    ExplorerContent content{.graph = &exe.graph(), .outputs = {}, .stages = optimized.stages, .executable = &exe};
    for (const Value& v : outputs) content.outputs.push_back(v.ref());
    write_explorer(path, content, {.title = title});
    std::printf("wrote the explorer to %s\n", path.c_str());
  }
};

}  // namespace fovea::tools
