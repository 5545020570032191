// The test runner: doctest's, plus the skip exit code (tests/skip.h). When every test case that
// ran asked to be skipped, and none failed, the run exits with kSkipReturnCode, which CTest
// reports as "Skipped" rather than "Passed".
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "skip.h"

namespace {

int cases_run = 0, cases_skipped = 0;

// Counts the test cases that ran and those of them that called skip_test_case().
struct SkipCounter : doctest::IReporter {
  explicit SkipCounter(const doctest::ContextOptions&) {}
  void test_case_start(const doctest::TestCaseData&) override { fovea::testing::skip_requested = false; }
  void test_case_end(const doctest::CurrentTestCaseStats&) override {
    ++cases_run;
    if (fovea::testing::skip_requested) ++cases_skipped;
  }
  // The rest of doctest's reporter interface: nothing to do.
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("skip_counter", 1, SkipCounter);

}  // namespace

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int failures = context.run();
  if (context.shouldExit() || failures != 0) return failures;
  return cases_run > 0 && cases_skipped == cases_run ? fovea::testing::kSkipReturnCode : 0;
}
