// MpiCommunicator (distributed/mpi_communicator.h): the communication thread and its queue, the
// collectives as MPI calls on it, and the timeout that breaks the communicator.
#include "fovea/distributed/mpi_communicator.h"

#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "fovea/core/error.h"

namespace fovea {

namespace {

// With fixed order, all_reduce works through the buffer in blocks of this many elements, so that
// a rank holds size() blocks of the ranks' values at a time rather than size() whole buffers.
constexpr std::int64_t kFixedOrderBlock = std::int64_t{1} << 20;

// MPI counts are ints: longer buffers go through the in-place collectives in blocks this long.
constexpr std::int64_t kLargestMpiCount = INT_MAX;

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::f64:
      return MPI_DOUBLE;
    case DType::i32:
      return MPI_INT32_T;
    default:
      return MPI_INT64_T;  // check_arguments has let only the four through
  }
}

// Calls f with a value of the element type of dtype (one of the four MPI ones).
template <class F>
void with_element_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32:
      f(float{});
      return;
    case DType::f64:
      f(double{});
      return;
    case DType::i32:
      f(std::int32_t{});
      return;
    default:
      f(std::int64_t{});
      return;
  }
}

// a + b, wrapping around for integers as MPI's sum does (signed overflow is undefined in C++).
template <class T>
T add(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
  } else {
    return a + b;
  }
}

// The mean from the sum: every element divided by the number of ranks (integers round towards
// zero, as C++ division does).
void divide(void* data, std::int64_t count, DType dtype, int ranks) {
  with_element_type(dtype, [&](auto zero) {
    using T = decltype(zero);
    T* values = static_cast<T*>(data);
    for (std::int64_t i = 0; i < count; ++i) values[i] = static_cast<T>(values[i] / static_cast<T>(ranks));
  });
}

// out[i] ← ((parts[0][i] + parts[1][i]) + parts[2][i]) + ..., where rank r's part starts at
// element r·stride of `parts`: the same additions in the same order on every rank.
void sum_in_rank_order(const void* parts, std::int64_t stride, int ranks, void* out, std::int64_t count, DType dtype) {
  with_element_type(dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* part = static_cast<const T*>(parts);
    T* sums = static_cast<T*>(out);
    for (std::int64_t i = 0; i < count; ++i) {
      T sum = part[i];
      for (int r = 1; r < ranks; ++r) sum = add(sum, part[r * stride + i]);
      sums[i] = sum;
    }
  });
}

// Turns an MPI error code (the communicator returns them: MPI_ERRORS_RETURN) into fovea::Error.
void check_mpi(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  throw Error(fmt::format("{} failed: {}", call, length > 0 ? std::string(text, length) : "unknown MPI error"));
}

// Calls f(offset, n) for consecutive blocks of at most `block` elements covering [0, count).
template <class F>
void for_each_block(std::int64_t count, std::int64_t block, F&& f) {
  for (std::int64_t offset = 0; offset < count; offset += block) f(offset, std::min(block, count - offset));
}

std::byte* at(void* data, std::int64_t offset, DType dtype) {
  return static_cast<std::byte*>(data) + offset * static_cast<std::int64_t>(dtype_size(dtype));
}

std::string_view thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_MULTIPLE:
      return "multiple";
    case MPI_THREAD_SERIALIZED:
      return "serialized";
    case MPI_THREAD_FUNNELED:
      return "funneled";
    default:
      return "single";
  }
}

// One queued piece of work for the communication thread: a collective, or starting or ending MPI.
struct Job {
  std::string what;           // "all_reduce of 1048576 f32": for messages
  std::function<void()> run;  // the MPI calls
  bool done = false;          // guarded by State::mutex, as is error
  std::exception_ptr error;
};

}  // namespace

bool mpi_available() { return true; }

struct MpiCommunicator::State {
  // Touched by the communication thread only (and by MPI_Abort's caller, once it is stuck).
  MPI_Comm comm = MPI_COMM_NULL;
  int provided = MPI_THREAD_SINGLE;
  bool finalize = true;  // false when someone else initialised MPI: they finalize it too
  int rank = 0, size = 1;

  std::mutex mutex;
  std::condition_variable queued;    // the thread waits here for work
  std::condition_variable finished;  // callers wait here for their job
  std::deque<std::shared_ptr<Job>> queue;
  bool stopping = false;
  bool fixed_order = false;
  std::string broken;  // why the communicator is broken; empty while it is healthy
  std::map<std::uint64_t, std::shared_ptr<Job>> tickets;
  std::uint64_t last_ticket = 0;
  std::thread thread;

