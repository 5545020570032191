// The thread pool: every index is visited exactly once, errors come back to the caller,
// and tiny loops stay on the calling thread.
#include <atomic>
#include <stdexcept>
#include <thread>

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

TEST_CASE("FOVEA_NUM_THREADS sets the configured thread count") {
  setenv("FOVEA_NUM_THREADS", "3", 1);
  CHECK(configured_thread_count() == 3);
  setenv("FOVEA_NUM_THREADS", "not a number", 1);
  CHECK(configured_thread_count() >= 1);
  unsetenv("FOVEA_NUM_THREADS");
}
