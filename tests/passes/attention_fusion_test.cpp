// Attention fusion: the plain chain becomes one fused_attention node with the same values and
// the same gradients; every near-miss is left alone.
#include <algorithm>
#include <cmath>

#include "optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::random_tensor;

// q [2,3,5,8], k [2,3,7,8], v [2,3,7,6]: batch 2, heads 3, Tq 5, Tk 7, D 8, Dv 6.
struct Qkv {
  Graph g;
  Value q, k, v;
  Feeds feeds;
  explicit Qkv(DType t, std::int64_t tq = 5, std::int64_t tk = 7) {
    q = g.placeholder("q", t, {2, 3, tq, 8});
    k = g.placeholder("k", t, {2, 3, tk, 8});
    v = g.placeholder("v", t, {2, 3, tk, 6});
    feeds = {
        {q, random_tensor(t, q.shape(), 1)}, {k, random_tensor(t, k.shape(), 2)}, {v, random_tensor(t, v.shape(), 3)}};
  }
};

// The fused nodes of a graph.
std::vector<const Node*> fused_nodes(const Graph& g) {
  std::vector<const Node*> nodes;
  for (std::uint32_t id = 0; id < g.size(); ++id)
    if (g.node(id).op == &ops::fused_attention) nodes.push_back(&g.node(id));
  return nodes;
}

const passes::PassStats& fusion_stats(const passes::OptimizedGraph& opt) { return opt.passes[4].stats; }

// softmax written out without stop_gradient (the "plain" form), or without the max at all.
Value plain_softmax(Value s, bool subtract_max) {
  Value e = subtract_max ? exp(s - reduce_max(s, {-1}, true)) : exp(s);
  return e / reduce_sum(e, {-1}, true);
}

TEST_CASE("scaled_dot_product_attention fuses into one fused_attention node with equal outputs, f32 and f64") {
  for (DType t : {f32, f64}) {
    Qkv a(t);
    Value o = nn::scaled_dot_product_attention(a.q, a.k, a.v);
    passes::OptimizedGraph opt = passes::optimize_forward(a.g, {o});
    const auto fused = fused_nodes(*opt.graph);
    REQUIRE(fused.size() == 1);
    CHECK(fused[0]->attrs.get_float("scale") == doctest::Approx(1.0 / std::sqrt(8.0)));
    CHECK_FALSE(fused[0]->attrs.get_bool("causal"));
    CHECK(fused[0]->inputs.size() == 3);
    CHECK(fused[0]->scope == "attention");
    CHECK(fused[0]->where.line == o.node().where.line);  // the user's line, like the matmul it replaces
    CHECK(testing::count_op(*opt.graph, ops::exp) == 0);
    CHECK(testing::count_op(*opt.graph, ops::matmul) == 0);
    CHECK(fusion_stats(opt).rewrites.at("fused attention") == 1);
    // q, k, v and the fused node.
    CHECK(opt.graph->size() == 4);
    testing::check_same_results(a.g, {o}, opt, a.feeds);
  }
}

TEST_CASE("an additive mask becomes the fused node's fourth input, for [Tq,Tk] and padding masks") {
  for (DType t : {f32, f64}) {
    for (bool padding : {false, true}) {
      CAPTURE(padding);
      Qkv a(t);
      const Value lengths = a.g.constant(Tensor::from<std::int64_t>({7, 4}, {2}));
      const Value mask = padding ? nn::padding_mask_from_lengths(lengths, 7, t).additive  // [2,1,1,7]
                                 : a.g.constant(random_tensor(t, {5, 7}, 9, -2.0, 0.0));
      Value o = nn::scaled_dot_product_attention(a.q, a.k, a.v, {mask});
      passes::OptimizedGraph opt = passes::optimize_forward(a.g, {o});
      const auto fused = fused_nodes(*opt.graph);
      REQUIRE(fused.size() == 1);
      CHECK(fused[0]->inputs.size() == 4);
      CHECK(opt.graph->type(fused[0]->inputs[3]).shape == mask.shape());
      testing::check_same_results(a.g, {o}, opt, a.feeds);
    }
  }
}

