// compile() and run() for a device (runtime/executable.h): feeds arrive through to_device steps
// from host staging, outputs leave through to_host steps into it, and checks made on the device
// report after the run. Checked on FakeDevice (fake_device.h), whose memory is its own and full
// of poison, against the CPU backend, which must give exactly the same numbers.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "fake_device.h"
#include "nn/translator_testing.h"
#include "testing.h"

namespace {

using namespace fovea;
using fovea::testing::error_of;
using fovea::testing::FakeDevice;
using fovea::testing::random_tensor;
using fovea::testing::TrainingTranslator;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

void check_identical(const Tensor& actual, const Tensor& expected) {
  REQUIRE(actual.defined());
  REQUIRE(dtype_name(actual.dtype()) == dtype_name(expected.dtype()));
  REQUIRE(actual.shape().to_string() == expected.shape().to_string());
  for (std::int64_t i = 0; i < actual.numel(); ++i)
    if (!(actual.at(i) == expected.at(i))) {
      FAIL_CHECK("element " << i << ": " << actual.at(i) << " on the device, " << expected.at(i) << " on the CPU");
      return;
    }
}

void check_all_identical(const std::vector<Tensor>& actual, const std::vector<Tensor>& expected) {
  REQUIRE(actual.size() == expected.size());
  for (std::size_t i = 0; i < actual.size(); ++i) {
    INFO("output " << i);
    check_identical(actual[i], expected[i]);
  }
}

// An MLP 5 → 16 → 3 with tanh, cross-entropy, and AdamW updating it in place.
struct MlpStep {
  Value x, labels, logits, loss;
  std::vector<Value> updates;
};

MlpStep build_mlp_step(Graph& g, DType dtype) {
  nn::Linear l1(g, "l1", 5, 16, true, dtype), l2(g, "l2", 16, 3, true, dtype);
  MlpStep s;
  s.x = g.placeholder("x", dtype, {8, 5});
  s.labels = g.placeholder("labels", i64, {8});
  s.logits = l2(fovea::tanh(l1(s.x)));
  s.loss = nn::cross_entropy(s.logits, s.labels);
  s.updates = nn::adamw(s.loss, g.parameters(), {.lr = nn::constant_lr(1e-2), .weight_decay = 0.01}).updates;
  return s;
}

Feeds batch(const MlpStep& s, DType dtype, int step) {
  const auto seed = static_cast<std::uint64_t>(step);
  return {{s.x, random_tensor(dtype, {8, 5}, 100 + seed)}, {s.labels, random_tensor(i64, {8}, 200 + seed, 0.0, 3.0)}};
}

// --- Transfers --------------------------------------------------------------------------------

TEST_CASE(
    "on a device every fed placeholder arrives through a to_device step and every output leaves through to_host") {
  Graph g;
  Value x = g.placeholder("x", f32, {2, 3});
  g.placeholder("unused", f32, {4});  // not needed by the outputs: no step of its own
  Value w = g.parameter("w", f32, {3}, init::ones());
  Value y = fovea::relu(x * w);
  Executable exe = compile(g, {y, w}, std::make_shared<FakeDevice>());
  const std::string s = exe.to_string();
  INFO(s);
  // Steps: to_device x, mul, relu, to_host y, to_host w; in that order.
  CHECK(contains(s, ": 5 steps"));
  const std::size_t in = s.find(fmt::format("%{:<5} to_device", x.ref().node));
  const std::size_t relu = s.find(" relu ");
  const std::size_t out_y = s.find(fmt::format("%{:<5} to_host", y.ref().node));
  const std::size_t out_w = s.find(fmt::format("%{:<5} to_host", w.ref().node));
  CHECK(in != std::string::npos);
  CHECK(relu != std::string::npos);
  CHECK(out_y != std::string::npos);
  CHECK(out_w != std::string::npos);
  CHECK(in < relu);
  CHECK(relu < out_y);
  CHECK(out_y < out_w);
  CHECK_FALSE(contains(s, "unused"));
  CHECK(contains(s, "host staging: "));
  const StagingPlan& staging = exe.staging_plan();
  REQUIRE(staging.feeds.size() == 1);
  CHECK(staging.feeds[0].value == x.ref());
  REQUIRE(staging.outputs.size() == 2);
  CHECK(staging.outputs[0].value == y.ref());
  CHECK(staging.outputs[1].value == w.ref());
}

TEST_CASE("on the CPU nothing is staged: no transfer steps, no staging block") {
  Graph g;
  Value x = g.placeholder("x", f32, {2, 3});
  Value y = fovea::relu(x) + 1.0f;
  Executable exe = compile(g, {y, x});
  const std::string s = exe.to_string();
  CHECK_FALSE(contains(s, "to_device"));
  CHECK_FALSE(contains(s, "to_host"));
  CHECK_FALSE(contains(s, "staging"));
  CHECK(exe.staging_plan().bytes == 0);
  CHECK(contains(s, ": 2 steps"));
}

TEST_CASE("staging slots are 64-byte aligned and disjoint, and an output asked for twice has one slot") {
  Graph g;
  Value a = g.placeholder("a", f32, {3});
  Value b = g.placeholder("b", f64, {5, 2});
  Value e = g.placeholder("e", i32, {0});
  Value y = a * 2.0f;
  const std::vector<std::uint32_t> schedule = {a.ref().node, b.ref().node, e.ref().node, y.ref().node};
  const std::vector<ValueRef> outputs = {y.ref(), b.ref(), y.ref()};
  const StagingPlan plan = plan_staging(g, schedule, outputs, 2);
  REQUIRE(plan.feeds.size() == 3);
  REQUIRE(plan.outputs.size() == 2);
  std::size_t end = 0;
  for (const auto& slots : {plan.feeds, plan.outputs})
    for (const StagingPlan::Slot& slot : slots) {
      CHECK(slot.offset % 64 == 0);
      CHECK(slot.offset >= end);
      end = slot.offset + slot.bytes;
    }
  CHECK(plan.feeds[1].bytes == 80);
  CHECK(plan.feeds[2].bytes == 0);
  CHECK(plan.verdicts_offset % 64 == 0);
  CHECK(plan.verdicts_offset >= end);
  CHECK(plan.bytes >= plan.verdicts_offset + 2 * sizeof(Verdict));
  CHECK(&plan.output(y.ref()) == &plan.outputs[0]);
}

TEST_CASE("an AdamW training step on a device trains exactly as on the CPU, and pull_state brings the weights back") {
  for (DType dtype : {f32, f64}) {
    CAPTURE(dtype_name(dtype));
    Graph on_device, on_cpu;
    const MlpStep a = build_mlp_step(on_device, dtype), b = build_mlp_step(on_cpu, dtype);
    const Tensor initial = on_device.parameter_value(on_device.parameters()[0]).clone();
    Executable device = compile(on_device, {a.loss, a.logits}, std::make_shared<FakeDevice>(), {.updates = a.updates});
    Executable host = compile(on_cpu, {b.loss, b.logits}, cpu(), {.updates = b.updates});
    for (int step = 0; step < 4; ++step)
      check_all_identical(device.run(batch(a, dtype, step)), host.run(batch(b, dtype, step)));
    // The device trained its own copies: the graph's weights are the initial ones until pulled.
    check_identical(on_device.parameter_value(on_device.parameters()[0]), initial);
    device.pull_state();
    const std::vector<Value> pa = on_device.persistent_values(), pb = on_cpu.persistent_values();
    REQUIRE(pa.size() == pb.size());
    for (std::size_t i = 0; i < pa.size(); ++i) {
      INFO(pa[i].name());
      check_identical(on_device.parameter_value(pa[i]), on_cpu.parameter_value(pb[i]));
    }
  }
}

TEST_CASE("push_state sends weights changed on the host to the device, which keeps its own until then") {
  Graph g;
  Value x = g.placeholder("x", f32, {3});
  Value w = g.parameter("w", f32, {3}, init::ones());
  Executable exe = compile(g, {x * w}, std::make_shared<FakeDevice>());
  const Feeds feeds = {{x, Tensor::from<float>({1, 2, 3}, {3})}};
  CHECK(exe.run(feeds)[0].at(2) == 3.0);
  g.parameter_value(w).data<float>()[2] = 10.0f;
  CHECK(exe.run(feeds)[0].at(2) == 3.0);
  exe.push_state();
  CHECK(exe.run(feeds)[0].at(2) == 30.0);
}

TEST_CASE(
    "a placeholder, a parameter, a value asked for twice and several outputs come back from a device as on the CPU") {
  Graph g;
  Value x = g.placeholder("x", f32, {2, 2});
  Value w = g.parameter("w", f32, {2, 2}, init::normal(0.0, 1.0));
  Value c = g.constant(Tensor::from<float>({1, 2, 3, 4}, {2, 2}), "c");
  Value y = matmul(x, w) + c;
  Value z = fovea::exp(y);
  const std::vector<Value> outputs = {x, w, y, x, z, c, y};
  Executable device = compile(g, outputs, std::make_shared<FakeDevice>());
  Executable host = compile(g, outputs);
  for (int run = 0; run < 3; ++run) {
    const Feeds feeds = {{x, random_tensor(f32, {2, 2}, static_cast<std::uint64_t>(run))}};
    check_all_identical(device.run(feeds), host.run(feeds));
  }
  CHECK(device.staging_plan().outputs.size() == 5);
}

TEST_CASE("empty tensors go through a device's transfers and kernels") {
  Graph g;
  Value e = g.placeholder("e", f32, {0, 3});
  Value table = g.placeholder("table", f32, {4, 3});
  Value none = g.placeholder("none", i64, {0});
  Value x = g.placeholder("x", f32, {3});
  const std::vector<Value> outputs = {fovea::relu(e), gather(table, none, 0), e, x + 1.0f};
  Executable device = compile(g, outputs, std::make_shared<FakeDevice>());
  Executable host = compile(g, outputs);
  const Feeds feeds = {{e, Tensor::empty(f32, {0, 3})},
                       {table, random_tensor(f32, {4, 3}, 1)},
                       {none, Tensor::empty(i64, {0})},
                       {x, random_tensor(f32, {3}, 2)}};
  for (int run = 0; run < 2; ++run) check_all_identical(device.run(feeds), host.run(feeds));
}

TEST_CASE("bf16 and f16 feeds and results cross to and from a device, and half attention matches the CPU") {
  for (DType h : {bf16, f16}) {
    CAPTURE(dtype_name(h));
    Graph g;
    Value q = g.placeholder("q", h, {2, 9, 8}), k = g.placeholder("k", h, {2, 11, 8}),
          v = g.placeholder("v", h, {2, 11, 8});
    const FusedAttentionOutputs out = fused_attention(q, k, v, {}, 0.5, true);
    const std::vector<Value> outputs = {out.output, out.lse, cast(q, f32)};
    const Feeds feeds = {
        {q, random_tensor(h, q.shape(), 1)}, {k, random_tensor(h, k.shape(), 2)}, {v, random_tensor(h, v.shape(), 3)}};
    Executable device = compile(g, outputs, std::make_shared<FakeDevice>());
    CHECK(contains(device.to_string(), "to_device"));
    check_all_identical(device.run(feeds), compile(g, outputs, cpu()).run(feeds));
  }
}

TEST_CASE("results from a device are the caller's: later runs change none the caller holds") {
  Graph g;
  Value x = g.placeholder("x", f32, {4});
  Value y = x * 2.0f;
  Executable exe = compile(g, {y, x}, std::make_shared<FakeDevice>());
  const std::vector<Tensor> first = exe.run({{x, Tensor::from<float>({1, 2, 3, 4}, {4})}});
  const std::vector<Tensor> second = exe.run({{x, Tensor::from<float>({5, 6, 7, 8}, {4})}});
  CHECK(first[0].at(3) == 8.0);
  CHECK(first[1].at(0) == 1.0);
  CHECK(second[0].at(3) == 16.0);
  CHECK(second[1].at(0) == 5.0);
}

TEST_CASE("feeding mistakes on a device name the placeholder and the caller's line, as on the CPU") {
  Graph g;
  Value x = g.placeholder("images", f32, {2, 3});
  Value b = g.placeholder("bias", f32, {3});
  Executable exe = compile(g, {fovea::relu(x + b)}, std::make_shared<FakeDevice>());
  const Tensor good = Tensor::zeros(f32, {2, 3});
  const int line = __LINE__ + 1;
  const std::string missing = error_of([&] { exe.run({{x, good}}); });
  CHECK(contains(missing, "placeholder 'bias' (f32[3]"));
  CHECK(contains(missing, "was not fed"));
  CHECK(contains(missing, "device_test.cpp:" + std::to_string(line)));
  CHECK(contains(error_of([&] {
                   exe.run({{x, Tensor::zeros(f32, {3, 2})}, {b, Tensor::zeros(f32, {3})}});
                 }),
                 "expects f32[2,3], but was fed f32[3,2]"));
  Tensor bad = Tensor::zeros(f32, {2, 3});
  bad.data<float>()[4] = std::nanf("");
  CHECK(contains(error_of([&] {
                   exe.run({{x, bad}, {b, Tensor::zeros(f32, {3})}});
                 }),
                 "placeholder 'images' was fed NaN at element 4 (index [1,1]"));
  // None of that left a mark: the next good run is right.
  const std::vector<Tensor> out = exe.run({{x, Tensor::full(f32, {2, 3}, 1.0)}, {b, Tensor::full(f32, {3}, 2.0)}});
  CHECK(out[0].at(5) == 3.0);
}

TEST_CASE("profiling a device step times its transfers like its kernels") {
  Graph g;
  const MlpStep s = build_mlp_step(g, f32);
  Executable exe = compile(g, {s.loss}, std::make_shared<FakeDevice>(), {.updates = s.updates});
  exe.set_profiling(true);
  exe.run(batch(s, f32, 0));
  exe.run(batch(s, f32, 1));
  const std::string report = exe.profile_report(100000);  // every step
  INFO(report);
  CHECK(contains(report, "to_device"));
  CHECK(contains(report, "to_host"));
  CHECK(contains(report, "labels/to_device"));
  CHECK(exe.profiled_runs() == 2);
}

// --- Checks that report after the run ---------------------------------------------------------

TEST_CASE("a bad index on a device raises the CPU's error after the run, naming the gather and the user's line") {
  for (DType index : {i32, i64}) {
    CAPTURE(dtype_name(index));
    Graph g;
    Value table = g.placeholder("table", f32, {5, 3});
    Value ids = g.placeholder("ids", index, {2, 4});
    Value rows;
    int line = 0;
    {
      auto scope = g.scope("embed");
      line = __LINE__ + 1;
      rows = gather(table, ids, 0);
    }
    Value y = rows * 2.0f;
    auto backend = std::make_shared<FakeDevice>();
    Executable device = compile(g, {y}, backend);
    Executable host = compile(g, {y});
    CHECK(contains(device.to_string(), "checks: verdict after the run"));
    const Feeds bad = {{table, random_tensor(f32, {5, 3}, 1)},
                       {ids, Tensor::from<double>({0, 1, 2, 3, 4, -2, 9, 0}, {2, 4}).to(index)}};
    const std::string expected = error_of([&] { host.run(bad); });
    CHECK(contains(expected, "index -2 at position [1,1]"));
    try {
      device.run(bad);
      FAIL("expected fovea::Error");
    } catch (const Error& e) {
      CHECK(std::string(e.what()) == expected);
      CHECK(e.node() == "embed/gather");
      CHECK(e.op() == "gather");
      CHECK(e.where().line == static_cast<unsigned>(line));
    }
    // The verdict is reset at the start of every run: a good batch after a bad one is right.
    const Feeds good = {{table, random_tensor(f32, {5, 3}, 2)}, {ids, random_tensor(index, {2, 4}, 3, 0.0, 5.0)}};
    check_all_identical(device.run(good), host.run(good));
  }
}

TEST_CASE("a run on a device with checks waits once, at the end, and a failed one names the first failing step") {
  Graph g;
  Value table = g.placeholder("table", f32, {5, 3});
  Value first_ids = g.placeholder("first_ids", i32, {3});
  Value second_ids = g.placeholder("second_ids", i64, {2});
  Value first = gather(table, first_ids, 0);
  Value second = gather(table, second_ids, 0);
  Value y = reduce_sum(first, {0}) + reduce_sum(second, {0});
  auto backend = std::make_shared<FakeDevice>();
  Executable device = compile(g, {y}, backend);
  Executable host = compile(g, {y});
  CHECK(device.staging_plan().verdict_count == 2);
  const Feeds good = {{table, random_tensor(f32, {5, 3}, 1)},
                      {first_ids, Tensor::from<double>({0, 4, 2}, {3}).to(i32)},
                      {second_ids, Tensor::from<double>({3, 3}, {2}).to(i64)}};
  const int before = backend->synchronizations;
  check_all_identical(device.run(good), host.run(good));
  CHECK(backend->synchronizations - before == 1);

  const Feeds both_bad = {{table, random_tensor(f32, {5, 3}, 1)},
                          {first_ids, Tensor::from<double>({0, 4, 5}, {3}).to(i32)},
                          {second_ids, Tensor::from<double>({-1, 3}, {2}).to(i64)}};
  const std::string expected = error_of([&] { host.run(both_bad); });
  CHECK(contains(expected, first.name()));
  CHECK(contains(expected, "index 5 at position [2]"));
  CHECK(error_of([&] { device.run(both_bad); }) == expected);

  const Feeds second_bad = {{table, random_tensor(f32, {5, 3}, 1)},
                            {first_ids, Tensor::from<double>({0, 4, 2}, {3}).to(i32)},
                            {second_ids, Tensor::from<double>({3, 7}, {2}).to(i64)}};
  const std::string second_expected = error_of([&] { host.run(second_bad); });
  CHECK(contains(second_expected, second.name()));
  CHECK(error_of([&] { device.run(second_bad); }) == second_expected);
}

TEST_CASE("a profiled run on a device still reports a failed check after the run") {
  Graph g;
  Value table = g.placeholder("table", f64, {4, 2});
  Value ids = g.placeholder("ids", i64, {3});
  Value y = gather(table, ids, 0);
  Executable device = compile(g, {y}, std::make_shared<FakeDevice>());
  Executable host = compile(g, {y});
  device.set_profiling(true);
  const Feeds bad = {{table, random_tensor(f64, {4, 2}, 1)}, {ids, Tensor::from<double>({0, 4, 1}, {3}).to(i64)}};
  CHECK(error_of([&] { device.run(bad); }) == error_of([&] { host.run(bad); }));
  const Feeds good = {{table, random_tensor(f64, {4, 2}, 1)}, {ids, Tensor::from<double>({0, 3, 1}, {3}).to(i64)}};
  check_all_identical(device.run(good), host.run(good));
}

}  // namespace

