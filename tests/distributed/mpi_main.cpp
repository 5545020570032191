// The runner of fovea_mpi_tests: doctest's, on every rank of an mpirun job. The communicator is
// made before the first test case, so that MPI starts the same way whichever case runs first,
// and each rank's report says which rank it is.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "mpi_testing.h"

namespace fovea::testing {

MpiCommunicator& world() {
  static const std::shared_ptr<MpiCommunicator> communicator = MpiCommunicator::world();
  return *communicator;
}

}  // namespace fovea::testing

int main(int argc, char** argv) {
  fovea::MpiCommunicator& world = fovea::testing::world();
  std::printf("rank %d of %d (MPI thread level: %s)\n", world.rank(), world.size(),
              std::string(world.thread_level()).c_str());
  doctest::Context context(argc, argv);
  return context.run();
}