TEST_CASE("two attentions that share their scores (merged by CSE) are not fused: the scores are read twice") {
  Qkv a(f32);
  Value o1 = nn::scaled_dot_product_attention(a.q, a.k, a.v);
  Value o2 = nn::scaled_dot_product_attention(a.q, a.k, a.v, {a.g.constant(random_tensor(f32, {5, 7}, 9, -2.0, 0.0))});
  passes::OptimizedGraph opt = passes::optimize_forward(a.g, {o1, o2});
  CHECK(fused_nodes(*opt.graph).empty());
  CHECK(fusion_stats(opt).blocked.at("fused attention, an inner value is used outside the match") == 2);
  testing::check_same_results(a.g, {o1, o2}, opt, a.feeds);
}

TEST_CASE("a scale on q, a division by √d, kᵀ by permute and softmax without stop_gradient all fuse") {
  for (DType t : {f32, f64}) {
    Qkv a(t);
    Value s1 = matmul(a.q * 0.25, a.k, false, true);  // scale folded into q
    Value o1 = matmul(nn::softmax(s1), a.v);
    Value s2 = matmul(a.q, a.k, false, true) / std::sqrt(8.0);  // division
    Value o2 = matmul(plain_softmax(s2, true), a.v);
    Value s3 = 0.5 * matmul(a.q, transpose(a.k));                                    // kᵀ as a permute
    Value o3 = matmul(plain_softmax(s3, false), a.v);                                // no max subtracted
    Value o4 = matmul(nn::softmax(matmul(a.q * 0.5, a.k, false, true) * 0.5), a.v);  // both scales
    passes::OptimizedGraph opt = passes::optimize_forward(a.g, {o1, o2, o3, o4});
    const auto fused = fused_nodes(*opt.graph);
    REQUIRE(fused.size() == 4);
    CHECK(opt.outputs[0].node().attrs.get_float("scale") == 0.25);
    CHECK(opt.outputs[1].node().attrs.get_float("scale") == doctest::Approx(1.0 / std::sqrt(8.0)));
    CHECK(opt.outputs[2].node().attrs.get_float("scale") == 0.5);
    CHECK(opt.outputs[3].node().attrs.get_float("scale") == 0.25);
    CHECK(testing::count_op(*opt.graph, ops::permute) == 0);
    testing::check_same_results(a.g, {o1, o2, o3, o4}, opt, a.feeds);
  }
}

// Loss = mean((attention(x) - target)²) through nn::MultiHeadAttention, with a padding mask.
struct AttentionLayer {
  Graph g;
  Value x, target, loss;
  Feeds feeds;
  explicit AttentionLayer(DType t) {
    x = g.placeholder("x", t, {2, 6, 16});
    target = g.placeholder("target", t, {2, 6, 16});
    const Value lengths = g.constant(Tensor::from<std::int64_t>({6, 3}, {2}));
    nn::MultiHeadAttention attn(g, "attn", 16, 4, 0.0, t);
    loss = nn::mse_loss(attn(x, x, nn::padding_mask_from_lengths(lengths, 6, t)), target);
    feeds = {{x, random_tensor(t, x.shape(), 4)}, {target, random_tensor(t, target.shape(), 5)}};
  }
};

// ∂loss/∂p for every parameter, in the user's graph and in the optimized one, agree.
void check_same_gradients(Graph& g, Value loss, const passes::OptimizedGraph& opt, const Feeds& feeds) {
  const std::vector<Value> params = g.parameters();
  std::vector<Value> mapped;
  for (const Value& p : params) mapped.push_back(opt.value(p));
  const std::vector<Value> expected_grads = grad(loss, params);
  const std::vector<Value> actual_grads = grad(opt.outputs[0], mapped);
  CHECK(testing::count_op(*opt.graph, ops::fused_attention_backward) == fused_nodes(*opt.graph).size());
  const std::vector<Tensor> expected = testing::run(g, expected_grads, feeds);
  const std::vector<Tensor> actual = testing::run(*opt.graph, actual_grads, testing::mapped_feeds(opt, feeds));
  for (std::size_t i = 0; i < params.size(); ++i) {
    CAPTURE(params[i].name());
    const DType t = params[i].dtype();
    // A parameter gradient sums many products whose order the fused kernel changes, so in
    // f32 an element may carry rounding of the order of the tensor's largest element times
    // 1e-5 (seen on a 16-thread AVX-512 machine): the absolute tolerance scales with it.
    double scale = 0;
    for (std::int64_t j = 0; j < expected[i].numel(); ++j) scale = std::max(scale, std::abs(expected[i].at(j)));
    testing::check_close(actual[i], expected[i], testing::agree_rtol(t),
                         std::max(testing::agree_atol(t), testing::agree_rtol(t) * scale));
  }
}

