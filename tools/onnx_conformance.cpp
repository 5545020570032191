// The ONNX backend test suite, run through Fovea's importer.
//
//   build/tools/onnx_conformance --data /usr/share/libonnx-testdata/data --json conformance.json
//   build/tools/onnx_conformance --filter 'test_conv' --verbose
//   build/tools/onnx_conformance --expect tests/onnx/conformance_passes.txt   # what CTest runs
//
// Every test of the suites (node, pytorch-converted, pytorch-operator, simple; Debian's
// libonnx-testdata) is a model.onnx with test_data_set_N folders of input_K.pb and
// output_K.pb TensorProtos. Each model is imported with its inputs' shapes taken from the
// first data set, compiled for the CPU, run on every data set, and each output compared with
// the expected one at ONNX's backend tolerances: |got - expected| <= atol + rtol·|expected|,
// rtol 1e-3 and atol 1e-7 unless the test's data.json says otherwise; NaN matches NaN. A test:
//   passed       every output of every data set agrees, in dtype, shape and values;
//   failed       an output disagrees, or the run raised an error: a wrong answer, the worst
//                outcome (the exit code is 1 whenever one test failed);
//   unsupported  the importer refused the model (an op, a version, an attribute, a dtype it
//                does not implement), with its reason.
// --expect FILE names the tests that must pass (one per line, "suite/test"); one that does not
// is a regression, and the exit code is 1. --write-expected FILE writes today's passes there.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <fovea/fovea.h>
#include <fovea/onnx/import.h>
#include <fovea/onnx/tensors.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "report.h"

namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kSuites = {"node", "pytorch-converted", "pytorch-operator", "simple"};

struct Outcome {
  std::string suite{}, test{}, result{}, reason{}, op{};  // result: passed, failed or unsupported
  double seconds = 0;
};

struct Tolerance {
  double rtol = 1e-3, atol = 1e-7;
};

Tolerance tolerance_of(const fs::path& dir) {
  Tolerance t;
  std::ifstream in(dir / "data.json");
  if (!in) return t;
  const auto json = nlohmann::json::parse(in, nullptr, false);
  if (json.is_object()) {
    t.rtol = json.value("rtol", t.rtol);
    t.atol = json.value("atol", t.atol);
  }
  return t;
}

// The files "<prefix>_0.pb", "<prefix>_1.pb", ... of a data set, in order.
std::vector<fs::path> numbered(const fs::path& dir, const std::string& prefix) {
  std::vector<fs::path> out;
  for (int i = 0;; ++i) {
    fs::path p = dir / (prefix + "_" + std::to_string(i) + ".pb");
    if (!fs::exists(p)) return out;
    out.push_back(p);
  }
}

std::vector<fs::path> data_sets(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_directory() && entry.path().filename().string().starts_with("test_data_set_"))
      out.push_back(entry.path());
  std::sort(out.begin(), out.end());
  return out;
}

// "" when `got` matches `expected`; otherwise what differs.
std::string compare(const fovea::Tensor& got, const fovea::Tensor& expected, const Tolerance& tol) {
  if (got.dtype() != expected.dtype())
    return fmt::format("dtype {} where {} is expected", fovea::dtype_name(got.dtype()),
                       fovea::dtype_name(expected.dtype()));
  if (got.shape() != expected.shape())
    return fmt::format("shape {} where {} is expected", got.shape().to_string(), expected.shape().to_string());
  const bool exact =
      got.dtype() == fovea::DType::i32 || got.dtype() == fovea::DType::i64 || got.dtype() == fovea::DType::boolean;
  for (std::int64_t i = 0; i < got.numel(); ++i) {
    const double a = got.at(i), e = expected.at(i);
    if (std::isnan(e) && std::isnan(a)) continue;
    if (a == e) continue;
    if (!exact && std::isfinite(e) && std::abs(a - e) <= tol.atol + tol.rtol * std::abs(e)) continue;
    return fmt::format("element {} is {} where {} is expected", i, a, e);
  }
  return "";
}

