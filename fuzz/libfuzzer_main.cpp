// The libFuzzer entry of one target; CMake compiles this file once per target with
// FOVEA_FUZZ_ENTRY naming its function in fuzz_targets.h.
#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fovea::fuzz::FOVEA_FUZZ_ENTRY(data, size);
}
