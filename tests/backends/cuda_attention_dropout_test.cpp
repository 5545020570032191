// Dropout inside fused attention on the GPU: the CUDA kernels draw the same keep bits as the
// CPU's (and as random_uniform), and give the same outputs and gradients.
//
// Where no GPU is visible every test prints why and passes. Run just these with
//   ./fovea_tests -sf="*cuda_attention_dropout_test*"
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ops/dropout_mask_probe.h"
#include "passes/optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::have_gpu;
using fovea::testing::random_tensor;

// |actual - expected| <= atol + rtol·|expected|: the GPU sums in another order than the CPU.
void check_agree(const Tensor& actual, const Tensor& expected) {
  const bool f64_values = expected.dtype() == DType::f64;
  testing::check_close(actual, expected, f64_values ? 1e-10 : 1e-4, f64_values ? 1e-12 : 1e-5);
}

// Runs `outputs` of `g` on the CPU and on the GPU with the same feeds and compares them.
void check_backends_agree(Graph& g, const std::vector<Value>& outputs, const Feeds& feeds) {
  Executable on_cpu = compile(g, outputs, cpu(), {.check_finite_feeds = false});
  Executable on_gpu = compile(g, outputs, cuda(0), {.check_finite_feeds = false});
  const std::vector<Tensor> expected = on_cpu.run(feeds), actual = on_gpu.run(feeds);
  REQUIRE(actual.size() == expected.size());
  for (std::size_t i = 0; i < actual.size(); ++i) {
    CAPTURE(i);
    check_agree(actual[i], expected[i]);
  }
}

struct Case {
  std::vector<std::int64_t> batch;
  std::int64_t tq, tk, d, dv;
  bool causal;
  std::vector<std::int64_t> mask;  // empty: no mask
  double p;
  bool step;
};

Shape with(std::vector<std::int64_t> dims, std::int64_t rows, std::int64_t cols) {
  dims.push_back(rows);
  dims.push_back(cols);
  return Shape(dims);
}

TEST_CASE("fused_attention with dropout gives the CPU's o, lse and gradients on the GPU, f32 and f64" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  const std::vector<Case> cases = {
      {{2, 3}, 65, 130, 16, 8, false, {}, 0.1, true},
      {{2}, 70, 130, 8, 8, true, {}, 0.5, true},
      {{}, 130, 65, 8, 16, false, {}, 0.5, false},
      {{2, 3}, 33, 47, 16, 16, false, {33, 47}, 0.1, true},
      {{2, 3}, 33, 47, 16, 16, true, {2, 1, 1, 47}, 0.5, true},
      {{2}, 1, 300, 64, 64, false, {}, 0.1, true},
  };
  std::uint64_t seed = 900;
  for (DType dtype : {f32, f64})
    for (const Case& c : cases) {
      CAPTURE(dtype_name(dtype));
      INFO("Tq " << c.tq << " Tk " << c.tk << " causal " << c.causal << " mask rank " << c.mask.size() << " p " << c.p
                 << " step " << c.step);
      Graph g;
      Value q = g.placeholder("q", dtype, with(c.batch, c.tq, c.d));
      Value k = g.placeholder("k", dtype, with(c.batch, c.tk, c.d));
      Value v = g.placeholder("v", dtype, with(c.batch, c.tk, c.dv));
      Value d_o = g.placeholder("d_o", dtype, with(c.batch, c.tq, c.dv));
      Feeds feeds = {{q, random_tensor(dtype, q.shape(), seed++)},
                     {k, random_tensor(dtype, k.shape(), seed++)},
                     {v, random_tensor(dtype, v.shape(), seed++)},
                     {d_o, random_tensor(dtype, d_o.shape(), seed++)}};
      Value mask;
      if (!c.mask.empty()) {
        mask = g.placeholder("mask", dtype, Shape(c.mask));
        feeds.push_back({mask, random_tensor(dtype, mask.shape(), seed++, -2.0, 0.0)});
      }
      AttentionDropout dropout{.p = c.p, .scale = 1.0 / (1.0 - c.p), .seed = 31, .stream = -77};
      if (c.step) {
        dropout.step = g.placeholder("step", i64, {});
        feeds.push_back({dropout.step, Tensor::scalar<std::int64_t>(123456789)});
      }
      const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
      const FusedAttentionOutputs forward = fused_attention(q, k, v, mask, scale, c.causal, dropout);
      const FusedAttentionGradients backward =
          fused_attention_backward(q, k, v, mask, forward.output, forward.lse, d_o, scale, c.causal, dropout);
      check_backends_agree(g, {forward.output, forward.lse, backward.dq, backward.dk, backward.dv}, feeds);
    }
}

TEST_CASE("the GPU's fused dropout keeps exactly the probabilities random_uniform's numbers keep" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  testing::check_dropout_keeps_random_uniform_bits(cuda(0));
}

TEST_CASE("a fused GPT with attention dropout in training mode gives the CPU's loss and gradients on the GPU" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    Graph g;
    g.set_seed(5);
    nn::GPT gpt(
        g,
        {.vocab = 13, .d_model = 32, .heads = 4, .d_ff = 64, .layers = 2, .max_len = 16, .dropout = 0.1, .dtype = t});
    Value ids = g.placeholder("ids", i64, {4, 16});
    Value targets = g.placeholder("targets", i64, {4, 16});
    Value step = g.placeholder("step", i64, {});
    Value loss = nn::cross_entropy(gpt(ids, {.training = true, .step = step}), targets);
    passes::OptimizedGraph opt = passes::optimize_forward(g, {loss});
    REQUIRE(testing::count_op(*opt.graph, ops::fused_attention) == 2);
    std::vector<Value> parameters;
    for (const Value& p : g.parameters()) parameters.push_back(opt.value(p));
    std::vector<Value> outputs = grad(opt.outputs[0], parameters);
    outputs.push_back(opt.outputs[0]);
    check_backends_agree(*opt.graph, outputs,
                         testing::mapped_feeds(opt, {{ids, random_tensor(i64, {4, 16}, 3, 0, 13)},
                                                     {targets, random_tensor(i64, {4, 16}, 4, 0, 13)},
                                                     {step, Tensor::scalar<std::int64_t>(11)}}));
  }
}

}  // namespace
