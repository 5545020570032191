// Communicator: a group of processes (ranks) that exchange tensors with collective operations,
// the engine's view of MPI or NCCL (docs/distributed.md).
//
// The collective ops of the graph (ops/collective.h) name a communicator by the number it was
// registered under (register_communicator), and their kernels call it here. The engine never
// opens a socket itself: the implementations wrap the field's communication libraries.
//
//   MpiCommunicator   (distributed/mpi_communicator.h) CPU processes on one or many machines,
//                     over Open MPI; buffers in host memory
//   NcclCommunicator  (distributed/nccl_communicator.h) one GPU per process, over NCCL,
//                     bootstrapped through another communicator; buffers in device memory
//   SoloCommunicator  (below) one rank: every collective is the identity, so a program written
//                     for many ranks runs unchanged on one
//
// Every rank must issue the same collectives on a communicator in the same order with the
// same sizes (MPI's rule). A compiled step does so by construction: every rank runs the same
// schedule of the same graph.
//
// Asynchronous collectives. start_all_reduce() returns at once with a ticket; wait() blocks
// until that collective has completed. This is how a data-parallel step overlaps the
// all-reduce of late layers' gradients with the backward of early ones (nn/data_parallel.h).
// The buffer must stay untouched between the two. Collectives complete in the order they were
// started, and a blocking collective issued after a start completes after it.
//
// Failure. A rank that dies or stops mid-collective must not hang the others forever: every
// wait gives up after timeout() (FOVEA_COLLECTIVE_TIMEOUT, in seconds, when set) and throws
// fovea::Error saying which collective on which rank. The communicator is then broken: every
// later call throws at once, and destroying it ends the whole job (MPI_Abort) instead of
// waiting for the stuck collective.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "fovea/core/dtype.h"

namespace fovea {

// How values from the ranks combine: their sum, or their mean (the sum divided by size()).
enum class Reduction : std::uint8_t { sum, mean };
std::string_view reduction_name(Reduction reduction);

class Communicator {
 public:
  virtual ~Communicator() = default;

  // "mpi", "nccl", "solo": for printing.
  virtual std::string_view name() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Whether the buffers given to the collectives are in device (GPU) memory; host memory
  // otherwise. A kernel stages its data through the other kind of memory when they differ.
  virtual bool uses_device_memory() const { return false; }

  // --- Collectives -----------------------------------------------------------------------
  // Every count is in elements of `dtype` (f32, f64, i32 or i64; sum and mean of integers
  // round the mean towards zero). `stream` is the CUDA stream to order the collective on for a
  // device communicator (nullptr: the default stream), and ignored by host communicators.
  //
  // data[0, count) ← the reduction over the ranks of their data[0, count), on every rank.
  virtual void all_reduce(void* data, std::int64_t count, DType dtype, Reduction reduction, void* stream = nullptr) = 0;
  // data[0, count) on every rank ← root's data[0, count).
  virtual void broadcast(void* data, std::int64_t count, DType dtype, int root, void* stream = nullptr) = 0;
  // On root: data[0, count) ← the sum over the ranks of their data; on every other rank,
  // data is left as it was.
  virtual void reduce(void* data, std::int64_t count, DType dtype, int root, void* stream = nullptr) = 0;
  // receive[r·count, (r+1)·count) ← rank r's send[0, count), for every r, on every rank.
  // send and receive do not overlap.
  virtual void all_gather(const void* send, void* receive, std::int64_t count, DType dtype, void* stream = nullptr) = 0;
  // receive[0, count) on rank r ← the reduction over the ranks of their send[r·count,
  // (r+1)·count). send and receive do not overlap.
  virtual void reduce_scatter(const void* send, void* receive, std::int64_t count, DType dtype, Reduction reduction,
                              void* stream = nullptr) = 0;
  // Returns when every rank has called it.
  virtual void barrier() = 0;

  // --- Asynchronous all-reduce -----------------------------------------------------------
  // Starts all_reduce(data, count, dtype, reduction) and returns a ticket for wait(). On a
  // device communicator the collective is ordered after the work already on `stream`, and
  // wait() orders the work later put on `stream` after it (it does not block the host).
  virtual std::uint64_t start_all_reduce(void* data, std::int64_t count, DType dtype, Reduction reduction,
                                         void* stream = nullptr) = 0;
  virtual void wait(std::uint64_t ticket, void* stream = nullptr) = 0;

  // How long a wait may take before the communicator gives up on the other ranks.
  std::chrono::milliseconds timeout() const { return timeout_; }
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

 protected:
  Communicator();
  // Throws fovea::Error unless `root` is a rank of this communicator.
  void check_root(const char* collective, int root) const;

 private:
  std::chrono::milliseconds timeout_;
};

// One rank on its own. all_reduce, broadcast, reduce and reduce_scatter leave the data as it
// is (mean over one rank is the value itself) and all_gather copies send to receive.
class SoloCommunicator final : public Communicator {
 public:
  std::string_view name() const override { return "solo"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void all_reduce(void*, std::int64_t, DType, Reduction, void*) override {}
  void broadcast(void*, std::int64_t, DType, int root, void*) override;
  void reduce(void*, std::int64_t, DType, int root, void*) override;
  void all_gather(const void* send, void* receive, std::int64_t count, DType dtype, void*) override;
  void reduce_scatter(const void* send, void* receive, std::int64_t count, DType dtype, Reduction, void*) override;
  void barrier() override {}
  std::uint64_t start_all_reduce(void*, std::int64_t, DType, Reduction, void*) override { return ++tickets_; }
  void wait(std::uint64_t ticket, void*) override;

 private:
  std::uint64_t tickets_ = 0;
};

// --- The registry that graph nodes name communicators through --------------------------------
// A collective node stores the number its communicator was registered under (an attribute can
// hold an integer, not an object). Registering the same communicator twice returns the same
// number; entries live until the process ends, so a compiled step never outlives its
// communicator.
int register_communicator(std::shared_ptr<Communicator> communicator);
// The communicator registered under `id`; throws fovea::Error for an unknown id.
std::shared_ptr<Communicator> registered_communicator(std::int64_t id);

}  // namespace fovea
