// Normalization fusion: nn's softmax, log_softmax, layer norm and cross-entropy chains become one
// fused node each, with the same values and the same gradients (autodiff of the optimized graph
// against autodiff of the user's); every near-miss is left alone.
#include <algorithm>
#include <cmath>

#include <fovea/ops/normalization.h>
#include <fovea/passes/normalization_fusion.h>

#include "optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::random_tensor;

// The forward pipeline with normalization fusion after attention fusion, where the pipeline
// runs it: dce · simplify · cse · fold · attention_fusion · normalization_fusion · dce.
passes::OptimizedGraph optimize(const Graph& g, const std::vector<Value>& outputs) {
  passes::PassManager pm;
  pm.add("dce", passes::eliminate_dead_code)
      .add("simplify", passes::simplify)
      .add("cse", passes::eliminate_common_subexpressions)
      .add("fold",
           [](const Graph& graph, std::span<const ValueRef> roots) { return passes::fold_constants(graph, roots); })
      .add("attention_fusion",
           [](const Graph& graph, std::span<const ValueRef> roots) { return passes::fuse_attention(graph, roots); })
      .add("normalization_fusion", passes::fuse_normalizations)
      .add("dce", passes::eliminate_dead_code)
      .verify_each(true);
  return pm.run(g, outputs);
}

const passes::PassStats& fusion_stats(const passes::OptimizedGraph& opt) {
  for (const passes::PassReport& p : opt.passes)
    if (p.name == "normalization_fusion") return p.stats;
  FAIL("no normalization_fusion pass ran");
  return opt.passes.front().stats;
}

std::size_t rewrites(const passes::OptimizedGraph& opt, const std::string& kind) {
  const auto& r = fusion_stats(opt).rewrites;
  return r.contains(kind) ? r.at(kind) : 0;
}
std::size_t blocked(const passes::OptimizedGraph& opt, const std::string& reason) {
  const auto& b = fusion_stats(opt).blocked;
  return b.contains(reason) ? b.at(reason) : 0;
}

// ∂loss/∂w for every w in `wrt` (placeholders and parameters of the user's graph), computed by
// autodiff of the user's graph and of the optimized one, agree. f32 parameter gradients sum many
// products in another order, so the absolute tolerance scales with the tensor's largest element.
void check_same_gradients(Graph& g, Value loss, const std::vector<Value>& wrt, const passes::OptimizedGraph& opt,
                          const Feeds& feeds) {
  std::vector<Value> mapped;
  for (const Value& w : wrt) mapped.push_back(opt.value(w));
  const std::vector<Value> expected_grads = grad(loss, wrt);
  const std::vector<Value> actual_grads = grad(opt.outputs[0], mapped);
  const std::vector<Tensor> expected = testing::run(g, expected_grads, feeds);
  const std::vector<Tensor> actual = testing::run(*opt.graph, actual_grads, testing::mapped_feeds(opt, feeds));
  for (std::size_t i = 0; i < wrt.size(); ++i) {
    CAPTURE(wrt[i].name());
    const DType t = wrt[i].dtype();
    double scale = 0;
    for (std::int64_t j = 0; j < expected[i].numel(); ++j) scale = std::max(scale, std::abs(expected[i].at(j)));
    testing::check_close(actual[i], expected[i], testing::agree_rtol(t),
                         std::max(testing::agree_atol(t), testing::agree_rtol(t) * scale));
  }
}

// loss = Σ y ⊙ r with a fixed random r: every element of y matters.
Value weighted_sum(Value y) {
  return reduce_sum(y * y.graph().constant(random_tensor(y.dtype(), y.shape(), 99, 0.5, 1.5), "r"));
}

// --- What fuses ---------------------------------------------------------------------------------

