// Recorded stages: the graph before the first pass and after each, kept alive by the result,
// for optimize_forward, a plain PassManager and the training pipeline.
#include <string>
#include <vector>

#include "optimize_testing.h"

namespace {

using namespace fovea;

std::vector<std::string> stage_names(const std::vector<passes::PassStage>& stages) {
  std::vector<std::string> names;
  for (const passes::PassStage& s : stages) names.push_back(s.name);
  return names;
}

// Each stage's roots are values of its graph, among its first node_count nodes.
void check_roots_valid(const std::vector<passes::PassStage>& stages) {
  for (const passes::PassStage& s : stages) {
    CAPTURE(s.name);
    REQUIRE(s.graph != nullptr);
    CHECK(s.node_count <= s.graph->size());
    CHECK_FALSE(s.roots.empty());
    for (const ValueRef& r : s.roots) {
      CHECK(s.graph->contains(r));
      CHECK(r.node < s.node_count);
    }
  }
}

// An attention layer's loss, with something for every forward pass to do.
struct Layer {
  Graph g;
  Value x, target, loss;
  Layer() {
    x = g.placeholder("x", f32, {2, 4, 8});
    target = g.placeholder("target", f32, {2, 4, 8});
    nn::MultiHeadAttention attn(g, "attn", 8, 2);
    loss = nn::mse_loss(attn(x, x) * 1.0, target);
  }
};

const std::vector<std::string> forward_passes{
    "dce", "simplify", "cse", "fold", "attention_fusion", "normalization_fusion", "conv_fusion", "conv_epilogue_fusion",
    "dce"};
const std::vector<std::string> step_passes{"simplify", "cse", "fold", "dce", "elementwise_fusion", "dce"};

TEST_CASE("optimize_forward records the input and one stage per pass only when asked") {
  Layer l;
  passes::OptimizedGraph plain = passes::optimize_forward(l.g, {l.loss});
  CHECK(plain.stages.empty());
  CHECK(plain.stage_graphs.empty());

  passes::OptimizedGraph recorded = passes::optimize_forward(l.g, {l.loss}, {.record_stages = true});
  std::vector<std::string> expected{"input"};
  expected.insert(expected.end(), forward_passes.begin(), forward_passes.end());
  CHECK(stage_names(recorded.stages) == expected);
  for (const passes::PassStage& s : recorded.stages) CHECK(s.pipeline == "forward");
  CHECK(recorded.stages.front().graph == &l.g);
  CHECK(recorded.stages.front().node_count == l.g.size());
  CHECK(recorded.stages.front().report.name.empty());
  for (std::size_t i = 1; i < recorded.stages.size(); ++i) {
    CHECK(recorded.stages[i].report.name == recorded.passes[i - 1].name);
    CHECK(recorded.stages[i].node_count == recorded.stages[i].graph->size());
  }
  CHECK(recorded.stages[5].report.stats.decisions.size() == 1);  // attention_fusion's
  check_roots_valid(recorded.stages);

  // Moving the result leaves every stage's graph where it was.
  const Graph* last = recorded.graph.get();
  passes::OptimizedGraph moved = std::move(recorded);
  CHECK(moved.stages.back().graph == last);
  CHECK(moved.stages.back().graph == moved.graph.get());
  check_roots_valid(moved.stages);
}

TEST_CASE("a recording PassManager gives disabled passes the previous graph, and a copy stage when none ran") {
  Graph g;
  Value x = g.placeholder("x", f32, {3});
  Value y = (x * 1.0) + 0.0;
  passes::PassManager pm;
  pm.add("simplify", passes::simplify).add("dce", passes::eliminate_dead_code).record_stages(true);
  pm.disable("dce");
  passes::OptimizedGraph opt = pm.run(g, {y});
  CHECK(stage_names(opt.stages) == std::vector<std::string>{"input", "simplify", "dce"});
  CHECK(opt.stages[0].pipeline.empty());
  CHECK_FALSE(opt.stages[2].report.ran);
  CHECK(opt.stages[2].graph == opt.stages[1].graph);
  CHECK(opt.stages[2].graph == opt.graph.get());
  check_roots_valid(opt.stages);

  pm.disable("simplify");
  passes::OptimizedGraph none = pm.run(g, {y});
  CHECK(stage_names(none.stages) == std::vector<std::string>{"input", "simplify", "dce", "copy"});
  CHECK(none.stages[2].graph == &g);
  CHECK(none.stages.back().graph == none.graph.get());
}

TEST_CASE("optimize_training records the forward stages, autodiff, then the step stages") {
  Layer l;
  std::size_t forward_size_before_step = 0;
  passes::TrainingGraph tg = passes::optimize_training(l.g, {l.loss},
                                                       [&](Graph& fg, const std::vector<Value>& out) {
                                                         forward_size_before_step = fg.size();
                                                         nn::TrainStep step = nn::adam(out[0], fg.parameters());
                                                         return passes::StepParts{{out[0]}, step.updates};
                                                       },
                                                       {.record_stages = true});
  const std::vector<passes::PassStage>& stages = tg.stages();
  std::vector<std::string> expected{"input"};
  expected.insert(expected.end(), forward_passes.begin(), forward_passes.end());
  expected.push_back("autodiff");
  expected.insert(expected.end(), step_passes.begin(), step_passes.end());
  REQUIRE(stage_names(stages) == expected);
  const std::size_t autodiff = forward_passes.size() + 1;
  for (std::size_t i = 0; i < stages.size(); ++i) CHECK(stages[i].pipeline == (i < autodiff ? "forward" : "step"));
  check_roots_valid(stages);

  CHECK(stages.front().graph == &l.g);
  // The last forward stage is the forward graph as it was before build_step appended to it.
  CHECK(stages[autodiff - 1].graph == tg.forward.get());
  CHECK(stages[autodiff - 1].node_count == forward_size_before_step);
  CHECK(stages[autodiff].graph == tg.forward.get());
  CHECK(stages[autodiff].node_count == tg.forward->size());
  CHECK(stages[autodiff].roots.size() == 1 + tg.step.updates.size());
  CHECK(stages[autodiff].report.name.empty());
  CHECK(stages.back().graph == tg.step.graph.get());

  // Moving the TrainingGraph keeps every stage's graph alive and in place.
  passes::TrainingGraph moved = std::move(tg);
  CHECK(moved.stages().back().graph == moved.step.graph.get());
  check_roots_valid(moved.stages());
}

TEST_CASE("a compiled training step exposes the stages when its pipeline records them") {
  Layer l;
  const passes::BuildStep build = [](Graph& fg, const std::vector<Value>& out) {
    nn::TrainStep step = nn::sgd(out[0], fg.parameters(), {.lr = nn::constant_lr(0.1)});
    return passes::StepParts{{out[0]}, step.updates};
  };
  passes::TrainingStepOptions options;
  options.pipeline.record_stages = true;
  passes::CompiledTrainingStep train = passes::compile_training_step(l.g, {l.loss}, build, cpu(), options);
  REQUIRE_FALSE(train.stages().empty());
  CHECK(train.stages().back().graph == &train.graph());
  CHECK(train.stages().front().graph == &l.g);

  Layer plain;
  passes::CompiledTrainingStep unrecorded = passes::compile_training_step(plain.g, {plain.loss}, build);
  CHECK(unrecorded.stages().empty());
}

}  // namespace
