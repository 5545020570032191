// The thread pool: every index is visited exactly once, errors come back to the caller,
// tiny loops stay on the calling thread, and any number of threads may call it at once, from
// outside or from inside a chunk.
#include <atomic>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "testing.h"

using namespace fovea;

TEST_CASE("parallel_for visits every index exactly once for any size and grain") {
  ThreadPool pool(4);
  CHECK(pool.size() == 4);
  for (std::int64_t n : {0, 1, 7, 1000, 100003}) {
    for (std::int64_t grain : {1, 16, 5000}) {
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
      pool.parallel_for(n, grain, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t i = b; i < e; ++i) hits[static_cast<std::size_t>(i)]++;
      });
      for (std::int64_t i = 0; i < n; ++i) REQUIRE(hits[static_cast<std::size_t>(i)] == 1);
    }
  }
}

TEST_CASE("a loop no larger than its grain runs on the calling thread") {
  ThreadPool pool(3);
  const auto caller = std::this_thread::get_id();
  bool same = false;
  pool.parallel_for(10, 10, [&](std::int64_t, std::int64_t) { same = std::this_thread::get_id() == caller; });
  CHECK(same);
}

TEST_CASE("an exception thrown in any chunk reaches the caller and the pool stays usable") {
  ThreadPool pool(2);
  CHECK_THROWS_AS(pool.parallel_for(1000, 1,
                                    [](std::int64_t b, std::int64_t) {
                                      if (b >= 500) throw std::runtime_error("chunk failed");
                                    }),
                  std::runtime_error);
  std::atomic<std::int64_t> sum{0};
  pool.parallel_for(1000, 1, [&](std::int64_t b, std::int64_t e) { sum += e - b; });
  CHECK(sum == 1000);
}

TEST_CASE("the thread pool serves several callers at once, each loop visiting every index once") {
  ThreadPool pool(3);
  constexpr int kThreads = 4, kLoops = 50;
  std::atomic<int> wrong{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < kThreads; ++t)
    callers.emplace_back([&, t] {
      for (int loop = 0; loop < kLoops; ++loop) {
        const std::int64_t n = 1000 + 37 * t + loop;
        std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
        pool.parallel_for(n, 16, [&](std::int64_t b, std::int64_t e) {
          for (std::int64_t i = b; i < e; ++i) hits[static_cast<std::size_t>(i)]++;
        });
        for (const auto& h : hits)
          if (h != 1) ++wrong;
      }
    });
  for (auto& c : callers) c.join();
  CHECK(wrong == 0);
}

TEST_CASE("a parallel_for nested inside a chunk runs to the end instead of deadlocking") {
  ThreadPool pool(3);
  constexpr std::int64_t kOuter = 64, kInner = 500;
  std::vector<std::atomic<int>> hits(static_cast<std::size_t>(kOuter * kInner));
  pool.parallel_for(kOuter, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t o = b; o < e; ++o)
      pool.parallel_for(kInner, 8, [&](std::int64_t ib, std::int64_t ie) {
        for (std::int64_t i = ib; i < ie; ++i) hits[static_cast<std::size_t>(o * kInner + i)]++;
      });
  });
  for (const auto& h : hits) REQUIRE(h == 1);
}

TEST_CASE("FOVEA_NUM_THREADS sets the configured thread count") {
  setenv("FOVEA_NUM_THREADS", "3", 1);
  CHECK(configured_thread_count() == 3);
  setenv("FOVEA_NUM_THREADS", "not a number", 1);
  CHECK(configured_thread_count() >= 1);
  unsetenv("FOVEA_NUM_THREADS");
}

TEST_CASE("thousands of short loops back to back each run every chunk exactly once, never a finished loop's") {
  // A worker that wakes late, or spins between loops, may look at a loop that is just ending
  // while the next one is being set up: it must never run a chunk of the old loop (its body lives
  // in a stack frame that is gone: the sanitizer build sees the write) nor miss or repeat a
  // chunk of the new one.
  ThreadPool pool(3);
  std::mt19937 rng(7);
  for (int loop = 0; loop < 20000; ++loop) {
    const std::int64_t n = 1 + static_cast<std::int64_t>(rng() % 40);
    std::vector<std::atomic<int>> visits(static_cast<std::size_t>(n));
    pool.parallel_for(n, 1, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) visits[static_cast<std::size_t>(i)].fetch_add(1);
    });
    for (std::int64_t i = 0; i < n; ++i) REQUIRE(visits[static_cast<std::size_t>(i)].load() == 1);
  }
}

TEST_CASE("FOVEA_PIN_THREADS=0 leaves the workers unpinned and the pool still visits every index once") {
  setenv("FOVEA_PIN_THREADS", "0", 1);
  ThreadPool pool(2);
  unsetenv("FOVEA_PIN_THREADS");
  std::vector<std::atomic<int>> visits(1000);
  pool.parallel_for(1000, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) visits[static_cast<std::size_t>(i)].fetch_add(1);
  });
  for (auto& v : visits) CHECK(v.load() == 1);
}
