#include "fovea/explore/explorer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "fovea/core/dot.h"
#include "fovea/core/needed.h"
#include "fovea/core/printer.h"
#include "fovea/explore/assets.h"
#include "fovea/ops/cost.h"
#include "fovea/runtime/machine.h"

namespace fovea {

namespace {

using nlohmann::json;

// How the page names a value: its node's name, with ":k" for output k > 0.
std::string value_label(const Graph& g, ValueRef v) {
  const std::string& name = g.node(v.node).name;
  return v.output == 0 ? name : fmt::format("{}:{}", name, v.output);
}

// One node as the page reads it. Keys are one letter: a step graph has thousands of nodes, and
// each stage repeats the ones a pass rewrote.
//   n name · o op · s scope · r role (0 forward, 1 backward, 2 update) · i inputs · t output types
//   a attributes · w the user's file:line · g the forward node whose gradient rule built it
//   c [FLOPs, bytes moved]
json node_record(const Graph& g, std::uint32_t id) {
  const Node& n = g.node(id);
  json inputs = json::array(), types = json::array();
  for (ValueRef in : n.inputs) inputs.push_back(value_label(g, in));
  for (const TensorType& t : n.outputs) types.push_back(t.to_string());
  json r = {{"n", n.name},
            {"o", std::string(n.op_name())},
            {"s", n.scope},
            {"r", static_cast<int>(n.role)},
            {"i", std::move(inputs)},
            {"t", std::move(types)}};
  if (const std::string attrs = n.attrs.to_string(); !attrs.empty() && attrs != "{}") r["a"] = attrs;
  if (const std::string where = short_location(n.where); !where.empty()) r["w"] = where;
  if (!n.gradient_of.empty()) r["g"] = n.gradient_of;
  const Cost cost = node_cost(g, id);
  if (cost.flops > 0 || cost.bytes > 0) r["c"] = {cost.flops, cost.bytes};
  return r;
}

// The nodes of one stage, by name, as records.
std::map<std::string, json> stage_records(const Graph& g, std::size_t node_count, const std::vector<bool>& shown) {
  std::map<std::string, json> records;
  for (std::uint32_t id = 0; id < node_count; ++id)
    if (shown.empty() || shown[id]) records.emplace(g.node(id).name, node_record(g, id));
  return records;
}

json fusion_log(const passes::PassStats& stats) {
  json log = json::array();
  for (const passes::FusionDecision& d : stats.decisions)
    log.push_back({{"kind", d.kind}, {"root", d.root}, {"nodes", d.nodes}, {"fused", d.fused}, {"reason", d.reason}});
  return log;
}

// A stage as the difference from the one before: the nodes it added or rewrote ("add", in the
// graph's order, with "changed" naming the rewritten ones) and the names it removed ("del").
// The first stage adds every node. The page replays the differences to rebuild any stage.
// `shown`, when not empty, says which nodes of the stage to show.
json stage_json(const passes::PassStage& stage, const std::map<std::string, json>* before,
                std::map<std::string, json>& now, const std::vector<bool>& shown = {}) {
  const Graph& g = *stage.graph;
  now = stage_records(g, stage.node_count, shown);
  json added = json::array(), changed = json::array(), removed = json::array(), roots = json::array();
  for (std::uint32_t id = 0; id < stage.node_count; ++id) {
    if (!shown.empty() && !shown[id]) continue;
    const json& record = now.at(g.node(id).name);
    if (!before) {
      added.push_back(record);
      continue;
    }
    auto old = before->find(g.node(id).name);
    if (old != before->end() && old->second == record) continue;
    added.push_back(record);
    if (old != before->end()) changed.push_back(g.node(id).name);
  }
  if (before)
    for (const auto& [name, record] : *before)
      if (!now.contains(name)) removed.push_back(name);
  for (ValueRef root : stage.roots) roots.push_back(value_label(g, root));
  const passes::PassReport& report = stage.report;
  return {{"name", stage.name},
          {"pipeline", stage.pipeline},
          {"ran", stage.report.name.empty() || report.ran},
          {"ms", report.milliseconds},
          {"summary", report.ran ? report.stats.rewrites_to_string() : std::string()},
          {"count", stage.node_count},
          {"add", std::move(added)},
          {"changed", std::move(changed)},
          {"del", std::move(removed)},
          {"roots", std::move(roots)},
          {"log", fusion_log(report.stats)}};
}

// Without a record of passes, the one stage shows what runs: the executable's schedule, or the
// nodes the outputs need (a graph often holds more: an evaluation or a decoder beside the step).
std::vector<bool> nodes_shown_alone(const ExplorerContent& content) {
  const Graph& g = *content.graph;
  if (content.executable) {
    std::vector<bool> shown(g.size(), false);
    for (std::uint32_t id : content.executable->schedule()) shown[id] = true;
    return shown;
  }
  return content.outputs.empty() ? std::vector<bool>{} : needed_nodes(g, content.outputs);
}

json stages_json(const ExplorerContent& content) {
  std::vector<passes::PassStage> stages = content.stages;
  if (stages.empty()) {
    passes::PassStage only;
    only.name = "as compiled";
    only.graph = content.graph;
    only.node_count = content.graph->size();
    only.roots = content.outputs;
    json out = json::array();
    std::map<std::string, json> now;
    out.push_back(stage_json(only, nullptr, now, nodes_shown_alone(content)));
    return out;
  }
  if (stages.back().graph != content.graph)
    throw Error(
        "write_explorer: the last stage is not the graph shown (record the stages of the pass run that made it)");
  // Nodes built after the passes ran (grad() on an optimized forward graph): one more stage.
  if (stages.back().node_count < content.graph->size()) {
    passes::PassStage later;
    later.name = "built after the passes";
    later.graph = content.graph;
    later.node_count = content.graph->size();
    later.roots = content.outputs;
    stages.push_back(std::move(later));
  }
  json out = json::array();
  std::map<std::string, json> before, now;
  for (std::size_t k = 0; k < stages.size(); ++k) {
    out.push_back(stage_json(stages[k], k == 0 ? nullptr : &before, now));
    before.swap(now);
  }
  return out;
}

// The memory plan: each buffer [offset, bytes, first step, last step, values in it]; the steps
// are positions in the schedule.
json memory_json(const Executable& exe) {
  const MemoryPlan& plan = exe.memory_plan();
  std::vector<json> values(plan.buffers.size(), json::array());
  for (const auto& [value, buffer] : plan.buffer_of) values[buffer].push_back(value_label(exe.graph(), value));
  json buffers = json::array();
  for (std::size_t b = 0; b < plan.buffers.size(); ++b) {
    const MemoryPlan::Buffer& buf = plan.buffers[b];
    buffers.push_back({buf.offset, buf.bytes, buf.first, buf.last, std::move(values[b])});
  }
  return {{"peak", plan.peak_bytes},
          {"naive", plan.naive_bytes},
          {"in_place", plan.in_place_count},
          {"views", plan.view_count},
          {"buffers", std::move(buffers)}};
}

// Mean seconds per run of each step, by the step's node (transfers named "x/to_device").
json time_json(const Executable& exe) {
  const double runs = exe.profiled_runs();
  json steps = json::array();
  for (std::size_t i = 0; i < exe.step_count(); ++i)
    steps.push_back({exe.step_node(i).name, std::string(exe.step_node(i).op_name()), exe.step_seconds()[i] / runs});
  return {{"runs", exe.profiled_runs()}, {"backend", exe.backend().name()}, {"steps", std::move(steps)}};
}

json statistic_json(const Graph& g, const ValueStatistics& s) {
  auto finite_or_null = [](double x) { return std::isfinite(x) ? json(x) : json(nullptr); };
  return {{"v", value_label(g, s.value)},
          {"made", s.made_non_finite},
          {"count", s.count},
          {"nan", s.nan_count},
          {"inf", s.inf_count},
          {"min", finite_or_null(s.min)},
          {"max", finite_or_null(s.max)},
          {"mean", finite_or_null(s.mean)},
          {"std", finite_or_null(s.std)},
          {"hist", s.histogram}};
}

// Per-value statistics of the last observed run, and the first node (in the schedule) that made
// a NaN or an infinity from finite inputs (ValueStatistics::made_non_finite): the one anomaly
// mode would stop at.
json values_json(const Executable& exe) {
  const Graph& g = exe.graph();
  json list = json::array();
  std::string first_bad;
  for (const ValueStatistics& s : exe.value_statistics()) {
    list.push_back(statistic_json(g, s));
    if (s.made_non_finite && first_bad.empty()) first_bad = g.node(s.value.node).name;
  }
  return {{"list", std::move(list)}, {"first_non_finite", first_bad}};
}

json machine_json() {
  const MachinePeak& peak = machine_peak();
  return {
      {"gflops", peak.gflops}, {"gbps", peak.gbytes_per_second}, {"threads", peak.threads}, {"method", peak.method}};
}

std::string today() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M UTC", &utc);
  return text;
}

json executable_json(const ExplorerContent& content, const ExplorerOptions& options) {
  const Executable& exe = *content.executable;
  if (&exe.graph() != content.graph) throw Error("write_explorer: the executable was compiled from another graph");
  json j;
  json schedule = json::array();
  for (std::uint32_t id : exe.schedule()) schedule.push_back(exe.graph().node(id).name);
  j["schedule"] = std::move(schedule);
  j["memory"] = memory_json(exe);
  if (exe.profiled_runs() > 0) {
    j["time"] = time_json(exe);
    if (options.roofline && exe.backend().uses_host_memory()) j["machine"] = machine_json();
  }
  if (!exe.value_statistics().empty()) j["values"] = values_json(exe);
  return j;
}

// "</script>" inside a string would end the page's data block early: JSON may escape any "/",
// so every "</" is written "<\/".
std::string script_safe(const std::string& text) {
  std::string out;
  out.reserve(text.size() + text.size() / 64);
  for (std::size_t i = 0; i < text.size(); ++i) {
    out += text[i];
    if (text[i] == '<' && i + 1 < text.size() && text[i + 1] == '/') out += '\\';
  }
  return out;
}

}  // namespace

