// Progress lines and the metrics CSV: what a training loop prints and logs.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fovea/fovea.h>

#include "testing.h"

namespace {

// A temporary directory of this file's tests (tests/testing.h).
struct TempDir : fovea::testing::TempDir {
  explicit TempDir(const std::string& tag) : fovea::testing::TempDir("progress-" + tag) {}
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const fovea::Error& e) {
    return e.what();
  }
  FAIL("no fovea::Error was thrown");
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A clock the test moves by hand.
struct FakeClock {
  double now = 0;
  std::function<double()> function() {
    return [this] { return now; };
  }
};

}  // namespace

TEST_CASE("Progress into a log prints a plain line every tenth of the run, not every step") {
  std::ostringstream out;
  FakeClock clock;
  {
    fovea::Progress progress(100, "epoch 1", {.out = &out, .terminal = false, .clock = clock.function()});
    for (std::int64_t step = 1; step <= 100; ++step) {
      clock.now += 0.01;
      progress.update(step, {{"loss", 1.0 / static_cast<double>(step)}}, 32);
    }
    progress.finish();
  }
  const std::vector<std::string> lines = lines_of(out.str());
  REQUIRE(lines.size() == 10);
  CHECK(!contains(out.str(), "\r"));
  CHECK(contains(lines[0], "epoch 1 [##..................] 10/100 loss 0.1 3,200 ex/s ETA 0:01"));
  CHECK(contains(lines[0], "loss 0.1 "));
  CHECK(contains(lines[0], "3,200 ex/s"));
  CHECK(contains(lines[0], "ETA 0:01"));
  CHECK(contains(lines[9], "100/100"));
  CHECK(contains(lines[9], "time 0:01"));
}

TEST_CASE("Progress into a log honours print_every and always ends with the last step") {
  std::ostringstream out;
  FakeClock clock;
  fovea::Progress progress(25, "", {.out = &out, .terminal = false, .print_every = 7, .clock = clock.function()});
  for (std::int64_t step = 1; step <= 23; ++step) {
    clock.now += 0.1;
    progress.update(step, {}, 0);
  }
  progress.finish();
  const std::vector<std::string> lines = lines_of(out.str());
  REQUIRE(lines.size() == 4);  // steps 7, 14, 21 and the final 23
  CHECK(contains(lines[0], "7/25"));
  CHECK(contains(lines[2], "21/25"));
  CHECK(contains(lines[3], "23/25"));
  CHECK(contains(lines[3], "steps/s"));  // no examples counted: steps per second instead
}

TEST_CASE("Progress on a terminal redraws one line at most ten times a second and ends it with a newline") {
  std::ostringstream out;
  FakeClock clock;
  fovea::Progress progress(1000, "train", {.out = &out, .terminal = true, .clock = clock.function()});
  for (std::int64_t step = 1; step <= 1000; ++step) {
    clock.now += 0.002;  // 2 s in all
    progress.update(step, {{"acc", 0.5}, {"loss", 0.25}}, 64);
  }
  progress.finish();
  const std::string text = out.str();
  const auto redraws = std::count(text.begin(), text.end(), '\r');
  CHECK(redraws >= 15);
  CHECK(redraws <= 25);
  CHECK(std::count(text.begin(), text.end(), '\n') == 1);
  CHECK(text.back() == '\n');
  CHECK(contains(text, "train [####################] 1000/1000 acc 0.5 loss 0.25 32,000 ex/s time 0:02"));
}

TEST_CASE("Progress smooths throughput over time and derives the ETA from it") {
  std::ostringstream out;
  FakeClock clock;
  fovea::Progress progress(100, "", {.out = &out, .terminal = false, .clock = clock.function()});
  for (std::int64_t step = 1; step <= 10; ++step) {
    clock.now += 0.5;
    progress.update(step, {}, 64);
  }
  CHECK(progress.examples_per_second() == doctest::Approx(128.0));
  CHECK(progress.steps_per_second() == doctest::Approx(2.0));
  CHECK(progress.eta_seconds() == doctest::Approx(45.0));
  CHECK(contains(progress.line(), "128 ex/s ETA 0:45"));

  // A sudden slowdown moves the average part of the way: 1 - exp(-dt/τ) of the gap.
  clock.now += 2.0;
  progress.update(11, {}, 64);
  const double alpha = 1.0 - std::exp(-2.0 / 2.0);
  CHECK(progress.examples_per_second() == doctest::Approx(128.0 + alpha * (32.0 - 128.0)));
}

