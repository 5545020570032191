// The explorer (explore/explorer.h): what its JSON holds for a small attention model's training
// step, and the page around it. The page's behaviour in a browser is checked by
// tests/explore/browser_check.py (CTest: explorer_in_chromium).
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "testing.h"

using namespace fovea;
using nlohmann::json;

namespace {

// A one-layer self-attention regression with AdamW, compiled with its passes recorded.
struct AttentionStep {
  Graph g{"attention step"};
  Value x, target, loss;
  std::unique_ptr<passes::CompiledTrainingStep> step;

  AttentionStep() {
    x = g.placeholder("x", f32, {2, 6, 8});
    target = g.placeholder("target", f32, {2, 6, 8});
    {
      NameScope scope(g, "block");
      Value wq = g.parameter("wq", f32, {8, 8}, init::normal(0.0, 0.3));
      Value wk = g.parameter("wk", f32, {8, 8}, init::normal(0.0, 0.3));
      Value wv = g.parameter("wv", f32, {8, 8}, init::normal(0.0, 0.3));
      Value q = nn::split_heads(matmul(x, wq), 2), k = nn::split_heads(matmul(x, wk), 2);
      Value v = nn::split_heads(matmul(x, wv), 2);
      Value o = nn::merge_heads(nn::scaled_dot_product_attention(q, k, v, nn::causal_mask(g, 6, 6)));
      loss = nn::mse_loss(o, target);
    }
    passes::TrainingStepOptions options;
    options.pipeline.record_stages = true;
    step = std::make_unique<passes::CompiledTrainingStep>(passes::compile_training_step(
        g, {loss},
        [](Graph& fg, const std::vector<Value>& out) {
          nn::TrainStep s = nn::adamw(out[0], fg.parameters());
          return passes::StepParts{{out[0]}, s.updates};
        },
        cpu(), options));
  }
  Feeds feeds() const {
    return {{x, testing::random_tensor(f32, {2, 6, 8}, 1)}, {target, testing::random_tensor(f32, {2, 6, 8}, 2)}};
  }
};

ExplorerContent content_of(passes::CompiledTrainingStep& step) {
  ExplorerContent content{
      .graph = &step.graph(), .outputs = {}, .stages = step.stages(), .executable = &step.executable()};
  for (const Value& v : step.outputs()) content.outputs.push_back(v.ref());
  return content;
}

// Every stage rebuilt from the differences, as the page does it: name -> node record.
std::vector<std::map<std::string, json>> replay(const json& stages) {
  std::vector<std::map<std::string, json>> out;
  std::map<std::string, json> nodes;
  for (const json& stage : stages) {
    for (const json& name : stage["del"]) nodes.erase(name.get<std::string>());
    for (const json& record : stage["add"]) nodes[record["n"].get<std::string>()] = record;
    out.push_back(nodes);
  }
  return out;
}

}  // namespace

TEST_CASE("the explorer's stages replay to exactly the nodes of every recorded graph") {
  AttentionStep model;
  model.step->run(model.feeds());
  const json j = json::parse(explorer_json(content_of(*model.step)));
  const std::vector<passes::PassStage> stages = model.step->stages();
  REQUIRE(j["stages"].size() == stages.size());
  const auto replayed = replay(j["stages"]);
  for (std::size_t k = 0; k < stages.size(); ++k) {
    CAPTURE(stages[k].name);
    CHECK(j["stages"][k]["name"] == stages[k].name);
    CHECK(replayed[k].size() == stages[k].node_count);
    for (std::uint32_t id = 0; id < stages[k].node_count; ++id)
      CHECK(replayed[k].contains(stages[k].graph->node(id).name));
  }
  // The training pipeline's stages: the forward passes with attention fusion among them,
  // autodiff, then the step's passes.
  std::vector<std::string> names;
  for (const json& s : j["stages"]) names.push_back(s["name"]);
  CHECK(std::find(names.begin(), names.end(), "attention_fusion") != names.end());
  CHECK(std::find(names.begin(), names.end(), "autodiff") != names.end());
  CHECK(j["stages"].back()["count"] == model.step->graph().size());
}

TEST_CASE("the explorer records the attention fusion and links gradient nodes to their forward nodes") {
  AttentionStep model;
  model.step->run(model.feeds());
  const json j = json::parse(explorer_json(content_of(*model.step)));
  bool fused = false;
  for (const json& s : j["stages"])
    if (s["name"] == "attention_fusion")
      for (const json& d : s["log"]) fused = fused || d["fused"].get<bool>();
  CHECK(fused);
  // Every gradient link names a node of the final graph or one the passes fused away before it.
  const auto replayed = replay(j["stages"]);
  std::size_t links = 0;
  for (const auto& [name, record] : replayed.back())
    if (record.contains("g")) {
      ++links;
      bool known = false;
      for (const auto& stage : replayed) known = known || stage.contains(record["g"].get<std::string>());
      CHECK_MESSAGE(known, name);
    }
  CHECK(links > 10);
}

