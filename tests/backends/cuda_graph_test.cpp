// CompileOptions::capture_graph: a whole compiled step recorded once and then replayed with one
// launch from the host (runtime/executable.h; on the GPU a CUDA Graph, backends/cuda/cuda_backend.h).
//
// The executable's side (when to record, when to refuse, when to give up, when to record again)
// is checked everywhere against RecordingBackend below: a stand-in for a device backend that runs
// the CPU's kernels, but between begin_capture() and end_capture() records them instead of running
// them, as CUDA stream capture does, and replays the record. Where a GPU is visible the CUDA
// backend's CUDA Graphs are checked against its own eager runs; elsewhere those tests say why and
// pass. Run just these with
//   ./fovea_tests -sf="*cuda_graph_test*"
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "testing.h"

#ifdef FOVEA_WITH_CUDA
#include <fovea/backends/cuda/cuda_backend.h>
#endif

namespace {

using namespace fovea;
using fovea::testing::have_gpu;
using fovea::testing::random_tensor;

// --- A recording stand-in for a device backend --------------------------------------------------

class RecordingBackend;

// Kernels are plain function pointers, so each (op, dtype) the stand-in serves gets a trampoline
// of its own, slot S, which either runs the CPU's kernel or, while recording, notes the call.
constexpr std::size_t kSlots = 128;
struct Trampolines {
  std::array<Kernel, kSlots> cpu_kernel{};
  std::map<std::pair<std::string, DType>, std::size_t> slot_of;
  RecordingBackend* recording = nullptr;  // the backend whose begin_capture() is in effect
};
Trampolines& trampolines() {
  static Trampolines t;
  return t;
}

template <std::size_t S>
void trampoline(const KernelContext& ctx);

template <std::size_t... S>
constexpr std::array<Kernel, kSlots> make_trampolines(std::index_sequence<S...>) {
  return {&trampoline<S>...};
}
constexpr std::array<Kernel, kSlots> kTrampolines = make_trampolines(std::make_index_sequence<kSlots>{});

// The CPU's kernels behind a device backend's face: outputs live in the arena and are copied out
// (uses_host_memory() is false), and runs can be recorded. Counters and switches let a test see
// and steer what the executable does.
class RecordingBackend final : public Backend {
 public:
  // Serves every (op, dtype) that the nodes of `graph` need.
  explicit RecordingBackend(const Graph& graph) {
    Trampolines& t = trampolines();
    for (std::uint32_t id = 0; id < graph.size(); ++id) {
      const Node& node = graph.node(id);
      if (node.op->source) continue;
      const DType dtype = kernel_dtype(graph, node);
      const Kernel kernel = cpu_->kernels().find(node.op->name, dtype);
      REQUIRE(static_cast<bool>(kernel));
      auto [it, added] = t.slot_of.try_emplace({std::string(node.op->name), dtype}, t.slot_of.size());
      REQUIRE(it->second < kSlots);
      t.cpu_kernel[it->second] = kernel;
      kernels_.add(node.op->name, dtype, kTrampolines[it->second]);
    }
  }
  ~RecordingBackend() override {
    if (trampolines().recording == this) trampolines().recording = nullptr;
  }

  std::string_view name() const override { return "recording-cpu"; }
  Device device() const override { return Device::cpu; }
  const KernelRegistry& kernels() const override { return kernels_; }
  ThreadPool& pool() override { return cpu_->pool(); }
  std::shared_ptr<std::byte[]> allocate(std::size_t bytes) override { return cpu_->allocate(bytes); }
  void copy_from_host(std::byte* dst, const std::byte* src, std::size_t bytes) override {
    if (bytes > 0) std::memcpy(dst, src, bytes);
  }
  void copy_to_host(std::byte* dst, const std::byte* src, std::size_t bytes) override {
    if (bytes > 0) std::memcpy(dst, src, bytes);
  }
  bool uses_host_memory() const override { return false; }

  bool supports_capture() const override { return true; }
  // Refuses gather, as the CUDA backend does (its index check waits for the device).
  bool can_capture(std::string_view op, DType, std::string& reason) const override {
    if (op != "gather") return true;
    reason = "its index check waits for the device";
    return false;
  }
  bool begin_capture(std::string&) override {
    trampolines().recording = this;
    tape.clear();
    return true;
  }
  std::unique_ptr<RecordedRun> end_capture(std::string&) override;
  void discard_capture() override {
    trampolines().recording = nullptr;
    tape.clear();
    ++discarded;
  }

  std::vector<std::pair<Kernel, KernelContext>> tape;  // calls noted since begin_capture()
  int recordings = 0, replays = 0, discarded = 0;
  std::string fail_recording_op;   // recording a node of this op throws, as a kernel that syncs would
  bool stale_next_replay = false;  // the next replay reports the recording stale

 private:
  std::shared_ptr<Backend> cpu_ = cpu();
  KernelRegistry kernels_;
};

class Recording final : public RecordedRun {
 public:
  Recording(RecordingBackend& backend, std::vector<std::pair<Kernel, KernelContext>> calls)
      : backend_(backend), calls_(std::move(calls)) {}
  bool replay(std::string& reason) override {
    if (backend_.stale_next_replay) {
      backend_.stale_next_replay = false;
      reason = "the test made it stale";
      return false;
    }
    ++backend_.replays;
    for (const auto& [kernel, ctx] : calls_) kernel(ctx);
    return true;
  }