TEST_CASE("Progress with an unknown total shows the step and no ETA") {
  std::ostringstream out;
  FakeClock clock;
  fovea::Progress progress(0, "eval", {.out = &out, .terminal = false, .clock = clock.function()});
  clock.now = 1;
  progress.update(5, {{"loss", 2.0}}, 10);
  CHECK(progress.line() == "eval step 5 loss 2 10 ex/s");
  CHECK(progress.eta_seconds() < 0);
}

TEST_CASE("with_thousands and format_duration write numbers the way people read them") {
  CHECK(fovea::with_thousands(0) == "0");
  CHECK(fovea::with_thousands(999) == "999");
  CHECK(fovea::with_thousands(1000) == "1,000");
  CHECK(fovea::with_thousands(1234567) == "1,234,567");
  CHECK(fovea::with_thousands(-45678) == "-45,678");
  CHECK(fovea::format_duration(12.4) == "0:12");
  CHECK(fovea::format_duration(723) == "12:03");
  CHECK(fovea::format_duration(3723) == "1:02:03");
  CHECK(fovea::format_duration(-1) == "?");
  CHECK(fovea::format_duration(std::nan("")) == "?");
}

TEST_CASE("MetricsLog writes a header from the first row and flushes every row at once") {
  TempDir dir("csv");
  const std::string path = dir.file("metrics.csv");
  fovea::MetricsLog log(path);
  log.write(100, 0, {{"loss", 0.5}, {"acc", 0.75}});
  log.write(200, 0, {{"loss", 0.25}});  // acc left out: an empty cell
  log.write(300, 1, {{"loss", 0.125}, {"acc", 0.875}});
  // Read while the log is still open: nothing waits in a buffer.
  const std::vector<std::string> lines = read_lines(path);
  REQUIRE(lines.size() == 4);
  CHECK(lines[0] == "step,epoch,acc,loss");
  CHECK(lines[1] == "100,0,0.75,0.5");
  CHECK(lines[2] == "200,0,,0.25");
  CHECK(lines[3] == "300,1,0.875,0.125");
}

TEST_CASE("MetricsLog rejects a figure the header does not have, and step or epoch as figure names") {
  TempDir dir("columns");
  fovea::MetricsLog log(dir.file("m.csv"));
  CHECK(contains(error_of([&] { log.write(1, 0, {{"step", 1.0}}); }), "may not be called 'step'"));
  log.write(1, 0, {{"loss", 1.0}});
  const std::string message = error_of([&] { log.write(2, 0, {{"loss", 1.0}, {"lr", 0.1}}); });
  CHECK(contains(message, "figure 'lr' is not a column"));
  CHECK(contains(message, dir.file("m.csv")));
}

TEST_CASE("MetricsLog quotes awkward names and appends to an existing log when resuming") {
  TempDir dir("append");
  const std::string path = dir.file("m.csv");
  {
    fovea::MetricsLog log(path);
    log.write(1, 0, {{"loss, smoothed", 2.0}, {"x\"y", 1.0}});
  }
  {
    fovea::MetricsLog log(path, /*append=*/true);
    log.write(2, 0, {{"loss, smoothed", 1.5}});
    CHECK_THROWS_AS(log.write(3, 0, {{"loss", 1.0}}), fovea::Error);
  }
  const std::vector<std::string> lines = read_lines(path);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0] == "step,epoch,\"loss, smoothed\",\"x\"\"y\"");
  CHECK(lines[1] == "1,0,2,1");
  CHECK(lines[2] == "2,0,1.5,");

  fovea::MetricsLog fresh(path);  // not appending: starts over
  fresh.write(5, 1, {{"a", 1.0}});
  CHECK(read_lines(path) == std::vector<std::string>{"step,epoch,a", "5,1,1"});
}
