// PassStats::decisions: every candidate a fusion pass meets, fused or not, and when not, a
// sentence naming the node responsible.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "optimize_testing.h"

namespace {

using namespace fovea;

const passes::PassStats& stats_of(const passes::OptimizedGraph& opt, const std::string& pass) {
  for (const passes::PassReport& p : opt.passes)
    if (p.name == pass) return p.stats;
  FAIL("no pass named " << pass);
  throw std::logic_error("unreachable");
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// q, k, v of one head: [1,1,4,8], [1,1,6,8], [1,1,6,8].
struct Qkv {
  Graph g;
  Value q, k, v;
  Qkv() {
    q = g.placeholder("q", f32, {1, 1, 4, 8});
    k = g.placeholder("k", f32, {1, 1, 6, 8});
    v = g.placeholder("v", f32, {1, 1, 6, 8});
  }
};

TEST_CASE("attention whose probabilities another output reads is not fused, and the decision names the reader") {
  Qkv a;
  Value probabilities;
  Value o = nn::scaled_dot_product_attention(a.q, a.k, a.v, {}, 0.0, {}, &probabilities);
  Value probe;
  {
    auto scope = a.g.scope("probe");
    probe = probabilities * 2.0;
  }
  REQUIRE(probe.name() == "probe/mul");
  passes::OptimizedGraph opt = passes::optimize_forward(a.g, {o, probe});
  const passes::PassStats& stats = stats_of(opt, "attention_fusion");
  REQUIRE(stats.decisions.size() == 1);
  const passes::FusionDecision& d = stats.decisions[0];
  CHECK(d.kind == "fused attention");
  CHECK_FALSE(d.fused);
  CHECK(d.root == o.name());
  CHECK(contains(d.nodes, o.name()));
  CHECK(contains(d.nodes, probabilities.name()));
  CHECK(d.reason ==
        "the inner value '" + probabilities.name() + "' (div) is also read by 'probe/mul' (mul), outside the match");
  // The count the pass table shows is still there.
  CHECK(stats.blocked.at("fused attention, an inner value is used outside the match") == 1);
}

TEST_CASE("attention whose probabilities the caller keeps is not fused, and the decision says so") {
  Qkv a;
  Value probabilities;
  Value o = nn::scaled_dot_product_attention(a.q, a.k, a.v, {}, 0.0, {}, &probabilities);
  passes::OptimizedGraph opt = passes::optimize_forward(a.g, {o, probabilities});
  const passes::PassStats& stats = stats_of(opt, "attention_fusion");
  REQUIRE(stats.decisions.size() == 1);
  CHECK_FALSE(stats.decisions[0].fused);
  CHECK(stats.decisions[0].reason ==
        "the inner value '" + probabilities.name() + "' (div) is an output the caller keeps");
}

TEST_CASE("a plain attention's decision says fused and lists its nodes") {
  Qkv a;
  Value o = nn::scaled_dot_product_attention(a.q, a.k, a.v);
  passes::OptimizedGraph opt = passes::optimize_forward(a.g, {o});
  const passes::PassStats& stats = stats_of(opt, "attention_fusion");
  REQUIRE(stats.decisions.size() == 1);
  const passes::FusionDecision& d = stats.decisions[0];
  CHECK(d.fused);
  CHECK(d.reason.empty());
  CHECK(d.root == o.name());
  CHECK(d.nodes.size() > 3);  // the scores, the softmax, the final matmul
  CHECK(contains(d.nodes, o.name()));
}

TEST_CASE("normalization and elementwise fusion record their candidates") {
  Graph g;
  Value x = g.placeholder("x", f32, {3, 5});
  Value p = nn::softmax(x);
  Value y = exp(p * 2.0 + 1.0);
  passes::OptimizedGraph forward = passes::optimize_forward(g, {y});
  const passes::PassStats& normalization = stats_of(forward, "normalization_fusion");
  REQUIRE(normalization.decisions.size() == 1);
  CHECK(normalization.decisions[0].fused);
  CHECK(normalization.decisions[0].root == p.name());

  passes::OptimizedGraph step = passes::optimize(g, {y});
  const passes::PassStats& elementwise = stats_of(step, "elementwise_fusion");
  REQUIRE_FALSE(elementwise.decisions.empty());
  bool chain = false;
  for (const passes::FusionDecision& d : elementwise.decisions)
    chain |= d.fused && d.root == y.name() && contains(d.nodes, y.name());
  CHECK(chain);
}

}  // namespace
