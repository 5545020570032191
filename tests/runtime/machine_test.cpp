// machine_peak (runtime/machine.h): plausible figures, measured once per process.
#include <chrono>

#include <fovea/runtime/machine.h>

#include "testing.h"

using namespace fovea;

TEST_CASE("machine_peak measures a plausible FLOP peak and bandwidth once, then returns the same object") {
  const MachinePeak& peak = machine_peak();
  CHECK(peak.gflops > 1);
  CHECK(peak.gbytes_per_second > 0.5);
  CHECK(peak.threads >= 1);
  CHECK_FALSE(peak.method.empty());
  const auto start = std::chrono::steady_clock::now();
  const MachinePeak& again = machine_peak();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(&again == &peak);
  CHECK(seconds < 0.01);
  MESSAGE(peak.gflops << " GFLOP/s, " << peak.gbytes_per_second << " GB/s: " << peak.method);
}