TEST_CASE("nn::softmax over the last axis becomes one fused_softmax with equal values and gradients, f32 and f64") {
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    Graph g;
    Value x = g.placeholder("x", t, {4, 3, 10});
    Value probabilities = nn::softmax(x);
    Value loss = weighted_sum(probabilities);
    // The user keeps the probabilities (a heatmap): the root's value may be used anywhere.
    passes::OptimizedGraph opt = optimize(g, {loss, probabilities});
    CHECK(testing::count_op(*opt.graph, ops::fused_softmax) == 1);
    CHECK(testing::count_op(*opt.graph, ops::exp) == 0);
    CHECK(testing::count_op(*opt.graph, ops::reduce_max) == 0);
    CHECK(rewrites(opt, "softmax → fused_softmax") == 1);
    CHECK(opt.outputs[1].node().op == &ops::fused_softmax);
    const Feeds feeds{{x, random_tensor(t, x.shape(), 1, -3.0, 3.0)}};
    testing::check_same_results(g, {loss, probabilities}, opt, feeds);
    check_same_gradients(g, loss, {x}, opt, feeds);
    CHECK(testing::count_op(*opt.graph, ops::fused_softmax_backward) == 1);
  }
}

TEST_CASE("nn::log_softmax becomes one fused_log_softmax with equal values and gradients, f32 and f64") {
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    Graph g;
    Value x = g.placeholder("x", t, {6, 9});
    Value loss = weighted_sum(nn::log_softmax(x, -1));
    passes::OptimizedGraph opt = optimize(g, {loss});
    CHECK(testing::count_op(*opt.graph, ops::fused_log_softmax) == 1);
    CHECK(testing::count_op(*opt.graph, ops::log) == 0);
    CHECK(rewrites(opt, "log_softmax → fused_log_softmax") == 1);
    const Feeds feeds{{x, random_tensor(t, x.shape(), 2, -3.0, 3.0)}};
    testing::check_same_results(g, {loss}, opt, feeds);
    check_same_gradients(g, loss, {x}, opt, feeds);
    CHECK(testing::count_op(*opt.graph, ops::fused_log_softmax_backward) == 1);
  }
}

TEST_CASE("softmax written by hand, with a plain max or without the max, fuses, and the statistics tell them apart") {
  Graph g;
  Value x = g.placeholder("x", f64, {5, 7});
  Value shifted = exp(x - reduce_max(x, {-1}, true));
  Value plain = shifted / reduce_sum(shifted, {-1}, true);
  Value unshifted_e = exp(x * 2.0);
  Value unshifted = unshifted_e / reduce_sum(unshifted_e, {-1}, true);
  Value logp = (x * 3.0) - log(reduce_sum(exp(x * 3.0), {-1}, true));
  passes::OptimizedGraph opt = optimize(g, {plain, unshifted, logp});
  CHECK(testing::count_op(*opt.graph, ops::fused_softmax) == 2);
  CHECK(testing::count_op(*opt.graph, ops::fused_log_softmax) == 1);
  CHECK(rewrites(opt, "softmax → fused_softmax") == 1);
  CHECK(rewrites(opt, "softmax → fused_softmax (written without the max shift)") == 1);
  CHECK(rewrites(opt, "log_softmax → fused_log_softmax (written without the max shift)") == 1);
  testing::check_same_results(g, {plain, unshifted, logp}, opt, {{x, random_tensor(f64, x.shape(), 3, -2.0, 2.0)}});
}

TEST_CASE("a softmax written without the max shift is fused, and no longer overflows where the plain chain gives NaN") {
  Graph g;
  Value x = g.placeholder("x", f32, {1, 3});
  Value e = exp(x);
  Value p = e / reduce_sum(e, {-1}, true);
  passes::OptimizedGraph opt = optimize(g, {p});
  REQUIRE(testing::count_op(*opt.graph, ops::fused_softmax) == 1);
  const Tensor big = Tensor::from<float>({100, 100, 0}, {1, 3});
  CHECK(std::isnan(testing::run1(g, p, {{x, big}}).at(0)));  // inf / inf in the chain
  const Tensor fused = testing::run(*opt.graph, {opt.outputs[0]}, {{opt.value(x), big}})[0];
  CHECK(fused.at(0) == doctest::Approx(0.5));
  CHECK(fused.at(2) == doctest::Approx(0.0));
}

