// ThreadPool: the engine's own worker threads for non-BLAS kernels.
//
// Idle workers sleep on a condition variable; they never spin. A spinning pool steals cycles
// from whatever else runs on the cores (DESIGN.md, decision 11); for the same reason OpenBLAS
// runs single-threaded inside this pool rather than with threads of its own, which busy-wait
// after every call (backends/cpu/matmul_kernels.cpp). Measured: a 50 µs spin before sleeping
// made the unoptimized Transformer step 7% faster and the optimized one no faster. The calling thread takes part in
// every loop, so a pool of N threads starts N-1 workers. FOVEA_NUM_THREADS sets N (default: all cores).
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
  // thread when n <= grain or the pool has one thread, so tiny tensors pay no wake-up. The
  // first exception thrown by any chunk is rethrown here after all chunks finished.
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
  void run(std::int64_t n, std::int64_t grain, Trampoline call, void* body);
  void work_on_current_job();
  void worker_loop();

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::uint64_t generation_ = 0;
  bool stopping_ = false;
  int busy_ = 0;  // workers still inside the current job

  // The current job: chunks of `chunk_` elements handed out by an atomic counter.
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