std::string explorer_json(const ExplorerContent& content, const ExplorerOptions& options) {
  if (!content.graph) throw Error("write_explorer: no graph given");
  json j;
  j["title"] = options.title.empty() ? content.graph->name() : options.title;
  j["written"] = today();
  j["anomaly"] = options.anomaly;
  json outputs = json::array();
  for (ValueRef v : content.outputs) outputs.push_back(value_label(*content.graph, v));
  j["outputs"] = std::move(outputs);
  j["stages"] = stages_json(content);
  if (content.executable) j.update(executable_json(content, options));
  return j.dump();
}

bool explorer_available() { return !explore::dagre_js().empty(); }

void write_explorer(const std::string& path, const ExplorerContent& content, const ExplorerOptions& options) {
  if (!explorer_available())
    throw Error(
        "write_explorer: this build of Fovea has no layout engine: install Debian's node-dagre-layout "
        "(tools/install_deps.sh does) and configure the build again");
  const std::string data = script_safe(explorer_json(content, options));
  std::string page(explore::page_html());
  auto put = [&page](std::string_view marker, std::string_view text) {
    const std::size_t at = page.find(marker);
    if (at == std::string::npos) throw Error(fmt::format("write_explorer: the page template lacks {}", marker));
    page.replace(at, marker.size(), text);
  };
  put("/*FOVEA_CSS*/", explore::page_css());
  put("/*FOVEA_DAGRE*/", explore::dagre_js());
  put("/*FOVEA_JS*/", explore::page_js());
  put("/*FOVEA_DATA*/", data);
  write_text_file(path, page);
}

