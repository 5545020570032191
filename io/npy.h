// NumPy's array files: ".npy" (one array) and ".npz" (a zip archive of named ".npy" members), so
// that arrays pass between Fovea and Python (numpy.save, numpy.load, numpy.savez) unchanged.
//
// A .npy file (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
//
//   6 bytes      the magic "\x93NUMPY"
//   2 bytes      the format version, major and minor: 1.0, 2.0 or 3.0
//   2 or 4 bytes N, the header length, little-endian: a u16 in version 1.0, a u32 in 2.0 and 3.0
//   N bytes      a Python dict literal, padded with spaces and ending in '\n':
//                  {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
//   the rest     the elements, row-major (or column-major when fortran_order is True)
//
// Dtypes: '<f4' f32, '<f8' f64, '<i4' i32, '<i8' i64, '|b1' boolean, '<f2' f16. The byte-order
// marks '=' (native) and '|' (not applicable) read as little-endian, which this machine is; '>'
// (big-endian) is refused, as is every other dtype (unsigned, complex, strings, records). bf16
// has no NumPy dtype: writing it is refused (convert to f32 first). Column-major files are read
// into row-major tensors. Fovea writes what numpy.save writes, byte for byte: version 1.0 (2.0
// for a header over 64 KiB), the keys sorted, the header padded so the data starts 64-byte aligned.
//
// A .npz file is a zip archive whose members are "<name>.npy". Reading goes through the central
// directory; members may be stored (method 0) or deflated (method 8, as numpy.savez_compressed
// writes), and each member's CRC-32 is checked. The zip64 fields that numpy writes (it forces
// them on every member) and large archives need are read. Writing makes stored members, or
// deflated ones with `compress`, each with its CRC-32, with no zip64 fields: an archive or member
// over 4 GiB is refused. Member timestamps are fixed (1980-01-01 00:00), so equal arrays give
// equal files.
//
// Every failure is a fovea::Error naming the file (and for a .npz the member): a truncated file,
// a bad magic string, a header that is no valid dict, a shape whose byte count disagrees with the
// data, a damaged zip structure, a CRC mismatch. A corrupt header never makes the reader allocate
// more than the data actually present (a deflated member at most the ratio deflate can reach).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fovea/core/tensor.h"

namespace fovea {

// Parses the bytes of a .npy file; `what` names them in error messages (a path, say).
Tensor parse_npy(std::string_view bytes, std::string_view what);

// The bytes of a .npy file holding `tensor` (a host tensor of any dtype but bf16).
std::string npy_bytes(const Tensor& tensor);

// Reads a .npy file.
Tensor read_npy(const std::filesystem::path& path);

// Writes a .npy file atomically (through an AtomicFile, io/checkpoint.h).
void write_npy(const std::filesystem::path& path, const Tensor& tensor);

// Named arrays in the order of the archive's central directory (the order they were written),
// each name without its ".npy". Names are unique.
using NamedArrays = std::vector<std::pair<std::string, Tensor>>;

// Parses the bytes of a .npz archive; `what` names them in error messages. Every member must be
// a "<name>.npy".
NamedArrays parse_npz(std::string_view bytes, std::string_view what);

// The bytes of a .npz archive of `arrays` (names unique and non-empty), stored or deflated.
std::string npz_bytes(const NamedArrays& arrays, bool compress = false);

// Reads a .npz file.
NamedArrays read_npz(const std::filesystem::path& path);

// Writes a .npz file atomically; `compress` deflates the members as numpy.savez_compressed does.
void write_npz(const std::filesystem::path& path, const NamedArrays& arrays, bool compress = false);

}  // namespace fovea
