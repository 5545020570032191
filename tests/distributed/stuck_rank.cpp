// A rank that stops must make the others fail, not hang (CTest: mpi_stuck_rank_times_out).
// Under mpirun -np 2 with FOVEA_COLLECTIVE_TIMEOUT=3: rank 1 joins the communicator and then
// sleeps instead of joining the all_reduce; rank 0's all_reduce gives up after 3 s, rank 0
// prints the error, checks that the next collective fails at once, and exits. Destroying the
// broken communicator on the way out ends the whole job (MPI_Abort), rank 1 included, so mpirun
// returns within seconds of the timeout.
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include <fovea/core/error.h>
#include <fovea/distributed/mpi_communicator.h>

int main() {
  const auto world = fovea::MpiCommunicator::world();
  if (world->rank() != 0) {
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
  }
  std::vector<float> data(1 << 20, 1.0f);
  try {
    world->all_reduce(data.data(), static_cast<std::int64_t>(data.size()), fovea::f32, fovea::Reduction::sum);
  } catch (const fovea::Error& e) {
    std::printf("rank 0: %s\n", e.what());
    std::fflush(stdout);
  }
  // The communicator is broken now: the next collective fails at once, without waiting again.
  const auto start = std::chrono::steady_clock::now();
  try {
    world->barrier();
  } catch (const fovea::Error& e) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const bool immediate = world->broken() && seconds < 1.0;
    std::printf("rank 0: %s (after %.3f s)\n%s", e.what(), seconds, immediate ? "" : "stuck_rank: FAILED\n");
    std::fflush(stdout);
    return 1;
  }
  std::printf("stuck_rank: FAILED: the barrier completed without rank 1\n");
  return 2;
}