TEST_CASE("nn::LayerNorm becomes one fused_layer_norm, and outputs and x, gamma, beta gradients agree, f32 and f64") {
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    Graph g;
    Value x = g.placeholder("x", t, {2, 5, 16});
    Value target = g.placeholder("target", t, {2, 5, 16});
    nn::LayerNorm norm(g, "norm", 16, 1e-5, t);
    // gamma and beta away from their 1 and 0, so that a mix-up between them would show.
    visit_dtype(t, [&](auto zero) {
      using T = decltype(zero);
      const Tensor gv = random_tensor(t, {16}, 7, 0.5, 1.5), bv = random_tensor(t, {16}, 8);
      std::copy_n(gv.data<T>().data(), 16, g.parameter_value(norm.gamma).data<T>().data());
      std::copy_n(bv.data<T>().data(), 16, g.parameter_value(norm.beta).data<T>().data());
    });
    Value y = norm(x);
    Value loss = nn::mse_loss(y, target);
    passes::OptimizedGraph opt = optimize(g, {loss, y});
    REQUIRE(testing::count_op(*opt.graph, ops::fused_layer_norm) == 1);
    const Node& fused = opt.outputs[1].node();
    CHECK(fused.op == &ops::fused_layer_norm);
    CHECK(fused.attrs.get_float("eps") == doctest::Approx(1e-5).epsilon(1e-6));
    CHECK(fused.scope == "norm");
    CHECK(testing::count_op(*opt.graph, ops::rsqrt) == 0);
    CHECK(testing::count_op(*opt.graph, ops::reduce_sum) == 1);  // the mse's
    CHECK(rewrites(opt, "layer_norm → fused_layer_norm") == 1);
    const Feeds feeds{{x, random_tensor(t, x.shape(), 4, -2.0, 3.0)}, {target, random_tensor(t, x.shape(), 5)}};
    testing::check_same_results(g, {loss, y}, opt, feeds);
    check_same_gradients(g, loss, {x, norm.gamma, norm.beta}, opt, feeds);
    CHECK(testing::count_op(*opt.graph, ops::fused_layer_norm_backward) == 1);
  }
}

TEST_CASE("layer norm written by hand with a division by √(v + eps) and eps + v fuses") {
  Graph g;
  Value x = g.placeholder("x", f64, {3, 8});
  Value gamma = g.placeholder("gamma", f64, {8}), beta = g.placeholder("beta", f64, {8});
  Value centred = x - reduce_sum(x, {-1}, true) / 8.0;
  Value variance = reduce_mean(centred * centred, {-1}, true);
  Value y = beta + gamma * (centred / sqrt(1e-3 + variance));
  passes::OptimizedGraph opt = optimize(g, {y});
  REQUIRE(testing::count_op(*opt.graph, ops::fused_layer_norm) == 1);
  CHECK(opt.outputs[0].node().attrs.get_float("eps") == 1e-3);
  testing::check_same_results(g, {y}, opt,
                              {{x, random_tensor(f64, x.shape(), 6, -2.0, 2.0)},
                               {gamma, random_tensor(f64, {8}, 7, 0.5, 1.5)},
                               {beta, random_tensor(f64, {8}, 8)}});
}

// Logits [4,3,7] from a placeholder; targets with ignored (-100) and out-of-range (7) entries.
struct Classification {
  Graph g;
  Value logits, targets;
  Feeds feeds;
  Classification(DType t, DType index_type) {
    logits = g.placeholder("logits", t, {4, 3, 7});
    targets = g.placeholder("targets", index_type, {4, 3});
    std::vector<double> ids = {0, 6, -100, 3, 2, 2, 1, -100, 5, 4, 6, 0};
    Tensor tv = Tensor::empty(index_type, {4, 3});
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (index_type == i32)
        tv.data<std::int32_t>()[i] = static_cast<std::int32_t>(ids[i]);
      else
        tv.data<std::int64_t>()[i] = static_cast<std::int64_t>(ids[i]);
    }
    feeds = {{logits, random_tensor(t, logits.shape(), 9, -3.0, 3.0)}, {targets, tv}};
  }
};

