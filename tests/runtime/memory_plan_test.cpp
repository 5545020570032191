// The memory plan: buffers never overlap while both are live, reuse happens, views alias,
// in-place happens only where the input dies, and the planned peak is what it claims.
#include <algorithm>
#include <limits>
#include <random>

#include "testing.h"

using namespace fovea;

namespace {

// The invariant the whole planner exists to keep: two buffers whose live ranges
// [first, last] intersect never share a byte.
void check_no_live_overlap(const MemoryPlan& plan) {
  for (std::size_t i = 0; i < plan.buffers.size(); ++i) {
    const auto& a = plan.buffers[i];
    CHECK(a.offset % MemoryPlan::alignment == 0);
    CHECK(a.offset + a.bytes <= plan.peak_bytes);
    for (std::size_t j = i + 1; j < plan.buffers.size(); ++j) {
      const auto& b = plan.buffers[j];
      const bool live_together = a.first <= b.last && b.first <= a.last;
      const bool bytes_overlap = a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
      if (live_together && bytes_overlap && a.bytes > 0 && b.bytes > 0)
        FAIL_CHECK("buffers #" << i << " and #" << j << " overlap while both live");
    }
  }
}

}  // namespace

TEST_CASE("a chain of elementwise ops runs in place in one buffer") {
  Graph g;
  Value x = g.placeholder("x", f32, {1024});
  Value y = x;
  for (int i = 0; i < 10; ++i) y = fovea::exp(y) * 0.5f;  // exp, then mul by a scalar constant
  auto exe = compile(g, {y});
  const MemoryPlan& plan = exe.memory_plan();
  check_no_live_overlap(plan);
  // One arena buffer, the placeholder's: every op but the last wrote over its input, and the
  // last wrote straight into the output Tensor that run() returns.
  CHECK(plan.buffers.size() == 1);
  CHECK(plan.in_place_count == 19);
  CHECK(plan.peak_bytes == 4096);
}

TEST_CASE("in place never overwrites a value that is still needed") {
  Graph g;
  Value x = g.placeholder("x", f64, {256});
  Value a = fovea::exp(x);
  Value b = fovea::sin(a);  // a is used again below, so sin must not overwrite it
  Value c = a + b;
  auto exe = compile(g, {c});
  check_no_live_overlap(exe.memory_plan());
  Tensor tx = testing::random_tensor(f64, {256}, 3);
  Tensor got = exe.run({{x, tx}})[0];
  for (int i = 0; i < 256; ++i) CHECK(got.at(i) == doctest::Approx(std::exp(tx.at(i)) + std::sin(std::exp(tx.at(i)))));
}

TEST_CASE("graph outputs are never overwritten, even when they feed later ops") {
  Graph g;
  Value x = g.placeholder("x", f32, {64});
  Value a = fovea::exp(x);
  Value b = fovea::neg(a);  // a is an output: neg may not write over it
  auto exe = compile(g, {a, b});
  Tensor tx = testing::random_tensor(f32, {64}, 4);
  auto out = exe.run({{x, tx}});
  for (int i = 0; i < 64; ++i) {
    CHECK(out[0].at(i) == doctest::Approx(std::exp(tx.at(i))));
    CHECK(out[1].at(i) == doctest::Approx(-std::exp(tx.at(i))));
  }
}

TEST_CASE("dead buffers are reused, so the peak stays far below one buffer per value") {
  Graph g;
  Value x = g.placeholder("x", f32, {4096});
  Value acc = x;
  // Each step makes a fresh value that is not in place (two live inputs of the same size).
  for (int i = 0; i < 20; ++i) acc = acc * fovea::exp(acc);
  auto exe = compile(g, {acc});
  const MemoryPlan& plan = exe.memory_plan();
  check_no_live_overlap(plan);
  CHECK(plan.peak_bytes <= 3 * 4096 * 4);
  CHECK(plan.naive_bytes >= 20 * 4096 * 4);
}

TEST_CASE("randomly built graphs get plans with no live overlap and correct results") {
  std::mt19937 rng(42);
  for (int trial = 0; trial < 30; ++trial) {
    Graph g;
    std::vector<Value> values{g.placeholder("x", f64, {8, 16}), g.placeholder("y", f64, {16})};
    for (int i = 0; i < 40; ++i) {
      Value a = values[rng() % values.size()], b = values[rng() % values.size()];
      switch (rng() % 4) {
        case 0:
          values.push_back(a + b);
          break;
        case 1:
          values.push_back(a * b);
          break;
        case 2:
          values.push_back(fovea::tanh(a));
          break;
        default:
          values.push_back(fovea::neg(b));
          break;
      }
    }
    std::vector<Value> outputs{values.back(), values[values.size() / 2]};
    auto exe = compile(g, outputs);
    check_no_live_overlap(exe.memory_plan());
  }
}

TEST_CASE("the memory plan prints one line per buffer with the values it holds") {
  Graph g;
  Value x = g.placeholder("x", f32, {16});
  Value y = fovea::relu(x);
  auto exe = compile(g, {y});
  const std::string s = exe.memory_plan().to_string(g);
  CHECK(s.find("peak 64 bytes") != std::string::npos);
  CHECK(s.find(" x") != std::string::npos);
}
