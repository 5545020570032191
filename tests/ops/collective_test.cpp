// The collective ops on one rank (SoloCommunicator), where each is the identity or a copy: their
// types, gradients, errors and schedule. Their exchanges between ranks are tested under mpirun
// (tests/distributed/).
#include <fovea/nn/data_parallel.h>
#include <fovea/ops/collective.h>

#include <algorithm>
#include <memory>

#include "gradcheck.h"
#include "testing.h"

using namespace fovea;
using namespace fovea::testing;

namespace {

std::shared_ptr<Communicator> solo() {
  static const auto communicator = std::make_shared<SoloCommunicator>();
  return communicator;
}

}  // namespace

TEST_CASE("collectives on one rank return their input, in f32, f64, i32 and i64, empty and scalar included") {
  for (DType dtype : {DType::f32, DType::f64, DType::i32, DType::i64})
    for (const Shape& shape : {Shape{3, 4}, Shape{0, 5}, Shape{}, Shape{1}}) {
      CAPTURE(dtype_name(dtype));
      CAPTURE(shape.to_string());
      Graph g;
      const Value x = g.placeholder("x", dtype, shape);
      std::vector<Value> outputs{all_reduce(x, solo()), all_reduce(x, solo(), Reduction::mean),
                                 broadcast_from(x, solo()), reduce_to(x, solo()),
                                 all_reduce_wait(all_reduce_start(x, solo()))};
      if (shape.rank() > 0) {
        outputs.push_back(all_gather(x, solo(), shape.rank() - 1));
        outputs.push_back(reduce_scatter(x, solo(), 0, Reduction::mean));
      }
      const Tensor value = random_tensor(dtype, shape, 7, -5, 5);
      for (const Tensor& out : run(g, outputs, {{x, value}})) check_close(out, value, 0, 0);
    }
}

TEST_CASE("collectives print their communicator and reduction, and keep their types") {
  Graph g;
  const Value x = g.placeholder("x", DType::f32, {2, 3});
  const Value y = all_reduce(x, solo(), Reduction::mean);
  CHECK(y.type() == x.type());
  const std::string text = to_text(g);
  CHECK(text.find("all_reduce") != std::string::npos);
  CHECK(text.find("reduction=\"mean\"") != std::string::npos);
  CHECK(all_gather(x, solo(), 1).type().shape == Shape{2, 3});
}

TEST_CASE("the gradients of the collectives on one rank pass the finite-difference check") {
  gradcheck("all_reduce sum", [](Graph&, const std::vector<Value>& x) { return all_reduce(x[0], solo()); }, {{{3, 2}}});
  gradcheck(
      "all_reduce mean", [](Graph&, const std::vector<Value>& x) { return all_reduce(x[0], solo(), Reduction::mean); },
      {{{4}}});
  gradcheck("broadcast_from", [](Graph&, const std::vector<Value>& x) { return broadcast_from(x[0], solo()); },
            {{{2, 2}}});
  gradcheck("reduce_to", [](Graph&, const std::vector<Value>& x) { return reduce_to(x[0], solo()); }, {{{5}}});
  gradcheck("all_gather", [](Graph&, const std::vector<Value>& x) { return all_gather(x[0], solo(), 1); },
            {{{2, 3}}});
  gradcheck(
      "reduce_scatter",
      [](Graph&, const std::vector<Value>& x) { return reduce_scatter(x[0], solo(), 0, Reduction::mean); },
      {{{2, 3}}});
  gradcheck(
      "start and wait",
      [](Graph&, const std::vector<Value>& x) { return all_reduce_wait(all_reduce_start(x[0] * x[0], solo())); },
      {{{3}}});
}

TEST_CASE("collectives reject what no communicator carries, naming the node and the user's line") {
  Graph g;
  const Value flags = g.placeholder("flags", DType::boolean, {4});
  const std::string dtype_error = error_of([&] { all_reduce(flags, solo()); });
  CHECK(dtype_error.find("collectives take f32, f64, i32 or i64") != std::string::npos);
  CHECK(dtype_error.find("collective_test.cpp") != std::string::npos);
  const Value x = g.placeholder("x", DType::f32, {4});
  CHECK(error_of([&] { broadcast_from(x, solo(), 1); }).find("root 1 is not a rank") != std::string::npos);
  CHECK(error_of([&] { all_gather(g.scalar(1, DType::f32), solo()); }).find("cannot gather a scalar") !=
        std::string::npos);
  CHECK(error_of([&] { all_reduce_wait(x); }).find("takes the output of an all_reduce_start") != std::string::npos);
  CHECK(error_of([&] { all_reduce(x, nullptr); }).find("no communicator") != std::string::npos);
}

