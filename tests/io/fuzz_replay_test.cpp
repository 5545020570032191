// Every seed input and every input a fuzzer once crashed on (fuzz/corpus/<target>/ and
// fuzz/regressions/<target>/) goes through the same entry function as the libFuzzer target: the
// loader must either succeed or throw a fovea::Error. This runs in the ordinary build (gcc), so
// a fixed crash stays fixed without clang.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_targets.h"

namespace {

namespace fs = std::filesystem;

using Entry = std::function<int(const std::uint8_t*, std::size_t)>;

// Replays the files of fuzz/corpus/<target>/ and fuzz/regressions/<target>/; returns how many.
int replay(const std::string& target, const Entry& entry) {
  std::vector<fs::path> files;
  for (const char* kind : {"corpus", "regressions"}) {
    const fs::path dir = fs::path(FOVEA_FUZZ_DIR) / kind / target;
    if (!fs::is_directory(dir)) continue;
    for (const auto& file : fs::directory_iterator(dir))
      if (file.is_regular_file() && file.path().filename().string()[0] != '.') files.push_back(file.path());
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& path : files) {
    CAPTURE(path.string());
    std::ifstream in(path, std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(!in.bad());
    // The entry swallows fovea::Error; any other exception fails the test here.
    CHECK_NOTHROW(entry(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  }
  return static_cast<int>(files.size());
}

}  // namespace

TEST_CASE("fuzz corpora replay: safetensors inputs load or give a fovea::Error") {
  CHECK(replay("safetensors", fovea::fuzz::fuzz_safetensors) >= 5);
}

TEST_CASE("fuzz corpora replay: IDX inputs load or give a fovea::Error") {
  CHECK(replay("idx", fovea::fuzz::fuzz_idx) >= 5);
}

TEST_CASE("fuzz corpora replay: NumPy .npy and .npz inputs load or give a fovea::Error") {
  CHECK(replay("npy", fovea::fuzz::fuzz_npy) >= 5);
}

#ifdef FOVEA_WITH_ONNX
TEST_CASE("fuzz corpora replay: ONNX models import and run or give a fovea::Error") {
  CHECK(replay("onnx", fovea::fuzz::fuzz_onnx) >= 5);
}
#endif

TEST_CASE("fuzz corpora replay: text corpus inputs load or give a fovea::Error") {
  CHECK(replay("text", fovea::fuzz::fuzz_text) >= 3);
}
