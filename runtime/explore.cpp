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

void write_page(const Executable& exe, const std::string& path, const std::string& anomaly) {
  if (const ExploreWriter writer = installed_writer.load())
    writer(exe, path, anomaly);
  else
    warn_explorer_missing(path);
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

void warn_explorer_missing(const std::string& path) {
  std::fprintf(stderr,
               "fovea: not writing the explorer to %s: this program does not include <fovea/fovea.h> (or "
               "<fovea/explore/explorer.h>), which provides it\n",
               path.c_str());
}

std::vector<Tensor> run_observed_for_explorer(Executable& exe, const std::function<std::vector<Tensor>()>& run,
                                              const std::function<void(const std::string& anomaly)>& write) {
  const bool was_profiling = exe.profiling(), was_observing = exe.value_statistics_on();
  if (!was_profiling) exe.reset_profile();
  exe.set_profiling(true);
  exe.set_value_statistics(true);
  auto restore = [&] {
    exe.set_profiling(was_profiling);
    exe.set_value_statistics(was_observing);
  };
  std::vector<Tensor> outputs;
  try {
    outputs = run();
  } catch (const Error& error) {
    restore();
    write(error.what());
    throw;
  }
  restore();
  write("");
  return outputs;
}

std::vector<Tensor> Executable::run_and_explore(const Feeds& feeds, std::source_location where) {
  const std::string path = std::exchange(explore_path_, {});
  return run_observed_for_explorer(
      *this, [&] { return run(feeds, where); }, [&](const std::string& anomaly) { write_page(*this, path, anomaly); });
}

}  // namespace fovea
