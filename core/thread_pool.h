// ThreadPool: the engine's own worker threads for the CPU kernels.
//
// Idle workers spin for a moment, then sleep on a condition variable. Waking a sleeping thread
// costs 50-200 µs on a virtual machine, and a training step runs one parallel loop after
// another, microseconds apart; so a worker that finishes a loop watches for the next for 2 ms
// before it sleeps, and a caller that has run all the chunks nobody claimed watches for its
// workers' last chunks for up to 1 ms before it sleeps. Both spin on sched_yield, which gives
// the core to any other runnable thread. The spin is short on purpose: OpenBLAS's threads spin
// for about 0.1 s after every call and took a third of a Transformer step from the pool's
// threads on 2 cores (docs/architecture.md, decision 11); the engine no longer calls a threaded
// BLAS (backends/cpu/gemm.h).
//
// Workers are pinned, one per CPU, to the CPUs other than the one the pool's creator runs on,
// when the process may use at least as many CPUs as the pool has threads. Unpinned, on a virtual
// machine whose idle CPUs are halted, a woken worker was placed on the CPU of the thread that
// woke it while the other CPU idled, and in a test of 16 short loops never ran a chunk.
// FOVEA_PIN_THREADS=0 leaves them to the scheduler. The calling thread takes part in every loop,
// so a pool of N threads starts N-1 workers. FOVEA_NUM_THREADS sets N (default: all cores).
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
  // Claims and runs chunks of job `number` until none is left (or a newer job has begun).
  void work_on_job(std::uint32_t number);
  void worker_loop();

  std::vector<std::thread> workers_;
  // Whether some caller's job owns the workers; the caller that sets it runs the only job.
  std::atomic<bool> claimed_{false};

  // The current job, one word: its number in the high 32 bits of job_, its chunk count in the
  // next 16, the next chunk to hand out in the low 16. A thread claims a chunk by advancing that
  // index with a compare-and-swap, which fails if the job has changed since it looked; so a
  // worker that wakes late never runs a chunk of a finished job, and the caller never waits for
  // a worker that has not started: it runs the chunks nobody claimed itself and waits only for
  // chunks in flight (chunks_done_). The other fields are written by the caller before it
  // publishes job_ (release) and read only by a thread holding a claimed chunk, which the job
  // cannot outlive, or by the caller once all chunks are done.
  std::atomic<std::uint64_t> job_{0};
  std::uint32_t jobs_started_ = 0;  // the owner's count, the number of the current job
  std::int64_t n_ = 0, chunk_ = 0;
  std::atomic<std::int64_t> chunks_done_{0};
  Trampoline call_ = nullptr;
  void* body_ = nullptr;
  std::exception_ptr error_;
  std::mutex error_mutex_;

  // Sleeping: workers wait on wake_ for a new job number, the caller on done_ for its last
  // chunks; the predicates are read under mutex_, and the job number and the last chunk's
  // completion are signalled under it, so no wake-up is lost.
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::atomic<bool> stopping_{false};
  int sleeping_workers_ = 0;  // under mutex_
};

// The process-wide pool, sized by FOVEA_NUM_THREADS or the number of cores.
ThreadPool& default_thread_pool();
// The thread count FOVEA_NUM_THREADS asks for (or hardware concurrency when unset).
int configured_thread_count();

}  // namespace fovea
