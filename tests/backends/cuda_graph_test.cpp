// CompileOptions::capture_graph: a whole compiled step recorded once and then replayed with one
// launch from the host (runtime/executable.h; on the GPU a CUDA Graph, backends/cuda/cuda_backend.h).
//
// The executable's side (when to record, when to refuse, when to give up, when to record again,
// and what a recording holds: the verdicts' reset, the transfers, the kernels) is checked
// everywhere against FakeDevice (tests/runtime/fake_device.h): a stand-in for a device backend
// that runs the CPU's kernels, but between begin_capture() and end_capture() notes them instead
// of running them, as CUDA stream capture does, and replays the notes. Where a GPU is visible the
// CUDA backend's CUDA Graphs are checked against its own eager runs and the CPU; elsewhere those
// tests say why and pass. Run just these with
//   ./fovea_tests -sf="*cuda_graph_test*"
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/fake_device.h"
#include "testing.h"

#ifdef FOVEA_WITH_CUDA
#include <fovea/backends/cuda/cuda_backend.h>
#endif

namespace {

using namespace fovea;
using fovea::testing::FakeDevice;
using fovea::testing::have_gpu;
using fovea::testing::random_tensor;

// --- A small training step ----------------------------------------------------------------------

// An MLP 5 → 16 → 3 with tanh, cross-entropy, and AdamW updating it in place.
struct MlpStep {
  Value x, labels, loss;
  std::vector<Value> updates;
};

MlpStep build_mlp_step(Graph& g, DType dtype) {
  nn::Linear l1(g, "l1", 5, 16, true, dtype), l2(g, "l2", 16, 3, true, dtype);
  MlpStep s;
  s.x = g.placeholder("x", dtype, {8, 5});
  s.labels = g.placeholder("labels", i64, {8});
  s.loss = nn::cross_entropy(l2(fovea::tanh(l1(s.x))), s.labels);
  s.updates = nn::adamw(s.loss, g.parameters(), {.lr = nn::constant_lr(1e-2), .weight_decay = 0.01}).updates;
  return s;
}

// A different batch for every step, the same for every executable.
Feeds batch(const MlpStep& s, DType dtype, int step) {
  const auto seed = static_cast<std::uint64_t>(step);
  return {{s.x, random_tensor(dtype, {8, 5}, 100 + seed)}, {s.labels, random_tensor(i64, {8}, 200 + seed, 0.0, 3.0)}};
}

// The losses of `steps` training steps; the trained weights are back in the graph afterwards.
std::vector<double> train(Executable& exe, const MlpStep& s, DType dtype, int steps) {
  std::vector<double> losses;
  for (int i = 0; i < steps; ++i) losses.push_back(exe.run(batch(s, dtype, i))[0].item());
  exe.pull_state();
  return losses;
}

void check_identical(const Tensor& actual, const Tensor& expected) {
  REQUIRE(actual.shape().to_string() == expected.shape().to_string());
  for (std::int64_t i = 0; i < actual.numel(); ++i)
    if (actual.at(i) != expected.at(i)) {
      FAIL_CHECK("element " << i << ": " << actual.at(i) << " with the recording, " << expected.at(i) << " without");
      return;
    }
}

void check_same_parameters(Graph& actual, Graph& expected) {
  const std::vector<Value> pa = actual.parameters(), pe = expected.parameters();
  REQUIRE(pa.size() == pe.size());
  for (std::size_t i = 0; i < pa.size(); ++i) {
    INFO(pa[i].name());
    check_identical(actual.parameter_value(pa[i]), expected.parameter_value(pe[i]));
  }
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// --- Everywhere ---------------------------------------------------------------------------------

TEST_CASE("capture_status says off unless CompileOptions::capture_graph asks for a recording") {
  Graph g;
  const MlpStep s = build_mlp_step(g, f32);
  auto backend = std::make_shared<FakeDevice>();
  Executable exe = compile(g, {s.loss}, backend, {.updates = s.updates});
  exe.run(batch(s, f32, 0));
  exe.run(batch(s, f32, 1));
  CHECK(contains(exe.capture_status(), "off"));
  CHECK_FALSE(exe.captured());
  CHECK(backend->recordings == 0);
}

TEST_CASE("on the CPU capture_graph is accepted and ignored: an AdamW step trains exactly as without it") {
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph with, without;
    const MlpStep a = build_mlp_step(with, dtype), b = build_mlp_step(without, dtype);
    Executable recorded = compile(with, {a.loss}, cpu(), {.updates = a.updates, .capture_graph = true});
    Executable eager = compile(without, {b.loss}, cpu(), {.updates = b.updates});
    CHECK(train(recorded, a, dtype, 3) == train(eager, b, dtype, 3));
    check_same_parameters(with, without);
    CHECK_FALSE(recorded.captured());
    CHECK(contains(recorded.capture_status(), "ignored: the cpu backend cannot record runs"));
  }
}

TEST_CASE("a recording device replays the whole AdamW step from the second run on, training exactly as eager runs") {
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph with, without;
    const MlpStep a = build_mlp_step(with, dtype), b = build_mlp_step(without, dtype);
    auto backend = std::make_shared<FakeDevice>();
    Executable recorded = compile(with, {a.loss}, backend, {.updates = a.updates, .capture_graph = true});
    Executable eager = compile(without, {b.loss}, cpu(), {.updates = b.updates});
    CHECK(contains(recorded.capture_status(), "pending"));
    CHECK(train(recorded, a, dtype, 5) == train(eager, b, dtype, 5));
    check_same_parameters(with, without);
    CHECK(recorded.captured());
    CHECK(contains(recorded.capture_status(), "recorded"));
    CHECK(backend->recordings == 1);
    CHECK(backend->replays == 4);
  }
}

