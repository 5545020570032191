// NcclCommunicator (distributed/nccl_communicator.h): NCCL's collectives on the caller's CUDA
// stream, the asynchronous all-reduce on a stream of its own, and a barrier that gives up.
#include "fovea/distributed/nccl_communicator.h"

#include <cuda_runtime.h>
#include <fmt/format.h>
#include <nccl.h>

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "fovea/core/error.h"

namespace fovea {

namespace {

void check_cuda(cudaError_t status, const char* call) {
  if (status != cudaSuccess)
    throw Error(fmt::format("NcclCommunicator: {} failed: {}", call, cudaGetErrorString(status)));
}

void check_nccl(ncclResult_t result, const char* call) {
  if (result != ncclSuccess)
    throw Error(fmt::format("NcclCommunicator: {} failed: {}", call, ncclGetErrorString(result)));
}

ncclDataType_t nccl_type(const char* collective, DType dtype) {
  switch (dtype) {
    case DType::f32:
      return ncclFloat32;
    case DType::f64:
      return ncclFloat64;
    case DType::i32:
      return ncclInt32;
    case DType::i64:
      return ncclInt64;
    default:
      throw Error(fmt::format("{}: NCCL collectives here take f32, f64, i32 or i64 elements, not {}", collective,
                              dtype_name(dtype)));
  }
}

ncclRedOp_t nccl_op(Reduction reduction) { return reduction == Reduction::mean ? ncclAvg : ncclSum; }

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

void check_count(const char* collective, std::int64_t count) {
  if (count < 0) throw Error(fmt::format("{}: negative count {}", collective, count));
}

// Makes `device` current for the scope and restores the caller's device after: NCCL's calls
// must be made with the communicator's device current.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check_cuda(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceScope() { (void)cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace

struct NcclCommunicator::State {
  ncclComm_t comm = nullptr;
  cudaStream_t comm_stream = nullptr;  // the asynchronous all-reduces run here
  int* barrier_word = nullptr;         // device memory: the one int barrier() all-reduces
  std::mutex mutex;
  std::map<std::uint64_t, cudaEvent_t> tickets;  // each asynchronous all-reduce's completion
  std::uint64_t last_ticket = 0;
  bool broken = false;

