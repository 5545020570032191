// A rank that stops must make the others fail, not hang (CTest: mpi_stuck_rank_times_out).
// Under mpirun -np 2 with FOVEA_COLLECTIVE_TIMEOUT=3: rank 1 joins the communicator and then
// sleeps instead of joining the all_reduce; rank 0's all_reduce gives up after 3 s, and rank 0
// prints the error and exits. Destroying the broken communicator on the way out ends the whole
// job (MPI_Abort), rank 1 included, so mpirun returns within seconds of the timeout.
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
    return 1;
  }
  std::printf("rank 0: the all_reduce completed without rank 1\n");
  return 2;
}
