// SoloCommunicator (core/communicator.h): one rank, every collective the identity; and the
// registry graph nodes name communicators through.
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <vector>

#include <fovea/core/communicator.h>
#include <fovea/core/error.h>

namespace fovea {
namespace {

// The calls go through Communicator&, as a kernel's do: the default stream argument is the
// base class's (SoloCommunicator's overrides declare none).
TEST_CASE("solo communicator: one rank, and every collective leaves the data as it is") {
  SoloCommunicator concrete;
  Communicator& solo = concrete;
  CHECK(solo.name() == "solo");
  CHECK(solo.rank() == 0);
  CHECK(solo.size() == 1);
  CHECK_FALSE(solo.uses_device_memory());

  std::vector<float> data = {1.5f, -2.0f, 3.25f};
  const std::vector<float> original = data;
  solo.all_reduce(data.data(), 3, f32, Reduction::sum);
  solo.all_reduce(data.data(), 3, f32, Reduction::mean);
  solo.broadcast(data.data(), 3, f32, 0);
  solo.reduce(data.data(), 3, f32, 0);
  solo.barrier();
  CHECK(data == original);

  std::vector<std::int64_t> send = {7, -8}, receive(2);
  solo.all_gather(send.data(), receive.data(), 2, i64);
  CHECK(receive == send);
  receive.assign(2, 0);
  solo.reduce_scatter(send.data(), receive.data(), 2, i64, Reduction::mean);
  CHECK(receive == send);
}

TEST_CASE("solo communicator: root 0 only, and a wait needs a ticket it issued") {
  SoloCommunicator concrete;
  Communicator& solo = concrete;
  float x = 1.0f;
  CHECK_THROWS_WITH_AS(solo.broadcast(&x, 1, f32, 1), doctest::Contains("root 1"), Error);
  CHECK_THROWS_WITH_AS(solo.reduce(&x, 1, f32, -1), doctest::Contains("root -1"), Error);
  const std::uint64_t first = solo.start_all_reduce(&x, 1, f32, Reduction::sum);
  const std::uint64_t second = solo.start_all_reduce(&x, 1, f32, Reduction::mean);
  CHECK(first != second);
  solo.wait(second);
  solo.wait(first);
  CHECK(x == 1.0f);
  CHECK_THROWS_WITH_AS(solo.wait(second + 1), doctest::Contains("never issued"), Error);
}

TEST_CASE("communicator registry: one number per communicator, and unknown numbers are errors") {
  auto solo = std::make_shared<SoloCommunicator>();
  const int id = register_communicator(solo);
  CHECK(register_communicator(solo) == id);
  CHECK(registered_communicator(id).get() == solo.get());
  CHECK(register_communicator(std::make_shared<SoloCommunicator>()) != id);
  CHECK_THROWS_WITH_AS(registered_communicator(-1), doctest::Contains("no communicator"), Error);
  CHECK_THROWS_AS(register_communicator(nullptr), Error);
}

}  // namespace
}  // namespace fovea
