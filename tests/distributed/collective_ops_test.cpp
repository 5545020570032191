// The collective ops between real ranks, under mpirun (2 and 4 ranks): every op's values against
// what each rank computes from every rank's seeded data, and every gradient against its closed
// form and against central differences of the loss of all ranks together.
#include <fovea/autograd/grad.h>
#include <fovea/distributed/mpi_communicator.h>
#include <fovea/ops/collective.h>

#include <functional>
#include <memory>
#include <string>

#include "testing.h"

using namespace fovea;
using namespace fovea::testing;

namespace {

using Build = std::function<Value(Value)>;

std::shared_ptr<Communicator> comm() { return MpiCommunicator::world(); }
int ranks() { return comm()->size(); }
int my_rank() { return comm()->rank(); }

// Rank r's data for a test: any rank can make any other's.
Tensor data_of(int rank, const Shape& shape, std::uint64_t salt, DType dtype = DType::f64) {
  return random_tensor(dtype, shape, 1000 * salt + static_cast<std::uint64_t>(rank), -4, 4);
}

// `build` run on this rank's data.
Tensor on_my_data(const Shape& shape, std::uint64_t salt, const Build& build, DType dtype = DType::f64) {
  Graph g;
  const Value x = g.placeholder("x", dtype, shape);
  return run1(g, build(x), {{x, data_of(my_rank(), shape, salt, dtype)}});
}

// A value computed from the ranks' data on this rank alone, with ordinary ops.
Tensor expected(const Shape& shape, std::uint64_t salt, const std::function<Value(Graph&, std::vector<Value>)>& build,
                DType dtype = DType::f64) {
  Graph g;
  std::vector<Value> parts;
  for (int r = 0; r < ranks(); ++r) parts.push_back(g.constant(data_of(r, shape, salt, dtype)));
  return run1(g, build(g, parts));
}

Value sum(std::vector<Value> parts) {
  Value total = parts[0];
  for (std::size_t i = 1; i < parts.size(); ++i) total = total + parts[i];
  return total;
}

Value part(Value x, int axis, int index, int count) {
  const std::int64_t size = x.shape()[axis] / count;
  return slice(x, axis, index * size, (index + 1) * size);
}

}  // namespace

TEST_CASE("all_reduce and its asynchronous pair sum and average the ranks' data, in f64 and i64") {
  const Shape shape{3, 5};
  const double p = ranks();
  for (DType dtype : {DType::f64, DType::i64}) {
    CAPTURE(dtype_name(dtype));
    // Integers are exact; floats summed in another order than x0 + x1 + ... differ in the last bits.
    const double tolerance = dtype == DType::f64 ? 1e-15 : 0;
    const Tensor total = expected(
        shape, 1, [](Graph&, std::vector<Value> x) { return sum(x); }, dtype);
    check_close(on_my_data(
                    shape, 1, [](Value x) { return all_reduce(x, comm()); }, dtype),
                total, tolerance, tolerance);
    check_close(on_my_data(
                    shape, 1, [](Value x) { return all_reduce_wait(all_reduce_start(x, comm())); }, dtype),
                total, tolerance, tolerance);
    if (dtype == DType::f64)
      check_close(on_my_data(shape, 1, [](Value x) { return all_reduce(x, comm(), Reduction::mean); }),
                  expected(shape, 1, [p](Graph&, std::vector<Value> x) { return sum(x) * (1.0 / p); }), 1e-15, 1e-15);
  }
}

TEST_CASE("broadcast_from and reduce_to move data from and to a root that is not rank 0") {
  const Shape shape{4};
  const int root = ranks() - 1;
  check_close(on_my_data(shape, 2, [root](Value x) { return broadcast_from(x, comm(), root); }),
              data_of(root, shape, 2), 0, 0);
  const Tensor reduced = on_my_data(shape, 3, [](Value x) { return reduce_to(x, comm(), 1); });
  if (my_rank() == 1)
    check_close(reduced, expected(shape, 3, [](Graph&, std::vector<Value> x) { return sum(x); }), 1e-15, 1e-15);
  else
    check_close(reduced, Tensor::zeros(DType::f64, shape), 0, 0);
}