// Imports, runs and checks one test folder.
Outcome run_test(const std::string& suite, const fs::path& dir) {
  Outcome out{.suite = suite, .test = dir.filename().string()};
  const auto sets = data_sets(dir);
  if (sets.empty() || !fs::exists(dir / "model.onnx")) {
    out.result = "unsupported";
    out.reason = "the test has no model.onnx or no data set (a model downloaded at test time)";
    return out;
  }
  fovea::Graph graph(out.test);
  fovea::onnx::ImportedModel model;
  std::vector<std::vector<fovea::Tensor>> inputs;
  try {
    // The model's graph inputs are numbered like the files. Those of the first data set give
    // the shapes and the values known at import, under the names the files record for them.
    fovea::onnx::ImportOptions options;
    for (const auto& set : sets) {
      inputs.emplace_back();
      for (const auto& file : numbered(set, "input")) {
        std::string name;
        inputs.back().push_back(fovea::onnx::read_tensor(file, &name));
        if (inputs.size() > 1 || name.empty()) continue;
        options.input_shapes[name] = inputs.back().back().shape();
        options.constant_inputs[name] = inputs.back().back();
      }
    }
    model = fovea::onnx::import_model(graph, dir / "model.onnx", options);
  } catch (const fovea::Error& e) {
    out.result = "unsupported";
    out.reason = e.message();
    out.op = e.op();
    return out;
  }
  try {
    auto exe = fovea::compile(graph, model.outputs, fovea::cpu(), {.check_finite_feeds = false});
    const Tolerance tol = tolerance_of(dir);
    for (std::size_t s = 0; s < sets.size(); ++s) {
      fovea::Feeds feeds;
      if (inputs[s].size() != model.inputs.size())
        throw fovea::Error(fmt::format("{} input files for {} model inputs", inputs[s].size(), model.inputs.size()));
      for (std::size_t k = 0; k < model.inputs.size(); ++k) feeds.emplace_back(model.inputs[k], inputs[s][k]);
      const auto got = exe.run(feeds);
      const auto expected_files = numbered(sets[s], "output");
      if (expected_files.size() != got.size())
        throw fovea::Error(fmt::format("{} outputs where {} are expected", got.size(), expected_files.size()));
      for (std::size_t k = 0; k < got.size(); ++k) {
        fovea::Tensor expected;
        try {
          expected = fovea::onnx::read_tensor(expected_files[k]);
        } catch (const fovea::Error& e) {
          // ONNX 1.12 stores bfloat16 expectations as uint16 bit patterns, which no Fovea dtype reads.
          out.result = "unsupported";
          out.reason = fmt::format("cannot read the expected output: {}", e.message());
          return out;
        }
        const std::string diff = compare(got[k], expected, tol);
        if (!diff.empty()) {
          out.result = "failed";
          out.reason =
              fmt::format("{}, output {} ('{}'): {}", sets[s].filename().string(), k, model.output_names[k], diff);
          return out;
        }
      }
    }
    out.result = "passed";
  } catch (const std::exception& e) {
    out.result = "failed";
    out.reason = fmt::format("error when run: {}", e.what());
  }
  return out;
}

std::set<std::string> read_list(const std::string& path) {
  std::set<std::string> out;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] != '#') out.insert(line);
  return out;
}

