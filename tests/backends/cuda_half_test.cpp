// bf16 and f16 on the GPU against the CPU (mixed precision): cast and the shape ops exactly,
// the fused attention within the rounding of its half output, and a mixed-precision training
// step. The tensor-core kernels themselves are also checked against an f64 reference in
// cuda_attention_mma_test.cpp. Where no GPU is visible every test prints why and passes.
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "passes/optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::have_gpu;
using fovea::testing::random_tensor;

// |gpu - cpu| <= atol + rtol·|cpu| elementwise; equal values and NaN pairs always pass.
void expect_close(const Tensor& gpu, const Tensor& cpu, double rtol, double atol) {
  REQUIRE(dtype_name(gpu.dtype()) == dtype_name(cpu.dtype()));
  REQUIRE(gpu.shape().to_string() == cpu.shape().to_string());
  for (std::int64_t i = 0; i < gpu.numel(); ++i) {
    const double a = gpu.at(i), e = cpu.at(i);
    if (a == e || (std::isnan(a) && std::isnan(e))) continue;
    if (!(std::abs(a - e) <= atol + rtol * std::abs(e))) {
      FAIL_CHECK("element " << i << " of " << gpu.shape().to_string() << ": GPU " << a << ", CPU " << e);
      return;
    }
  }
}

// Runs `outputs` on both backends with `feeds`; returns {cpu results, gpu results}.
std::pair<std::vector<Tensor>, std::vector<Tensor>> run_both(Graph& g, const std::vector<Value>& outputs,
                                                             const Feeds& feeds) {
  const CompileOptions options{.updates = {}, .check_finite_feeds = false};
  Executable on_cpu = compile(g, outputs, cpu(), options);
  Executable on_gpu = compile(g, outputs, cuda(), options);
  return {on_cpu.run(feeds), on_gpu.run(feeds)};
}

// The largest |x| of a tensor, for tolerances relative to a whole output.
double largest(const Tensor& t) {
  double m = 0;
  for (std::int64_t i = 0; i < t.numel(); ++i)
    if (std::isfinite(t.at(i))) m = std::max(m, std::abs(t.at(i)));
  return m;
}

}  // namespace

TEST_CASE("cast to and from bf16 and f16 gives the CPU's bits on the GPU, including NaN, infinities and overflow" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const Tensor values = Tensor::from<double>(
      {nan, inf, -inf, 1e300, 70000.0, 65519.0, 65520.0, 0.1, -2.5, 0.0, -0.0, 1e-8, 3e-8, 1.00390625, 3e9}, Shape{15});
  for (DType from : {f64, f32, i32, boolean}) {
    CAPTURE(dtype_name(from));
    Graph g;
    Value x = g.placeholder("x", from, values.shape());
    std::vector<Value> outputs;
    for (DType h : {bf16, f16}) {
      outputs.push_back(cast(x, h));
      for (DType to : {f32, f64, i32, i64, boolean}) outputs.push_back(cast(cast(x, h), to));
    }
    const auto [on_cpu, on_gpu] = run_both(g, outputs, {{x, from == f64 ? values : values.to(from)}});
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      CAPTURE(i);
      expect_close(on_gpu[i], on_cpu[i], 0, 0);
    }
  }
}

TEST_CASE("the shape ops move bf16 and f16 elements on the GPU as on the CPU" * doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  for (DType h : {bf16, f16}) {
    CAPTURE(dtype_name(h));
    Graph g;
    Value x = g.placeholder("x", h, {2, 3, 5});
    const std::vector<Value> outputs = {permute(x, {2, 0, 1}), reshape(x, {6, 5}), slice(x, 2, 1, 5, 2),
                                        concat({x, x}, 1), broadcast_to(reshape(x, {1, 2, 3, 5}), {4, 2, 3, 5})};
    const auto [on_cpu, on_gpu] = run_both(g, outputs, {{x, random_tensor(h, {2, 3, 5}, 1)}});
    for (std::size_t i = 0; i < outputs.size(); ++i) expect_close(on_gpu[i], on_cpu[i], 0, 0);
  }
}

