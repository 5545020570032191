// MpiCommunicator on every rank of an mpirun job (fovea_mpi_tests: 2 and 4 ranks). Every rank
// makes its data from a seed and its rank number, so each rank can also make every other rank's
// data and compute what a collective must return without asking anyone.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <fovea/core/error.h>

#include "mpi_testing.h"

namespace fovea {
namespace {

using testing::world;

// Rank `rank`'s data for a test seeded with `seed`: floats in [-1, 1) spread over a few orders
// of magnitude (so that the order of additions shows in the last bits), integers in [-1000, 1000).
template <class T>
std::vector<T> rank_data(int rank, std::int64_t count, std::uint64_t seed) {
  std::mt19937_64 rng(seed * 1000 + static_cast<std::uint64_t>(rank));
  std::vector<T> values(static_cast<std::size_t>(count));
  for (T& x : values) {
    if constexpr (std::is_floating_point_v<T>) {
      const double scale = std::ldexp(1.0, static_cast<int>(rng() % 20) - 10);
      x = static_cast<T>(std::uniform_real_distribution<double>(-1.0, 1.0)(rng) * scale);
    } else {
      x = static_cast<T>(static_cast<std::int64_t>(rng() % 2000) - 1000);
    }
  }
  return values;
}

// The sum over the ranks of their data, added in rank order 0, 1, ..., size-1 in T.
template <class T>
std::vector<T> sum_in_rank_order(std::int64_t count, std::uint64_t seed) {
  std::vector<T> sum = rank_data<T>(0, count, seed);
  for (int r = 1; r < world().size(); ++r) {
    const std::vector<T> part = rank_data<T>(r, count, seed);
    for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += part[i];
  }
  return sum;
}

// Exact for integers; for floats within the rounding a different order of additions can make.
template <class T>
void check_equal(const std::vector<T>& actual, const std::vector<T>& expected) {
  REQUIRE(actual.size() == expected.size());
  for (std::size_t i = 0; i < actual.size(); ++i) {
    if constexpr (std::is_floating_point_v<T>) {
      const double tolerance = (std::is_same_v<T, float> ? 1e-5 : 1e-13) * (1.0 + std::abs(double(expected[i])));
      if (!(std::abs(double(actual[i]) - double(expected[i])) <= tolerance)) {
        FAIL_CHECK("element " << i << ": got " << actual[i] << ", expected " << expected[i]);
        return;
      }
    } else if (actual[i] != expected[i]) {
      FAIL_CHECK("element " << i << ": got " << actual[i] << ", expected " << expected[i]);
      return;
    }
  }
}

template <class T>
std::vector<T> divided(std::vector<T> values, int ranks) {
  for (T& x : values) x = static_cast<T>(x / static_cast<T>(ranks));
  return values;
}

template <class T>
void check_all_reduce(std::int64_t count, std::uint64_t seed) {
  CAPTURE(dtype_name(dtype_of<T>));
  std::vector<T> data = rank_data<T>(world().rank(), count, seed);
  world().all_reduce(data.data(), count, dtype_of<T>, Reduction::sum);
  check_equal(data, sum_in_rank_order<T>(count, seed));

  data = rank_data<T>(world().rank(), count, seed);
  world().all_reduce(data.data(), count, dtype_of<T>, Reduction::mean);
  check_equal(data, divided(sum_in_rank_order<T>(count, seed), world().size()));
}

template <class T>
void check_reduce_scatter(std::int64_t count, std::uint64_t seed) {
  CAPTURE(dtype_name(dtype_of<T>));
  const int ranks = world().size(), rank = world().rank();
  const std::vector<T> send = rank_data<T>(rank, count * ranks, seed);
  const std::vector<T> sum = sum_in_rank_order<T>(count * ranks, seed);
  const std::vector<T> mine(sum.begin() + rank * count, sum.begin() + (rank + 1) * count);
  std::vector<T> receive(static_cast<std::size_t>(count));
  world().reduce_scatter(send.data(), receive.data(), count, dtype_of<T>, Reduction::sum);
  check_equal(receive, mine);
  world().reduce_scatter(send.data(), receive.data(), count, dtype_of<T>, Reduction::mean);
  check_equal(receive, divided(mine, ranks));
}

template <class T>
void check_all_gather(std::int64_t count, std::uint64_t seed) {
  CAPTURE(dtype_name(dtype_of<T>));
  const int ranks = world().size();
  const std::vector<T> send = rank_data<T>(world().rank(), count, seed);
  std::vector<T> receive(static_cast<std::size_t>(count * ranks));
  world().all_gather(send.data(), receive.data(), count, dtype_of<T>);
  std::vector<T> expected;
  for (int r = 0; r < ranks; ++r) {
    const std::vector<T> part = rank_data<T>(r, count, seed);
    expected.insert(expected.end(), part.begin(), part.end());
  }
  check_equal(receive, expected);
}

template <class T>
void check_broadcast_and_reduce(std::int64_t count, std::uint64_t seed) {
  CAPTURE(dtype_name(dtype_of<T>));
  const int ranks = world().size(), rank = world().rank();
  const int root = ranks - 1;  // not rank 0, where a root-0 assumption would hide
  std::vector<T> data = rank_data<T>(rank, count, seed);
  world().broadcast(data.data(), count, dtype_of<T>, root);
  check_equal(data, rank_data<T>(root, count, seed));

  const int reduce_root = 1 % ranks;
  data = rank_data<T>(rank, count, seed);
  world().reduce(data.data(), count, dtype_of<T>, reduce_root);
  check_equal(data, rank == reduce_root ? sum_in_rank_order<T>(count, seed) : rank_data<T>(rank, count, seed));
}

TEST_CASE("mpi: world() is one communicator of every rank") {
  const auto first = MpiCommunicator::world();
  CHECK(first.get() == &world());
  CHECK(MpiCommunicator::world().get() == first.get());
  CHECK(mpi_available());
  CHECK(first->name() == "mpi");
  CHECK(first->size() >= 2);
  CHECK(first->rank() >= 0);
  CHECK(first->rank() < first->size());
  CHECK_FALSE(first->uses_device_memory());
  CHECK(first->thread_level() == "multiple");
  std::int32_t ones = 1;
  first->all_reduce(&ones, 1, i32, Reduction::sum);
  CHECK(ones == first->size());
}

TEST_CASE("mpi: all_reduce sums and averages f32, f64, i32 and i64") {
  for (const std::int64_t count : {std::int64_t{1}, std::int64_t{1037}}) {
    check_all_reduce<float>(count, 1);
    check_all_reduce<double>(count, 2);
    check_all_reduce<std::int32_t>(count, 3);
    check_all_reduce<std::int64_t>(count, 4);
  }
}

TEST_CASE("mpi: the mean of integers rounds towards zero") {
  // Rank r gives -(r + 1): the sum is -size(size+1)/2, whose mean -(size+1)/2 is not whole for
  // an even number of ranks.
  std::int64_t value = -(world().rank() + 1);
  world().all_reduce(&value, 1, i64, Reduction::mean);
  const std::int64_t ranks = world().size();
  CHECK(value == -(ranks * (ranks + 1) / 2) / ranks);
}

TEST_CASE("mpi: broadcast from the last rank and reduce onto rank 1 leave the other ranks' data alone") {
  check_broadcast_and_reduce<float>(513, 5);
  check_broadcast_and_reduce<double>(513, 6);
  check_broadcast_and_reduce<std::int32_t>(513, 7);
  check_broadcast_and_reduce<std::int64_t>(513, 8);
}

TEST_CASE("mpi: all_gather puts rank r's block at r") {
  check_all_gather<float>(129, 9);
  check_all_gather<double>(129, 10);
  check_all_gather<std::int32_t>(129, 11);
  check_all_gather<std::int64_t>(129, 12);
}

TEST_CASE("mpi: reduce_scatter gives rank r the reduction of block r") {
  check_reduce_scatter<float>(257, 13);
  check_reduce_scatter<double>(257, 14);
  check_reduce_scatter<std::int32_t>(257, 15);
  check_reduce_scatter<std::int64_t>(257, 16);
}

TEST_CASE("mpi: barrier returns on every rank") {
  for (int i = 0; i < 3; ++i) world().barrier();
  CHECK_FALSE(world().broken());
}

TEST_CASE("mpi: asynchronous all_reduces in flight, a blocking collective between, waits in another order") {
  const std::int64_t count = 4099;
  std::vector<std::vector<float>> buffers;
  for (std::uint64_t seed = 20; seed < 24; ++seed) buffers.push_back(rank_data<float>(world().rank(), count, seed));
  std::vector<std::uint64_t> tickets;
  for (auto& buffer : buffers) tickets.push_back(world().start_all_reduce(buffer.data(), count, f32, Reduction::sum));
  std::int64_t root_value = world().rank() == 0 ? 42 : -1;
  world().broadcast(&root_value, 1, i64, 0);
  CHECK(root_value == 42);
  for (const std::size_t i : {std::size_t{2}, std::size_t{0}, std::size_t{3}, std::size_t{1}}) {
    world().wait(tickets[i]);
    check_equal(buffers[i], sum_in_rank_order<float>(count, 20 + i));
  }
  CHECK_THROWS_WITH_AS(world().wait(tickets[0]), doctest::Contains("already waited for"), Error);
  CHECK_FALSE(world().broken());
}

TEST_CASE("mpi: fixed order sums in rank order, bit for bit, every time") {
  // Two blocks and a bit of all_reduce's fixed-order blocking, so that the blocks' seams are covered.
  const std::int64_t count = (std::int64_t{1} << 21) + 3;
  world().set_fixed_order(true);
  const std::vector<float> expected = sum_in_rank_order<float>(count, 30);
  std::vector<float> first = rank_data<float>(world().rank(), count, 30);
  std::vector<float> second = first;
  world().all_reduce(first.data(), count, f32, Reduction::sum);
  const std::uint64_t ticket = world().start_all_reduce(second.data(), count, f32, Reduction::sum);
  world().wait(ticket);
  CHECK(std::memcmp(first.data(), expected.data(), expected.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(second.data(), expected.data(), expected.size() * sizeof(float)) == 0);

  const int ranks = world().size(), rank = world().rank();
  const std::int64_t block = 1001;
  const std::vector<double> send = rank_data<double>(rank, block * ranks, 31);
  const std::vector<double> sum = sum_in_rank_order<double>(block * ranks, 31);
  std::vector<double> receive(static_cast<std::size_t>(block));
  for (int repetition = 0; repetition < 2; ++repetition) {
    world().reduce_scatter(send.data(), receive.data(), block, f64, Reduction::sum);
    CHECK(std::memcmp(receive.data(), sum.data() + rank * block, receive.size() * sizeof(double)) == 0);
  }
  world().set_fixed_order(false);
  CHECK_FALSE(world().fixed_order());
}

TEST_CASE("mpi: a dtype MPI cannot take is an error that names it, and breaks nothing") {
  std::vector<std::uint16_t> halves(8);
  CHECK_THROWS_WITH_AS(world().all_reduce(halves.data(), 8, bf16, Reduction::sum), doctest::Contains("bf16"), Error);
  CHECK_THROWS_WITH_AS(world().start_all_reduce(halves.data(), 8, f16, Reduction::sum), doctest::Contains("f16"),
                       Error);
  CHECK_THROWS_WITH_AS(world().broadcast(halves.data(), 8, boolean, 0), doctest::Contains("bool"), Error);
  CHECK_THROWS_WITH_AS(world().broadcast(halves.data(), 4, i32, world().size()), doctest::Contains("root"), Error);
  CHECK_FALSE(world().broken());
  world().barrier();
}

}  // namespace
}  // namespace fovea