 private:
  RecordingBackend& backend_;
  std::vector<std::pair<Kernel, KernelContext>> calls_;
};

std::unique_ptr<RecordedRun> RecordingBackend::end_capture(std::string&) {
  trampolines().recording = nullptr;
  ++recordings;
  return std::make_unique<Recording>(*this, std::move(tape));
}

template <std::size_t S>
void trampoline(const KernelContext& ctx) {
  Trampolines& t = trampolines();
  RecordingBackend* backend = t.recording;
  if (!backend) return t.cpu_kernel[S](ctx);
  if (ctx.node->op->name == backend->fail_recording_op) ctx.fail("cannot be recorded (the test said so)");
  backend->tape.emplace_back(t.cpu_kernel[S], ctx);
}

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
  auto backend = std::make_shared<RecordingBackend>(g);
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

TEST_CASE("a recording backend replays the whole AdamW step from the second run on, training exactly as eager runs") {
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph with, without;
    const MlpStep a = build_mlp_step(with, dtype), b = build_mlp_step(without, dtype);
    auto backend = std::make_shared<RecordingBackend>(with);
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

TEST_CASE("a step with a gather is refused a recording at compile time, naming the node and line, and runs eagerly") {
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph g;
    Value table = g.placeholder("table", dtype, {5, 3});
    Value ids = g.placeholder("ids", i64, {2, 4});
    Value rows = gather(table, ids, -2);
    Value y = rows * rows;
    auto backend = std::make_shared<RecordingBackend>(g);
    Executable exe = compile(g, {y}, backend, {.capture_graph = true});
    const std::string status = exe.capture_status();
    CHECK(contains(status, "refused"));
    CHECK(contains(status, "gather"));
    CHECK(contains(status, rows.name()));
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

TEST_CASE("a kernel that fails while being recorded abandons the recording, and the step keeps training eagerly") {
  Graph with, without;
  const MlpStep a = build_mlp_step(with, f32), b = build_mlp_step(without, f32);
  auto backend = std::make_shared<RecordingBackend>(with);
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
  auto backend = std::make_shared<RecordingBackend>(with);
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
  check_same_parameters(with, without);
  CHECK(backend->recordings == 2);
  CHECK(backend->replays == 3);  // runs 1, 3 and 4; runs 0 and 2 ran eagerly, then recorded
  CHECK(contains(recorded.capture_status(), "recorded again: the test made it stale"));
}

TEST_CASE("profiled runs of a recorded step run kernel by kernel, and replays resume afterwards") {
  Graph g;
  const MlpStep s = build_mlp_step(g, f32);
  auto backend = std::make_shared<RecordingBackend>(g);
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

TEST_CASE("on the GPU an AdamW step recorded into a CUDA Graph trains exactly as eager launches over 5 steps") {
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

TEST_CASE("on the GPU a step with gather's index check is refused a CUDA Graph, says so, and still runs correctly") {
  if (!have_gpu()) return;
  Graph g;
  Value table = g.placeholder("table", f32, {5, 3});
  Value ids = g.placeholder("ids", i32, {2, 4});
  Value y = gather(table, ids, 0) * g.scalar(2.0, f32);
  Executable on_gpu = compile(g, {y}, cuda(), {.capture_graph = true});
  Executable on_cpu = compile(g, {y}, cpu());
  CHECK(contains(on_gpu.capture_status(), "refused"));
  CHECK(contains(on_gpu.capture_status(), "gather"));
  for (int run = 0; run < 3; ++run) {
    const Feeds feeds = {{table, random_tensor(f32, {5, 3}, static_cast<std::uint64_t>(run))},
                         {ids, random_tensor(i32, {2, 4}, 10 + static_cast<std::uint64_t>(run), 0.0, 5.0)}};
    check_identical(on_gpu.run(feeds)[0], on_cpu.run(feeds)[0]);
  }
  CHECK_FALSE(on_gpu.captured());
  const Feeds bad = {{table, random_tensor(f32, {5, 3}, 1)},
                     {ids, Tensor::from<double>({0, 1, 2, 3, 7, 4, 0, 0}, {2, 4}).to(i32)}};
  CHECK_THROWS_WITH_AS(on_gpu.run(bad), doctest::Contains("is out of range"), Error);
}

TEST_CASE("on the GPU an integer division's zero check keeps its step out of a CUDA Graph, unlike a float one") {
  if (!have_gpu()) return;
  Graph g;
  Value a = g.placeholder("a", i64, {4});
  Value b = g.placeholder("b", i64, {4});
  Value fa = g.placeholder("fa", f32, {4});
  Executable integer = compile(g, {a / b}, cuda(), {.capture_graph = true});
  Executable floating = compile(g, {fa / fa}, cuda(), {.capture_graph = true});
  CHECK(contains(integer.capture_status(), "refused"));
  CHECK(contains(integer.capture_status(), "div"));
  CHECK(contains(floating.capture_status(), "pending"));
}

#ifdef FOVEA_WITH_CUDA
TEST_CASE("on the GPU switching TF32 after recording makes the step record again") {
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
