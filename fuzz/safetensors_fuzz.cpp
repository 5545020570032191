#include <set>

#include "fovea/io/checkpoint.h"
#include "fuzz_targets.h"
#include "memory_file.h"

namespace fovea::fuzz {

// Loads the bytes as a checkpoint; what loads must be what the header promised: unique names,
// dtypes Fovea holds, and sizes that add up to the data section.
int fuzz_safetensors(const std::uint8_t* data, std::size_t size) {
  const MemoryFile file(data, size);
  try {
    const LoadedTensors loaded = load_safetensors(file.path());
    std::set<std::string> names;
    std::size_t data_bytes = 0;
    for (const auto& [name, tensor] : loaded.tensors) {
      require(names.insert(name).second, "two tensors of one name");
      require(
          tensor.defined() && tensor.nbytes() == static_cast<std::size_t>(tensor.numel()) * dtype_size(tensor.dtype()),
          "a tensor's bytes disagree with its dtype and shape");
      data_bytes += tensor.nbytes();
    }
    require(data_bytes <= size, "more tensor bytes than file bytes");
    require(!loaded.metadata.contains("fovea.checksum"), "the checksum returned as metadata");
  } catch (const Error&) {
    // A clear refusal is a correct answer to bad bytes.
  }
  return 0;
}

}  // namespace fovea::fuzz
