// Attention whose mask needs a gradient (a learned attention bias passed as the mask, T5- or
// ALiBi-style), and attention rows that are fully masked: the optimizer must not change either
// answer. The fusion pass refuses to fuse a mask that depends on a parameter; fused_attention's
// own gradient rule gives a mask that needs it the unfused chain's gradient; and a row whose
// every score is -∞ gives o = 0 and zero gradients with or without fusion.
#include <cmath>
#include <limits>

#include "optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::random_tensor;

constexpr double inf = std::numeric_limits<double>::infinity();

using fovea::testing::set_element;

// One SGD step of mean((attention(q, k, v, bias) - 0)²) where bias [Tq,Tk] is a parameter,
// compiled with or without the optimizer. Returns how far the step moved the bias.
double bias_step(bool optimize) {
  Graph g;
  g.set_seed(5);
  Value x = g.placeholder("x", f64, {2, 4, 6});
  Value wq = g.parameter("wq", f64, {6, 6}, init::normal(0.0, 0.5));
  Value wk = g.parameter("wk", f64, {6, 6}, init::normal(0.0, 0.5));
  Value bias = g.parameter("bias", f64, {4, 4}, init::normal(0.0, 0.5));
  Value o = nn::scaled_dot_product_attention(matmul(x, wq), matmul(x, wk), x, {bias});
  Value loss = nn::mse_loss(o, zeros_like(o));
  const Tensor before = g.parameter_value(bias).clone();
  auto build_step = [](Graph& graph, const std::vector<Value>& outputs) {
    nn::TrainStep step = nn::sgd(outputs[0], graph.parameters(), {.lr = nn::constant_lr(1.0)});
    return passes::StepParts{{outputs[0]}, step.updates};
  };
  passes::CompiledTrainingStep train =
      passes::compile_training_step(g, {loss}, build_step, cpu(), {.optimize = optimize});
  train.run({{x, random_tensor(f64, {2, 4, 6}, 3)}});
  const Tensor& after = g.parameter_value(bias);
  double moved = 0;
  for (std::int64_t i = 0; i < after.numel(); ++i) moved += std::abs(after.at(i) - before.at(i));
  return moved;
}

}  // namespace

TEST_CASE("a learned attention bias passed as the mask trains the same with the optimizer on and off") {
  const double plain = bias_step(false), optimized = bias_step(true);
  CHECK(plain > 1e-3);
  CHECK(optimized == doctest::Approx(plain).epsilon(1e-10));
}

TEST_CASE("attention fusion leaves a mask that depends on a parameter unfused, and says why") {
  Graph g;
  Value q = g.placeholder("q", f32, {2, 5, 4}), k = g.placeholder("k", f32, {2, 5, 4});
  Value bias = g.parameter("alibi", f32, {5, 5}, init::zeros());
  Value causal = nn::causal_mask(g, 5, 5).additive;
  Value o = nn::scaled_dot_product_attention(q, k, k, {bias + causal});
  const passes::OptimizedGraph opt = passes::optimize_forward(g, {o});
  CHECK(testing::count_op(*opt.graph, ops::fused_attention) == 0);
  CHECK(opt.report().find("the mask depends on parameter 'alibi'") != std::string::npos);

  // A mask built from data alone (a placeholder, a causal pattern) still fuses.
  Graph h;
  Value hq = h.placeholder("q", f32, {2, 5, 4}), padding = h.placeholder("padding", f32, {2, 1, 5});
  Value ho = nn::scaled_dot_product_attention(hq, hq, hq, {padding});
  CHECK(testing::count_op(*passes::optimize_forward(h, {ho}).graph, ops::fused_attention) == 1);
}

TEST_CASE("fused_attention gives a mask that needs a gradient the unfused chain's, for every mask shape") {
  for (const Shape& mask_shape : {Shape{5, 7}, Shape{2, 1, 5, 7}, Shape{3, 5, 7}, Shape{2, 3, 5, 7}})
    for (bool causal : {false, true}) {
      CAPTURE(mask_shape.to_string());
      CAPTURE(causal);
      Graph g;
      const Shape sq{2, 3, 5, 4}, sk{2, 3, 7, 4};
      Value q = g.placeholder("q", f64, sq), k = g.placeholder("k", f64, sk), v = g.placeholder("v", f64, sk);
      Value mask = g.placeholder("mask", f64, mask_shape);
      Value chain_mask = mask;
      if (causal) chain_mask = mask + nn::causal_mask(g, 5, 7, f64).additive;
      const Value fused = fused_attention(q, k, v, mask, 0.5, causal).output;
      const Value plain = nn::softmax(matmul(q, k, false, true) * 0.5 + chain_mask) * 1.0;
      const Value plain_o = matmul(plain, v);
      const Tensor weights = random_tensor(f64, {2, 3, 5, 4}, 9);
      const Value w = g.constant(weights);
      const Value fused_grad = grad(reduce_sum(fused * w), {mask})[0];
      const Value plain_grad = grad(reduce_sum(plain_o * w), {mask})[0];
      const std::vector<Tensor> got = testing::run(g, {fused_grad, plain_grad},
                                                   {{q, random_tensor(f64, sq, 1)},
                                                    {k, random_tensor(f64, sk, 2)},
                                                    {v, random_tensor(f64, sk, 3)},
                                                    {mask, random_tensor(f64, mask_shape, 4)}});
      double size = 0;
      for (std::int64_t i = 0; i < got[1].numel(); ++i) size += std::abs(got[1].at(i));
      CHECK(size > 1e-3);
      testing::check_close(got[0], got[1], 1e-10, 1e-12);
    }
}