TEST_CASE(
    "nn::cross_entropy with ignore_index and label smoothing 0 and 0.1 becomes one fused node, and loss and "
    "gradients agree, f32 and f64") {
  for (DType t : {f32, f64})
    for (DType index_type : {i32, i64})
      for (double smoothing : {0.0, 0.1}) {
        CAPTURE(dtype_name(t));
        CAPTURE(dtype_name(index_type));
        CAPTURE(smoothing);
        Classification c(t, index_type);
        Value loss = nn::cross_entropy(c.logits, c.targets, {.ignore_index = -100, .label_smoothing = smoothing});
        passes::OptimizedGraph opt = optimize(c.g, {loss});
        REQUIRE(testing::count_op(*opt.graph, ops::fused_softmax_cross_entropy) == 1);
        CHECK(testing::count_op(*opt.graph, ops::fused_log_softmax) == 0);  // the whole chain collapsed
        CHECK(testing::count_op(*opt.graph, ops::exp) == 0);
        CHECK(testing::count_op(*opt.graph, ops::iota) == 0);
        CHECK(testing::count_op(*opt.graph, ops::equal) == 0);
        CHECK(testing::count_op(*opt.graph, ops::not_equal) == 1);  // the ignore_index mask stays outside
        const std::uint32_t fused_id = [&] {
          for (std::uint32_t id = 0; id < opt.graph->size(); ++id)
            if (opt.graph->node(id).op == &ops::fused_softmax_cross_entropy) return id;
          return 0u;
        }();
        CHECK(opt.graph->node(fused_id).attrs.get_float("label_smoothing") == doctest::Approx(smoothing));
        CHECK(rewrites(opt, smoothing > 0 ? "cross_entropy with label smoothing → fused_softmax_cross_entropy"
                                          : "cross_entropy → fused_softmax_cross_entropy") == 1);
        testing::check_same_results(c.g, {loss}, opt, c.feeds);
        check_same_gradients(c.g, loss, {c.logits}, opt, c.feeds);
        CHECK(testing::count_op(*opt.graph, ops::fused_softmax_cross_entropy_backward) == 1);
      }
}

TEST_CASE(
    "a GPT forward with its loss: every layer norm, the attention and the cross-entropy fuse, and logits and "
    "gradients agree") {
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    Graph g;
    nn::GPT gpt(g, {.vocab = 11, .d_model = 16, .heads = 2, .d_ff = 32, .layers = 2, .max_len = 8, .dtype = t});
    Value ids = g.placeholder("ids", i64, {2, 8});
    Value targets = g.placeholder("targets", i64, {2, 8});
    Value logits = gpt(ids);
    Value loss = nn::cross_entropy(logits, targets, {.label_smoothing = 0.1});
    const Feeds feeds{{ids, random_tensor(i64, {2, 8}, 6, 0, 11)}, {targets, random_tensor(i64, {2, 8}, 7, 0, 11)}};
    passes::OptimizedGraph opt = optimize(g, {loss, logits});
    CHECK(testing::count_op(*opt.graph, ops::fused_layer_norm) == 2 * 2 + 1);  // two per block, and the final one
    CHECK(testing::count_op(*opt.graph, ops::fused_attention) == 2);
    CHECK(testing::count_op(*opt.graph, ops::fused_softmax_cross_entropy) == 1);
    CHECK(testing::count_op(*opt.graph, ops::exp) == 0);
    testing::check_same_results(g, {loss}, opt, feeds);
    // Each logit sums products through several layers whose rounding the fused kernels change:
    // in f32 its error is relative to the largest logit, not to itself (a logit near 0 is a
    // cancellation), so the absolute tolerance scales with the largest.
    const Tensor expected = testing::run1(g, logits, feeds);
    const Tensor actual = testing::run(*opt.graph, {opt.outputs[1]}, testing::mapped_feeds(opt, feeds))[0];
    double scale = 0;
    for (std::int64_t j = 0; j < expected.numel(); ++j) scale = std::max(scale, std::abs(expected.at(j)));
    testing::check_close(actual, expected, testing::agree_rtol(t),
                         std::max(testing::agree_atol(t), testing::agree_rtol(t) * scale));
    check_same_gradients(g, loss, g.parameters(), opt, feeds);
  }
}

// --- What does not ----------------------------------------------------------------------------------

TEST_CASE("softmax and log_softmax over a non-last axis are not fused, and counted as blocked") {
  Graph g;
  Value x = g.placeholder("x", f32, {4, 5});
  Value p = nn::softmax(x, 0);
  Value logp = nn::log_softmax(x, -2);
  passes::OptimizedGraph opt = optimize(g, {p, logp});
  CHECK(testing::count_op(*opt.graph, ops::fused_softmax) == 0);
  CHECK(testing::count_op(*opt.graph, ops::fused_log_softmax) == 0);
  CHECK(blocked(opt, "softmax → fused_softmax, over an axis other than the last") == 1);
  CHECK(blocked(opt, "log_softmax → fused_log_softmax, over an axis other than the last") == 1);
  testing::check_same_results(g, {p, logp}, opt, {{x, random_tensor(f32, x.shape(), 1)}});
}