TEST_CASE("a step with a kernel the backend cannot record is refused at compile time, naming the node and line") {
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph g;
    Value table = g.placeholder("table", dtype, {5, 3});
    Value ids = g.placeholder("ids", i64, {2, 4});
    Value rows = gather(table, ids, -2);
    Value y = rows * rows;
    auto backend = std::make_shared<FakeDevice>();
    backend->refuse_capture_op = "mul";
    Executable exe = compile(g, {y}, backend, {.capture_graph = true});
    const std::string status = exe.capture_status();
    CHECK(contains(status, "refused"));
    CHECK(contains(status, "mul"));
    CHECK(contains(status, y.name()));
    CHECK(contains(status, "cuda_graph_test.cpp"));
    for (int run = 0; run < 3; ++run) {
      const Tensor t = random_tensor(dtype, {5, 3}, static_cast<std::uint64_t>(run));
      const Tensor i = random_tensor(i64, {2, 4}, 10 + static_cast<std::uint64_t>(run), 0.0, 5.0);
      const Tensor got = exe.run({{table, t}, {ids, i}})[0];
      // y[a, b, c] = table[ids[a, b], c]²
      Tensor expected = Tensor::empty(dtype, {2, 4, 3});
      for (std::int64_t a = 0; a < 2; ++a)
        for (std::int64_t b = 0; b < 4; ++b)
          for (std::int64_t c = 0; c < 3; ++c) {
            const double v = t.at(static_cast<std::int64_t>(i.at(a * 4 + b)) * 3 + c);
            if (dtype == f32)
              expected.data<float>()[(a * 4 + b) * 3 + c] = static_cast<float>(v) * static_cast<float>(v);
            else
              expected.data<double>()[(a * 4 + b) * 3 + c] = v * v;
          }
      check_identical(got, expected);
    }
    CHECK_FALSE(exe.captured());
    CHECK(backend->recordings == 0);
  }
}

TEST_CASE("a step whose gather checks its indices on the device is recorded whole: transfers, verdicts, kernels") {
  Graph g;
  Value table = g.placeholder("table", f32, {5, 3});
  Value ids = g.placeholder("ids", i32, {2, 4});
  Value rows = gather(table, ids, 0);
  Value y = rows * g.scalar(2.0, f32);
  auto backend = std::make_shared<FakeDevice>();
  Executable recorded = compile(g, {y}, backend, {.capture_graph = true});
  Executable on_cpu = compile(g, {y}, cpu());
  CHECK(contains(recorded.capture_status(), "pending"));
  for (int run = 0; run < 4; ++run) {
    const Feeds feeds = {{table, random_tensor(f32, {5, 3}, static_cast<std::uint64_t>(run))},
                         {ids, random_tensor(i32, {2, 4}, 10 + static_cast<std::uint64_t>(run), 0.0, 5.0)}};
    check_identical(recorded.run(feeds)[0], on_cpu.run(feeds)[0]);
  }
  INFO(recorded.capture_status());
  CHECK(recorded.captured());
  CHECK(backend->recordings == 1);
  CHECK(backend->replays == 3);

  // A bad index in a replayed run: the recorded check reports it after the run, with the CPU's
  // words, naming the gather and this file's line; the recording stays, and the next good batch
  // replays it and is right (the verdict was reset by the replay itself).
  const Feeds bad = {{table, random_tensor(f32, {5, 3}, 1)},
                     {ids, Tensor::from<double>({0, 1, 2, 3, 7, 4, 0, 0}, {2, 4}).to(i32)}};
  const std::string expected = fovea::testing::error_of([&] { on_cpu.run(bad); });
  CHECK(contains(expected, "index 7 at position [1,0]"));
  CHECK(fovea::testing::error_of([&] { recorded.run(bad); }) == expected);
  CHECK(backend->replays == 4);
  CHECK(recorded.captured());
  const Feeds good = {{table, random_tensor(f32, {5, 3}, 9)}, {ids, random_tensor(i32, {2, 4}, 19, 0.0, 5.0)}};
  check_identical(recorded.run(good)[0], on_cpu.run(good)[0]);
  CHECK(backend->replays == 5);
}

