// ThreadPool: the engine's own worker threads for non-BLAS kernels.
//
// Idle workers sleep on a condition variable; they never spin. A spinning pool steals cycles
// from whatever else runs on the cores (docs/architecture.md, decision 11); for the same reason OpenBLAS
// runs single-threaded inside this pool rather than with threads of its own, which busy-wait
// after every call (backends/cpu/matmul_kernels.cpp). Measured: a 50 µs spin before sleeping
// made the unoptimized Transformer step 7% faster and the optimized one no faster. The calling thread takes part in
// every loop, so a pool of N threads starts N-1 workers. FOVEA_NUM_THREADS sets N (default: all cores).
//
// Any number of threads may call parallel_for at once. The pool runs one job at a time: the
// caller that finds it idle claims it, and a caller that finds it busy runs its whole loop,
// body(0, n), on its own thread instead of waiting or queueing. So
//  - no caller ever waits for another caller's job (serving threads keep their latency, and a
//    thread evaluating is never stuck behind a training step's kernels);
//  - a parallel_for nested inside a chunk (from a worker or from the caller) runs inline on
//    that thread and cannot deadlock, since it never waits for the pool;
//  - at most size() + (number of callers - 1) threads compute at once, never more: with the
//    pool busy, spare cores are already in use.
// A queue would let the second caller use workers as they free up, at the price of a caller
// blocked behind other callers' jobs and of nested loops that must not wait on the queue.
// Results do not depend on who runs a loop: kernels compute every element from fixed tiles,
// never from the chunk bounds they are handed, so body(0, n) gives the same numbers as chunks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace fovea {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls body(begin, end) on disjoint chunks covering [0, n). Runs serially on the calling
  // thread when n <= grain, when the pool has one thread (so tiny tensors pay no wake-up) or
  // when the pool is busy with another caller's loop (see the top). The first exception
  // thrown by any chunk is rethrown here after all chunks finished. Safe to call from any
  // number of threads, and from inside a chunk.
  template <typename F>
  void parallel_for(std::int64_t n, std::int64_t grain, F&& body) {
    if (n <= 0) return;
    if (n <= grain || size() == 1) {
      body(std::int64_t{0}, n);
      return;
    }
    using Body = std::remove_reference_t<F>;
    run(
        n, grain, [](void* f, std::int64_t b, std::int64_t e) { (*static_cast<Body*>(f))(b, e); },
        const_cast<void*>(static_cast<const void*>(&body)));
  }

 private:
  using Trampoline = void (*)(void*, std::int64_t, std::int64_t);
  // Runs the job on the workers and the caller, or on the caller alone if the pool is busy.
  void run(std::int64_t n, std::int64_t grain, Trampoline call, void* body);
  void run_on_workers(std::int64_t n, std::int64_t grain, Trampoline call, void* body);
  void work_on_current_job();
  void worker_loop();

  std::vector<std::thread> workers_;
  // Whether some caller's job owns the workers; the caller that sets it runs the only job.
  std::atomic<bool> claimed_{false};
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::uint64_t generation_ = 0;
  bool stopping_ = false;
  int busy_ = 0;  // workers still inside the current job

  // The current job, written by its caller under mutex_ and read by the workers it woke:
  // chunks of `chunk_` elements handed out by an atomic counter.
  Trampoline call_ = nullptr;
  void* body_ = nullptr;
  std::int64_t n_ = 0, chunk_ = 0;
  std::atomic<std::int64_t> next_{0};
  std::exception_ptr error_;
  std::mutex error_mutex_;
};

// The process-wide pool, sized by FOVEA_NUM_THREADS or the number of cores.
ThreadPool& default_thread_pool();
// The thread count FOVEA_NUM_THREADS asks for (or hardware concurrency when unset).
int configured_thread_count();

}  // namespace fovea