TEST_CASE("fused attention on bf16 and f16 agrees with the CPU, forward and backward, on every GPU path" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  struct Case {
    std::int64_t batch, tq, tk, d;
    bool causal, mask;
    double dropout;
  };
  // Head dims 64 and 128 take the tensor-core kernels (forward and backward) by default; 40 takes
  // the f32 fallback.
  const std::vector<Case> cases = {{3, 130, 70, 64, false, false, 0.0}, {2, 64, 200, 128, true, false, 0.0},
                                   {2, 17, 33, 64, false, true, 0.0},   {2, 100, 100, 128, true, true, 0.2},
                                   {2, 9, 14, 40, false, true, 0.1},    {1, 5, 0, 64, false, false, 0.0}};
  // "" is the default (tensor cores where they apply); the others force the f32 kernels.
  for (const char* path : {"", "simple", "tiled"}) {
    testing::ScopedEnv env("FOVEA_CUDA_ATTENTION", path);
    for (DType h : {bf16, f16})
      for (const Case& c : cases) {
        CAPTURE(path);
        CAPTURE(dtype_name(h));
        INFO("B " << c.batch << " Tq " << c.tq << " Tk " << c.tk << " D " << c.d << " causal " << c.causal << " mask "
                  << c.mask << " dropout " << c.dropout);
        Graph g;
        Value q = g.placeholder("q", h, {c.batch, c.tq, c.d}), k = g.placeholder("k", h, {c.batch, c.tk, c.d});
        Value v = g.placeholder("v", h, {c.batch, c.tk, c.d}), d_o = g.placeholder("d_o", h, {c.batch, c.tq, c.d});
        Feeds feeds = {{q, random_tensor(h, q.shape(), 1, -2, 2)},
                       {k, random_tensor(h, k.shape(), 2, -2, 2)},
                       {v, random_tensor(h, v.shape(), 3)},
                       {d_o, random_tensor(h, d_o.shape(), 4)}};
        Value mask;
        if (c.mask) {
          Tensor m = random_tensor(f32, {c.tq, c.tk}, 5, -3, 0);
          for (std::int64_t j = 0; j < c.tk; ++j) m.data<float>()[static_cast<std::size_t>(c.tk + j)] = -INFINITY;
          mask = g.placeholder("mask", f32, m.shape());
          feeds.push_back({mask, m});
        }
        const AttentionDropout drop{
            .p = c.dropout, .scale = c.dropout > 0 ? 1 / (1 - c.dropout) : 1.0, .seed = 8, .stream = 2};
        const double scale = 1 / std::sqrt(static_cast<double>(c.d));
        const FusedAttentionOutputs f = fused_attention(q, k, v, mask, scale, c.causal, drop);
        const FusedAttentionGradients b =
            fused_attention_backward(q, k, v, mask, f.output, f.lse, d_o, scale, c.causal, drop);
        const auto [on_cpu, on_gpu] = run_both(g, {f.output, f.lse, b.dq, b.dk, b.dv}, feeds);
        // o: one rounding of the half type apart at most (the f32 sums differ in order, and the
        // tensor cores multiply P rounded to the half type); lse: f32 sums in another order.
        const double ulp = h == bf16 ? 1.0 / 128 : 1.0 / 1024;
        expect_close(on_gpu[0], on_cpu[0], 2 * ulp, 2 * ulp * largest(on_cpu[0]));
        expect_close(on_gpu[1], on_cpu[1], 1e-4, 1e-4);
        for (std::size_t i = 2; i < 5; ++i) {
          CAPTURE(i);
          expect_close(on_gpu[i], on_cpu[i], 4 * ulp, 4 * ulp * largest(on_cpu[i]));
        }
      }
  }
}

TEST_CASE("a GPT trained in mixed precision gives the same losses on the CPU and the GPU" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  auto losses_on = [](std::shared_ptr<Backend> backend) {
    Graph g;
    g.set_seed(2);
    nn::GPT gpt(g, {.vocab = 11, .d_model = 64, .heads = 1, .d_ff = 64, .layers = 2, .max_len = 32, .dropout = 0.1});
    Value ids = g.placeholder("ids", i64, {2, 32}), targets = g.placeholder("targets", i64, {2, 32});
    Value step = g.placeholder("step", i64, {});
    Value loss = nn::cross_entropy(gpt(ids, {.training = true, .step = step}), targets);
    auto build = [](Graph& graph, const std::vector<Value>& outputs) {
      nn::TrainStep s = nn::adamw(outputs[0], graph.parameters(), {.lr = nn::constant_lr(1e-2), .eps = 1e-3});
      return passes::StepParts{{outputs[0]}, s.updates};
    };
    passes::TrainingStepOptions options;
    options.pipeline.mixed_precision = passes::MixedPrecisionOptions{};
    passes::CompiledTrainingStep train = passes::compile_training_step(g, {loss}, build, std::move(backend), options);
    const Tensor tokens = random_tensor(i64, {2, 32}, 3, 0, 11), next = random_tensor(i64, {2, 32}, 4, 0, 11);
    std::vector<double> losses;
    for (std::int64_t i = 0; i < 5; ++i)
      losses.push_back(train.run({{ids, tokens}, {targets, next}, {step, Tensor::scalar<std::int64_t>(i)}})[0].item());
    return losses;
  };
  const std::vector<double> a = losses_on(cpu()), b = losses_on(cuda());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    CHECK(b[i] == doctest::Approx(a[i]).epsilon(5e-3));
  }
}