TEST_CASE("the explorer holds the memory plan, and the profile and values of an observed run") {
  AttentionStep model;
  Executable& exe = model.step->executable();
  ExplorerContent content = content_of(*model.step);
  json j = json::parse(explorer_json(content, {.roofline = false}));
  CHECK(j["memory"]["buffers"].size() == exe.memory_plan().buffers.size());
  CHECK(j["memory"]["peak"] == exe.memory_plan().peak_bytes);
  CHECK(j["schedule"].size() == exe.schedule().size());
  CHECK_FALSE(j.contains("time"));
  CHECK_FALSE(j.contains("values"));

  exe.set_profiling(true);
  exe.set_value_statistics(true);
  model.step->run(model.feeds());
  j = json::parse(explorer_json(content, {.roofline = false}));
  REQUIRE(j.contains("time"));
  CHECK(j["time"]["steps"].size() == exe.step_count());
  REQUIRE(j.contains("values"));
  CHECK(j["values"]["list"].size() == exe.value_statistics().size());
  CHECK(j["values"]["first_non_finite"] == "");
  for (const json& buffer : j["memory"]["buffers"]) CHECK(buffer[4].size() >= 1);
}

TEST_CASE("the explorer flags the first node that made a NaN, not the nodes after it") {
  Graph g;
  Value x = g.placeholder("x", f32, {4});
  Value bad, after;
  {
    NameScope scope(g, "model");
    bad = fovea::log(x);  // log of a negative number: NaN
    after = exp(bad) * 2.0f;
  }
  Executable exe = compile(g, {after});
  exe.set_value_statistics(true);
  exe.run({{x, Tensor::from(std::vector<float>{1, -1, 2, 3}, {4})}});
  const json j = json::parse(explorer_json({.graph = &g, .outputs = {after.ref()}, .stages = {}, .executable = &exe}));
  CHECK(j["values"]["first_non_finite"] == bad.name());
}

TEST_CASE("write_explorer writes one self-contained page whose data cannot close its script early") {
  if (!explorer_available()) {
    testing::skip_test_case("this build has no dagre (Debian's node-dagre-layout)");
    return;
  }
  Graph g;
  Value x = g.placeholder("</script><b>x", f32, {3});
  Value y = relu(x) * 2.0f;
  Executable exe = compile(g, {y});
  const testing::TempDir dir("explorer");
  write_explorer(dir.file("page.html"), exe, {.title = "a title with </script> in it"});
  std::ifstream in(dir.file("page.html"));
  std::stringstream text;
  text << in.rdbuf();
  const std::string page = text.str();
  // Three scripts (the data, dagre, the page): exactly three closing tags.
  std::size_t closing = 0;
  for (std::size_t at = page.find("</script>"); at != std::string::npos; at = page.find("</script>", at + 1)) ++closing;
  CHECK(closing == 3);
  CHECK(page.find("/*FOVEA_") == std::string::npos);
  CHECK(page.find("http://") == page.find("http://www.w3.org/2000/svg"));  // nothing fetched from a network
  CHECK(page.find("https://") == std::string::npos);
}

TEST_CASE("write_explorer refuses a graph that is not the executable's, and stages that end elsewhere") {
  Graph g, other;
  Value x = g.placeholder("x", f32, {3});
  Executable exe = compile(g, {relu(x)});
  other.placeholder("y", f32, {3});
  CHECK_THROWS_WITH_AS(explorer_json({.graph = &other, .outputs = {}, .stages = {}, .executable = &exe}),
                       doctest::Contains("compiled from another graph"), Error);
}

namespace {

// The JSON inside a written page.
json page_data(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  const std::string page = text.str(), open = "<script id=\"fovea-data\" type=\"application/json\">";
  const std::size_t begin = page.find(open) + open.size(), end = page.find("</script>", begin);
  std::string data = page.substr(begin, end - begin);
  for (std::size_t at = data.find("<\\/"); at != std::string::npos; at = data.find("<\\/", at)) data.erase(at + 1, 1);
  return json::parse(data);
}

}  // namespace

