// NcclCommunicator: one GPU per process, over NVIDIA's NCCL; buffers in device memory
// (core/communicator.h says what every communicator promises).
//
//   auto world = fovea::MpiCommunicator::world();                 // one process per GPU
//   fovea::NcclCommunicator gpus(*world, local_rank);             // NCCL, bootstrapped over MPI
//   gpus.all_reduce(device_gradients, count, fovea::f32, fovea::Reduction::mean, stream);
//
// NCCL needs every rank to hold the same unique id before the ranks can find each other; rank 0
// makes it and the bootstrap communicator (any host communicator of the same ranks) broadcasts
// it. After that the bootstrap is no longer used.
//
// Collectives are queued on the CUDA stream given (a cudaStream_t passed as void*; nullptr is
// the default stream) and return without waiting, as NCCL's calls do: the data is ready for the
// work queued after them on that stream. The asynchronous all-reduce runs on a stream of the
// communicator's own, ordered after the work already on the caller's stream; wait() orders the
// caller's stream after it, again without blocking the host. Only barrier() waits on the host,
// up to timeout(); when it gives up the communicator is broken, and destroying it aborts NCCL's
// communicator (ncclCommAbort) rather than waiting for the stuck collective.
//
// Built when the CUDA backend is (FOVEA_ENABLE_CUDA) and NCCL was found; otherwise making one
// throws fovea::Error (distributed/no_nccl.cpp). This header includes neither CUDA nor NCCL.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "fovea/core/communicator.h"

namespace fovea {

class NcclCommunicator final : public Communicator {
 public:
  // Joins the ranks of `bootstrap` on GPU `device` of this process (made the current device).
  // Every rank of `bootstrap` must call it, each with its own device.
  NcclCommunicator(Communicator& bootstrap, int device);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  std::string_view name() const override { return "nccl"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool uses_device_memory() const override { return true; }
  int device() const { return device_; }

  void all_reduce(void* data, std::int64_t count, DType dtype, Reduction reduction, void* stream = nullptr) override;
  void broadcast(void* data, std::int64_t count, DType dtype, int root, void* stream = nullptr) override;
  void reduce(void* data, std::int64_t count, DType dtype, int root, void* stream = nullptr) override;
  void all_gather(const void* send, void* receive, std::int64_t count, DType dtype, void* stream = nullptr) override;
  void reduce_scatter(const void* send, void* receive, std::int64_t count, DType dtype, Reduction reduction,
                      void* stream = nullptr) override;
  void barrier() override;
  std::uint64_t start_all_reduce(void* data, std::int64_t count, DType dtype, Reduction reduction,
                                 void* stream = nullptr) override;
  void wait(std::uint64_t ticket, void* stream = nullptr) override;

 private:
  struct State;

  std::unique_ptr<State> state_;
  int rank_ = 0;
  int size_ = 1;
  int device_ = 0;
};

}  // namespace fovea
