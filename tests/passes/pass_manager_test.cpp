// PassManager: passes in order, statistics, dumps you can page through, passes you can switch off.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::random_tensor;
namespace fs = std::filesystem;

// A small graph with something for every pass: x·1, a repeated expression, a constant chain,
// a dead node.
struct Sample {
  Graph g;
  Value x, y;
  Sample() {
    x = g.placeholder("x", f32, {4});
    Value c = sqrt(g.scalar(4.0, f32));  // folds to 2
    y = exp(x * 1.0) * c + exp(x * 1.0);
    tanh(x);  // dead
  }
};

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A fresh, empty directory under the system's temporary directory.
fs::path fresh_directory(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / (name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir;
}

TEST_CASE("the forward pipeline runs its passes in order and reports nodes and rewrites per pass") {
  Sample s;
  passes::OptimizedGraph opt = passes::optimize_forward(s.g, {s.y});
  REQUIRE(opt.passes.size() == 9);
  const std::vector<std::string> order{"dce",
                                       "simplify",
                                       "cse",
                                       "fold",
                                       "attention_fusion",
                                       "normalization_fusion",
                                       "conv_fusion",
                                       "conv_epilogue_fusion",
                                       "dce"};
  for (std::size_t i = 0; i < order.size(); ++i) {
    CHECK(opt.passes[i].name == order[i]);
    CHECK(opt.passes[i].ran);
    if (i > 0) CHECK(opt.passes[i].stats.nodes_before == opt.passes[i - 1].stats.nodes_after);
  }
  CHECK(opt.passes[0].stats.nodes_before == s.g.size());
  CHECK(opt.passes[1].stats.rewrites.at("x·1 → x") == 2);
  CHECK(opt.passes[2].stats.rewrites.at("repeated exp merged") == 1);
  CHECK(opt.passes[3].stats.rewrites.at("sqrt folded") == 1);
  CHECK(opt.passes[8].stats.nodes_after == opt.graph->size());
  // x, the folded 2, exp, mul, add.
  CHECK(opt.graph->size() == 5);
  const std::string table = opt.report();
  CHECK(table.find("simplify") != std::string::npos);
  CHECK(table.find("x·1 → x ×2") != std::string::npos);
  CHECK(table.find("repeated exp merged ×1") != std::string::npos);
  testing::check_same_results(s.g, {s.y}, opt, {{s.x, random_tensor(f32, {4}, 3)}});
}

TEST_CASE("FOVEA_DUMP writes the text IR and a drawing of the graph after every pass") {
  const fs::path dir = fresh_directory("fovea_dump_env");
  {
    testing::ScopedEnv dump("FOVEA_DUMP", dir.string());
    Sample s;
    passes::optimize_forward(s.g, {s.y});
  }
  const std::vector<std::string> stems{"00-input",
                                       "01-dce",
                                       "02-simplify",
                                       "03-cse",
                                       "04-fold",
                                       "05-attention_fusion",
                                       "06-normalization_fusion",
                                       "07-conv_fusion",
                                       "08-conv_epilogue_fusion",
                                       "09-dce"};
  const bool have_dot = write_svg("digraph { a }", (dir / "probe.svg").string());
  for (const std::string& stem : stems) {
    CAPTURE(stem);
    CHECK(fs::exists(dir / (stem + ".txt")));
    CHECK(fs::exists(dir / (stem + ".dot")));
    if (have_dot) CHECK(fs::exists(dir / (stem + ".svg")));
  }
  const std::string input = read_file(dir / "00-input.txt");
  CHECK(input.find("tanh") != std::string::npos);
  CHECK(input.find("  return %") != std::string::npos);
  const std::string simplified = read_file(dir / "02-simplify.txt");
  CHECK(simplified.find("# after pass 2 'simplify'") != std::string::npos);
  CHECK(simplified.find("x·1 → x ×2") != std::string::npos);
  CHECK(read_file(dir / "08-dce.txt").find("tanh") == std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("dump_to writes the dumps without the environment variable, and an empty path turns them off") {
  const fs::path dir = fresh_directory("fovea_dump_api");
  Sample s;
  passes::PassManager pm = passes::forward_pipeline();
  pm.dump_to(dir.string());
  pm.run(s.g, {s.y});
  CHECK(fs::exists(dir / "04-fold.txt"));
  fs::remove_all(dir);
  pm.dump_to("");
  pm.run(s.g, {s.y});
  CHECK_FALSE(fs::exists(dir));
}

TEST_CASE("a pass disabled by name through the API does not run") {
  Sample s;
  passes::PassManager pm = passes::forward_pipeline();
  pm.disable("cse").disable("fold");
  CHECK_FALSE(pm.enabled("cse"));
  passes::OptimizedGraph opt = pm.run(s.g, {s.y});
  CHECK_FALSE(opt.passes[2].ran);
  CHECK_FALSE(opt.passes[3].ran);
  CHECK(opt.report().find("(disabled)") != std::string::npos);
  CHECK(testing::count_op(*opt.graph, ops::exp) == 2);   // not merged
  CHECK(testing::count_op(*opt.graph, ops::sqrt) == 1);  // not folded
  testing::check_same_results(s.g, {s.y}, opt, {{s.x, random_tensor(f32, {4}, 3)}});
  pm.enable("cse");
  CHECK(testing::count_op(*pm.run(s.g, {s.y}).graph, ops::exp) == 1);
}

TEST_CASE("FOVEA_DISABLE_PASSES=cse,fold disables those passes") {
  testing::ScopedEnv off("FOVEA_DISABLE_PASSES", "cse,fold");
  Sample s;
  passes::OptimizedGraph opt = passes::optimize_forward(s.g, {s.y});
  CHECK(opt.passes[1].ran);
  CHECK_FALSE(opt.passes[2].ran);
  CHECK_FALSE(opt.passes[3].ran);
  CHECK(testing::count_op(*opt.graph, ops::exp) == 2);
}

TEST_CASE("disabling a pass name that does not exist is an error listing the passes") {
  Sample s;
  passes::PassManager pm = passes::forward_pipeline();
  pm.disable("constant_folding");
  try {
    pm.run(s.g, {s.y});
    FAIL("expected fovea::Error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("cannot disable 'constant_folding'") != std::string::npos);
    CHECK(std::string(e.what()).find("fold") != std::string::npos);
  }
}

TEST_CASE("with every pass disabled the result is a plain copy of the graph") {
  Sample s;
  passes::PassManager pm = passes::forward_pipeline();
  for (const std::string& name : pm.names()) pm.disable(name);
  passes::OptimizedGraph opt = pm.run(s.g, {s.y});
  CHECK(opt.graph.get() != nullptr);
  CHECK(opt.graph->size() == s.g.size());
  testing::check_same_results(s.g, {s.y}, opt, {{s.x, random_tensor(f32, {4}, 3)}});
}

TEST_CASE("asking for a value the passes removed names it and says how to keep it") {
  Sample s;
  Graph& g = s.g;
  Value dead = tanh(s.x * 3.0);
  passes::OptimizedGraph opt = passes::optimize_forward(g, {s.y});
  CHECK_FALSE(opt.has(dead));
  try {
    opt.value(dead);
    FAIL("expected fovea::Error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find(dead.name()) != std::string::npos);
    CHECK(std::string(e.what()).find("keep it by passing it as an output") != std::string::npos);
    CHECK(std::string(e.what()).find("pass_manager_test.cpp") != std::string::npos);
  }
}

TEST_CASE("optimize keeps outputs that are placeholders or were simplified away") {
  Graph g;
  Value x = g.placeholder("x", f64, {3});
  Value same = x * 1.0;
  passes::OptimizedGraph opt = passes::optimize(g, {same, x});
  CHECK(opt.outputs[0] == opt.value(x));
  CHECK(opt.outputs[1] == opt.value(x));
  testing::check_same_results(g, {same, x}, opt, {{x, random_tensor(f64, {3}, 1)}});
}

TEST_CASE("optimize rejects outputs from another graph and updates that are not assigns") {
  Graph g, other;
  Value x = g.placeholder("x", f32, {3});
  Value y = other.placeholder("y", f32, {3});
  CHECK_THROWS_AS(passes::optimize(g, {y}), Error);
  CHECK_THROWS_AS(passes::optimize(g, {x}, {x}), Error);
}

TEST_CASE("with FOVEA_VERIFY=1 a pass that leaves an invalid graph is caught at that pass") {
  // A pass that appends a parameter node without a persistent buffer, which verify() rejects.
  const auto broken = [](const Graph& g, std::span<const ValueRef>) {
    passes::PassResult r = passes::copy_graph(g);
    r.graph->apply(parameter_op, {}, {{"dtype", f32}, {"shape", std::vector<std::int64_t>{2}}}, SourceLoc{}, "orphan");
    return r;
  };
  Sample s;
  {
    testing::ScopedEnv verify("FOVEA_VERIFY", "1");
    passes::PassManager pm;
    pm.add("broken", broken);
    try {
      pm.run(s.g, {s.y});
      FAIL("expected fovea::Error");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("after pass 'broken' is invalid") != std::string::npos);
      CHECK(std::string(e.what()).find("parameter has no buffer") != std::string::npos);
    }
  }
  testing::ScopedEnv no_verify("FOVEA_VERIFY", "0");
  passes::PassManager unchecked;
  unchecked.add("broken", broken);
  CHECK_NOTHROW(unchecked.run(s.g, {s.y}));
  CHECK_THROWS_AS(unchecked.verify_each(true).run(s.g, {s.y}), Error);
}

}  // namespace
