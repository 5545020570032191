// MpiCommunicator: the processes of an MPI job (MPI_COMM_WORLD), through Open MPI; buffers in
// host memory (core/communicator.h says what every communicator promises).
//
//   auto world = fovea::MpiCommunicator::world();   // mpirun -np 4 ./train
//   world->all_reduce(gradients, count, fovea::f32, fovea::Reduction::mean);
//
// One thread does all the talking. Every MPI call of the process, MPI_Init_thread and
// MPI_Finalize included, runs on a communication thread the communicator owns, which takes the
// collectives from a first-in first-out queue. A blocking collective is queued and waited for;
// start_all_reduce() queues it and returns. So the collectives of a rank run in the order they
// were issued, whichever thread issued them, and a caller that gives up waiting (timeout())
// returns while the thread stays inside MPI: the communicator is then broken, and destroying it
// ends the job with MPI_Abort rather than waiting for the collective.
//
// Reductions. MPI's sum is exact for integers, but for floats its result depends on the order
// Open MPI's chosen algorithm adds the ranks' values in, which can change with the number of
// ranks, the message size and the library's version. With set_fixed_order(true), all_reduce
// and reduce_scatter instead exchange every rank's values and add them in rank order
// 0, 1, ..., size()-1 on every rank: the result is bit-identical across runs and ranks and
// independent of Open MPI. The cost, for all_reduce: each rank receives (size() - 1) times the
// buffer (an all-gather) instead of about twice it (a ring's reduce-scatter and all-gather),
// and adds size() values per element itself; it works through the buffer in blocks of a
// million elements, so that the extra memory stays at size() blocks. For reduce_scatter an
// all-to-all brings each rank its block from every rank, the same traffic as MPI's own; only
// the additions move to the rank. reduce() is not affected: it sums with MPI's order.
//
// This header does not include mpi.h: the library's users need no MPI headers. When Fovea is
// built without MPI, world() throws fovea::Error saying what to install, and mpi_available()
// is false (distributed/no_mpi.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "fovea/core/communicator.h"

namespace fovea {

// Whether this build of Fovea has MPI (it can still fail to start outside mpirun).
bool mpi_available();

class MpiCommunicator final : public Communicator {
 public:
  // The communicator of every process of the job, over a duplicate of MPI_COMM_WORLD. The
  // first call starts the communication thread and initialises MPI on it; every call returns
  // the same object. MPI is finalized when the last reference goes (at the latest, when the
  // process exits).
  static std::shared_ptr<MpiCommunicator> world();

  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  std::string_view name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

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

  // Sums floats in rank order (above). Every rank must set the same value before the same
  // collective; it applies to the collectives issued after the call.
  void set_fixed_order(bool fixed_order);
  bool fixed_order() const;

  // Whether a collective has failed or timed out; every call then throws at once.
  bool broken() const;

  // The thread support MPI_Init_thread provided: "multiple", "serialized", "funneled" or "single".
  std::string_view thread_level() const;

 private:
  struct State;
  MpiCommunicator();

  std::unique_ptr<State> state_;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace fovea
