// CompileOptions::explore and FOVEA_EXPLORE: the run that writes the explorer.
//
// The explorer (explore/explorer.h) sits above the runtime, so the runtime calls it through a
// function pointer that the explorer's header installs in every program that includes it.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include <fmt/format.h>

#include "fovea/runtime/executable.h"

namespace fovea {

namespace {

std::atomic<ExploreWriter> installed_writer{nullptr};

// Restores profiling and value statistics to what they were, however the run ends.
class ObservedRun {
 public:
  explicit ObservedRun(Executable& exe, bool was_profiling, bool was_observing)
      : exe_(exe), profiling_(was_profiling), observing_(was_observing) {
    if (!profiling_) exe_.reset_profile();
    exe_.set_profiling(true);
    exe_.set_value_statistics(true);
  }
  ~ObservedRun() {
    exe_.set_profiling(profiling_);
    exe_.set_value_statistics(observing_);
  }
  ObservedRun(const ObservedRun&) = delete;
  ObservedRun& operator=(const ObservedRun&) = delete;

 private:
  Executable& exe_;
  bool profiling_, observing_;
};

void write_page(const Executable& exe, const std::string& path, const std::string& anomaly) {
  const ExploreWriter writer = installed_writer.load();
  if (!writer) {
    std::fprintf(stderr,
                 "fovea: not writing the explorer to %s: this program does not include <fovea/fovea.h> (or "
                 "<fovea/explore/explorer.h>), which provides it\n",
                 path.c_str());
    return;
  }
  writer(exe, path, anomaly);
}

}  // namespace

void set_explore_writer(ExploreWriter writer) { installed_writer.store(writer); }
ExploreWriter explore_writer() { return installed_writer.load(); }

std::string next_explore_path_from_environment() {
  const char* value = std::getenv("FOVEA_EXPLORE");
  if (!value || !*value) return {};
  static std::mutex mutex;
  static int handed_out = 0;
  const std::lock_guard lock(mutex);
  const std::string path = value;
  if (handed_out++ == 0) return path;
  const std::size_t dot = path.rfind('.'), slash = path.rfind('/');
  const bool has_extension = dot != std::string::npos && (slash == std::string::npos || dot > slash);
  const std::string stem = has_extension ? path.substr(0, dot) : path,
                    extension = has_extension ? path.substr(dot) : "";
  return fmt::format("{}-{}{}", stem, handed_out, extension);
}

std::vector<Tensor> Executable::run_and_explore(const Feeds& feeds, std::source_location where) {
  const std::string path = std::exchange(explore_path_, {});
  std::vector<Tensor> outputs;
  {
    const ObservedRun observed(*this, profiling_, value_statistics_on_);
    try {
      outputs = run(feeds, where);
    } catch (const Error& error) {
      write_page(*this, path, error.what());
      throw;
    }
  }
  write_page(*this, path, "");
  return outputs;
}

}  // namespace fovea
