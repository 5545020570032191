// PyTorch's figures beside a benchmark's own (bench/transformer --torch, bench/attention --torch).
//
// A reference script of bench/reference/ times the same work in PyTorch and writes its figures
// to a JSON file. run_torch_reference finds a Python with PyTorch 2.x (the interpreter named by
// FOVEA_TORCH_PYTHON when that is set, else python3 on PATH), runs the script twice with the
// engine's thread count in OMP_NUM_THREADS (once in PyTorch's default setting, once with
// GOMP_SPINCOUNT=0, which stops the OpenMP workers spinning between parallel regions and is
// often faster on a small machine shared with others) and keeps, for every time in the JSON (a
// key with an "ms" word in it), the lower of the two and which setting gave it. The best of
// the two is PyTorch's figure: what a user who tunes it would see.
//
// Without such a Python the result says why, and the benchmark goes on without the comparison.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "report.h"

extern char** environ;

namespace fovea::bench {

// One time of the reference script in both settings; NaN where that run gave none.
struct TorchTime {
  double ms = NAN;  // the lower of the two
  double default_ms = NAN, gomp_spincount_0_ms = NAN;
  std::string setting;  // which gave `ms`: "default" or "GOMP_SPINCOUNT=0"
};

struct TorchReference {
  std::string why_not;  // empty when the script ran
  std::string python, version;
  std::map<std::string, TorchTime> times;  // by the script's own JSON keys

  bool ran() const { return why_not.empty(); }
  // The time under the script's `key`, or nullptr when it reported none (a skipped variant).
  const TorchTime* find(const std::string& key) const {
    const auto it = times.find(key);
    return it == times.end() ? nullptr : &it->second;
  }
};

namespace detail {

// Runs `args` (args[0] looked up on PATH) with the environment `env`, its stdout read into
// `output` (or thrown away when that is null), its stderr shared with this process unless
// `quiet`. Returns its exit status, or -1 when it could not be started or did not exit normally.
inline int run_process(const std::vector<std::string>& args, const std::vector<std::string>& env, std::string* output,
                       bool quiet = false) {
  int out[2];
  if (pipe(out) != 0) return -1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  if (quiet) posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::vector<std::string> owned_args = args, owned_env = env;
  std::vector<char*> argv, envp;
  for (std::string& a : owned_args) argv.push_back(a.data());
  for (std::string& e : owned_env) envp.push_back(e.data());
  argv.push_back(nullptr);
  envp.push_back(nullptr);
  std::fflush(stdout);  // the child's lines must not overtake ours
  pid_t pid = -1;
  const int spawned = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  if (spawned != 0) {
    close(out[0]);
    return -1;
  }
  char buffer[4096];
  for (ssize_t n; (n = read(out[0], buffer, sizeof buffer)) > 0;)
    if (output) output->append(buffer, static_cast<std::size_t>(n));
  close(out[0]);
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// This process's environment with OMP_NUM_THREADS set to `threads` and GOMP_SPINCOUNT to
// `spincount` (absent when that is empty: PyTorch's default).
inline std::vector<std::string> environment(int threads, const std::string& spincount) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    if (entry.rfind("OMP_NUM_THREADS=", 0) != 0 && entry.rfind("GOMP_SPINCOUNT=", 0) != 0) env.push_back(entry);
  }
  env.push_back("OMP_NUM_THREADS=" + std::to_string(threads));
  if (!spincount.empty()) env.push_back("GOMP_SPINCOUNT=" + spincount);
  return env;
}

// The Python to use and its torch version, or why there is none.
inline std::optional<std::pair<std::string, std::string>> find_python(std::string& why_not) {
  const char* named = std::getenv("FOVEA_TORCH_PYTHON");
  const std::string python = named && *named ? named : "python3";
  const std::string which = named && *named ? "FOVEA_TORCH_PYTHON=" + python : "python3 on PATH";
  const std::string hint = named && *named ? "" : " (FOVEA_TORCH_PYTHON may name a Python that has it)";
  std::string version;
  const int status =
      run_process({python, "-c", "import torch; print(torch.__version__)"}, environment(1, ""), &version, true);
  while (!version.empty() && std::isspace(static_cast<unsigned char>(version.back()))) version.pop_back();
  if (status == -1) {
    why_not = which + " could not be started";
    return std::nullopt;
  }
  if (status != 0 || version.empty()) {
    why_not = which + " cannot import torch" + hint;
    return std::nullopt;
  }
  if (version.rfind("2.", 0) != 0) {
    why_not = which + " has torch " + version + ", not 2.x" + hint;
    return std::nullopt;
  }
  return std::make_pair(python, version);
}

// Runs the script once in one setting; its figures, or null when it failed.
inline nlohmann::json run_once(const std::string& python, const std::string& script,
                               const std::vector<std::string>& arguments, int threads, const std::string& spincount) {
  std::string path = (std::filesystem::temp_directory_path() / "fovea_torch_XXXXXX").string();
  const int fd = mkstemp(path.data());
  if (fd < 0) return nullptr;
  close(fd);
  std::vector<std::string> args{python, script};
  args.insert(args.end(), arguments.begin(), arguments.end());
  for (const std::string& a : {std::string("--threads"), std::to_string(threads), std::string("--json"), path})
    args.push_back(a);
  nlohmann::json figures = nullptr;
  if (run_process(args, environment(threads, spincount), nullptr) == 0) {
    std::ifstream in(path);
    figures = nlohmann::json::parse(in, nullptr, false);
    if (figures.is_discarded() || !figures.is_object()) figures = nullptr;
  }
  std::filesystem::remove(path);
  return figures;
}

// Whether a key names a time: one of its '_'-separated words is "ms".
inline bool is_time(const std::string& key) {
  const std::string padded = "_" + key + "_";
  return padded.find("_ms_") != std::string::npos;
}

}  // namespace detail