TEST_CASE("a softmax whose exp is also used elsewhere is not fused: the inner value is not private") {
  Graph g;
  Value x = g.placeholder("x", f32, {3, 6});
  Value e = exp(x - stop_gradient(reduce_max(x, {-1}, true)));
  Value p = e / reduce_sum(e, {-1}, true);
  Value other = reduce_sum(e);
  passes::OptimizedGraph opt = optimize(g, {p, other});
  CHECK(testing::count_op(*opt.graph, ops::fused_softmax) == 0);
  CHECK(blocked(opt, "softmax → fused_softmax, an inner value is used outside the match") == 1);
  testing::check_same_results(g, {p, other}, opt, {{x, random_tensor(f32, x.shape(), 2)}});
}

TEST_CASE("a softmax that sums without keepdims is not a softmax and is left alone") {
  Graph g;
  Value x = g.placeholder("x", f32, {4, 4});
  Value e = exp(x);
  Value q = e / reduce_sum(e, {-1}, false);  // divides column j by row j's sum
  passes::OptimizedGraph opt = optimize(g, {q});
  CHECK(testing::count_op(*opt.graph, ops::fused_softmax) == 0);
  CHECK(fusion_stats(opt).total_rewrites() == 0);
  testing::check_same_results(g, {q}, opt, {{x, random_tensor(f32, x.shape(), 3)}});
}

// nn::layer_norm's chain with γ and β given, returning the centred x too.
std::pair<Value, Value> layer_norm_chain(Value x, Value gamma, Value beta) {
  const Value centred = x - reduce_mean(x, {-1}, true);
  const Value variance = reduce_mean(centred * centred, {-1}, true);
  return {(centred * rsqrt(variance + 1e-5)) * gamma + beta, centred};
}

TEST_CASE("a layer norm whose centred x is used elsewhere is not fused") {
  Graph g;
  Value x = g.placeholder("x", f32, {3, 8});
  Value gamma = g.placeholder("gamma", f32, {8}), beta = g.placeholder("beta", f32, {8});
  auto [y, centred] = layer_norm_chain(x, gamma, beta);
  Value other = reduce_sum(centred * centred);
  passes::OptimizedGraph opt = optimize(g, {y, other});
  CHECK(testing::count_op(*opt.graph, ops::fused_layer_norm) == 0);
  CHECK(blocked(opt, "layer_norm → fused_layer_norm, an inner value is used outside the match") == 1);
}

TEST_CASE("a layer norm whose gamma or beta is not [D] (per-row, or [1,D]) is not fused, and counted as blocked") {
  Graph g;
  Value x = g.placeholder("x", f32, {3, 8});
  Value per_row = g.placeholder("per_row", f32, {3, 8}), wide = g.placeholder("wide", f32, {1, 8});
  Value beta = g.placeholder("beta", f32, {8});
  Value y1 = layer_norm_chain(x, per_row, beta).first;
  Value y2 = layer_norm_chain(x * 2.0, beta, wide).first;
  passes::OptimizedGraph opt = optimize(g, {y1, y2});
  CHECK(testing::count_op(*opt.graph, ops::fused_layer_norm) == 0);
  CHECK(blocked(opt, "layer_norm → fused_layer_norm, gamma or beta is not [D] (one value per feature)") == 2);
  testing::check_same_results(g, {y1, y2}, opt,
                              {{x, random_tensor(f32, x.shape(), 4)},
                               {per_row, random_tensor(f32, {3, 8}, 5)},
                               {wide, random_tensor(f32, {1, 8}, 6)},
                               {beta, random_tensor(f32, {8}, 7)}});
}

TEST_CASE("a layer norm whose variance is taken over another axis, or whose eps is fed, is not fused") {
  Graph g;
  Value x = g.placeholder("x", f64, {4, 6});
  Value gamma = g.placeholder("gamma", f64, {6}), beta = g.placeholder("beta", f64, {6});
  Value eps = g.placeholder("eps", f64, {});
  Value centred = x - reduce_mean(x, {-1}, true);
  Value column_variance = reduce_mean(centred * centred, {0}, true);
  Value y1 = (centred * rsqrt(column_variance + 1e-5)) * gamma + beta;
  Value centred2 = x * 3.0 - reduce_mean(x * 3.0, {-1}, true);
  Value y2 = (centred2 * rsqrt(reduce_mean(centred2 * centred2, {-1}, true) + eps)) * gamma + beta;
  passes::OptimizedGraph opt = optimize(g, {y1, y2});
  CHECK(testing::count_op(*opt.graph, ops::fused_layer_norm) == 0);
}

