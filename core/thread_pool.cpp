#include "fovea/core/thread_pool.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>

namespace fovea {

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < std::max(threads, 1); ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::work_on_current_job() {
  for (;;) {
    const std::int64_t begin = next_.fetch_add(chunk_);
    if (begin >= n_) return;
    const std::int64_t end = std::min(begin + chunk_, n_);
    try {
      call_(body_, begin, end);
    } catch (...) {
      std::lock_guard lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }
}

void ThreadPool::worker_loop() {
  std::uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
    }
    work_on_current_job();
    {
      std::lock_guard lock(mutex_);
      if (--busy_ == 0) done_.notify_one();
    }
  }
}

void ThreadPool::run(std::int64_t n, std::int64_t grain, Trampoline call, void* body) {
  // Only one job may own the workers: its fields and the wake-ups belong to it. A caller that
  // finds them taken (another thread's loop, or a loop nested in a chunk) runs its loop alone.
  if (claimed_.exchange(true, std::memory_order_acquire)) {
    call(body, 0, n);
    return;
  }
  struct Release {
    std::atomic<bool>& claimed;
    ~Release() { claimed.store(false, std::memory_order_release); }
  } release{claimed_};
  run_on_workers(n, grain, call, body);
}

void ThreadPool::run_on_workers(std::int64_t n, std::int64_t grain, Trampoline call, void* body) {
  // About four chunks per thread balances uneven chunks without much hand-out traffic.
  const std::int64_t target = (n + 4 * size() - 1) / (4 * size());
  {
    std::lock_guard lock(mutex_);
    call_ = call;
    body_ = body;
    n_ = n;
    chunk_ = std::max(grain, target);
    next_.store(0);
    error_ = nullptr;
    busy_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  wake_.notify_all();
  work_on_current_job();
  std::unique_lock lock(mutex_);
  done_.wait(lock, [&] { return busy_ == 0; });
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

int configured_thread_count() {
  if (const char* env = std::getenv("FOVEA_NUM_THREADS")) {
    try {
      const int n = std::stoi(env);
      if (n > 0) return n;
    } catch (...) {
    }
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool& default_thread_pool() {
  static ThreadPool pool(configured_thread_count());
  return pool;
}

}  // namespace fovea
