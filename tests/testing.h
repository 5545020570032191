// Shared helpers for the tests: random tensors, closeness checks, one-call graph runs.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>

#include <fovea/engine.h>

#include "skip.h"

namespace fovea::testing {

// A fresh directory under the system's temporary one, named after `name` and the process id,
// removed with everything in it when the object goes.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name)
      : path(std::filesystem::temp_directory_path() / ("fovea-" + name + "-" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// A tensor of `dtype` filled with uniform numbers in [low, high) (integers: rounded down),
// reproducible from `seed`. Booleans are 0/1 with equal odds; half types are f32 numbers rounded.
inline Tensor random_tensor(DType dtype, const Shape& shape, std::uint64_t seed, double low = -1.0, double high = 1.0) {
  if (is_half(dtype)) return random_tensor(DType::f32, shape, seed, low, high).to(dtype);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(low, high);
  Tensor t = Tensor::empty(dtype, shape);
  visit_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    for (T& x : t.data<T>()) {
      if constexpr (std::is_same_v<T, std::uint8_t>)
        x = static_cast<T>(rng() & 1);
      else
        x = static_cast<T>(std::is_floating_point_v<T> ? dist(rng) : std::floor(dist(rng)));
    }
  });
  return t;
}

// Checks |actual - expected| <= atol + rtol·|expected| elementwise, same dtype and shape;
// reports the first offending index. NaNs must match NaNs.
inline void check_close(const Tensor& actual, const Tensor& expected, double rtol = 1e-5, double atol = 1e-6) {
  REQUIRE(actual.defined());
  REQUIRE(expected.defined());
  REQUIRE(dtype_name(actual.dtype()) == dtype_name(expected.dtype()));
  REQUIRE(actual.shape().to_string() == expected.shape().to_string());
  for (std::int64_t i = 0; i < actual.numel(); ++i) {
    const double a = actual.at(i), e = expected.at(i);
    if (std::isnan(e) && std::isnan(a)) continue;
    if (!(std::abs(a - e) <= atol + rtol * std::abs(e))) {
      FAIL_CHECK("element " << i << " differs: got " << a << ", expected " << e << " (shape "
                            << actual.shape().to_string() << ")");
      return;
    }
  }
}

// Tolerances that suit each float type for simple ops.
inline double rtol_for(DType t) { return t == DType::f64 ? 1e-12 : 1e-5; }

// Compiles `outputs` on the CPU and runs them once with `feeds`. Feeds may hold NaN and
// infinities on purpose here (tests of how kernels propagate them), so they are not checked.
inline std::vector<Tensor> run(Graph& g, const std::vector<Value>& outputs, const Feeds& feeds = {}) {
  Executable exe = compile(g, outputs, cpu(), {.check_finite_feeds = false});
  return exe.run(feeds);
}

// what() of the fovea::Error that `build` throws, or "(no error)".
template <typename F>
std::string error_of(F&& build) {
  try {
    build();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Runs and returns the single output.
inline Tensor run1(Graph& g, Value output, const Feeds& feeds = {}) { return run(g, {output}, feeds)[0]; }

// Whether a GPU is there for the CUDA tests; if not, skips the running test case saying why
// (tests/skip.h: CTest reports it as skipped), and the test returns early. Tests that need a GPU
// also join the test suite "gpu" (TEST_CASE("..." * doctest::test_suite("gpu"))), so that
// `fovea_tests -ts=gpu` runs just them on a machine that has one.
inline bool have_gpu() {
  std::string reason;
  if (cuda_available(&reason)) return true;
  skip_test_case(reason);
  return false;
}

}  // namespace fovea::testing