TEST_CASE("a layer norm without gamma and beta is not fused") {
  Graph g;
  Value x = g.placeholder("x", f32, {3, 8});
  const Value centred = x - reduce_mean(x, {-1}, true);
  Value y = centred * rsqrt(reduce_mean(centred * centred, {-1}, true) + 1e-5);
  passes::OptimizedGraph opt = optimize(g, {y});
  CHECK(testing::count_op(*opt.graph, ops::fused_layer_norm) == 0);
  CHECK(fusion_stats(opt).total_rewrites() == 0);
}

TEST_CASE("a softmax and a log_softmax that share their exp are both left alone") {
  Graph g;
  Value x = g.placeholder("x", f64, {3, 5});
  // Written by hand: nn::softmax floors its max (for rows of only -inf), so its exp and
  // nn::log_softmax's are no longer one value.
  Value shifted = x - stop_gradient(reduce_max(x, {-1}, true));
  Value e = exp(shifted), total = reduce_sum(e, {-1}, true);
  Value p = e / total, logp = shifted - log(total);
  passes::OptimizedGraph opt = optimize(g, {p, logp});
  CHECK(testing::count_op(*opt.graph, ops::exp) == 1);  // shared
  CHECK(testing::count_op(*opt.graph, ops::fused_softmax) == 0);
  CHECK(testing::count_op(*opt.graph, ops::fused_log_softmax) == 0);
  CHECK(blocked(opt, "softmax → fused_softmax, an inner value is used outside the match") == 1);
  CHECK(blocked(opt, "log_softmax → fused_log_softmax, an inner value is used outside the match") == 1);
  testing::check_same_results(g, {p, logp}, opt, {{x, random_tensor(f64, x.shape(), 8)}});
}

TEST_CASE("a cross-entropy whose log-probabilities the user keeps is not fused, but its log_softmax is") {
  for (DType t : {f32, f64}) {
    Classification c(t, i64);
    Value logp = nn::log_softmax(c.logits);
    Value picked = reduce_sum(logp * nn::one_hot(c.targets, 7, t), {-1});
    Value loss = reduce_mean(neg(picked));
    passes::OptimizedGraph opt = optimize(c.g, {loss, logp});
    CHECK(testing::count_op(*opt.graph, ops::fused_softmax_cross_entropy) == 0);
    CHECK(testing::count_op(*opt.graph, ops::fused_log_softmax) == 1);
    CHECK(blocked(opt, "cross_entropy → fused_softmax_cross_entropy, an inner value is used outside the match") == 1);
    testing::check_same_results(c.g, {loss, logp}, opt, c.feeds);
    check_same_gradients(c.g, loss, {c.logits}, opt, c.feeds);
  }
}

TEST_CASE("a cross-entropy whose one-hot has fewer classes than the logits, or is not the targets', is not fused") {
  Classification c(f32, i64);
  Value logp = nn::log_softmax(c.logits);
  // one_hot over 1 class broadcasts against the 7 logits: not a cross-entropy.
  Value narrow = neg(reduce_sum(logp * nn::one_hot(c.targets, 1, f32), {-1}));
  // a one-hot along another axis (iota over the batch) is not a class picker.
  Value columns = iota(c.g, {4, 3, 7}, 1, i64);
  Value wrong_axis =
      neg(reduce_sum(nn::log_softmax(c.logits * 2.0) * cast(equal(columns, unsqueeze(c.targets, -1)), f32), {-1}));
  passes::OptimizedGraph opt = optimize(c.g, {narrow, wrong_axis});
  CHECK(testing::count_op(*opt.graph, ops::fused_softmax_cross_entropy) == 0);
  CHECK(testing::count_op(*opt.graph, ops::fused_log_softmax) == 2);
  testing::check_same_results(c.g, {narrow, wrong_axis}, opt, c.feeds);
}

}  // namespace