  // The communication thread: runs the queued jobs in order until stopped. Once the
  // communicator is broken, queued jobs fail without calling MPI: the ranks are out of step.
  void serve() {
    for (;;) {
      std::shared_ptr<Job> job;
      std::string skip;
      {
        std::unique_lock lock(mutex);
        queued.wait(lock, [&] { return !queue.empty() || stopping; });
        if (queue.empty()) return;
        job = std::move(queue.front());
        queue.pop_front();
        skip = broken;
      }
      std::exception_ptr error;
      if (!skip.empty()) {
        error = std::make_exception_ptr(Error(broken_message(skip)));
      } else {
        try {
          job->run();
        } catch (const Error& e) {
          error = std::make_exception_ptr(
              Error(fmt::format("{} on rank {} of {}: {}", job->what, rank, size, e.message())));
        } catch (...) {
          error = std::current_exception();
        }
      }
      std::lock_guard lock(mutex);
      job->done = true;
      job->error = error;
      finished.notify_all();
    }
  }

  std::string broken_message(const std::string& reason) const {
    return fmt::format("the MPI communicator of rank {} of {} is broken, every collective on it fails: {}", rank, size,
                       reason);
  }

  std::shared_ptr<Job> enqueue(std::string what, std::function<void()> run, std::uint64_t* ticket = nullptr) {
    auto job = std::make_shared<Job>();
    job->what = std::move(what);
    job->run = std::move(run);
    {
      std::lock_guard lock(mutex);
      if (!broken.empty()) throw Error(broken_message(broken));
      if (ticket) tickets[*ticket = ++last_ticket] = job;
      queue.push_back(job);
    }
    queued.notify_one();
    return job;
  }

  // Waits for the job up to `timeout`; a job that fails or does not finish in time breaks the
  // communicator (the ranks no longer agree on which collective comes next).
  void await(Job& job, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex);
    if (!finished.wait_for(lock, timeout, [&] { return job.done; })) {
      const std::string message = fmt::format(
          "{} on rank {} of {} did not complete within {:g} s: another rank has died, stopped, or issued a "
          "different collective (FOVEA_COLLECTIVE_TIMEOUT sets the limit)",
          job.what, rank, size, static_cast<double>(timeout.count()) / 1000.0);
      if (broken.empty()) broken = message;
      throw Error(message);
    }
    if (!job.error) return;
    if (broken.empty()) {
      try {
        std::rethrow_exception(job.error);
      } catch (const std::exception& e) {
        broken = e.what();
      }
    }
    std::rethrow_exception(job.error);
  }

  void run(std::string what, std::function<void()> work, std::chrono::milliseconds timeout) {
    const auto job = enqueue(std::move(what), std::move(work));
    await(*job, timeout);
  }

  // Runs on the communication thread first: MPI starts there, so that it is the thread MPI
  // knows as the main one.
  void start_mpi() {
    int initialized = 0;
    check_mpi(MPI_Initialized(&initialized), "MPI_Initialized");
    if (initialized) {
      finalize = false;
      check_mpi(MPI_Query_thread(&provided), "MPI_Query_thread");
    } else {
      // Every call runs on this thread, so MPI_THREAD_FUNNELED would do, except for one:
      // destroying a broken communicator calls MPI_Abort from the caller's thread while this
      // one is stuck inside MPI, which only MPI_THREAD_MULTIPLE allows.
      check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
    }
    check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "MPI_Comm_dup");
    check_mpi(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check_mpi(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(comm, &size), "MPI_Comm_size");
  }

  void stop_mpi() {
    check_mpi(MPI_Comm_free(&comm), "MPI_Comm_free");
    if (finalize) check_mpi(MPI_Finalize(), "MPI_Finalize");
  }

  // Ends the communication thread once the queue is empty.
  void stop_thread() {
    {
      std::lock_guard lock(mutex);
      stopping = true;
    }
    queued.notify_one();
    thread.join();
  }

  // all_reduce's MPI calls, on the communication thread.
  void all_reduce(void* data, std::int64_t count, DType dtype, Reduction reduction, bool in_rank_order) {
    const MPI_Datatype type = mpi_type(dtype);
    if (in_rank_order) {
      std::vector<std::byte> parts(static_cast<std::size_t>(std::min(count, kFixedOrderBlock) * size) *
                                   dtype_size(dtype));
      for_each_block(count, kFixedOrderBlock, [&](std::int64_t offset, std::int64_t n) {
        check_mpi(MPI_Allgather(at(data, offset, dtype), static_cast<int>(n), type, parts.data(), static_cast<int>(n),
                                type, comm),
                  "MPI_Allgather");
        sum_in_rank_order(parts.data(), n, size, at(data, offset, dtype), n, dtype);
      });
    } else {
      for_each_block(count, kLargestMpiCount, [&](std::int64_t offset, std::int64_t n) {
        check_mpi(MPI_Allreduce(MPI_IN_PLACE, at(data, offset, dtype), static_cast<int>(n), type, MPI_SUM, comm),
                  "MPI_Allreduce");
      });
    }
    if (reduction == Reduction::mean) divide(data, count, dtype, size);
  }

  bool is_broken() {
    std::lock_guard lock(mutex);
    return !broken.empty();
  }
};

