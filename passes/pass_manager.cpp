#include "fovea/passes/pass_manager.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "fovea/core/dot.h"
#include "fovea/core/printer.h"

namespace fovea::passes {

namespace {

std::vector<std::string> split_names(const std::string& list) {
  std::vector<std::string> names;
  std::string current;
  for (char c : list + ",") {
    if (c == ',') {
      if (!current.empty()) names.push_back(current);
      current.clear();
    } else if (c != ' ') {
      current += c;
    }
  }
  return names;
}

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

// The whole graph as text IR, ending with the outputs it must keep.
std::string dump_text(const Graph& graph, const std::vector<Value>& outputs, const std::string& header) {
  std::string text = to_text(graph, TextOptions{});
  std::vector<std::string> names;
  for (const Value& v : outputs) names.push_back(value_name(graph, v.ref()));
  // to_text ends with "}\n"; the return line goes just before it.
  text.insert(text.size() - 2, fmt::format("  return {}\n", fmt::join(names, ", ")));
  return header + text;
}

}  // namespace

bool OptimizedGraph::has(const Value& original) const {
  return original.defined() && value_map.contains(original.ref());
}

Value OptimizedGraph::value(const Value& original) const {
  if (!original.defined()) throw Error("OptimizedGraph::value: the Value is undefined");
  auto it = value_map.find(original.ref());
  if (it == value_map.end())
    throw Error(fmt::format("'{}' is not in the optimized graph: the passes removed it (nothing the outputs need "
                            "reads it) or fused it into a larger node; keep it by passing it as an output",
                            original.name()),
                std::string(original.node().op_name()), original.name(), original.node().where);
  return graph->value(it->second);
}

std::string OptimizedGraph::report() const {
  std::string s =
      fmt::format("{:>3}  {:<20} {:>7} {:>7} {:>9}  {}\n", "#", "pass", "nodes", "after", "time", "rewrites");
  for (std::size_t i = 0; i < passes.size(); ++i) {
    const PassReport& p = passes[i];
    if (!p.ran) {
      s += fmt::format("{:>3}  {:<20} {:>7} {:>7} {:>9}  {}\n", i + 1, p.name, "", "", "", "(disabled)");
      continue;
    }
    s += fmt::format("{:>3}  {:<20} {:>7} {:>7} {:>6.2f} ms  {}\n", i + 1, p.name, p.stats.nodes_before,
                     p.stats.nodes_after, p.milliseconds, p.stats.rewrites_to_string());
  }
  return s;
}

PassManager::PassManager() {
#ifndef NDEBUG
  verify_ = true;
#endif
  const std::string verify = environment("FOVEA_VERIFY");
  if (!verify.empty()) verify_ = verify != "0" && verify != "false" && verify != "off";
  dump_directory_ = environment("FOVEA_DUMP");
  for (const std::string& name : split_names(environment("FOVEA_DISABLE_PASSES"))) disabled_by_env_.insert(name);
}

PassManager& PassManager::add(std::string name, PassFunction pass) {
  passes_.push_back({std::move(name), std::move(pass)});
  return *this;
}

PassManager& PassManager::disable(const std::string& name) {
  disabled_.insert(name);
  return *this;
}

PassManager& PassManager::enable(const std::string& name) {
  disabled_.erase(name);
  disabled_by_env_.erase(name);
  return *this;
}

bool PassManager::enabled(const std::string& name) const {
  return !disabled_.contains(name) && !disabled_by_env_.contains(name);
}

std::vector<std::string> PassManager::names() const {
  std::vector<std::string> names;
  for (const Entry& e : passes_) names.push_back(e.name);
  return names;
}

PassManager& PassManager::dump_to(std::string directory) {
  dump_directory_ = std::move(directory);
  return *this;
}

PassManager& PassManager::verify_each(bool on) {
  verify_ = on;
  return *this;
}

void PassManager::dump(const Graph& graph, const std::vector<Value>& outputs, const std::string& stem,
                       const std::string& header) const {
  std::filesystem::create_directories(dump_directory_);
  const std::string base = (std::filesystem::path(dump_directory_) / stem).string();
  write_text_file(base + ".txt", dump_text(graph, outputs, header));
  // A drawing is a nicety: without Graphviz the text is still there.
  write_svg(to_dot(graph, outputs, DotOptions{.title = stem}), base + ".svg");
}

PassManager& PassManager::record_stages(bool on) {
  record_stages_ = on;
  return *this;
}

PassManager& PassManager::pipeline_name(std::string name) {
  pipeline_name_ = std::move(name);
  return *this;
}

void PassManager::check_arguments(const Graph& graph, const std::vector<Value>& kept,
                                  const std::vector<Value>& updates) const {
  for (const Value& v : kept)
    if (!v.defined() || &v.graph() != &graph)
      throw Error(fmt::format("optimize: '{}' is not a value of graph '{}'", v.defined() ? v.name() : "<undefined>",
                              graph.name()));
  for (const Value& u : updates)
    if (!u.node().op->assigns)
      throw Error(fmt::format("optimize: update '{}' is a {} node, not an assign", u.name(), u.node().op_name()));
  const std::vector<std::string> known = names();
  for (const std::string& name : disabled_)
    if (std::find(known.begin(), known.end(), name) == known.end())
      throw Error(fmt::format("optimize: cannot disable '{}': the passes are {}", name, fmt::join(known, ", ")));
}

namespace {

// Moves the user's values (`where`) and the roots through one pass's value map; a root the
// pass removed is an error naming the pass.
void follow(const PassResult& r, const std::string& pass, const Graph& input, std::map<ValueRef, ValueRef>& where,
            std::vector<ValueRef>& roots) {
  for (auto it = where.begin(); it != where.end();) {
    auto moved = r.value_map.find(it->second);
    if (moved == r.value_map.end()) {
      it = where.erase(it);
    } else {
      it->second = moved->second;
      ++it;
    }
  }
  for (ValueRef& root : roots) {
    auto moved = r.value_map.find(root);
    if (moved == r.value_map.end())
      throw Error(
          fmt::format("optimize: pass '{}' removed {}, an output it had to keep", pass, value_name(input, root)));
    root = moved->second;
  }
}

}  // namespace

OptimizedGraph PassManager::run(const Graph& graph, const std::vector<Value>& outputs,
                                const std::vector<Value>& updates) const {
  std::vector<Value> kept = outputs;
  kept.insert(kept.end(), updates.begin(), updates.end());
  check_arguments(graph, kept, updates);

  // Where each of the user's values is now; the roots every pass must keep.
  std::map<ValueRef, ValueRef> where;
  for (std::uint32_t id = 0; id < graph.size(); ++id)
    for (std::uint32_t k = 0; k < graph.node(id).outputs.size(); ++k) where[{id, k}] = {id, k};
  std::vector<ValueRef> roots;
  for (const Value& v : kept) roots.push_back(v.ref());

  const bool dumping = !dump_directory_.empty();
  if (dumping) dump(graph, kept, "00-input", fmt::format("# the graph as built: {} nodes\n", graph.size()));

  OptimizedGraph result;
  std::unique_ptr<Graph> current;
  // The graph as it is now (the user's before the first pass ran), as a stage.
  const auto record = [&](const std::string& name, PassReport report) {
    if (!record_stages_) return;
    const Graph& now = current ? *current : graph;
    result.stages.push_back({name, pipeline_name_, &now, now.size(), roots, std::move(report)});
  };
  const auto apply = [&](const std::string& name, const PassFunction& pass) -> PassReport {
    const Graph& input = current ? *current : graph;
    const auto start = std::chrono::steady_clock::now();
    PassResult r = pass(input, roots);
    const auto stop = std::chrono::steady_clock::now();
    if (verify_) {
      try {
        r.graph->verify();
      } catch (const Error& e) {
        throw Error(fmt::format("optimize: the graph after pass '{}' is invalid: {}", name, e.what()));
      }
    }
    follow(r, name, input, where, roots);
    // A recorded stage points at the graph being replaced: keep it alive.
    if (record_stages_ && current) result.stage_graphs.push_back(std::move(current));
    current = std::move(r.graph);
    return {name, true, std::move(r.stats), std::chrono::duration<double, std::milli>(stop - start).count()};
  };

  record("input", {});
  for (std::size_t i = 0; i < passes_.size(); ++i) {
    const Entry& entry = passes_[i];
    result.passes.push_back(enabled(entry.name) ? apply(entry.name, entry.pass) : PassReport{entry.name, false, {}, 0});
    record(entry.name, result.passes.back());
    if (dumping && result.passes.back().ran) {
      std::vector<Value> now;
      for (const ValueRef& r : roots) now.push_back(current->value(r));
      const PassStats& stats = result.passes.back().stats;
      dump(*current, now, fmt::format("{:02}-{}", i + 1, entry.name),
           fmt::format("# after pass {} '{}': {} → {} nodes\n# rewrites: {}\n", i + 1, entry.name, stats.nodes_before,
                       stats.nodes_after, stats.rewrites_to_string()));
    }
  }
  // With every pass disabled the result is still a graph of its own, a plain copy.
  if (!current) record("copy", apply("copy", [](const Graph& g, std::span<const ValueRef>) { return copy_graph(g); }));

  result.graph = std::move(current);
  for (std::size_t i = 0; i < roots.size(); ++i)
    (i < outputs.size() ? result.outputs : result.updates).push_back(result.graph->value(roots[i]));
  result.value_map = std::move(where);
  return result;
}

}  // namespace fovea::passes