TEST_CASE("a mask gradient through fused attention with dropout is a clear error, not a zero") {
  Graph g;
  Value q = g.placeholder("q", f64, {2, 3, 4}), mask = g.placeholder("mask", f64, {3, 3});
  const Value o = fused_attention(q, q, q, mask, 0.5, false, {.p = 0.1, .scale = 1 / 0.9, .seed = 1}).output;
  CHECK_THROWS_WITH_AS(grad(reduce_sum(o), {mask}), doctest::Contains("needs a gradient"), Error);
  // Without asking for the mask's gradient, the rule builds none and nothing fails.
  CHECK_NOTHROW(grad(reduce_sum(o), {q}));
}

TEST_CASE("softmax of a row of only -inf is 0, fused or not, and so is its gradient") {
  for (DType dtype : {f32, f64}) {
    Graph g;
    Value x = g.placeholder("x", dtype, {3, 4});
    Value y = nn::softmax(x);
    const Tensor weights = random_tensor(dtype, {3, 4}, 2);
    Value dx = grad(reduce_sum(y * g.constant(weights)), {x})[0];
    Tensor input = random_tensor(dtype, {3, 4}, 1);
    for (std::int64_t c = 0; c < 4; ++c) set_element(input, 4 + c, -inf);  // row 1: fully masked
    set_element(input, 8, -inf);                                           // row 2: one masked entry
    const std::vector<Tensor> plain = testing::run(g, {y, dx}, {{x, input}});
    for (std::int64_t c = 0; c < 4; ++c) {
      CHECK(plain[0].at(4 + c) == 0.0);
      CHECK(plain[1].at(4 + c) == 0.0);
    }
    CHECK(plain[0].at(8) == 0.0);
    CHECK(plain[0].at(0) + plain[0].at(1) + plain[0].at(2) + plain[0].at(3) == doctest::Approx(1.0));
    // The optimizer turns the chain into fused_softmax and its backward: the same answer.
    passes::TrainingGraph tg = passes::optimize_training(g, {y}, [&](Graph& fg, const std::vector<Value>& out) {
      return passes::StepParts{{out[0], grad(reduce_sum(out[0] * fg.constant(weights)), {fg.placeholders()[0]})[0]},
                               {}};
    });
    CHECK(testing::count_op(*tg.forward, ops::fused_softmax) == 1);
    const std::vector<Tensor> fused = testing::run(*tg.step.graph, tg.step.outputs, {{tg.step.value(x), input}});
    testing::check_close(fused[0], plain[0], testing::agree_rtol(dtype), testing::agree_atol(dtype));
    testing::check_close(fused[1], plain[1], testing::agree_rtol(dtype), testing::agree_atol(dtype));
  }
}

TEST_CASE("a fully masked attention row gives o = 0 and zero gradients with the optimizer on and off") {
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph g;
    g.set_seed(2);
    Value x = g.placeholder("x", dtype, {2, 5, 4});
    Value mask = g.placeholder("mask", dtype, {2, 1, 5});
    Value w = g.parameter("w", dtype, {4, 4}, init::normal(0.0, 0.5));
    Value h = matmul(x, w);
    Value o = nn::scaled_dot_product_attention(h, h, h, {mask});
    Value loss = reduce_sum(o * o);
    Tensor m = Tensor::zeros(dtype, {2, 1, 5});
    for (std::int64_t j = 0; j < 5; ++j) set_element(m, j, -inf);  // the first sequence may attend to nothing
    set_element(m, 5 + 3, -inf);
    const Feeds feeds{{x, random_tensor(dtype, {2, 5, 4}, 1)}, {mask, m}};
    const std::vector<Value> plain_values{o, grad(loss, {w})[0]};
    const std::vector<Tensor> plain = testing::run(g, plain_values, feeds);
    for (std::int64_t i = 0; i < 5 * 4; ++i) CHECK(plain[0].at(i) == 0.0);
    for (std::int64_t i = 0; i < plain[1].numel(); ++i) REQUIRE(std::isfinite(plain[1].at(i)));

    passes::TrainingGraph tg = passes::optimize_training(g, {o}, [](Graph& fg, const std::vector<Value>& out) {
      const Value forward_loss = reduce_sum(out[0] * out[0]);
      return passes::StepParts{{out[0], grad(forward_loss, fg.parameters())[0]}, {}};
    });
    CHECK(testing::count_op(*tg.forward, ops::fused_attention) == 1);
    Feeds mapped;
    for (const auto& [value, tensor] : feeds) mapped.emplace_back(tg.step.value(value), tensor);
    const std::vector<Tensor> fused = testing::run(*tg.step.graph, tg.step.outputs, mapped);
    testing::check_close(fused[0], plain[0], testing::agree_rtol(dtype), testing::agree_atol(dtype));
    testing::check_close(fused[1], plain[1], testing::agree_rtol(dtype), testing::agree_atol(dtype));
  }
}