TEST_CASE("nn::MultiHeadAttention fuses, and its parameter gradients through the fused op match, f32 and f64") {
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    AttentionLayer layer(t);
    passes::OptimizedGraph opt = passes::optimize_forward(layer.g, {layer.loss});
    REQUIRE(fused_nodes(*opt.graph).size() == 1);
    CHECK(fused_nodes(*opt.graph)[0]->scope == "attn/attention");
    testing::check_same_results(layer.g, {layer.loss}, opt, layer.feeds);
    check_same_gradients(layer.g, layer.loss, opt, layer.feeds);
  }
}

TEST_CASE("a GPT forward gets one fused, causal attention per layer, with equal logits and gradients") {
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    Graph g;
    nn::GPT gpt(
        g, {.vocab = 11, .d_model = 16, .heads = 2, .d_ff = 32, .layers = 3, .max_len = 8, .dropout = 0.1, .dtype = t});
    Value ids = g.placeholder("ids", i64, {2, 8});
    Value targets = g.placeholder("targets", i64, {2, 8});
    Value logits = gpt(ids);  // evaluation mode: dropout is the identity
    Value loss = nn::cross_entropy(logits, targets);
    Tensor id_values = random_tensor(i64, {2, 8}, 6, 0, 11), target_values = random_tensor(i64, {2, 8}, 7, 0, 11);
    const Feeds feeds{{ids, id_values}, {targets, target_values}};

    passes::OptimizedGraph opt = passes::optimize_forward(g, {loss, logits});
    const auto fused = fused_nodes(*opt.graph);
    REQUIRE(fused.size() == 3);
    for (const Node* n : fused) {
      CHECK(n->attrs.get_bool("causal"));  // the causal mask was recognised and dropped
      CHECK(n->inputs.size() == 3);
    }
    CHECK(testing::count_op(*opt.graph, ops::iota) == 0);
    testing::check_same_results(g, {loss, logits}, opt, feeds);
    check_same_gradients(g, loss, opt, feeds);
  }
}

TEST_CASE("a causal mask too big to fold is recognised from nn::causal_mask's nodes") {
  Qkv a(f32, 80, 80);
  const nn::AttentionMask causal = nn::causal_mask(a.g, 80, 80);
  Value o = nn::scaled_dot_product_attention(a.q, a.k, a.v, causal);
  passes::OptimizedGraph opt = passes::optimize_forward(a.g, {o});
  const auto fused = fused_nodes(*opt.graph);
  REQUIRE(fused.size() == 1);
  CHECK(fused[0]->attrs.get_bool("causal"));
  CHECK(testing::count_op(*opt.graph, ops::where) == 0);
  testing::check_same_results(a.g, {o}, opt, a.feeds);
}

TEST_CASE("a causal mask with more queries than keys stays an additive mask") {
  Qkv a(f64, 7, 5);  // rows 0 and 1 see no key: -1e9 gives them uniform weights, causal=true would give 0
  Value o = nn::scaled_dot_product_attention(a.q, a.k, a.v, nn::causal_mask(a.g, 7, 5, f64));
  passes::OptimizedGraph opt = passes::optimize_forward(a.g, {o});
  const auto fused = fused_nodes(*opt.graph);
  REQUIRE(fused.size() == 1);
  CHECK_FALSE(fused[0]->attrs.get_bool("causal"));
  CHECK(fused[0]->inputs.size() == 4);
  testing::check_same_results(a.g, {o}, opt, a.feeds);
}