namespace {

// Throws for what MPI cannot take, on the caller's thread, before anything is queued.
void check_arguments(const char* collective, std::int64_t count, DType dtype) {
  if (dtype != DType::f32 && dtype != DType::f64 && dtype != DType::i32 && dtype != DType::i64)
    throw Error(
        fmt::format("{}: MPI collectives take f32, f64, i32 or i64 elements, not {}", collective, dtype_name(dtype)));
  if (count < 0) throw Error(fmt::format("{}: negative count {}", collective, count));
}

void check_int_count(const char* collective, std::int64_t count) {
  if (count > kLargestMpiCount)
    throw Error(fmt::format("{}: {} elements per rank is more than MPI's largest count ({})", collective, count,
                            kLargestMpiCount));
}

std::string describe(const char* collective, std::int64_t count, DType dtype) {
  return fmt::format("{} of {} {}", collective, count, dtype_name(dtype));
}

}  // namespace

std::shared_ptr<MpiCommunicator> MpiCommunicator::world() {
  static const std::shared_ptr<MpiCommunicator> instance(new MpiCommunicator());
  return instance;
}

MpiCommunicator::MpiCommunicator() : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.thread = std::thread([&s] { s.serve(); });
  try {
    s.run(
        "starting MPI", [&s] { s.start_mpi(); }, timeout());
  } catch (...) {
    // The thread may be stuck inside MPI_Init_thread: leave it, and the state it uses, behind.
    s.thread.detach();
    (void)state_.release();
    throw;
  }
  rank_ = s.rank;
  size_ = s.size;
}

MpiCommunicator::~MpiCommunicator() {
  State& s = *state_;
  if (!s.is_broken()) {
    try {
      s.run(
          "finalizing MPI", [&s] { s.stop_mpi(); }, timeout());
      s.stop_thread();
      return;
    } catch (const std::exception&) {
      // Finalizing failed or timed out: the communicator is broken now, and ends as below.
    }
  }
  // The communication thread may be inside a collective that will never complete. With
  // MPI_THREAD_MULTIPLE this thread may end the whole job, the stuck ranks included; otherwise
  // the thread is left behind with its state (the process is ending anyway, and mpirun stops
  // the other ranks when a process exits without finalizing MPI).
  if (s.provided == MPI_THREAD_MULTIPLE) MPI_Abort(MPI_COMM_WORLD, 1);
  s.thread.detach();
  (void)state_.release();
}

void MpiCommunicator::all_reduce(void* data, std::int64_t count, DType dtype, Reduction reduction, void*) {
  check_arguments("all_reduce", count, dtype);
  State& s = *state_;
  const bool fixed_order = this->fixed_order();
  s.run(
      describe("all_reduce", count, dtype),
      [&s, data, count, dtype, reduction, fixed_order] { s.all_reduce(data, count, dtype, reduction, fixed_order); },
      timeout());
}

void MpiCommunicator::broadcast(void* data, std::int64_t count, DType dtype, int root, void*) {
  check_arguments("broadcast", count, dtype);
  check_root("broadcast", root);
  State& s = *state_;
  s.run(
      describe("broadcast", count, dtype),
      [&s, data, count, dtype, root] {
        for_each_block(count, kLargestMpiCount, [&](std::int64_t offset, std::int64_t n) {
          check_mpi(MPI_Bcast(at(data, offset, dtype), static_cast<int>(n), mpi_type(dtype), root, s.comm),
                    "MPI_Bcast");
        });
      },
      timeout());
}

