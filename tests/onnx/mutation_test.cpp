// The ONNX seed models of the fuzz corpus (fuzz/corpus/onnx/, made by fuzz/make_corpus.py) with
// bytes overwritten at random, a few hundred times each, reproducibly: every import ends in a
// graph that runs or in a fovea::Error, never a crash. (The libFuzzer target, fuzz_onnx, does
// the same without end; this keeps what it found from coming back.)
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

#include "fuzz_targets.h"

TEST_CASE("onnx import: seed models with random bytes overwritten import and run or give a fovea::Error") {
  std::mt19937 rng(20261207);
  int seeds = 0;
  for (const auto& file : std::filesystem::directory_iterator(std::string(FOVEA_FUZZ_DIR) + "/corpus/onnx")) {
    std::ifstream in(file.path(), std::ios::binary);
    const std::vector<char> seed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(!seed.empty());
    ++seeds;
    for (int i = 0; i < 300; ++i) {
      std::vector<char> bytes = seed;
      const int writes = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < writes; ++k) bytes[rng() % bytes.size()] = static_cast<char>(rng());
      CAPTURE(file.path().string());
      CAPTURE(i);
      CHECK_NOTHROW(fovea::fuzz::fuzz_onnx(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
    }
  }
  CHECK(seeds >= 5);
}
