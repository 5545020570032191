// Data-parallel training under mpirun (2 and 4 ranks): a step at global batch B on p ranks,
// each fed its B/p rows, equals the one-process step at batch B; parameters start equal after
// broadcast_parameters; the gradients' all-reduces start during the backward.
#include <fovea/distributed/mpi_communicator.h>
#include <fovea/nn/data_parallel.h>
#include <fovea/nn/optim.h>
#include <fovea/ops/collective.h>

#include <algorithm>
#include <memory>

#include "testing.h"

using namespace fovea;
using namespace fovea::testing;

namespace {

constexpr std::int64_t kBatch = 8, kIn = 5, kHidden = 7, kOut = 3;

struct Model {
  Graph graph;
  Value x, y, loss;
};

// A two-layer MLP with a squared-error loss averaged over the rows it is fed.
void build_model(Model& m, std::int64_t rows) {
  m.graph.set_seed(21);
  m.x = m.graph.placeholder("x", DType::f64, {rows, kIn});
  m.y = m.graph.placeholder("y", DType::f64, {rows, kOut});
  const Value w1 = m.graph.parameter("w1", DType::f64, {kIn, kHidden}, init::normal(0, 0.5));
  const Value b1 = m.graph.parameter("b1", DType::f64, {kHidden}, init::normal(0, 0.1));
  const Value w2 = m.graph.parameter("w2", DType::f64, {kHidden, kOut}, init::normal(0, 0.5));
  const Value h = tanh(matmul(m.x, w1) + b1);
  const Value d = matmul(h, w2) - m.y;
  m.loss = reduce_mean(d * d);
}

Tensor rows_of(const Tensor& t, std::int64_t first, std::int64_t count) {
  Graph g;
  return run1(g, slice(g.constant(t), 0, first, first + count));
}

// Trains for `steps` steps and returns every parameter after them, in creation order.
std::vector<Tensor> train(bool data_parallel, bool overlap, int steps) {
  const std::shared_ptr<Communicator> world = MpiCommunicator::world();
  const std::int64_t rows = data_parallel ? kBatch / world->size() : kBatch;
  Model m;
  build_model(m, rows);
  nn::AdamOptions options{.lr = nn::constant_lr(0.05), .clip_norm = 1.0};
  if (data_parallel)  // a small bucket size: several buckets, some holding more than one gradient
    options.data_parallel = nn::DataParallelOptions{.communicator = world, .bucket_bytes = 64, .overlap = overlap};
  const nn::TrainStep step = nn::adamw(m.loss, m.graph.parameters(), options);
  Executable exe = compile(m.graph, {m.loss}, cpu(), {.updates = step.updates});
  for (int s = 0; s < steps; ++s) {
    const Tensor x = random_tensor(DType::f64, {kBatch, kIn}, 300 + s),
                 y = random_tensor(DType::f64, {kBatch, kOut}, 400 + s);
    const std::int64_t first = data_parallel ? world->rank() * rows : 0;
    exe.run({{m.x, rows_of(x, first, rows)}, {m.y, rows_of(y, first, rows)}});
  }
  std::vector<Tensor> values;
  for (const Value& p : m.graph.parameters()) values.push_back(m.graph.parameter_value(p).clone());
  return values;
}

}  // namespace

TEST_CASE("a data-parallel step at global batch B equals the one-process step at batch B") {
  // Tolerance: the ranks sum their rows' gradients in a different order than one process summing
  // all rows (the matmul's K loop is cut in p pieces, then the all-reduce adds the pieces), which
  // changes f64 results by a few ulps per step; Adam's update divides by √v, which can amplify a
  // relative 1e-16 to about 1e-14 after three steps.
  const std::vector<Tensor> one = train(false, false, 3);
  for (bool overlap : {true, false}) {
    CAPTURE(overlap);
    const std::vector<Tensor> many = train(true, overlap, 3);
    REQUIRE(many.size() == one.size());
    for (std::size_t i = 0; i < one.size(); ++i) check_close(many[i], one[i], 1e-12, 1e-13);
  }
}

TEST_CASE("every rank ends a data-parallel step with bit-identical parameters") {
  const std::shared_ptr<Communicator> world = MpiCommunicator::world();
  for (const Tensor& mine : train(true, true, 2)) {
    Tensor root = mine.clone();
    world->broadcast(root.raw(), root.numel(), root.dtype(), 0);
    check_close(mine, root, 0, 0);
  }
}

TEST_CASE("broadcast_parameters gives every rank rank 0's parameters and state") {
  const std::shared_ptr<Communicator> world = MpiCommunicator::world();
  Graph g;
  g.set_seed(100 + static_cast<std::uint64_t>(world->rank()));  // different weights on every rank
  const Value w = g.parameter("w", DType::f32, {4, 3}, init::normal(0, 1));
  const Value count = g.state("count", DType::i64, {}, init::constant(static_cast<double>(world->rank())));
  nn::broadcast_parameters(g, *world);
  Graph reference;
  reference.set_seed(100);
  const Value rw = reference.parameter("w", DType::f32, {4, 3}, init::normal(0, 1));
  check_close(g.parameter_value(w), reference.parameter_value(rw), 0, 0);
  CHECK(g.parameter_value(count).item() == 0);
}

TEST_CASE("the gradients' all-reduces start while the backward still runs") {
  const std::shared_ptr<Communicator> world = MpiCommunicator::world();
  Model m;
  build_model(m, kBatch / world->size());
  const nn::TrainStep step =
      nn::sgd(m.loss, m.graph.parameters(),
              {.data_parallel = nn::DataParallelOptions{.communicator = world, .bucket_bytes = 64}});
  Executable exe = compile(m.graph, {m.loss}, cpu(), {.updates = step.updates});
  const std::vector<std::uint32_t>& order = exe.schedule();
  std::size_t first_start = order.size(), last_backward = 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    const Node& node = m.graph.node(order[i]);
    if (node.op == &ops::all_reduce_start) first_start = std::min(first_start, i);
    if (node.role == NodeRole::backward && node.op != &ops::all_reduce_start) last_backward = i;
  }
  CHECK(first_start < last_backward);
}