// --- Dropout on the probabilities ----------------------------------------------------------------

// The fused node's dropout attributes, and those of the random node it replaced.
void check_dropout_of(const Node& fused, const Graph& user, double p) {
  REQUIRE(fused.attrs.has("dropout"));
  CHECK(fused.attrs.get_float("dropout") == doctest::Approx(p));
  CHECK(fused.attrs.get_float("dropout_scale") == doctest::Approx(1.0 / (1.0 - p)));
  std::vector<std::int64_t> streams;
  for (std::uint32_t id = 0; id < user.size(); ++id)
    if (user.node(id).op == &ops::random_uniform) {
      CHECK(user.node(id).attrs.get_int("seed") == fused.attrs.get_int("dropout_seed"));
      streams.push_back(user.node(id).attrs.get_int("stream"));
    }
  CHECK(std::count(streams.begin(), streams.end(), fused.attrs.get_int("dropout_stream")) == 1);
}

TEST_CASE(
    "training-mode nn::MultiHeadAttention (dropout on the probabilities, a step fed) fuses with equal outputs and "
    "gradients") {
  for (DType t : {f32, f64})
    for (double p : {0.1, 0.5}) {
      CAPTURE(dtype_name(t));
      CAPTURE(p);
      Graph g;
      Value x = g.placeholder("x", t, {2, 6, 16});
      Value target = g.placeholder("target", t, {2, 6, 16});
      Value step = g.placeholder("step", i64, {});
      const Value lengths = g.constant(Tensor::from<std::int64_t>({6, 3}, {2}));
      nn::MultiHeadAttention attn(g, "attn", 16, 4, p, t);
      Value loss = nn::mse_loss(
          attn(x, x, nn::padding_mask_from_lengths(lengths, 6, t), {.training = true, .step = step}), target);
      const Feeds feeds{{x, random_tensor(t, x.shape(), 4)},
                        {target, random_tensor(t, target.shape(), 5)},
                        {step, Tensor::scalar<std::int64_t>(17)}};
      passes::OptimizedGraph opt = passes::optimize_forward(g, {loss});
      const auto fused = fused_nodes(*opt.graph);
      REQUIRE(fused.size() == 1);
      CHECK(fused[0]->inputs.size() == 5);  // q, k, v, the padding mask, the step
      CHECK(fused[0]->inputs[4] == opt.value(step).ref());
      CHECK(fused[0]->attrs.get_bool("dropout_step"));
      check_dropout_of(*fused[0], g, p);
      CHECK(testing::count_op(*opt.graph, ops::random_uniform) == 0);
      CHECK(fusion_stats(opt).rewrites.at("attention with dropout → fused_attention") == 1);
      CHECK_FALSE(fusion_stats(opt).rewrites.contains("fused attention"));
      testing::check_same_results(g, {loss}, opt, feeds);
      check_same_gradients(g, loss, opt, feeds);
    }
}

TEST_CASE("dropout without a step, with c·P operand order, Tq != Tk and no mask fuses with equal results") {
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    Qkv a(t, 5, 9);
    Value p = nn::softmax(matmul(a.q, a.k, false, true) * 0.125);
    Value u = random_uniform(a.g, p.shape(), t, 0.0, 1.0);
    Value dropped = where(greater_equal(u, scalar_like(u, 0.3)), scalar_like(p, 1.0 / 0.7) * p, scalar_like(p, 0.0));
    Value o = matmul(dropped, a.v);
    passes::OptimizedGraph opt = passes::optimize_forward(a.g, {o});
    const auto fused = fused_nodes(*opt.graph);
    REQUIRE(fused.size() == 1);
    CHECK(fused[0]->inputs.size() == 3);
    CHECK_FALSE(fused[0]->attrs.get_bool("dropout_step"));
    check_dropout_of(*fused[0], a.g, 0.3);
    testing::check_same_results(a.g, {o}, opt, a.feeds);
  }
}

