#include <algorithm>
#include <set>
#include <string>
#include <string_view>

#include "fovea/io/npy.h"
#include "fuzz_targets.h"

namespace fovea::fuzz {

namespace {

// What parses must hold together: bytes that agree with the dtype and shape, and the same tensor
// back after writing it out and parsing that again.
void check_tensor(const Tensor& t) {
  require(t.defined() && t.nbytes() == static_cast<std::size_t>(t.numel()) * dtype_size(t.dtype()),
          "a tensor's bytes disagree with its dtype and shape");
  const Tensor again = parse_npy(npy_bytes(t), "rewritten");
  require(again.dtype() == t.dtype() && again.shape() == t.shape() &&
              (t.nbytes() == 0 || std::equal(t.raw(), t.raw() + t.nbytes(), again.raw())),
          "writing a tensor and parsing it again changes it");
}

}  // namespace

// The bytes as a .npy file, then as a .npz archive, both parsed in memory.
int fuzz_npy(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    check_tensor(parse_npy(bytes, "fuzz.npy"));
  } catch (const Error&) {
    // A clear refusal is a correct answer to bad bytes.
  }
  try {
    std::set<std::string> names;
    for (const auto& [name, tensor] : parse_npz(bytes, "fuzz.npz")) {
      require(names.insert(name).second, "two arrays of one name");
      check_tensor(tensor);
    }
  } catch (const Error&) {
    // As above.
  }
  return 0;
}

}  // namespace fovea::fuzz