void write_explorer(const std::string& path, passes::CompiledTrainingStep& step, const ExplorerOptions& options) {
  ExplorerContent content{
      .graph = &step.graph(), .outputs = {}, .stages = step.stages(), .executable = &step.executable()};
  for (const Value& v : step.outputs()) content.outputs.push_back(v.ref());
  for (const Value& v : step.updates()) content.outputs.push_back(v.ref());
  write_explorer(path, content, options);
}

void write_explorer(const std::string& path, const Executable& executable, const ExplorerOptions& options) {
  ExplorerContent content{.graph = &executable.graph(), .outputs = {}, .stages = {}, .executable = &executable};
  write_explorer(path, content, options);
}

namespace {

// Writing a page is a nicety next to a training run: a failure is reported, never thrown.
template <typename Write>
void write_reporting(const std::string& path, Write write) {
  try {
    write();
    std::fprintf(stderr, "fovea: explorer written to %s\n", path.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fovea: could not write the explorer to %s: %s\n", path.c_str(), e.what());
  }
}

void write_executable_page(const Executable& executable, const std::string& path, const std::string& anomaly) {
  write_reporting(path, [&] { write_explorer(path, executable, {.anomaly = anomaly}); });
}

void write_step_page(passes::CompiledTrainingStep& step, const std::string& path, const std::string& anomaly) {
  write_reporting(path, [&] { write_explorer(path, step, {.anomaly = anomaly}); });
}

}  // namespace

bool detail::install_explore_writers() {
  set_explore_writer(write_executable_page);
  passes::set_training_step_explore_writer(write_step_page);
  return true;
}

}  // namespace fovea