TEST_CASE("CompileOptions::explore writes the page of a run that anomaly mode stopped, the log node flagged") {
  if (!explorer_available()) {
    testing::skip_test_case("this build has no dagre (Debian's node-dagre-layout)");
    return;
  }
  const testing::TempDir dir("explorer-anomaly");
  Graph g("collapsing");
  Value x = g.placeholder("x", f32, {3});
  Value log_x, loss;
  {
    NameScope scope(g, "model");
    log_x = fovea::log(relu(x));  // log(0) = -inf once an element of x is <= 0
    loss = reduce_sum(log_x * log_x);
  }
  Executable exe = compile(g, {loss}, cpu(), {.check_finite = true, .explore = dir.file("stopped.html")});
  CHECK(exe.pending_explore_path() == dir.file("stopped.html"));
  CHECK_THROWS_AS(exe.run({{x, Tensor::from<float>({1, 0, 2}, {3})}}), Error);
  CHECK(exe.pending_explore_path().empty());  // written once, by the first run
  const json data = page_data(dir.file("stopped.html"));
  CHECK(data["values"]["first_non_finite"] == log_x.name());
  CHECK(data["anomaly"].get<std::string>().find(log_x.name()) != std::string::npos);
  CHECK(data["anomaly"].get<std::string>().find("explorer_test.cpp") != std::string::npos);  // the user's line
  // The statistics stop at the node that failed: nothing after the log was run.
  CHECK(data["values"]["list"].back()["v"] == log_x.name());
}

TEST_CASE("FOVEA_EXPLORE numbers the pages of a program's executables and training steps") {
  // Sets FOVEA_EXPLORE for the life of the test, and puts back what was there before.
  struct ScopedExplore {
    std::optional<std::string> previous;
    ScopedExplore() {
      if (const char* old = std::getenv("FOVEA_EXPLORE")) previous = old;
      setenv("FOVEA_EXPLORE", "/tmp/somewhere/page.html", 1);
    }
    ~ScopedExplore() {
      if (previous)
        setenv("FOVEA_EXPLORE", previous->c_str(), 1);
      else
        unsetenv("FOVEA_EXPLORE");
    }
  };
  Graph g;
  Value x = g.placeholder("x", f32, {2});
  std::string first, second;
  std::optional<Executable> on, off;
  {
    const ScopedExplore explore;
    first = next_explore_path_from_environment();
    second = next_explore_path_from_environment();
    on.emplace(compile(g, {relu(x)}));
    off.emplace(compile(g, {relu(x)}, cpu(), {.explore = ""}));  // explicitly off: not read
  }
  // Earlier tests in this process may have asked already: the numbering goes on from there.
  CHECK(first.starts_with("/tmp/somewhere/page"));
  CHECK(first.ends_with(".html"));
  CHECK(second.starts_with("/tmp/somewhere/page-"));
  CHECK(second != first);
  CHECK(on->pending_explore_path().starts_with("/tmp/somewhere/page-"));
  CHECK(off->pending_explore_path().empty());
  if (!std::getenv("FOVEA_EXPLORE")) CHECK(next_explore_path_from_environment().empty());
}

TEST_CASE("TrainingStepOptions::explore writes the step's page, passes included, after its second run") {
  if (!explorer_available()) {
    testing::skip_test_case("this build has no dagre (Debian's node-dagre-layout)");
    return;
  }
  const testing::TempDir dir("explorer-step");
  Graph g("regression");
  Value x = g.placeholder("x", f32, {4, 3}), y = g.placeholder("y", f32, {4, 1});
  Value w = g.parameter("w", f32, {3, 1}, init::normal(0.0, 0.5));
  Value loss = nn::mse_loss(matmul(x, w), y);
  passes::TrainingStepOptions options;
  options.explore = dir.file("step.html");
  auto step = passes::compile_training_step(
      g, {loss},
      [](Graph& fg, const std::vector<Value>& out) {
        return passes::StepParts{{out[0]}, nn::sgd(out[0], fg.parameters()).updates};
      },
      cpu(), options);
  const Feeds feeds{{x, testing::random_tensor(f32, {4, 3}, 1)}, {y, testing::random_tensor(f32, {4, 1}, 2)}};
  step.run(feeds);
  CHECK_FALSE(std::filesystem::exists(dir.file("step.html")));
  step.run(feeds);
  REQUIRE(std::filesystem::exists(dir.file("step.html")));
  const json data = page_data(dir.file("step.html"));
  CHECK(data["stages"].size() > 3);
  CHECK(data.contains("time"));
  CHECK(data.contains("values"));
  CHECK_FALSE(step.executable().profiling());  // put back as it was
  CHECK_FALSE(step.executable().value_statistics_on());
}