  void throw_if_broken(int rank, int size) {
    std::lock_guard lock(mutex);
    if (broken)
      throw Error(
          fmt::format("the NCCL communicator of rank {} of {} is broken (a barrier timed out); every "
                      "collective on it fails from now on",
                      rank, size));
  }
};

NcclCommunicator::NcclCommunicator(Communicator& bootstrap, int device)
    : state_(std::make_unique<State>()), rank_(bootstrap.rank()), size_(bootstrap.size()), device_(device) {
  if (bootstrap.uses_device_memory())
    throw Error("NcclCommunicator: the bootstrap communicator must use host memory (an MpiCommunicator)");
  check_cuda(cudaSetDevice(device), "cudaSetDevice");
  // NCCL's unique id is opaque bytes; the bootstrap sends them as 32-bit words.
  static_assert(sizeof(ncclUniqueId) % sizeof(std::int32_t) == 0);
  ncclUniqueId id{};
  if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  bootstrap.broadcast(&id, sizeof(id) / sizeof(std::int32_t), DType::i32, 0);
  check_nccl(ncclCommInitRank(&state_->comm, size_, id, rank_), "ncclCommInitRank");
  check_cuda(cudaStreamCreateWithFlags(&state_->comm_stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  check_cuda(cudaMalloc(reinterpret_cast<void**>(&state_->barrier_word), sizeof(int)), "cudaMalloc");
}

NcclCommunicator::~NcclCommunicator() {
  State& s = *state_;
  // Failures here cannot be reported: the resources go either way.
  (void)cudaSetDevice(device_);
  if (s.comm) (void)(s.broken ? ncclCommAbort(s.comm) : ncclCommDestroy(s.comm));
  for (const auto& [ticket, event] : s.tickets) (void)cudaEventDestroy(event);
  if (s.comm_stream) (void)cudaStreamDestroy(s.comm_stream);
  if (s.barrier_word) (void)cudaFree(s.barrier_word);
}

void NcclCommunicator::all_reduce(void* data, std::int64_t count, DType dtype, Reduction reduction, void* stream) {
  check_count("all_reduce", count);
  const ncclDataType_t type = nccl_type("all_reduce", dtype);
  state_->throw_if_broken(rank_, size_);
  DeviceScope scope(device_);
  check_nccl(ncclAllReduce(data, data, static_cast<std::size_t>(count), type, nccl_op(reduction), state_->comm,
                           as_stream(stream)),
             "ncclAllReduce");
}

void NcclCommunicator::broadcast(void* data, std::int64_t count, DType dtype, int root, void* stream) {
  check_count("broadcast", count);
  check_root("broadcast", root);
  const ncclDataType_t type = nccl_type("broadcast", dtype);
  state_->throw_if_broken(rank_, size_);
  DeviceScope scope(device_);
  check_nccl(ncclBroadcast(data, data, static_cast<std::size_t>(count), type, root, state_->comm, as_stream(stream)),
             "ncclBroadcast");
}

void NcclCommunicator::reduce(void* data, std::int64_t count, DType dtype, int root, void* stream) {
  check_count("reduce", count);
  check_root("reduce", root);
  const ncclDataType_t type = nccl_type("reduce", dtype);
  state_->throw_if_broken(rank_, size_);
  DeviceScope scope(device_);
  // NCCL writes the receive buffer on the root only: the other ranks' data stays as it was.
  check_nccl(
      ncclReduce(data, data, static_cast<std::size_t>(count), type, ncclSum, root, state_->comm, as_stream(stream)),
      "ncclReduce");
}

void NcclCommunicator::all_gather(const void* send, void* receive, std::int64_t count, DType dtype, void* stream) {
  check_count("all_gather", count);
  const ncclDataType_t type = nccl_type("all_gather", dtype);
  state_->throw_if_broken(rank_, size_);
  DeviceScope scope(device_);
  check_nccl(ncclAllGather(send, receive, static_cast<std::size_t>(count), type, state_->comm, as_stream(stream)),
             "ncclAllGather");
}

void NcclCommunicator::reduce_scatter(const void* send, void* receive, std::int64_t count, DType dtype,
                                      Reduction reduction, void* stream) {
  check_count("reduce_scatter", count);
  const ncclDataType_t type = nccl_type("reduce_scatter", dtype);
  state_->throw_if_broken(rank_, size_);
  DeviceScope scope(device_);
  check_nccl(ncclReduceScatter(send, receive, static_cast<std::size_t>(count), type, nccl_op(reduction), state_->comm,
                               as_stream(stream)),
             "ncclReduceScatter");
}

// An all-reduce of one int on the communication stream, then a host wait for it that polls, so
// that it can give up after timeout() instead of blocking in cudaStreamSynchronize forever.
void NcclCommunicator::barrier() {
  State& s = *state_;
  s.throw_if_broken(rank_, size_);
  DeviceScope scope(device_);
  check_nccl(ncclAllReduce(s.barrier_word, s.barrier_word, 1, ncclInt32, ncclSum, s.comm, s.comm_stream),
             "ncclAllReduce");
  const auto deadline = std::chrono::steady_clock::now() + timeout();
  for (;;) {
    const cudaError_t status = cudaStreamQuery(s.comm_stream);
    if (status == cudaSuccess) return;
    if (status != cudaErrorNotReady) check_cuda(status, "cudaStreamQuery");
    ncclResult_t async_error = ncclSuccess;
    check_nccl(ncclCommGetAsyncError(s.comm, &async_error), "ncclCommGetAsyncError");
    check_nccl(async_error, "barrier");
    if (std::chrono::steady_clock::now() > deadline) {
      std::lock_guard lock(s.mutex);
      s.broken = true;
      throw Error(fmt::format(
          "barrier on rank {} of {} did not complete within {:g} s: another rank has died, stopped, or issued a "
          "different collective (FOVEA_COLLECTIVE_TIMEOUT sets the limit)",
          rank_, size_, static_cast<double>(timeout().count()) / 1000.0));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

std::uint64_t NcclCommunicator::start_all_reduce(void* data, std::int64_t count, DType dtype, Reduction reduction,
                                                 void* stream) {
  check_count("all_reduce", count);
  const ncclDataType_t type = nccl_type("all_reduce", dtype);
  State& s = *state_;
  s.throw_if_broken(rank_, size_);
  DeviceScope scope(device_);
  // The communication stream waits for the work already on the caller's stream (the data's
  // producers); the caller's stream goes on at once.
  cudaEvent_t ready = nullptr, done = nullptr;
  check_cuda(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  check_cuda(cudaEventRecord(ready, as_stream(stream)), "cudaEventRecord");
  check_cuda(cudaStreamWaitEvent(s.comm_stream, ready, 0), "cudaStreamWaitEvent");
  check_cuda(cudaEventDestroy(ready), "cudaEventDestroy");  // freed once the wait has happened
  check_nccl(
      ncclAllReduce(data, data, static_cast<std::size_t>(count), type, nccl_op(reduction), s.comm, s.comm_stream),
      "ncclAllReduce");
  check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  check_cuda(cudaEventRecord(done, s.comm_stream), "cudaEventRecord");
  std::lock_guard lock(s.mutex);
  s.tickets[++s.last_ticket] = done;
  return s.last_ticket;
}

void NcclCommunicator::wait(std::uint64_t ticket, void* stream) {
  State& s = *state_;
  cudaEvent_t done = nullptr;
  {
    std::lock_guard lock(s.mutex);
    const auto found = s.tickets.find(ticket);
    if (found == s.tickets.end())
      throw Error(
          fmt::format("wait: ticket {} was never issued by this communicator, or was already waited for", ticket));
    done = found->second;
    s.tickets.erase(found);
  }
  DeviceScope scope(device_);
  check_cuda(cudaStreamWaitEvent(as_stream(stream), done, 0), "cudaStreamWaitEvent");
  check_cuda(cudaEventDestroy(done), "cudaEventDestroy");
}

}  // namespace fovea