TEST_CASE("a replayed step waits for the device once per run, and allocates no staging after compiling") {
  Graph g;
  const MlpStep s = build_mlp_step(g, f32);
  auto backend = std::make_shared<FakeDevice>();
  Executable exe = compile(g, {s.loss}, backend, {.updates = s.updates, .capture_graph = true});
  CHECK(backend->staging_allocations == 1);
  exe.run(batch(s, f32, 0));  // eager, then recorded
  const int before = backend->synchronizations;
  for (int i = 1; i < 4; ++i) exe.run(batch(s, f32, i));
  CHECK(exe.captured());
  CHECK(backend->synchronizations - before == 3);
  CHECK(backend->staging_allocations == 1);
}

TEST_CASE("a kernel that fails while being recorded abandons the recording, and the step keeps training eagerly") {
  Graph with, without;
  const MlpStep a = build_mlp_step(with, f32), b = build_mlp_step(without, f32);
  auto backend = std::make_shared<FakeDevice>();
  backend->fail_recording_op = "tanh";
  Executable recorded = compile(with, {a.loss}, backend, {.updates = a.updates, .capture_graph = true});
  Executable eager = compile(without, {b.loss}, cpu(), {.updates = b.updates});
  CHECK(train(recorded, a, f32, 4) == train(eager, b, f32, 4));
  check_same_parameters(with, without);
  CHECK_FALSE(recorded.captured());
  const std::string status = recorded.capture_status();
  CHECK(contains(status, "abandoned"));
  CHECK(contains(status, "tanh"));
  CHECK(contains(status, "cannot be recorded (the test said so)"));
  CHECK(backend->discarded == 1);  // once: a failed recording is not tried again
  CHECK(backend->recordings == 0);
}

TEST_CASE("a recording that has gone stale is made again after one eager run") {
  Graph with, without;
  const MlpStep a = build_mlp_step(with, f64), b = build_mlp_step(without, f64);
  auto backend = std::make_shared<FakeDevice>();
  Executable recorded = compile(with, {a.loss}, backend, {.updates = a.updates, .capture_graph = true});
  Executable eager = compile(without, {b.loss}, cpu(), {.updates = b.updates});
  std::vector<double> got, expected;
  for (int i = 0; i < 5; ++i) {
    if (i == 2) backend->stale_next_replay = true;
    got.push_back(recorded.run(batch(a, f64, i))[0].item());
    expected.push_back(eager.run(batch(b, f64, i))[0].item());
    if (i == 2) CHECK(contains(recorded.capture_status(), "the test made it stale"));
  }
  CHECK(got == expected);
  recorded.pull_state();
  check_same_parameters(with, without);
  CHECK(backend->recordings == 2);
  CHECK(backend->replays == 3);  // runs 1, 3 and 4; runs 0 and 2 ran eagerly, then recorded
  CHECK(contains(recorded.capture_status(), "recorded again: the test made it stale"));
}

TEST_CASE("profiled runs of a recorded step run kernel by kernel, and replays resume afterwards") {
  Graph g;
  const MlpStep s = build_mlp_step(g, f32);
  auto backend = std::make_shared<FakeDevice>();
  Executable exe = compile(g, {s.loss}, backend, {.updates = s.updates, .capture_graph = true});
  exe.run(batch(s, f32, 0));
  exe.set_profiling(true);
  exe.run(batch(s, f32, 1));
  CHECK(exe.profiled_runs() == 1);
  CHECK(backend->replays == 0);
  exe.set_profiling(false);
  exe.run(batch(s, f32, 2));
  CHECK(backend->replays == 1);
}

// --- On the GPU ---------------------------------------------------------------------------------

TEST_CASE("on the GPU an AdamW step recorded into a CUDA Graph trains exactly as eager launches over 5 steps" *
          doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph with, without;
    const MlpStep a = build_mlp_step(with, dtype), b = build_mlp_step(without, dtype);
    Executable recorded = compile(with, {a.loss}, cuda(), {.updates = a.updates, .capture_graph = true});
    Executable eager = compile(without, {b.loss}, cuda(), {.updates = b.updates});
    CHECK(contains(recorded.capture_status(), "pending"));
    CHECK(train(recorded, a, dtype, 5) == train(eager, b, dtype, 5));
    check_same_parameters(with, without);
    INFO(recorded.capture_status());
    CHECK(recorded.captured());
    CHECK(contains(recorded.capture_status(), "recorded"));
  }
}

