// Runs from several threads at once (docs/runtime.md): different executables, of one graph or
// of several, give exactly the numbers serial runs give; one executable serves one run at a
// time and refuses a second thread at once; a training step and an evaluation of the same
// parameters never interleave. Thread and run counts are small, so that the sanitizer builds
// run these quickly.
#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "fake_device.h"
#include "testing.h"

using namespace fovea;
using fovea::testing::random_tensor;

namespace {

// Bit-for-bit equality: concurrency must not change a single rounding.
bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

bool same_bits(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!same_bits(a[i], b[i])) return false;
  return true;
}

// Large enough that the kernels split their loops over the pool (64K elements per tensor, a
// matmul above the parallel threshold), small enough to run in a millisecond or so.
constexpr std::int64_t kBatch = 256, kIn = 32, kHidden = 256, kOut = 8;

// A two-layer network on one batch, with its loss and an SGD step. Built the same way twice, it
// starts from the same parameters (they are drawn from the graph's seed and their names).
struct Network {
  Graph g;
  Value x, target, hidden, prediction, loss;
  std::vector<Value> updates;

  Network() {
    x = g.placeholder("x", f32, {kBatch, kIn});
    target = g.placeholder("target", f32, {kBatch, kOut});
    Value w1 = g.parameter("w1", f32, {kIn, kHidden}, init::normal(0.0, 0.2));
    Value w2 = g.parameter("w2", f32, {kHidden, kOut}, init::normal(0.0, 0.2));
    hidden = fovea::tanh(fovea::matmul(x, w1));
    prediction = fovea::matmul(hidden, w2);
    loss = nn::mse_loss(prediction, target);
    updates = nn::sgd(loss, g.parameters(), {.lr = nn::constant_lr(0.05)}).updates;
  }
  Feeds feeds(std::uint64_t seed) const {
    return {{x, random_tensor(f32, {kBatch, kIn}, seed)}, {target, random_tensor(f32, {kBatch, kOut}, seed + 1000)}};
  }
};

}  // namespace

TEST_CASE("different executables run from several threads give the serial results") {
  constexpr int kThreads = 4, kRuns = 50, kBatches = 3;
  // One graph with four executables (two of them for the same outputs), and a second graph.
  Network a, b;
  std::vector<Executable> exes;
  exes.push_back(compile(a.g, {a.prediction}));
  exes.push_back(compile(a.g, {a.prediction}));
  exes.push_back(compile(a.g, {a.hidden, a.loss}));
  exes.push_back(compile(b.g, {b.loss, b.prediction}));
  const Network* network[kThreads] = {&a, &a, &a, &b};
  std::vector<std::vector<std::vector<Tensor>>> expected(kThreads);
  for (int t = 0; t < kThreads; ++t)
    for (int k = 0; k < kBatches; ++k) expected[t].push_back(exes[t].run(network[t]->feeds(10 * t + k)));

  std::atomic<int> mismatches{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRuns; ++r) {
        try {
          if (!same_bits(exes[t].run(network[t]->feeds(10 * t + r % kBatches)), expected[t][r % kBatches]))
            ++mismatches;
        } catch (...) {
          ++errors;
        }
      }
    });
  for (auto& th : threads) th.join();
  CHECK(errors == 0);
  CHECK(mismatches == 0);
}

TEST_CASE("executables on one device backend, run from two threads, take turns and give the serial results") {
  // A device backend has one stream and one scratch buffer: its runs must not overlap.
  auto device = std::make_shared<fovea::testing::FakeDevice>();
  Network net;
  Executable exes[2] = {compile(net.g, {net.prediction}, device), compile(net.g, {net.hidden, net.loss}, device)};
  const Feeds feeds = net.feeds(11);
  const std::vector<Tensor> expected[2] = {exes[0].run(feeds), exes[1].run(feeds)};
  std::atomic<int> mismatches{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&, t] {
      for (int r = 0; r < 20; ++r) {
        try {
          if (!same_bits(exes[t].run(feeds), expected[t])) ++mismatches;
        } catch (...) {
          ++errors;
        }
      }
    });
  for (auto& th : threads) th.join();
  CHECK(errors == 0);
  CHECK(mismatches == 0);
}

