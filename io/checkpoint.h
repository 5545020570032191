// Checkpoints in the safetensors format (https://github.com/huggingface/safetensors), so that
// Python (safetensors, PyTorch, NumPy) reads what Fovea writes and the other way round.
//
// A safetensors file:
//
//   8 bytes      N, the header length, a little-endian u64
//   N bytes      a JSON object, padded with spaces to a multiple of 8:
//                  {"w": {"dtype": "F32", "shape": [784, 10], "data_offsets": [0, 31360]}, ...,
//                   "__metadata__": {"step": "1200"}}
//   the rest     the tensors' bytes, little-endian, row-major; data_offsets are [begin, end)
//                relative to the end of the header. Tensors tile the data without gaps.
//
// Fovea's dtypes map to "F32", "F64", "I32", "I64" and "BOOL". Writing is atomic: the file is
// written to a new temporary of a random name next to <path>, synced, then renamed over <path>,
// so a crash leaves either the old checkpoint or the new one, never half of one, and two
// processes saving to one path leave one whole file of the two. Reading checks every field and
// throws a fovea::Error naming the file (and the tensor) on anything wrong.
//
// Fovea writes a CRC-32 of the header and data as the first metadata entry,
// "fovea.checksum": "crc32:89abcdef", and checks it on load, so a flipped bit anywhere (a weight,
// an epoch number in the metadata) is an error rather than a silently different model. Files
// without the entry (from other tools) load unchecked; the entry is not returned as metadata.
//
// A graph's checkpoint holds every parameter under its scoped name ("mlp/l1/w"); optimizer
// state (moments, step counters) is made of parameters too, so it is saved with the weights.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "fovea/core/graph.h"
#include "fovea/core/tensor.h"

namespace fovea {

// Writes a file atomically: bytes go to a temporary "<path>.tmp-<pid>-<random>", created new
// (O_CREAT | O_EXCL | O_NOFOLLOW: never an existing file, never through a symlink) with the mode
// any new file gets; commit() syncs it to disk, renames it over `path` and syncs the directory.
// Destroyed without commit() (an exception on the way), it removes the temporary file and leaves
// `path` untouched. Concurrent writers to one path each have their own temporary; the last
// rename wins whole.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, std::size_t bytes);
  void write(const std::string& text) { write(text.data(), text.size()); }
  void commit();

 private:
  [[noreturn]] void fail(const std::string& what);

  std::string path_, temporary_;
  int fd_ = -1;
};

// Writes `text` to `path` through an AtomicFile.
void write_file_atomically(const std::string& path, const std::string& text);

// --- Tensor files -----------------------------------------------------------------------------

struct LoadedTensors {
  std::vector<std::pair<std::string, Tensor>> tensors;  // in the order of their data in the file
  std::map<std::string, std::string> metadata;
};

// Saves named tensors (names unique and non-empty, "__metadata__" reserved) and string metadata
// (the key "fovea.checksum" reserved), with the checksum.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Loads and checks a safetensors file: the header length against the file size, the JSON, each
// tensor's dtype (F32, F64, I32, I64, BOOL), shape and data_offsets (in range, of the size
// dtype × shape implies, neither overlapping nor leaving gaps), the JSON's nesting depth, and the
// checksum when the file has one. Error messages quote at most a few dozen bytes of the file.
LoadedTensors load_safetensors(const std::string& path);

// The safetensors dtype name of a Fovea dtype: f32 -> "F32", boolean -> "BOOL".
std::string safetensors_dtype_name(DType dtype);

// --- Graph checkpoints ------------------------------------------------------------------------

// Saves every persistent buffer of `g` (parameters and state such as optimizer moments) by its scoped name, with
// `metadata` (say, the epoch and step).
void save_checkpoint(const std::string& path, Graph& g, const std::map<std::string, std::string>& metadata = {});

// Loads a checkpoint into `g`'s parameters, copying into their existing buffers (compiled
// executables read those buffers in place). The names, dtypes and shapes must match exactly;
// if anything differs, throws one fovea::Error that lists every difference and changes nothing.
// Returns the file's metadata.
std::map<std::string, std::string> load_checkpoint(const std::string& path, Graph& g);

}  // namespace fovea