TEST_CASE(
    "a GPT training step (dropout 0.1, step fed) gets one fused attention per layer, with equal loss and gradients") {
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    Graph g;
    nn::GPT gpt(
        g, {.vocab = 11, .d_model = 16, .heads = 2, .d_ff = 32, .layers = 3, .max_len = 8, .dropout = 0.1, .dtype = t});
    Value ids = g.placeholder("ids", i64, {2, 8});
    Value targets = g.placeholder("targets", i64, {2, 8});
    Value step = g.placeholder("step", i64, {});
    Value loss = nn::cross_entropy(gpt(ids, {.training = true, .step = step}), targets);
    const Feeds feeds{{ids, random_tensor(i64, {2, 8}, 6, 0, 11)},
                      {targets, random_tensor(i64, {2, 8}, 7, 0, 11)},
                      {step, Tensor::scalar<std::int64_t>(9)}};

    passes::OptimizedGraph opt = passes::optimize_forward(g, {loss});
    const auto fused = fused_nodes(*opt.graph);
    REQUIRE(fused.size() == 3);
    for (const Node* n : fused) {
      CHECK(n->attrs.get_bool("causal"));  // the causal mask was recognised and dropped
      CHECK(n->attrs.get_float("dropout") == doctest::Approx(0.1));
      CHECK(n->inputs.size() == 4);  // q, k, v, the step
    }
    CHECK(fusion_stats(opt).rewrites.at("attention with dropout → fused_attention") == 3);
    testing::check_same_results(g, {loss}, opt, feeds);
    check_same_gradients(g, loss, opt, feeds);
  }
}

// --- Near-misses: each must stay unfused, and compute what it computed -------------------------

void check_not_fused(Graph& g, const std::vector<Value>& outputs, const Feeds& feeds,
                     const std::string& blocked_reason = "") {
  passes::OptimizedGraph opt = passes::optimize_forward(g, outputs);
  CHECK(fused_nodes(*opt.graph).empty());
  CHECK_FALSE(fusion_stats(opt).rewrites.contains("fused attention"));
  if (!blocked_reason.empty()) {
    bool found = false;
    for (const auto& [reason, n] : fusion_stats(opt).blocked) found |= reason.find(blocked_reason) != std::string::npos;
    CHECK_MESSAGE(found, fusion_stats(opt).rewrites_to_string());
  }
  testing::check_same_results(g, outputs, opt, feeds);
}

TEST_CASE("not fused: the attention probabilities are kept for a heatmap") {
  Qkv a(f32);
  Value probabilities;
  Value o = nn::scaled_dot_product_attention(a.q, a.k, a.v, {}, 0.0, {}, &probabilities);
  check_not_fused(a.g, {o, probabilities}, a.feeds, "an inner value is used outside");
}

TEST_CASE("not fused: the scores are read by something outside the attention") {
  Qkv a(f32);
  Value scores = matmul(a.q, a.k, false, true) * 0.125;
  Value o = matmul(nn::softmax(scores), a.v);
  Value spread = reduce_max(scores);  // another reader of the scores
  check_not_fused(a.g, {o, spread}, a.feeds, "an inner value is used outside");
}

TEST_CASE("not fused: softmax over the wrong axis") {
  Qkv a(f32, 7, 7);
  Value o = matmul(nn::softmax(matmul(a.q, a.k, false, true) * 0.125, -2), a.v);
  check_not_fused(a.g, {o}, a.feeds);
}

TEST_CASE("not fused: a mask that would enlarge the scores is not one the fused op accepts") {
  Qkv a(f32);
  const Value mask = a.g.constant(random_tensor(f32, {2, 1, 1, 5, 7}, 3, -1.0, 0.0));  // rank 5 > rank 4
  Value o = matmul(nn::softmax(matmul(a.q, a.k, false, true) * 0.125 + mask), a.v);
  CHECK(o.rank() == 5);
  check_not_fused(a.g, {o}, a.feeds);
}

