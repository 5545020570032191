#include "fovea/core/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include <pthread.h>
#include <sched.h>

namespace fovea {

namespace {

// The CPUs this process may run on, the calling thread's first.
std::vector<int> allowed_cpus() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return cpus;
  const int here = sched_getcpu();
  if (here >= 0 && here < CPU_SETSIZE && CPU_ISSET(here, &allowed)) cpus.push_back(here);
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &allowed) && c != here) cpus.push_back(c);
  return cpus;
}

bool pinning_enabled() {
  const char* env = std::getenv("FOVEA_PIN_THREADS");
  return env == nullptr || std::string(env) != "0";
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  // Worker i runs on the i-th CPU after the creating thread's own (see the top of thread_pool.h),
  // when the process has a CPU for every thread of the pool.
  const std::vector<int> cpus = allowed_cpus();
  const bool pin = pinning_enabled() && static_cast<int>(cpus.size()) >= threads;
  for (int i = 1; i < std::max(threads, 1); ++i) {
    workers_.emplace_back([this] { worker_loop(); });
    if (!pin) continue;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpus[static_cast<std::size_t>(i)], &one);
    pthread_setaffinity_np(workers_.back().native_handle(), sizeof(one), &one);  // a hint: failure is harmless
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_.store(true, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

namespace {

// How long a worker watches for the next loop before it sleeps, and a caller for its workers'
// last chunks (thread_pool.h).
constexpr auto kWorkerSpin = std::chrono::microseconds(2000);
constexpr auto kCallerSpin = std::chrono::microseconds(1000);

// One turn of a spin loop: give the core away if another thread is waiting for it. A pause
// instruction would be cheaper, but on a virtual machine the scheduler sometimes puts a woken
// worker on the same core as the caller that woke it while the other core idles, and a caller
// spinning with pauses there starves the very worker it waits for, for up to a scheduler tick.
// sched_yield (what OpenBLAS's threads spin on, too) costs a microsecond and runs that worker.
void cpu_relax() { std::this_thread::yield(); }

// Spins until done() or `limit` has passed; whether done() became true.
template <typename Done>
bool spin_until(Done&& done, std::chrono::microseconds limit) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 1;; ++i) {
    if (done()) return true;
    cpu_relax();
    if (i % 8 == 0 && std::chrono::steady_clock::now() - start > limit) return done();
  }
}

}  // namespace

void ThreadPool::work_on_job(std::uint32_t number) {
  for (;;) {
    std::uint64_t word = job_.load(std::memory_order_acquire);
    if (word >> 32 != number) return;
    const std::int64_t chunks = static_cast<std::int64_t>((word >> 16) & 0xffff);
    const std::int64_t index = static_cast<std::int64_t>(word & 0xffff);
    if (index >= chunks) return;
    if (!job_.compare_exchange_weak(word, word + 1, std::memory_order_acq_rel)) continue;
    // Chunk `index` is ours: the job cannot finish, nor its fields change, before we report it.
    const std::int64_t begin = index * chunk_, end = std::min(begin + chunk_, n_);
    try {
      call_(body_, begin, end);
    } catch (...) {
      std::lock_guard lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
    if (chunks_done_.fetch_add(1, std::memory_order_acq_rel) + 1 == chunks) {
      std::lock_guard lock(mutex_);  // the caller may be between its check and its sleep
      done_.notify_one();
    }
  }
}

void ThreadPool::worker_loop() {
  std::uint32_t seen = 0;
  auto has_news = [&] {
    return stopping_.load(std::memory_order_acquire) || job_.load(std::memory_order_acquire) >> 32 != seen;
  };
  for (;;) {
    if (!spin_until(has_news, kWorkerSpin)) {
      std::unique_lock lock(mutex_);
      ++sleeping_workers_;
      wake_.wait(lock, has_news);
      --sleeping_workers_;
    }
    if (stopping_.load(std::memory_order_acquire)) return;
    seen = static_cast<std::uint32_t>(job_.load(std::memory_order_acquire) >> 32);
    work_on_job(seen);
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
  // About four chunks per thread balances uneven chunks without much hand-out traffic; job_ has
  // 16 bits for the count. The previous job is finished: no thread reads these fields until a
  // claim on the new job number below succeeds.
  const std::int64_t pieces = std::min<std::int64_t>(4 * size(), 0xffff);
  const std::int64_t chunk = std::max(grain, (n + pieces - 1) / pieces);
  const std::int64_t chunks = (n + chunk - 1) / chunk;
  call_ = call;
  body_ = body;
  n_ = n;
  chunk_ = chunk;
  chunks_done_.store(0, std::memory_order_relaxed);
  error_ = nullptr;
  const std::uint32_t number = ++jobs_started_;
  bool sleepers = false;
  {
    std::lock_guard lock(mutex_);
    // Publishes the fields above: number, chunk count, next chunk 0.
    job_.store(std::uint64_t{number} << 32 | static_cast<std::uint64_t>(chunks) << 16, std::memory_order_release);
    sleepers = sleeping_workers_ > 0;
  }
  if (sleepers) wake_.notify_all();
  work_on_job(number);
  auto finished = [&] { return chunks_done_.load(std::memory_order_acquire) == chunks; };
  if (!spin_until(finished, kCallerSpin)) {
    std::unique_lock lock(mutex_);
    done_.wait(lock, finished);
  }
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
