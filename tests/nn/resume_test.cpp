// Training resumed from a checkpoint continues exactly as if it had never stopped: the
// weights after N steps are bit-for-bit those of an uninterrupted run (same thread count).
#include <cstdio>
#include <filesystem>

#include "testing.h"

using namespace fovea;

namespace {

// A small classification task: 256 examples of 20 features in 4 classes.
Dataset synthetic_dataset() {
  Dataset d;
  d.images = testing::random_tensor(f32, {256, 20}, 77, 0, 1);
  d.labels = Tensor::empty(i32, {256});
  for (std::int64_t i = 0; i < 256; ++i) {
    double best = -1;
    for (int c = 0; c < 4; ++c)
      if (d.images.at(i * 20 + c) > best) {
        best = d.images.at(i * 20 + c);
        d.labels.data<std::int32_t>()[i] = c;
      }
  }
  return d;
}

// Everything a training run owns: the graph, its step executable and the batcher.
struct Run {
  Graph g;
  Value x, y, loss;
  nn::TrainStep step;
  std::unique_ptr<Executable> exe;

  Run() {
    g.set_seed(5);
    x = g.placeholder("x", f32, {32, 20});
    y = g.placeholder("y", i32, {32});
    nn::Linear l1(g, "l1", 20, 16), l2(g, "l2", 16, 4);
    loss = nn::cross_entropy(l2(relu(l1(x))), y);
    step = nn::adamw(loss, g.parameters(), {.lr = nn::warmup_cosine(0.01, 5, 40), .weight_decay = 0.01});
    exe = std::make_unique<Executable>(compile(g, {loss}, cpu(), {.updates = step.updates}));
  }

  // Runs global steps [from, to) of the schedule.
  void train(Batcher& batches, std::int64_t from, std::int64_t to) {
    Tensor bx = Tensor::empty(f32, {32, 20}), by = Tensor::empty(i32, {32});
    for (std::int64_t s = from; s < to; ++s) {
      batches.batch(s / batches.batches_per_epoch(), s % batches.batches_per_epoch(), bx, by);
      exe->run({{x, bx}, {y, by}});
    }
  }
};

}  // namespace

TEST_CASE("interrupting and resuming from a checkpoint gives bit-identical weights") {
  const Dataset data = synthetic_dataset();
  const std::string path = (std::filesystem::temp_directory_path() / "fovea_resume_test.safetensors").string();

  Run straight;
  Batcher b1(data, 32, 9);
  straight.train(b1, 0, 40);

  Run first_half;
  Batcher b2(data, 32, 9);
  first_half.train(b2, 0, 17);  // stop mid-epoch
  save_checkpoint(path, first_half.g);

  Run second_half;  // a fresh process, in effect: new graph, new executable
  load_checkpoint(path, second_half.g);
  Batcher b3(data, 32, 9);
  second_half.train(b3, 17, 40);
  std::filesystem::remove(path);

  auto expected = straight.g.persistent_values();
  auto resumed = second_half.g.persistent_values();
  REQUIRE(expected.size() == resumed.size());
  REQUIRE(expected.size() == 4 + 1 + 8);  // 4 parameters, the step counter, 2 moments each
  for (std::size_t i = 0; i < expected.size(); ++i) {
    CAPTURE(expected[i].name());
    const Tensor& a = straight.g.parameter_value(expected[i]);
    const Tensor& b = second_half.g.parameter_value(resumed[i]);
    REQUIRE(a.nbytes() == b.nbytes());
    CHECK(std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
  }
  // And training did something: the loss went down from its initial value.
  Run fresh;
  Tensor bx = Tensor::empty(f32, {32, 20}), by = Tensor::empty(i32, {32});
  Batcher b4(data, 32, 9);
  b4.batch(0, 0, bx, by);
  auto eval = compile(fresh.g, {fresh.loss});
  auto trained = compile(straight.g, {straight.loss});
  CHECK(trained.run({{straight.x, bx}, {straight.y, by}})[0].item() <
        eval.run({{fresh.x, bx}, {fresh.y, by}})[0].item());
}
