// PassManager: an ordered list of named passes, run one after the other, that you can watch.
//
//   passes::PassManager pm;
//   pm.add("cse", passes::eliminate_common_subexpressions).add("dce", passes::eliminate_dead_code);
//   passes::OptimizedGraph opt = pm.run(g, {loss});
//   std::puts(opt.report().c_str());            // one line per pass: nodes before/after, rewrites
//   auto exe = compile(*opt.graph, opt.outputs);
//   exe.run({{opt.value(x), batch}});            // the optimized graph's own placeholder
//
// Each pass turns a graph into a new one (passes/rewriter.h), so the manager keeps the chain of
// value maps and composes them: OptimizedGraph::value_map takes a value of the user's graph to
// its counterpart in the final graph (values the passes removed or fused away are absent).
//
// Watching it work:
//   FOVEA_DUMP=DIR (or dump_to(DIR)) writes DIR/00-input.txt and DIR/NN-<pass>.txt after every
//     pass: the whole graph as text IR (core/printer.h) with its outputs, headed by what the pass
//     did; and DIR/NN-<pass>.svg, the nodes the outputs need drawn with Graphviz (core/dot.h),
//     when `dot` is installed. Page through them to see each rewrite happen.
//   FOVEA_DISABLE_PASSES=cse,fold (or disable("cse")) skips passes by name.
//   FOVEA_VERIFY=1 (or verify_each(true); on by default in debug builds) runs Graph::verify()
//     after every pass, so a broken rewrite is caught at the pass that made it.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fovea/passes/rewriter.h"

namespace fovea::passes {

// What one pass of a run did.
struct PassReport {
  std::string name;
  bool ran = false;  // false when disabled
  PassStats stats;
  double milliseconds = 0;
};

// The graph as it stood at one point of a run that records its stages (record_stages): before
// the first pass, or after one. A viewer pages through them to watch each rewrite happen, in
// memory rather than through FOVEA_DUMP's files.
struct PassStage {
  // "input" for the graph before the first pass, then each pass's name; "autodiff" for the
  // step graph build_step made in the training pipeline (pipeline.h).
  std::string name;
  // The pipeline the stage belongs to: "forward" or "step" in the training pipeline (the
  // names forward_pipeline and step_pipeline give their managers), "" for a plain manager.
  std::string pipeline;
  // The stage's graph. Graphs only grow, and a later step may append to this one (build_step
  // extends the optimized forward graph), so the stage is its first node_count nodes.
  const Graph* graph = nullptr;
  std::size_t node_count = 0;
  // The outputs, then the updates, at this stage, as values of *graph.
  std::vector<ValueRef> roots;
  // The pass's line of the table (ran is false for a disabled pass, whose graph is the previous
  // stage's); empty for "input" and "autodiff".
  PassReport report;
};

// The result of a run: the optimized graph, the requested values in it, and the record.
struct OptimizedGraph {
  std::unique_ptr<Graph> graph;
  std::vector<Value> outputs;              // the outputs asked for, in order, as values of `graph`
  std::vector<Value> updates;              // the updates asked for, likewise
  std::map<ValueRef, ValueRef> value_map;  // user's graph → `graph`, for the values that remain
  std::vector<PassReport> passes;
  // Filled only when the manager records stages: "input", then one stage per pass, disabled
  // ones too (and a "copy" when every pass was disabled, so that the last stage is always
  // `graph`). The input stage points at the user's graph, which must outlive this record; the
  // last one points at `graph`. Empty otherwise, and then no intermediate graph is kept.
  std::vector<PassStage> stages;
  // The graphs between the input and `graph` that `stages` point at, kept alive for them. They
  // are heap objects, so moving this OptimizedGraph leaves every stage's pointer valid.
  std::vector<std::shared_ptr<const Graph>> stage_graphs;

  // Whether a value of the user's graph survived, and its counterpart: the placeholder to feed,
  // the parameter to hand an optimizer. Throws fovea::Error naming the value when it was
  // removed (not needed by the outputs, or fused into a bigger node).
  bool has(const Value& original) const;
  Value value(const Value& original) const;

  // One line per pass: its name, nodes before and after, time, and rewrites by kind.
  std::string report() const;
};

class PassManager {
 public:
  // Reads FOVEA_DUMP, FOVEA_DISABLE_PASSES and FOVEA_VERIFY; the calls below override them.
  PassManager();

  // Appends a pass; the same name may appear twice (dce at the start and at the end).
  PassManager& add(std::string name, PassFunction pass);
  // Skips every pass of this name; throws fovea::Error at run() when no pass has that name.
  PassManager& disable(const std::string& name);
  PassManager& enable(const std::string& name);
  bool enabled(const std::string& name) const;
  std::vector<std::string> names() const;

  // Writes the dumps into `directory` (created if needed); an empty string turns them off.
  PassManager& dump_to(std::string directory);
  const std::string& dump_directory() const { return dump_directory_; }
  PassManager& verify_each(bool on);
  // Keeps every intermediate graph in OptimizedGraph::stages (off by default: a graph per pass
  // costs memory that only a viewer needs).
  PassManager& record_stages(bool on);
  bool recording_stages() const { return record_stages_; }
  // The name recorded stages give as their PassStage::pipeline ("" unless set).
  PassManager& pipeline_name(std::string name);
  const std::string& pipeline_name() const { return pipeline_name_; }

  // Runs the enabled passes on `graph`, keeping `outputs` and `updates` (assign nodes) and
  // everything they need. The user's graph is left as it was.
  OptimizedGraph run(const Graph& graph, const std::vector<Value>& outputs,
                     const std::vector<Value>& updates = {}) const;

 private:
  struct Entry {
    std::string name;
    PassFunction pass;
  };
  void dump(const Graph& graph, const std::vector<Value>& outputs, const std::string& stem,
            const std::string& header) const;
  void check_arguments(const Graph& graph, const std::vector<Value>& kept, const std::vector<Value>& updates) const;

  std::vector<Entry> passes_;
  std::set<std::string> disabled_;         // by the API
  std::set<std::string> disabled_by_env_;  // by FOVEA_DISABLE_PASSES
  std::string dump_directory_;
  bool verify_ = false;
  bool record_stages_ = false;
  std::string pipeline_name_;
};

}  // namespace fovea::passes
