// The optimizer's fused nodes on the GPU: fused_elementwise programs and a whole optimized
// training step compiled for the CUDA backend agree with the CPU backend.
//
// Where no GPU is visible every test prints why and passes. Run just these with
//   ./fovea_tests -sf="*cuda_fusion_test*"
#include <cmath>
#include <string>
#include <vector>

#include "nn/translator_testing.h"
#include "passes/optimize_testing.h"

namespace {

using namespace fovea;
using fovea::testing::have_gpu;
using fovea::testing::random_tensor;

// Runs `outputs` of `g` on the CPU and on the GPU with the same feeds; they must agree to
// rounding (bools exactly).
void check_backends_agree(Graph& g, const std::vector<Value>& outputs, const Feeds& feeds) {
  Executable on_cpu = compile(g, outputs, cpu(), {.check_finite_feeds = false});
  Executable on_gpu = compile(g, outputs, cuda(0), {.check_finite_feeds = false});
  const std::vector<Tensor> expected = on_cpu.run(feeds), actual = on_gpu.run(feeds);
  REQUIRE(actual.size() == expected.size());
  for (std::size_t i = 0; i < actual.size(); ++i) {
    CAPTURE(i);
    const DType t = expected[i].dtype();
    testing::check_close(actual[i], expected[i],
                         t == f64   ? 1e-12
                         : t == f32 ? 1e-5
                                    : 0.0,
                         t == f64   ? 1e-14
                         : t == f32 ? 1e-6
                                    : 0.0);
  }
}

TEST_CASE("fused_elementwise programs (GELU, dropout, broadcasts, bool outputs) agree on CPU and GPU" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  for (DType t : {f32, f64}) {
    CAPTURE(dtype_name(t));
    Graph g;
    Value x = g.placeholder("x", t, {4, 33, 17});
    Value bias = g.placeholder("bias", t, {17});
    Value row = g.placeholder("row", t, {4, 33, 1});
    Value step = g.placeholder("step", DType::i64, {});
    Value h = nn::dropout(nn::gelu(x + bias) * row, 0.2, {.training = true, .step = step});
    Value keep = greater(h, scalar_like(h, 0.0));
    passes::OptimizedGraph opt = passes::optimize_inference(g, {h, keep});
    CHECK(testing::count_op(*opt.graph, ops::fused_elementwise) >= 1);
    check_backends_agree(*opt.graph, opt.outputs,
                         {{opt.value(x), random_tensor(t, x.shape(), 1, -3, 3)},
                          {opt.value(bias), random_tensor(t, bias.shape(), 2)},
                          {opt.value(row), random_tensor(t, row.shape(), 3)},
                          {opt.value(step), Tensor::scalar(std::int64_t{5})}});
  }
}

TEST_CASE("an optimized GPT training step gives the same losses on CPU and GPU" * doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  auto train = [](std::shared_ptr<Backend> backend) {
    Graph g;
    g.set_seed(2);
    nn::GPT gpt(g, {.vocab = 13, .d_model = 32, .heads = 4, .d_ff = 64, .layers = 2, .max_len = 16, .dropout = 0.1});
    Value ids = g.placeholder("ids", i64, {4, 16});
    Value targets = g.placeholder("targets", i64, {4, 16});
    Value step = g.placeholder("step", i64, {});
    Value loss = nn::cross_entropy(gpt(ids, {.training = true, .step = step}), targets, {.label_smoothing = 0.1});
    auto build = [](Graph& graph, const std::vector<Value>& out) {
      nn::TrainStep s = nn::adamw(out[0], graph.parameters(), {.lr = nn::constant_lr(1e-2)});
      return passes::StepParts{{out[0]}, s.updates};
    };
    passes::CompiledTrainingStep exe = passes::compile_training_step(g, {loss}, build, std::move(backend));
    const Tensor id_values = random_tensor(i64, {4, 16}, 3, 0, 13),
                 target_values = random_tensor(i64, {4, 16}, 4, 0, 13);
    std::vector<double> losses;
    for (std::int64_t i = 0; i < 4; ++i)
      losses.push_back(exe.run({{ids, id_values}, {targets, target_values}, {step, Tensor::scalar(i)}})[0].item());
    return losses;
  };
  const std::vector<double> on_cpu = train(cpu()), on_gpu = train(cuda(0));
  for (std::size_t i = 0; i < on_cpu.size(); ++i) {
    CAPTURE(i);
    CHECK(on_gpu[i] == doctest::Approx(on_cpu[i]).epsilon(1e-4));
  }
}

TEST_CASE("the translator trains to the same losses on CPU and GPU: plain, optimized, and recorded as one CUDA Graph" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  struct Mode {
    bool optimize, capture;
  };
  auto train = [](std::shared_ptr<Backend> backend, Mode mode) {
    Graph g;
    g.set_seed(4);
    const testing::TrainingTranslator tr(g,
                                         {.source_vocab = 13,
                                          .target_vocab = 12,
                                          .d_model = 32,
                                          .heads = 4,
                                          .d_ff = 64,
                                          .layers = 2,
                                          .max_len = 12,
                                          .dropout = 0.1},
                                         4, 11, 9);
    auto build = [](Graph& graph, const std::vector<Value>& out) {
      nn::TrainStep s = nn::adamw(out[0], graph.parameters(), {.lr = nn::constant_lr(1e-2), .eps = 1e-3});
      return passes::StepParts{{out[0]}, s.updates};
    };
    passes::CompiledTrainingStep exe =
        passes::compile_training_step(g, {tr.loss}, build, std::move(backend),
                                      {.optimize = mode.optimize, .compile = {.capture_graph = mode.capture}});
    std::vector<double> losses;
    for (std::int64_t i = 0; i < 5; ++i) losses.push_back(exe.run(tr.feeds(i))[0].item());
    if (mode.capture) CHECK(exe.executable().captured());
    return losses;
  };
  for (const Mode mode : {Mode{false, false}, Mode{true, false}, Mode{true, true}}) {
    CAPTURE(mode.optimize);
    CAPTURE(mode.capture);
    const std::vector<double> on_cpu = train(cpu(), mode), on_gpu = train(cuda(0), mode);
    for (std::size_t i = 0; i < on_cpu.size(); ++i) {
      CAPTURE(i);
      CHECK(on_gpu[i] == doctest::Approx(on_cpu[i]).epsilon(1e-4));
    }
  }
}

}  // namespace
