// Skipping a test case that cannot run here (no GPU, a data set not installed), so that CTest
// reports it as skipped, never as passed.
//
// A test calls skip_test_case(reason) and returns. That prints "skipped: <reason>" and marks the
// running test case; tests/main.cpp then exits with kSkipReturnCode when every test case that
// ran was skipped, and tests/CMakeLists.txt tells CTest that this exit code means "skipped"
// (SKIP_RETURN_CODE; each CTest test runs one test case). A test case that fails an assertion
// still fails, skipped or not.
#pragma once

#include <doctest/doctest.h>

#include <string>

namespace fovea::testing {

// The exit code of a run whose every test case was skipped (automake's convention).
inline constexpr int kSkipReturnCode = 77;

// Whether the running test case has asked to be skipped; reset by tests/main.cpp at the start
// of every test case.
inline bool skip_requested = false;

inline void skip_test_case(const std::string& reason) {
  MESSAGE("skipped: " << reason);
  skip_requested = true;
}

}  // namespace fovea::testing
