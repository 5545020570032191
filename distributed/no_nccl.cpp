// Built when the CUDA backend is off or NCCL was not found: the same class, which cannot be
// made. The other members exist for the linker only, since no object can be constructed.
#include "fovea/core/error.h"
#include "fovea/distributed/nccl_communicator.h"

namespace fovea {

namespace {
[[noreturn]] void no_nccl() {
  throw Error(
      "Fovea was built without NCCL: NcclCommunicator needs the CUDA backend (nvcc, FOVEA_ENABLE_CUDA) and "
      "NCCL's libnccl.so and nccl.h beside the CUDA toolkit; install them and reconfigure");
}
}  // namespace

struct NcclCommunicator::State {};

NcclCommunicator::NcclCommunicator(Communicator&, int) { no_nccl(); }
NcclCommunicator::~NcclCommunicator() = default;

void NcclCommunicator::all_reduce(void*, std::int64_t, DType, Reduction, void*) { no_nccl(); }
void NcclCommunicator::broadcast(void*, std::int64_t, DType, int, void*) { no_nccl(); }
void NcclCommunicator::reduce(void*, std::int64_t, DType, int, void*) { no_nccl(); }
void NcclCommunicator::all_gather(const void*, void*, std::int64_t, DType, void*) { no_nccl(); }
void NcclCommunicator::reduce_scatter(const void*, void*, std::int64_t, DType, Reduction, void*) { no_nccl(); }
void NcclCommunicator::barrier() { no_nccl(); }
std::uint64_t NcclCommunicator::start_all_reduce(void*, std::int64_t, DType, Reduction, void*) { no_nccl(); }
void NcclCommunicator::wait(std::uint64_t, void*) { no_nccl(); }

}  // namespace fovea
