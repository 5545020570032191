#include "fovea/io/idx.h"
#include "fuzz_targets.h"
#include "memory_file.h"

namespace fovea::fuzz {

// Reads the bytes as an IDX file into a tensor of the file's dims.
int fuzz_idx(const std::uint8_t* data, std::size_t size) {
  const MemoryFile file(data, size);
  try {
    const IdxFile raw = read_idx_file(file.path());
    require(raw.bytes.size() == static_cast<std::size_t>(raw.numel()) * idx_type_size(raw.type),
            "the data size disagrees with the dims");
    const Tensor t = read_idx(file.path());
    require(t.shape().dims() == raw.dims, "the tensor's shape is not the file's dims");
  } catch (const Error&) {
    // A clear refusal is a correct answer to bad bytes.
  }
  return 0;
}

}  // namespace fovea::fuzz
