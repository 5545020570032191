#include "fovea/io/idx.h"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>

#include <fmt/format.h>

namespace fovea {

namespace {

// More elements than this is not a dataset file but a corrupt header (2^31: 8 GiB of floats).
constexpr std::int64_t max_elements = std::int64_t{1} << 31;

[[noreturn]] void fail(const std::string& path, const std::string& message) {
  throw Error(fmt::format("read_idx: {}: {}", path, message));
}

struct GzClose {
  void operator()(gzFile_s* file) const { gzclose(file); }
};
using GzFile = std::unique_ptr<gzFile_s, GzClose>;

GzFile open(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) {
    const bool dataset_file = path.ends_with("-idx3-ubyte.gz") || path.ends_with("-idx1-ubyte.gz");
    fail(path, dataset_file ? "no such file (Fashion-MNIST: `apt-get install dataset-fashion-mnist` puts it in "
                              "/usr/share/datasets/fashion-mnist)"
                            : "no such file");
  }
  if (std::filesystem::is_directory(status)) fail(path, "is a directory, not an IDX file");
  errno = 0;
  GzFile file(gzopen(path.c_str(), "rb"));
  if (!file) fail(path, fmt::format("cannot open: {}", errno ? std::strerror(errno) : "out of memory"));
  gzbuffer(file.get(), 1 << 17);  // fewer, larger reads: the training images are 47 MB
  return file;
}

// Reads up to `count` bytes into `out`; returns how many were read (fewer only at the end of
// the data). A zlib error (a corrupt or cut-off gzip stream) throws.
std::size_t read_some(gzFile file, const std::string& path, unsigned char* out, std::size_t count) {
  std::size_t got = 0;
  while (got < count) {
    const unsigned want = static_cast<unsigned>(std::min<std::size_t>(count - got, 1u << 24));
    const int n = gzread(file, out + got, want);
    if (n < 0) {
      int code = 0;
      const char* message = gzerror(file, &code);
      fail(path, fmt::format("corrupt or truncated gzip data: {}", message ? message : "unknown zlib error"));
    }
    if (n == 0) {
      // zlib reports a gzip stream cut short only through gzerror after the read ends.
      int code = 0;
      const char* message = gzerror(file, &code);
      if (code != Z_OK && code != Z_STREAM_END)
        fail(path, fmt::format("corrupt or truncated gzip data: {}", message ? message : "unknown zlib error"));
      break;
    }
    got += static_cast<std::size_t>(n);
  }
  return got;
}

std::uint32_t big_endian_u32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

std::uint64_t big_endian_u64(const unsigned char* p) {
  return (std::uint64_t{big_endian_u32(p)} << 32) | big_endian_u32(p + 4);
}

bool known_type(unsigned char code) {
  return code == 0x08 || code == 0x09 || code == 0x0B || code == 0x0C || code == 0x0D || code == 0x0E;
}

}  // namespace

std::size_t idx_type_size(IdxType type) {
  switch (type) {
    case IdxType::u8:
      return 1;
    case IdxType::i8:
      return 1;
    case IdxType::i16:
      return 2;
    case IdxType::i32:
      return 4;
    case IdxType::f32:
      return 4;
    case IdxType::f64:
      return 8;
  }
  return 0;
}

std::string idx_type_name(IdxType type) {
  switch (type) {
    case IdxType::u8:
      return "u8";
    case IdxType::i8:
      return "i8";
    case IdxType::i16:
      return "i16";
    case IdxType::i32:
      return "i32";
    case IdxType::f32:
      return "f32";
    case IdxType::f64:
      return "f64";
  }
  return "?";
}

std::int64_t IdxFile::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : dims) n *= d;
  return n;
}

