// Shared by the tests of fovea_mpi_tests (tests/distributed/), which mpirun starts on several
// ranks (tests/CMakeLists.txt). Every rank runs every test case in the same order, so a test
// case may issue collectives; it must issue the same ones on every rank, even when a check fails.
#pragma once

#include <fovea/distributed/mpi_communicator.h>

namespace fovea::testing {

// The job's communicator (MpiCommunicator::world()), alive until the program ends.
MpiCommunicator& world();

}  // namespace fovea::testing
