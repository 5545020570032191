// Training progress on the console, and metrics in a CSV file.
//
// On a terminal, Progress redraws one line in place, at most ten times a second:
//
//   epoch 3 [##########..........] 704/1407 loss 0.4123 acc 0.8516 3,456 ex/s ETA 0:12
//
// Into a log file or a pipe it prints plain lines instead, every tenth of the run by default, so
// a log never floods. Throughput is an exponential moving average over time (about the last two
// seconds), and the ETA follows from it.
//
// MetricsLog writes one CSV row per call ("step,epoch,loss,acc"), flushed at once, so that a
// crash loses nothing and a plot can be drawn from the file while training runs.
#pragma once

#include <cstdint>
#include <fstream>
#include <functional>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace fovea {

struct ProgressOptions {
  std::ostream* out = nullptr;  // nullptr: std::cout
  // Redraw one line in place (true) or print plain lines (false); unset: redraw when `out` is
  // std::cout and standard output is a terminal.
  std::optional<bool> terminal{};
  double refresh_seconds = 0.1;     // terminal: the least time between redraws
  std::int64_t print_every = 0;     // plain: a line every this many steps; 0: every 10% of the run
  double smoothing_seconds = 2.0;   // time constant of the throughput average
  std::function<double()> clock{};  // seconds, monotonic; unset: std::chrono::steady_clock
};

class Progress {
 public:
  // `total_steps` <= 0 means unknown: no bar and no ETA.
  Progress(std::int64_t total_steps, std::string label, ProgressOptions options = {});
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Reports that `step` steps are done (counting from 1), with the figures to show (loss, acc,
  // learning rate: printed in the map's order) and the examples the latest step processed.
  void update(std::int64_t step, const std::map<std::string, double>& figures, std::int64_t examples_in_step);
  // Prints the final line (with a newline on a terminal). Called by the destructor if needed.
  void finish();

  // Examples per second and steps per second, smoothed; 0 before two updates.
  double examples_per_second() const { return examples_rate_; }
  double steps_per_second() const { return steps_rate_; }
  // Seconds to the end at the current rate; negative when unknown.
  double eta_seconds() const;
  // The line as it would be printed now (without the carriage return).
  std::string line() const;

 private:
  void print(bool final);

  std::int64_t total_;
  std::string label_;
  ProgressOptions options_;
  std::ostream* out_;
  bool terminal_;
  double start_time_;
  double last_time_;  // of the last update
  double last_print_time_ = -1.0;
  std::int64_t step_ = 0;
  std::int64_t last_printed_step_ = -1;
  std::int64_t pending_examples_ = 0;  // since the last rate sample
  std::int64_t pending_steps_ = 0;
  double examples_rate_ = 0.0, steps_rate_ = 0.0;
  bool have_rate_ = false;
  std::map<std::string, double> figures_;
  std::size_t last_line_length_ = 0;
  bool finished_ = false;
};

// "1,234,567".
std::string with_thousands(std::int64_t n);
// "0:12", "12:03", "1:02:03".
std::string format_duration(double seconds);

// A CSV file of training metrics: the header "step,epoch,<figure names>" comes from the first
// row; later rows may leave figures out (empty cells) but may not add new ones.
class MetricsLog {
 public:
  // append: continue an existing file (its header must name the same columns), for a run
  // resumed from a checkpoint; otherwise the file is started afresh.
  explicit MetricsLog(const std::string& path, bool append = false);

  void write(std::int64_t step, std::int64_t epoch, const std::map<std::string, double>& figures);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream file_;
  std::vector<std::string> columns_;  // after step and epoch, fixed by the first row
  bool has_header_ = false;
};

}  // namespace fovea