IdxFile read_idx_file(const std::string& path) {
  GzFile file = open(path);
  IdxFile idx;

  // The magic number: 00 00 <type> <rank>.
  unsigned char magic[4];
  const std::size_t magic_bytes = read_some(file.get(), path, magic, 4);
  if (magic_bytes < 4)
    fail(path, fmt::format("truncated header: the file holds {} bytes, an IDX header needs at least 4", magic_bytes));
  if (magic[0] != 0 || magic[1] != 0 || !known_type(magic[2]))
    fail(path, fmt::format("bad magic number {:02X} {:02X} {:02X} {:02X}: an IDX file starts with 00 00, then a "
                           "type byte (08, 09, 0B, 0C, 0D or 0E) and the rank; is this an IDX file?",
                           magic[0], magic[1], magic[2], magic[3]));
  idx.type = static_cast<IdxType>(magic[2]);
  const int rank = magic[3];

  // The dims, checking as we go that their product stays sane.
  std::vector<unsigned char> dim_bytes(static_cast<std::size_t>(rank) * 4);
  const std::size_t got_dims = read_some(file.get(), path, dim_bytes.data(), dim_bytes.size());
  if (got_dims < dim_bytes.size())
    fail(path,
         fmt::format("truncated header: rank {} needs {} bytes of dims, got {}", rank, dim_bytes.size(), got_dims));
  std::int64_t numel = 1;
  bool too_many = false;
  for (int axis = 0; axis < rank; ++axis) {
    const std::int64_t d = big_endian_u32(&dim_bytes[static_cast<std::size_t>(axis) * 4]);
    idx.dims.push_back(d);
    // numel <= 2^31 and d < 2^32, so the product fits in 64 bits before the check.
    if (!too_many) numel *= d;
    if (numel > max_elements) too_many = true;
  }
  if (too_many) {
    std::string dims;
    for (std::int64_t d : idx.dims) dims += fmt::format("{}{}", dims.empty() ? "" : ",", d);
    fail(path, fmt::format("absurd dims [{}]: more than 2^31 elements; the header is corrupt", dims));
  }

  // The data. The buffer grows with what is actually read, never with what the header claims.
  const std::size_t expected = static_cast<std::size_t>(numel) * idx_type_size(idx.type);
  std::size_t got = 0;
  constexpr std::size_t chunk = std::size_t{1} << 22;
  while (got < expected) {
    const std::size_t want = std::min(expected - got, chunk);
    idx.bytes.resize(got + want);
    const std::size_t n = read_some(file.get(), path, idx.bytes.data() + got, want);
    got += n;
    if (n < want) break;
  }
  idx.bytes.resize(got);
  if (got < expected)
    fail(path, fmt::format("truncated data: {} {} elements need {} bytes of data, got {}", numel,
                           idx_type_name(idx.type), expected, got));

  unsigned char extra = 0;
  if (read_some(file.get(), path, &extra, 1) != 0)
    fail(path, fmt::format("unexpected bytes after the {} bytes of data; the dims in the header are wrong", expected));
  return idx;
}

// Converts big-endian elements to the Fovea dtype: y[i] = decode(bytes[i*size .. (i+1)*size)).
Tensor read_idx(const std::string& path) {
  const IdxFile idx = read_idx_file(path);
  const Shape shape(idx.dims);
  const unsigned char* in = idx.bytes.data();
  const auto n = static_cast<std::size_t>(idx.numel());
  switch (idx.type) {
    case IdxType::u8: {
      Tensor t = Tensor::empty(i32, shape);
      auto out = t.data<std::int32_t>();
      for (std::size_t i = 0; i < n; ++i) out[i] = in[i];
      return t;
    }
    case IdxType::i8: {
      Tensor t = Tensor::empty(i32, shape);
      auto out = t.data<std::int32_t>();
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::int8_t>(in[i]);
      return t;
    }
    case IdxType::i16: {
      Tensor t = Tensor::empty(i32, shape);
      auto out = t.data<std::int32_t>();
      for (std::size_t i = 0; i < n; ++i)
        out[i] = static_cast<std::int16_t>(static_cast<std::uint16_t>((in[2 * i] << 8) | in[2 * i + 1]));
      return t;
    }
    case IdxType::i32: {
      Tensor t = Tensor::empty(i32, shape);
      auto out = t.data<std::int32_t>();
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::int32_t>(big_endian_u32(in + 4 * i));
      return t;
    }
    case IdxType::f32: {
      Tensor t = Tensor::empty(f32, shape);
      auto out = t.data<float>();
      for (std::size_t i = 0; i < n; ++i) out[i] = std::bit_cast<float>(big_endian_u32(in + 4 * i));
      return t;
    }
    case IdxType::f64: {
      Tensor t = Tensor::empty(f64, shape);
      auto out = t.data<double>();
      for (std::size_t i = 0; i < n; ++i) out[i] = std::bit_cast<double>(big_endian_u64(in + 8 * i));
      return t;
    }
  }
  fail(path, "unknown element type");
}

}  // namespace fovea
