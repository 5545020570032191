// The fuzz entry points: one per loader of untrusted bytes. Each takes any bytes, hands them to
// the loader as a file, and returns 0 when the loader either succeeded (and what it returned
// holds together) or threw a fovea::Error. Anything else escapes: another exception, or a crash
// or sanitizer report. The same functions serve the libFuzzer targets (fuzz/libfuzzer_main.cpp,
// built with FOVEA_FUZZ=ON and clang) and the ordinary test suite, which replays every file of
// fuzz/corpus/<target>/ and fuzz/regressions/<target>/ through them (tests/io/fuzz_replay_test.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>

namespace fovea::fuzz {

// The bytes as a safetensors checkpoint: load_safetensors.
int fuzz_safetensors(const std::uint8_t* data, std::size_t size);

// The bytes as an IDX file, gzip-compressed or not: read_idx.
int fuzz_idx(const std::uint8_t* data, std::size_t size);

// The bytes as a .npy file (parse_npy), then as a .npz archive (parse_npz).
int fuzz_npy(const std::uint8_t* data, std::size_t size);

// The bytes as a text corpus: the first byte picks the context (1 to 16), the second the held-out
// fraction (n/256), the rest is the text; load_text_corpus.
int fuzz_text(const std::uint8_t* data, std::size_t size);

// The bytes as an ONNX model: onnx::import_model_bytes, then a run on zeros when it is small
// (built with the ONNX library only: FOVEA_WITH_ONNX).
int fuzz_onnx(const std::uint8_t* data, std::size_t size);

// A loader broke a promise it makes (an id out of range, a size that disagrees): not a
// fovea::Error, so the fuzzer and the replay test report it.
struct BrokenPromise : std::logic_error {
  using std::logic_error::logic_error;
};

inline void require(bool holds, const char* promise) {
  if (!holds) throw BrokenPromise(promise);
}

}  // namespace fovea::fuzz