TEST_CASE("one executable used by several threads in turn gives the serial results") {
  Network net;
  Executable exe = compile(net.g, {net.prediction});
  const std::vector<Tensor> expected = exe.run(net.feeds(7));
  std::mutex turn;
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int r = 0; r < 10; ++r) {
        std::lock_guard lock(turn);
        if (!same_bits(exe.run(net.feeds(7)), expected)) ++mismatches;
      }
    });
  for (auto& th : threads) th.join();
  CHECK(mismatches == 0);
}

TEST_CASE("a second thread running an executable that is already running gets a fovea::Error at once") {
  Network net;
  Executable exe = compile(net.g, {net.prediction});
  const Feeds feeds = net.feeds(3);
  const std::vector<Tensor> expected = exe.run(feeds);
  // Two threads run the same executable over and over until one of them has been refused;
  // every run that is not refused must still give the right numbers.
  std::atomic<bool> refused{false};
  std::atomic<int> mismatches{0}, other_errors{0};
  std::string message;
  std::mutex message_mutex;
  auto hammer = [&] {
    for (int r = 0; r < 20000 && !refused; ++r) {
      try {
        if (!same_bits(exe.run(feeds), expected)) ++mismatches;
      } catch (const Error& e) {
        std::lock_guard lock(message_mutex);
        message = e.what();
        refused = true;
      } catch (...) {
        ++other_errors;
      }
    }
  };
  std::thread first(hammer), second(hammer);
  first.join();
  second.join();
  CHECK(refused);
  CHECK(message.find("already running on another thread") != std::string::npos);
  CHECK(mismatches == 0);
  CHECK(other_errors == 0);
  // Refusing left the executable intact.
  CHECK(same_bits(exe.run(feeds), expected));
}

TEST_CASE("training on one thread while another evaluates the same parameters sees whole steps only") {
  constexpr int kSteps = 12;
  // Serially: the evaluation after each number of steps taken, and the losses.
  Network serial;
  Executable serial_train = compile(serial.g, {serial.loss}, cpu(), {.updates = serial.updates});
  Executable serial_eval = compile(serial.g, {serial.prediction});
  const Feeds serial_batch = serial.feeds(5);
  std::vector<std::vector<Tensor>> snapshots{serial_eval.run(serial_batch)};
  std::vector<std::vector<Tensor>> losses;
  for (int s = 0; s < kSteps; ++s) {
    losses.push_back(serial_train.run(serial_batch));
    snapshots.push_back(serial_eval.run(serial_batch));
  }

  // Concurrently, on a fresh copy of the same network.
  Network net;
  Executable train = compile(net.g, {net.loss}, cpu(), {.updates = net.updates});
  Executable eval = compile(net.g, {net.prediction});
  const Feeds batch = net.feeds(5);
  std::atomic<bool> done{false};
  std::atomic<int> bad_losses{0};
  std::thread trainer([&] {
    try {
      for (int s = 0; s < kSteps; ++s)
        if (!same_bits(train.run(batch), losses[static_cast<std::size_t>(s)])) ++bad_losses;
    } catch (...) {
      ++bad_losses;
    }
    done = true;
  });
  // Each evaluation must equal the one after some whole number of steps, never fewer than
  // the evaluation before it saw.
  int torn = 0, backwards = 0, evaluations = 0;
  std::size_t last_seen = 0;
  while (!done || evaluations == 0) {
    const std::vector<Tensor> got = eval.run(batch);
    ++evaluations;
    std::size_t step = snapshots.size();
    for (std::size_t s = last_seen; s < snapshots.size() && step == snapshots.size(); ++s)
      if (same_bits(got, snapshots[s])) step = s;
    if (step == snapshots.size()) {
      bool earlier = false;
      for (std::size_t s = 0; s < last_seen; ++s) earlier = earlier || same_bits(got, snapshots[s]);
      (earlier ? backwards : torn)++;
      continue;
    }
    last_seen = step;
  }
  trainer.join();
  CHECK(bad_losses == 0);
  CHECK(torn == 0);
  CHECK(backwards == 0);
  CHECK(same_bits(eval.run(batch), snapshots.back()));
  MESSAGE(evaluations << " evaluations during " << kSteps << " training steps");
}