TEST_CASE("an all_reduce_start runs as soon as its inputs exist, its wait where the graph puts it") {
  Graph g;
  const Value x = g.placeholder("x", DType::f32, {8});
  const Value early = exp(x) * 2.0;  // what the start needs
  Value chain = sin(x);              // work built before the start, independent of it
  for (int i = 0; i < 5; ++i) chain = sin(chain);
  const Value flat = reshape(early, Shape{8});  // feeds only the start: hoisted with it
  const Value started = all_reduce_start(flat, solo());
  const Value done = all_reduce_wait(started) + chain;
  Executable exe = compile(g, {done}, cpu());
  const std::vector<std::uint32_t>& order = exe.schedule();
  auto position = [&](const Value& v) {
    return std::find(order.begin(), order.end(), v.ref().node) - order.begin();
  };
  CHECK(position(started) < position(chain));
  CHECK(position(flat) < position(started));
  CHECK(position(started) < position(done));
  const Tensor value = random_tensor(DType::f32, {8}, 3);
  Graph reference;
  const Value rx = reference.placeholder("x", DType::f32, {8});
  Value rchain = sin(rx);
  for (int i = 0; i < 5; ++i) rchain = sin(rchain);
  check_close(exe.run({{x, value}})[0], run1(reference, exp(rx) * 2.0 + rchain, {{rx, value}}), 0, 0);
}

TEST_CASE("average_gradients on one rank buckets and returns every gradient unchanged") {
  for (const std::int64_t bucket_bytes : {std::int64_t{1}, std::int64_t{64}, std::int64_t{1} << 20})
    for (const bool overlap : {true, false}) {
      CAPTURE(bucket_bytes);
      CAPTURE(overlap);
      Graph g;
      const std::vector<Value> grads{g.placeholder("a", DType::f32, {3, 4}), g.placeholder("b", DType::f64, {5}),
                                     g.placeholder("c", DType::f32, {2}), g.placeholder("d", DType::f32, {})};
      const std::vector<Value> averaged =
          nn::average_gradients(grads, {.communicator = solo(), .bucket_bytes = bucket_bytes, .overlap = overlap});
      REQUIRE(averaged.size() == grads.size());
      Feeds feeds;
      std::vector<Tensor> values;
      for (std::size_t i = 0; i < grads.size(); ++i) {
        CHECK(averaged[i].type() == grads[i].type());
        values.push_back(random_tensor(grads[i].dtype(), grads[i].shape(), 11 + i));
        feeds.emplace_back(grads[i], values.back());
      }
      const std::vector<Tensor> out = run(g, averaged, feeds);
      for (std::size_t i = 0; i < grads.size(); ++i) check_close(out[i], values[i], 0, 0);
    }
}

TEST_CASE("a data-parallel optimizer on one rank takes the same steps as the plain one") {
  auto train = [](bool data_parallel) {
    Graph g;
    g.set_seed(5);
    const Value x = g.placeholder("x", DType::f64, {6, 3});
    const Value w = g.parameter("w", DType::f64, {3, 2}, init::normal(0, 1));
    const Value loss = reduce_mean(tanh(matmul(x, w)) * tanh(matmul(x, w)));
    nn::AdamOptions options{.lr = nn::constant_lr(0.1), .clip_norm = 0.5};
    if (data_parallel) options.data_parallel = nn::DataParallelOptions{.communicator = solo(), .bucket_bytes = 8};
    const nn::TrainStep step = nn::adamw(loss, g.parameters(), options);
    Executable exe = compile(g, {loss}, cpu(), {.updates = step.updates});
    const Tensor batch = random_tensor(DType::f64, {6, 3}, 9);
    for (int i = 0; i < 3; ++i) exe.run({{x, batch}});
    return g.parameter_value(w).clone();
  };
  check_close(train(true), train(false), 0, 0);
}