// Runs bench/reference/<script> with `arguments` (the script gets --threads and --json from
// here) in both settings; see the top of this file.
inline TorchReference run_torch_reference(const std::string& script, const std::vector<std::string>& arguments,
                                          int threads) {
  TorchReference result;
  const std::string path = std::string(FOVEA_SOURCE_DIR) + "/bench/reference/" + script;
  if (!std::filesystem::exists(path)) {
    result.why_not = path + " is missing";
    return result;
  }
  const auto found = detail::find_python(result.why_not);
  if (!found) return result;
  std::tie(result.python, result.version) = *found;
  std::printf("--torch: running %s with %s (torch %s), %d threads, default and GOMP_SPINCOUNT=0\n", script.c_str(),
              result.python.c_str(), result.version.c_str(), threads);
  const nlohmann::json plain = detail::run_once(result.python, path, arguments, threads, "");
  const nlohmann::json spin = detail::run_once(result.python, path, arguments, threads, "0");
  if (plain.is_null() && spin.is_null()) {
    result.why_not = script + " failed in both settings";
    return result;
  }
  for (const auto& [figures, no_spin] : {std::pair{&plain, false}, std::pair{&spin, true}}) {
    if (figures->is_null()) continue;
    for (const auto& [key, value] : figures->items()) {
      if (!value.is_number() || !detail::is_time(key)) continue;
      TorchTime& t = result.times[key];
      (no_spin ? t.gomp_spincount_0_ms : t.default_ms) = value.get<double>();
      if (std::isnan(t.ms) || value.get<double>() < t.ms) {
        t.ms = value.get<double>();
        t.setting = no_spin ? "GOMP_SPINCOUNT=0" : "default";
      }
    }
  }
  return result;
}

// Sets `key` to the best time, and `key`_default and `key`_gomp_spincount_0 to each setting's
// (null where that setting gave none).
inline void record(tools::Report& report, const std::string& key, const TorchTime& time) {
  auto number = [](double x) { return std::isnan(x) ? nlohmann::json(nullptr) : nlohmann::json(x); };
  report.set(key, number(time.ms));
  report.set(key + "_default", number(time.default_ms));
  report.set(key + "_gomp_spincount_0", number(time.gomp_spincount_0_ms));
}

}  // namespace fovea::bench
