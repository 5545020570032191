#include "fovea/io/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>

#include <fmt/format.h>

#include "fovea/core/error.h"

namespace fovea {

namespace {

constexpr int bar_width = 20;

double steady_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// Four significant digits: 0.4123, 2.303, 1.5e-05.
std::string format_figure(double value) { return fmt::format("{:.4g}", value); }

}  // namespace

std::string with_thousands(std::int64_t n) {
  const std::string digits = std::to_string(n < 0 ? -static_cast<unsigned long long>(n) : n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? fmt::format("-{}", out) : out;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  if (seconds > 1e8) return ">3 years";
  const auto total = static_cast<std::int64_t>(std::llround(seconds));
  const std::int64_t hours = total / 3600, minutes = total / 60 % 60, secs = total % 60;
  if (hours > 0) return fmt::format("{}:{:02}:{:02}", hours, minutes, secs);
  return fmt::format("{}:{:02}", minutes, secs);
}

// --- Progress ---------------------------------------------------------------------------------

Progress::Progress(std::int64_t total_steps, std::string label, ProgressOptions options)
    : total_(total_steps), label_(std::move(label)), options_(std::move(options)) {
  out_ = options_.out ? options_.out : &std::cout;
  terminal_ = options_.terminal.value_or(out_ == &std::cout && ::isatty(STDOUT_FILENO));
  if (!options_.clock) options_.clock = steady_seconds;
  start_time_ = last_time_ = options_.clock();
}

Progress::~Progress() {
  try {
    finish();
  } catch (...) {  // a destructor must not throw; a lost last line is harmless
  }
}

// The rates follow an exponential moving average in time: after a gap of dt seconds the new
// sample r gets weight α = 1 - exp(-dt / τ), so the average forgets at the same speed whether
// updates come every millisecond or every second.
void Progress::update(std::int64_t step, const std::map<std::string, double>& figures, std::int64_t examples_in_step) {
  if (finished_) return;
  const double now = options_.clock();
  pending_steps_ += std::max<std::int64_t>(step - step_, 1);
  pending_examples_ += std::max<std::int64_t>(examples_in_step, 0);
  step_ = step;
  figures_ = figures;

  const double dt = now - last_time_;
  if (dt > 0) {
    const double examples_rate = static_cast<double>(pending_examples_) / dt;
    const double steps_rate = static_cast<double>(pending_steps_) / dt;
    if (!have_rate_) {
      examples_rate_ = examples_rate;
      steps_rate_ = steps_rate;
      have_rate_ = true;
    } else {
      const double alpha = 1.0 - std::exp(-dt / std::max(options_.smoothing_seconds, 1e-9));
      examples_rate_ += alpha * (examples_rate - examples_rate_);
      steps_rate_ += alpha * (steps_rate - steps_rate_);
    }
    pending_examples_ = pending_steps_ = 0;
    last_time_ = now;
  }

  const bool at_end = total_ > 0 && step >= total_;
  if (terminal_) {
    if (last_print_time_ < 0 || now - last_print_time_ >= options_.refresh_seconds || at_end) print(false);
  } else {
    const std::int64_t every =
        options_.print_every > 0 ? options_.print_every : (total_ > 0 ? std::max<std::int64_t>(total_ / 10, 1) : 100);
    const std::int64_t previous = std::max<std::int64_t>(last_printed_step_, 0);
    if (step / every > previous / every || (at_end && last_printed_step_ != step)) print(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (step_ == 0 && last_printed_step_ < 0) return;  // nothing happened, nothing to say
  if (terminal_)
    print(true);
  else if (last_printed_step_ != step_)
    print(false);
}

double Progress::eta_seconds() const {
  if (total_ <= 0 || !have_rate_ || steps_rate_ <= 0) return -1.0;
  return static_cast<double>(std::max<std::int64_t>(total_ - step_, 0)) / steps_rate_;
}

std::string Progress::line() const {
  std::string s = label_;
  auto add = [&s](const std::string& part) {
    if (!s.empty()) s += ' ';
    s += part;
  };
  if (total_ > 0) {
    const double fraction = std::clamp(static_cast<double>(step_) / static_cast<double>(total_), 0.0, 1.0);
    const int filled = static_cast<int>(fraction * bar_width);
    add(fmt::format("[{}{}] {}/{}", std::string(static_cast<std::size_t>(filled), '#'),
                    std::string(static_cast<std::size_t>(bar_width - filled), '.'), step_, total_));
  } else {
    add(fmt::format("step {}", step_));
  }
  for (const auto& [name, value] : figures_) add(fmt::format("{} {}", name, format_figure(value)));
  if (have_rate_ && examples_rate_ > 0)
    add(fmt::format("{} ex/s", with_thousands(std::llround(examples_rate_))));
  else if (have_rate_ && steps_rate_ > 0)
    add(fmt::format("{:.3g} steps/s", steps_rate_));
  const bool done = finished_ || (total_ > 0 && step_ >= total_);
  if (done)
    add(fmt::format("time {}", format_duration(last_time_ - start_time_)));
  else if (eta_seconds() >= 0)
    add(fmt::format("ETA {}", format_duration(eta_seconds())));
  return s;
}

void Progress::print(bool final) {
  const std::string text = line();
  std::ostream& out = *out_;
  if (terminal_) {
    // Redraw in place; spaces wipe the tail of a longer previous line.
    out << '\r' << text;
    if (text.size() < last_line_length_) out << std::string(last_line_length_ - text.size(), ' ');
    if (final) out << '\n';
    last_line_length_ = text.size();
  } else {
    out << text << '\n';
  }
  out.flush();
  last_print_time_ = options_.clock();
  last_printed_step_ = step_;
}

// --- MetricsLog -------------------------------------------------------------------------------

namespace {

// A CSV field: quoted (with quotes doubled) when it holds a comma, a quote or a line break.
std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out(1, '"');
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else if (c != '\r') {
      fields.back() += c;
    }
  }
  return fields;
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path, bool append) : path_(path) {
  if (append && std::filesystem::exists(path) && std::filesystem::file_size(path) > 0) {
    std::ifstream existing(path);
    std::string header;
    std::getline(existing, header);
    std::vector<std::string> fields = split_csv_line(header);
    if (fields.size() < 2 || fields[0] != "step" || fields[1] != "epoch")
      throw Error(
          fmt::format("MetricsLog: {}: cannot append: its header '{}' does not start with step,epoch", path, header));
    columns_.assign(fields.begin() + 2, fields.end());
    has_header_ = true;
  }
  file_.open(path, append ? std::ios::app : std::ios::trunc);
  if (!file_) throw Error(fmt::format("MetricsLog: {}: cannot open for writing", path));
}

void MetricsLog::write(std::int64_t step, std::int64_t epoch, const std::map<std::string, double>& figures) {
  for (const auto& [name, value] : figures)
    if (name == "step" || name == "epoch")
      throw Error(
          fmt::format("MetricsLog: {}: a figure may not be called '{}': that column is always there", path_, name));
  if (!has_header_) {
    std::string header = "step,epoch";
    for (const auto& [name, value] : figures) {
      columns_.push_back(name);
      header += ',';
      header += csv_field(name);
    }
    file_ << header << '\n';
    has_header_ = true;
  } else {
    for (const auto& [name, value] : figures)
      if (std::find(columns_.begin(), columns_.end(), name) == columns_.end())
        throw Error(fmt::format("MetricsLog: {}: figure '{}' is not a column of this log (the first row fixes them)",
                                path_, name));
  }
  std::string row = fmt::format("{},{}", step, epoch);
  for (const std::string& column : columns_) {
    auto it = figures.find(column);
    row += ',';
    if (it != figures.end()) row += fmt::format("{}", it->second);
  }
  file_ << row << '\n';
  file_.flush();
  if (!file_) throw Error(fmt::format("MetricsLog: {}: writing failed", path_));
}

}  // namespace fovea