// Totals, the unsupported ops by count, the regressions against --expect; the report.
int finish(const std::vector<Outcome>& outcomes, const std::string& json_path, const std::string& expect_path,
           const std::string& write_path) {
  std::map<std::string, std::map<std::string, int>> by_suite;
  std::map<std::string, int> totals, unsupported_ops;
  nlohmann::json tests = nlohmann::json::array();
  std::set<std::string> passed;
  for (const Outcome& o : outcomes) {
    ++by_suite[o.suite][o.result];
    ++totals[o.result];
    if (o.result == "unsupported") ++unsupported_ops[o.op.empty() ? "(model or dtype)" : o.op];
    if (o.result == "passed") passed.insert(o.suite + "/" + o.test);
    tests.push_back(
        {{"suite", o.suite}, {"test", o.test}, {"result", o.result}, {"reason", o.reason}, {"seconds", o.seconds}});
  }
  std::vector<std::string> regressions;
  if (!expect_path.empty())
    for (const std::string& name : read_list(expect_path))
      if (!passed.contains(name)) regressions.push_back(name);
  for (const auto& name : regressions) std::printf("regression  %s: it passed before\n", name.c_str());
  if (!write_path.empty()) {
    std::ofstream out(write_path);
    out << "# The ONNX backend tests Fovea passes (tools/onnx_conformance --write-expected).\n";
    for (const auto& name : passed) out << name << "\n";
  }
  std::vector<std::pair<std::string, int>> ops(unsupported_ops.begin(), unsupported_ops.end());
  std::sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::printf("\nunsupported, by op:");
  for (const auto& [op, count] : ops) std::printf(" %s %d,", op.c_str(), count);
  std::printf("\n");
  fovea::tools::Report report;
  report.set("tests", outcomes.size());
  for (const auto& [suite, counts] : by_suite) report.set("suite " + suite, counts);
  report.set("unsupported_ops", nlohmann::json(unsupported_ops));
  report.set("regressions", regressions);
  for (const char* result : {"passed", "failed", "unsupported"}) report.set(result, totals[result]);
  if (!json_path.empty()) {
    nlohmann::json full = report.json();
    full["outcomes"] = tests;
    const std::string tmp = json_path + ".tmp";
    std::ofstream(tmp) << full.dump(1) << "\n";
    fs::rename(tmp, json_path);
  }
  report.finish("");
  return totals["failed"] > 0 || !regressions.empty() ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Runs ONNX's backend test suite through Fovea's importer"};
  std::string data = "/usr/share/libonnx-testdata/data", json_path, expect_path, write_path, filter;
  bool verbose = false;
  app.add_option("--data", data, "the folder of the suites (Debian's libonnx-testdata)");
  app.add_option("--json", json_path, "write every outcome and the totals here");
  app.add_option("--expect", expect_path, "tests that must pass, one 'suite/test' per line");
  app.add_option("--write-expected", write_path, "write the tests that pass to this file");
  app.add_option("--filter", filter, "run only tests whose 'suite/test' matches this regex");
  app.add_flag("--verbose", verbose, "print every test, not only the failed ones");
  CLI11_PARSE(app, argc, argv);
  if (!fs::is_directory(data)) {
    std::printf("skipped: no ONNX test data at %s (install Debian's libonnx-testdata)\n", data.c_str());
    return 77;
  }
  const std::regex pattern(filter.empty() ? ".*" : filter);
  std::vector<Outcome> outcomes;
  for (const std::string& suite : kSuites) {
    if (!fs::is_directory(fs::path(data) / suite)) continue;
    std::vector<fs::path> tests;
    for (const auto& entry : fs::directory_iterator(fs::path(data) / suite))
      if (entry.is_directory() && std::regex_search(suite + "/" + entry.path().filename().string(), pattern))
        tests.push_back(entry.path());
    std::sort(tests.begin(), tests.end());
    for (const auto& dir : tests) {
      const auto start = std::chrono::steady_clock::now();
      Outcome o = run_test(suite, dir);
      o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (verbose || o.result == "failed")
        std::printf("%-11s %s/%s%s%s\n", o.result.c_str(), suite.c_str(), o.test.c_str(), o.reason.empty() ? "" : ": ",
                    o.reason.c_str());
      outcomes.push_back(std::move(o));
    }
  }
  return finish(outcomes, json_path, expect_path, write_path);
}