TEST_CASE("not fused: a scale that is a vector, or a number only known at run time") {
  Qkv a(f32);
  const Value per_key = a.g.constant(random_tensor(f32, {7}, 4, 0.1, 0.2));
  Value o1 = matmul(nn::softmax(matmul(a.q, a.k, false, true) * per_key), a.v);
  Value temperature = a.g.placeholder("temperature", f32, {});
  Value o2 = matmul(nn::softmax(matmul(a.q, a.k, false, true) * temperature), a.v);
  Feeds feeds = a.feeds;
  feeds.emplace_back(temperature, Tensor::scalar(0.3f));
  check_not_fused(a.g, {o1, o2}, feeds);
}

TEST_CASE("not fused: dropout whose random tensor is not shaped like the scores (one mask for every head)") {
  Qkv a(f32);
  Value step = a.g.placeholder("step", i64, {});
  Value p = nn::softmax(matmul(a.q, a.k, false, true) * 0.125);
  Value u = random_uniform(a.g, {1, 1, 5, 7}, f32, 0.0, 1.0, step);  // broadcast over batch and heads
  Value dropped = where(greater_equal(u, scalar_like(u, 0.2)), p * scalar_like(p, 1.25), scalar_like(p, 0.0));
  Value o = matmul(dropped, a.v);
  Feeds feeds = a.feeds;
  feeds.emplace_back(step, Tensor::scalar<std::int64_t>(3));
  check_not_fused(a.g, {o}, feeds, "dropout on the probabilities in a form the fused op does not draw");
}

TEST_CASE("not fused: dropout whose keep mask is also read elsewhere") {
  Qkv a(f32);
  Value step = a.g.placeholder("step", i64, {});
  Value p = nn::softmax(matmul(a.q, a.k, false, true) * 0.125);
  Value u = random_uniform(a.g, p.shape(), f32, 0.0, 1.0, step);
  Value keep = greater_equal(u, scalar_like(u, 0.2));
  Value o = matmul(where(keep, p * scalar_like(p, 1.25), scalar_like(p, 0.0)), a.v);
  Value kept = reduce_sum(cast(keep, f32));  // another reader of the mask
  Feeds feeds = a.feeds;
  feeds.emplace_back(step, Tensor::scalar<std::int64_t>(3));
  check_not_fused(a.g, {o, kept}, feeds, "an inner value is used outside");
}

TEST_CASE("not fused: dropout whose rescale factor is only known at run time") {
  Qkv a(f32);
  Value step = a.g.placeholder("step", i64, {});
  Value factor = a.g.placeholder("factor", f32, {});
  Value p = nn::softmax(matmul(a.q, a.k, false, true) * 0.125);
  Value u = random_uniform(a.g, p.shape(), f32, 0.0, 1.0, step);
  Value o = matmul(where(greater_equal(u, scalar_like(u, 0.2)), p * factor, scalar_like(p, 0.0)), a.v);
  Feeds feeds = a.feeds;
  feeds.emplace_back(step, Tensor::scalar<std::int64_t>(3));
  feeds.emplace_back(factor, Tensor::scalar(1.25f));
  check_not_fused(a.g, {o}, feeds, "dropout on the probabilities in a form the fused op does not draw");
}

TEST_CASE("not fused: keys shared across the batch, which fused_attention does not broadcast") {
  Graph g;
  Value q = g.placeholder("q", f32, {2, 3, 5, 8});
  Value k = g.placeholder("k", f32, {3, 7, 8});  // no batch dim
  Value v = g.placeholder("v", f32, {3, 7, 6});
  Value o = nn::scaled_dot_product_attention(q, k, v);
  check_not_fused(g, {o},
                  {{q, random_tensor(f32, q.shape(), 1)},
                   {k, random_tensor(f32, k.shape(), 2)},
                   {v, random_tensor(f32, v.shape(), 3)}});
}

TEST_CASE("not fused after autodiff: the gradient reads the probabilities, so fusion must come first") {
  AttentionLayer layer(f32);
  const std::vector<Value> grads = grad(layer.loss, layer.g.parameters());
  std::vector<Value> outputs{layer.loss};
  outputs.insert(outputs.end(), grads.begin(), grads.end());
  check_not_fused(layer.g, outputs, layer.feeds, "an inner value is used outside");
}

}  // namespace