TEST_CASE("all_gather and reduce_scatter along the first and an inner axis") {
  const int p = ranks(), rank = my_rank();
  for (int axis : {0, 1}) {
    CAPTURE(axis);
    const Shape small{2, 3};
    check_close(on_my_data(small, 4, [axis](Value x) { return all_gather(x, comm(), axis); }),
                expected(small, 4, [axis](Graph&, std::vector<Value> x) { return concat(x, axis); }), 0, 0);
    Shape large = small;
    large[axis] *= p;
    for (Reduction reduction : {Reduction::sum, Reduction::mean}) {
      const double scale = reduction == Reduction::sum ? 1.0 : 1.0 / p;
      check_close(
          on_my_data(large, 5, [axis, reduction](Value x) { return reduce_scatter(x, comm(), axis, reduction); }),
          expected(large, 5,
                   [&](Graph&, std::vector<Value> x) {
                     std::vector<Value> parts;
                     for (const Value& v : x) parts.push_back(part(v, axis, rank, p));
                     return sum(parts) * scale;
                   }),
          1e-15, 1e-15);
    }
  }
}

TEST_CASE("a collective whose parts do not split among the ranks is refused at build time") {
  Graph g;
  const Value x = g.placeholder("x", DType::f32, {ranks() * 2 + 1, 2});
  CHECK(error_of([&] { reduce_scatter(x, comm()); }).find("does not split into") != std::string::npos);
}

namespace {

// L_r = Σ w_r ⊙ y_r on every rank, for y = build(x): the graph's ∂L/∂x on rank r is
// ∂(Σ_s L_s)/∂x_r. Checked against central differences of Σ_s L_s, which every rank computes
// (an all_reduce of its L_r) while one rank at a time moves one of its elements.
void check_gradient(const std::string& what, const Shape& shape, const Build& build) {
  CAPTURE(what);
  Graph g;
  const Value x = g.placeholder("x", DType::f64, shape);
  const Value y = build(x);
  const Value w = g.constant(data_of(my_rank(), y.shape(), 7));
  const Value local = reduce_sum(y * w);
  const Value gradient = grad(local, {x})[0];
  const Value total = all_reduce(local, comm());
  Executable exe = compile(g, {gradient, total}, cpu());
  Tensor value = data_of(my_rank(), shape, 8);
  const Tensor analytic = exe.run({{x, value}})[0];
  const double eps = 1e-6;
  for (int r = 0; r < ranks(); ++r)
    for (std::int64_t i = 0; i < value.numel(); ++i) {
      const double original = value.at(i);
      auto total_with = [&](double shift) {
        Tensor moved = value.clone();
        if (r == my_rank()) moved.data<double>()[static_cast<std::size_t>(i)] = original + shift;
        return exe.run({{x, moved}})[1].item();
      };
      const double numeric = (total_with(eps) - total_with(-eps)) / (2 * eps);
      if (r == my_rank()) CHECK(std::abs(analytic.at(i) - numeric) <= 1e-6 * std::max(1.0, std::abs(numeric)));
    }
}

}  // namespace

TEST_CASE("every collective's gradient matches central differences of the ranks' summed loss") {
  const int last = ranks() - 1;
  check_gradient("all_reduce sum", {2, 2}, [](Value x) { return all_reduce(x * x, comm()); });
  check_gradient("all_reduce mean", {3}, [](Value x) { return all_reduce(x, comm(), Reduction::mean); });
  check_gradient("broadcast_from", {3}, [last](Value x) { return broadcast_from(tanh(x), comm(), last); });
  check_gradient("reduce_to", {3}, [](Value x) { return reduce_to(x * x, comm(), 1); });
  check_gradient("all_gather axis 1", {2, 2}, [](Value x) { return all_gather(x, comm(), 1); });
  check_gradient("reduce_scatter mean", {ranks(), 2},
                 [](Value x) { return reduce_scatter(x * x, comm(), 0, Reduction::mean); });
  check_gradient("start and wait", {2}, [](Value x) { return all_reduce_wait(all_reduce_start(sin(x), comm())); });
}