void MpiCommunicator::reduce(void* data, std::int64_t count, DType dtype, int root, void*) {
  check_arguments("reduce", count, dtype);
  check_root("reduce", root);
  State& s = *state_;
  s.run(
      describe("reduce", count, dtype),
      [&s, data, count, dtype, root] {
        // The root sums into its own buffer (MPI_IN_PLACE); the other ranks' buffers are only read.
        const bool is_root = s.rank == root;
        for_each_block(count, kLargestMpiCount, [&](std::int64_t offset, std::int64_t n) {
          void* block = at(data, offset, dtype);
          check_mpi(MPI_Reduce(is_root ? MPI_IN_PLACE : block, is_root ? block : nullptr, static_cast<int>(n),
                               mpi_type(dtype), MPI_SUM, root, s.comm),
                    "MPI_Reduce");
        });
      },
      timeout());
}

void MpiCommunicator::all_gather(const void* send, void* receive, std::int64_t count, DType dtype, void*) {
  check_arguments("all_gather", count, dtype);
  check_int_count("all_gather", count);
  State& s = *state_;
  s.run(
      describe("all_gather", count, dtype),
      [&s, send, receive, count, dtype] {
        const MPI_Datatype type = mpi_type(dtype);
        check_mpi(MPI_Allgather(send, static_cast<int>(count), type, receive, static_cast<int>(count), type, s.comm),
                  "MPI_Allgather");
      },
      timeout());
}

void MpiCommunicator::reduce_scatter(const void* send, void* receive, std::int64_t count, DType dtype,
                                     Reduction reduction, void*) {
  check_arguments("reduce_scatter", count, dtype);
  check_int_count("reduce_scatter", count);
  State& s = *state_;
  const bool fixed_order = this->fixed_order();
  s.run(
      describe("reduce_scatter", count, dtype),
      [&s, send, receive, count, dtype, reduction, fixed_order] {
        const MPI_Datatype type = mpi_type(dtype);
        if (fixed_order) {
          // Rank r needs block r of every rank's send, which is exactly what an all-to-all delivers:
          // (size() - 1) blocks received, no more than the sum needs.
          std::vector<std::byte> parts(static_cast<std::size_t>(count * s.size) * dtype_size(dtype));
          check_mpi(
              MPI_Alltoall(send, static_cast<int>(count), type, parts.data(), static_cast<int>(count), type, s.comm),
              "MPI_Alltoall");
          sum_in_rank_order(parts.data(), count, s.size, receive, count, dtype);
        } else {
          check_mpi(MPI_Reduce_scatter_block(send, receive, static_cast<int>(count), type, MPI_SUM, s.comm),
                    "MPI_Reduce_scatter_block");
        }
        if (reduction == Reduction::mean) divide(receive, count, dtype, s.size);
      },
      timeout());
}

void MpiCommunicator::barrier() {
  State& s = *state_;
  s.run(
      "barrier", [&s] { check_mpi(MPI_Barrier(s.comm), "MPI_Barrier"); }, timeout());
}

std::uint64_t MpiCommunicator::start_all_reduce(void* data, std::int64_t count, DType dtype, Reduction reduction,
                                                void*) {
  check_arguments("all_reduce", count, dtype);
  State& s = *state_;
  const bool fixed_order = this->fixed_order();
  std::uint64_t ticket = 0;
  s.enqueue(
      describe("all_reduce", count, dtype),
      [&s, data, count, dtype, reduction, fixed_order] { s.all_reduce(data, count, dtype, reduction, fixed_order); },
      &ticket);
  return ticket;
}

void MpiCommunicator::wait(std::uint64_t ticket, void*) {
  State& s = *state_;
  std::shared_ptr<Job> job;
  {
    std::lock_guard lock(s.mutex);
    if (!s.broken.empty()) throw Error(s.broken_message(s.broken));
    const auto found = s.tickets.find(ticket);
    if (found == s.tickets.end())
      throw Error(
          fmt::format("wait: ticket {} was never issued by this communicator, or was already waited for", ticket));
    job = found->second;
    s.tickets.erase(found);
  }
  s.await(*job, timeout());
}

void MpiCommunicator::set_fixed_order(bool fixed_order) {
  std::lock_guard lock(state_->mutex);
  state_->fixed_order = fixed_order;
}

bool MpiCommunicator::fixed_order() const {
  std::lock_guard lock(state_->mutex);
  return state_->fixed_order;
}

bool MpiCommunicator::broken() const { return state_->is_broken(); }

std::string_view MpiCommunicator::thread_level() const { return thread_level_name(state_->provided); }

}  // namespace fovea
