// IDX files: the plain array format of MNIST and Fashion-MNIST (LeCun et al.).
//
// Layout, all integers big-endian:
//
//   byte 0, 1   zero
//   byte 2      element type: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64
//   byte 3      rank r
//   r × u32     the dims, outermost first
//   ...         the elements, row-major, big-endian
//
// Files may be gzip-compressed (the usual "*.gz" downloads): they are read through zlib, which
// reads uncompressed files transparently too, so the same call reads both.
//
// Every failure is a fovea::Error naming the file: a missing file, a bad magic number, a header
// or data section cut short, dims whose product is absurd. A corrupt header never makes the
// reader allocate more than the bytes actually present in the file. Bytes after the data are
// rejected: an IDX file has none, and extra bytes usually mean a header that lies about its dims.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fovea/core/tensor.h"

namespace fovea {

// The element types an IDX file can hold (the value is the type byte of the header).
enum class IdxType : std::uint8_t { u8 = 0x08, i8 = 0x09, i16 = 0x0B, i32 = 0x0C, f32 = 0x0D, f64 = 0x0E };

// Bytes per element of an IDX type.
std::size_t idx_type_size(IdxType type);
// "u8", "i8", "i16", "i32", "f32", "f64".
std::string idx_type_name(IdxType type);

// An IDX file as stored: its element type, dims and data bytes (still big-endian).
struct IdxFile {
  IdxType type = IdxType::u8;
  std::vector<std::int64_t> dims;
  std::vector<unsigned char> bytes;

  std::int64_t numel() const;
};

// Reads and checks an IDX file (gzip-compressed or not) without converting its data.
IdxFile read_idx_file(const std::string& path);

// Reads an IDX file into a tensor of the natural Fovea dtype: u8, i8, i16 and i32 give i32,
// f32 gives f32, f64 gives f64. The shape is the file's dims.
Tensor read_idx(const std::string& path);

}  // namespace fovea
