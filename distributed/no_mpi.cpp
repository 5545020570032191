// Built when CMake found no MPI (find_package(MPI COMPONENTS C)): the same class, which cannot
// be made. world() says what to install; the other members exist for the linker only, since no
// object of the class can be constructed.
#include <string>

#include "fovea/core/error.h"
#include "fovea/distributed/mpi_communicator.h"

namespace fovea {

namespace {
[[noreturn]] void no_mpi() {
  throw Error("Fovea was built without MPI: install libopenmpi-dev (tools/install_deps.sh) and reconfigure");
}
}  // namespace

struct MpiCommunicator::State {};

bool mpi_available() { return false; }

std::shared_ptr<MpiCommunicator> MpiCommunicator::world() { no_mpi(); }
MpiCommunicator::MpiCommunicator() { no_mpi(); }
MpiCommunicator::~MpiCommunicator() = default;

void MpiCommunicator::all_reduce(void*, std::int64_t, DType, Reduction, void*) { no_mpi(); }
void MpiCommunicator::broadcast(void*, std::int64_t, DType, int, void*) { no_mpi(); }
void MpiCommunicator::reduce(void*, std::int64_t, DType, int, void*) { no_mpi(); }
void MpiCommunicator::all_gather(const void*, void*, std::int64_t, DType, void*) { no_mpi(); }
void MpiCommunicator::reduce_scatter(const void*, void*, std::int64_t, DType, Reduction, void*) { no_mpi(); }
void MpiCommunicator::barrier() { no_mpi(); }
std::uint64_t MpiCommunicator::start_all_reduce(void*, std::int64_t, DType, Reduction, void*) { no_mpi(); }
void MpiCommunicator::wait(std::uint64_t, void*) { no_mpi(); }
void MpiCommunicator::set_fixed_order(bool) { no_mpi(); }
bool MpiCommunicator::fixed_order() const { no_mpi(); }
bool MpiCommunicator::broken() const { no_mpi(); }
std::string_view MpiCommunicator::thread_level() const { no_mpi(); }

}  // namespace fovea