TEST_CASE(
    "on the GPU a step with a gather is recorded into a CUDA Graph, and a bad index still raises the CPU's error" *
    doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  Graph g;
  Value table = g.placeholder("table", f32, {5, 3});
  Value ids = g.placeholder("ids", i32, {2, 4});
  Value y = gather(table, ids, 0) * g.scalar(2.0, f32);
  Executable on_gpu = compile(g, {y}, cuda(), {.capture_graph = true});
  Executable on_cpu = compile(g, {y}, cpu());
  CHECK(contains(on_gpu.capture_status(), "pending"));
  for (int run = 0; run < 3; ++run) {
    const Feeds feeds = {{table, random_tensor(f32, {5, 3}, static_cast<std::uint64_t>(run))},
                         {ids, random_tensor(i32, {2, 4}, 10 + static_cast<std::uint64_t>(run), 0.0, 5.0)}};
    check_identical(on_gpu.run(feeds)[0], on_cpu.run(feeds)[0]);
  }
  INFO(on_gpu.capture_status());
  CHECK(on_gpu.captured());
  const Feeds bad = {{table, random_tensor(f32, {5, 3}, 1)},
                     {ids, Tensor::from<double>({0, 1, 2, 3, 7, 4, 0, 0}, {2, 4}).to(i32)}};
  const std::string expected = fovea::testing::error_of([&] { on_cpu.run(bad); });
  CHECK(contains(expected, "is out of range"));
  CHECK(fovea::testing::error_of([&] { on_gpu.run(bad); }) == expected);
  CHECK(on_gpu.captured());
  const Feeds good = {{table, random_tensor(f32, {5, 3}, 7)}, {ids, random_tensor(i32, {2, 4}, 17, 0.0, 5.0)}};
  check_identical(on_gpu.run(good)[0], on_cpu.run(good)[0]);
}

TEST_CASE(
    "on the GPU an integer division is recorded into a CUDA Graph, and a zero divisor still raises the CPU's error" *
    doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  Graph g;
  Value a = g.placeholder("a", i64, {4});
  Value b = g.placeholder("b", i64, {4});
  Executable on_gpu = compile(g, {a / b}, cuda(), {.capture_graph = true});
  Executable on_cpu = compile(g, {a / b}, cpu());
  const Feeds good = {{a, Tensor::from<double>({7, -7, 9, 0}, {4}).to(i64)},
                      {b, Tensor::from<double>({2, 2, -4, 5}, {4}).to(i64)}};
  for (int run = 0; run < 3; ++run) check_identical(on_gpu.run(good)[0], on_cpu.run(good)[0]);
  INFO(on_gpu.capture_status());
  CHECK(on_gpu.captured());
  const Feeds zero = {{a, Tensor::from<double>({7, -7, 9, 0}, {4}).to(i64)},
                      {b, Tensor::from<double>({2, 0, -4, 5}, {4}).to(i64)}};
  const std::string expected = fovea::testing::error_of([&] { on_cpu.run(zero); });
  CHECK(contains(expected, "integer division by zero"));
  CHECK(fovea::testing::error_of([&] { on_gpu.run(zero); }) == expected);
  check_identical(on_gpu.run(good)[0], on_cpu.run(good)[0]);
}

#ifdef FOVEA_WITH_CUDA
TEST_CASE("on the GPU switching TF32 after recording makes the step record again" * doctest::test_suite("gpu")) {
  if (!have_gpu()) return;
  auto& gpu = static_cast<CudaBackend&>(*cuda());
  Graph g;
  Value x = g.placeholder("x", f32, {4, 8});
  Value w = g.parameter("w", f32, {8, 3}, init::constant(0.5));
  Executable exe = compile(g, {matmul(x, w)}, cuda(), {.capture_graph = true});
  const Feeds feeds = {{x, random_tensor(f32, {4, 8}, 3)}};
  const Tensor first = exe.run(feeds)[0];
  CHECK(exe.captured());
  const bool before = gpu.allow_tf32();
  gpu.set_allow_tf32(!before);
  const Tensor second = exe.run(feeds)[0];  // stale: runs eagerly, then records again
  CHECK(contains(exe.capture_status(), "recorded"));
  gpu.set_allow_tf32(before);
  const Tensor third = exe.run(feeds)[0];
  CHECK(exe.captured());
  check_identical(third, first);
  fovea::testing::check_close(second, first, 1e-2, 1e-3);
}
#endif

}  // namespace
