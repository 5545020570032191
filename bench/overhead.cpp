// The executor's cost per node: a chain of 10,000 tiny elementwise nodes (16 floats each),
// compiled once and run many times. What remains per node is the dispatch: one indirect call
// with pre-computed arguments, and a kernel that finds nothing worth parallelising.
//
//   build/bench/overhead [--nodes 10000] [--elements 16] [--reps 200] [--json FILE]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include <fovea/fovea.h>
#include <CLI/CLI.hpp>

#include "report.h"

int main(int argc, char** argv) {
  CLI::App app{"Per-node overhead of the Fovea executor"};
  int nodes = 10000, elements = 16, reps = 200;
  std::string json;
  app.add_option("--nodes", nodes, "elementwise nodes in the chain");
  app.add_option("--elements", elements, "elements per tensor");
  app.add_option("--reps", reps, "timed runs");
  app.add_option("--json", json, "write the figures to this JSON file");
  CLI11_PARSE(app, argc, argv);

  fovea::Graph g("chain");
  auto x = g.placeholder("x", fovea::f32, {elements});
  auto c = g.scalar(0.5, fovea::f32);
  fovea::Value y = x;
  // Alternate a binary op with a scalar and a unary op, so both kernel shapes are measured.
  for (int i = 0; i < nodes; ++i) y = (i % 2 == 0) ? fovea::add(y, c) : fovea::neg(y);
  auto exe = fovea::compile(g, {y}, fovea::cpu());
  const auto steps = exe.schedule().size();

  fovea::Tensor input = fovea::Tensor::full(fovea::f32, {elements}, 1.0);
  for (int i = 0; i < 10; ++i) exe.run({{x, input}});  // warm-up

  std::vector<double> us_per_node;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    auto out = exe.run({{x, input}});
    const std::chrono::duration<double, std::micro> took = std::chrono::steady_clock::now() - start;
    us_per_node.push_back(took.count() / nodes);
  }
  std::sort(us_per_node.begin(), us_per_node.end());
  const double median = us_per_node[us_per_node.size() / 2];
  std::printf("chain of %d elementwise nodes of %d floats (%zu scheduled nodes incl. sources), %d runs\n", nodes,
              elements, steps, reps);
  std::printf("per node: median %.4f us, min %.4f us, p90 %.4f us\n", median, us_per_node.front(),
              us_per_node[us_per_node.size() * 9 / 10]);

  fovea::tools::Report report;
  report.set("nodes", nodes);
  report.set("elements", elements);
  report.set("us_per_node", median);
  report.set("us_per_node_min", us_per_node.front());
  report.set("planned_peak_bytes", exe.planned_peak_bytes());
  report.finish(json);
  return 0;
}
