// Helpers shared by the optimizer's tests: run a graph and its optimized copy on the same feeds
// and compare, count nodes by op, and set an environment variable for one test.
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

#include "testing.h"

namespace fovea::testing {

// "Optimized and unoptimized graphs agree within 1e-5 relative in f32 (1e-10 in f64)."
inline double agree_rtol(DType t) { return t == DType::f64 ? 1e-10 : 1e-5; }
inline double agree_atol(DType t) { return t == DType::f64 ? 1e-12 : 1e-6; }

// The feeds of the user's graph, re-pointed at the optimized graph's placeholders.
inline Feeds mapped_feeds(const passes::OptimizedGraph& opt, const Feeds& feeds) {
  Feeds mapped;
  for (const auto& [v, t] : feeds) mapped.emplace_back(opt.value(v), t);
  return mapped;
}

// Runs `outputs` of `g`, and their counterparts in the optimized graph, with the same feeds;
// checks they agree.
inline void check_same_results(Graph& g, const std::vector<Value>& outputs, const passes::OptimizedGraph& opt,
                               const Feeds& feeds = {}) {
  std::vector<Value> counterparts;
  for (const Value& v : outputs) counterparts.push_back(opt.value(v));
  const std::vector<Tensor> expected = run(g, outputs, feeds);
  const std::vector<Tensor> actual = run(*opt.graph, counterparts, mapped_feeds(opt, feeds));
  REQUIRE(actual.size() == expected.size());
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const DType t = expected[i].dtype();
    check_close(actual[i], expected[i], agree_rtol(t), agree_atol(t));
  }
}

// Nodes of `g` that apply `op`.
inline std::size_t count_op(const Graph& g, const OpDef& op) {
  std::size_t n = 0;
  for (std::uint32_t id = 0; id < g.size(); ++id) n += g.node(id).op == &op;
  return n;
}

// Nodes of `g` that `outputs` need (what compile would run, sources included).
inline std::size_t live_nodes(const Graph& g, const std::vector<Value>& outputs) {
  std::size_t n = 0;
  for (bool needed : nodes_needed_by(g, outputs)) n += needed;
  return n;
}

// t[i] = value, converted to t's dtype (a test planting -inf or NaN in a feed).
inline void set_element(Tensor& t, std::int64_t i, double value) {
  visit_dtype(t.dtype(), [&](auto zero) {
    using T = decltype(zero);
    t.data<T>()[static_cast<std::size_t>(i)] = static_cast<T>(value);
  });
}

// Sets an environment variable for the lifetime of the guard, then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_, old_.c_str(), 1);
    else
      ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

}  // namespace fovea::testing