TEST_CASE("the translator, optimized and recorded, trains on a device to exactly the CPU's losses and weights") {
  auto train = [](std::shared_ptr<Backend> backend, bool capture, std::vector<Tensor>* weights) {
    Graph g;
    g.set_seed(4);
    const TrainingTranslator tr(g, testing::tiny_translator_config(), 3, 7, 6);
    auto build = [](Graph& graph, const std::vector<Value>& out) {
      nn::TrainStep s = nn::adamw(out[0], graph.parameters(), {.lr = nn::constant_lr(1e-2)});
      return passes::StepParts{{out[0]}, s.updates};
    };
    passes::CompiledTrainingStep exe =
        passes::compile_training_step(g, {tr.loss}, build, backend, {.compile = {.capture_graph = capture}});
    std::vector<double> losses;
    for (std::int64_t i = 0; i < 4; ++i) losses.push_back(exe.run(tr.feeds(i))[0].item());
    if (capture) CHECK(exe.executable().captured());  // embeddings' gathers included
    exe.executable().pull_state();
    for (Value p : g.parameters()) weights->push_back(g.parameter_value(p).clone());
    return losses;
  };
  std::vector<Tensor> on_cpu_weights, on_device_weights;
  const std::vector<double> on_cpu = train(cpu(), false, &on_cpu_weights);
  auto device = std::make_shared<FakeDevice>();
  const std::vector<double> on_device = train(device, true, &on_device_weights);
  CHECK(device->replays == 3);
  CHECK(on_device == on_cpu);
  REQUIRE(on_device_weights.size() == on_cpu_weights.size());
  for (std::size_t i = 0; i < on_cpu_weights.size(); ++i) check_identical(on_device_weights[i], on_cpu_weights[i]);
}
