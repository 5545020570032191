#include "fovea/io/npy.h"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "fovea/io/checkpoint.h"

namespace fovea {

// Both formats store little-endian data, copied byte for byte.
static_assert(std::endian::native == std::endian::little, "NumPy file I/O assumes a little-endian machine");

namespace {

[[noreturn]] void fail(std::string_view what, const std::string& message) {
  throw Error(fmt::format("{}: {}", what, message));
}

// At most 80 bytes of untrusted text, with anything but printable ASCII written as \xNN, so that a
// message stays short and readable whatever the file holds.
std::string quote(std::string_view text) {
  constexpr std::size_t limit = 80;
  std::string out;
  for (std::size_t i = 0; i < std::min(text.size(), limit); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7F)
      out += static_cast<char>(c);
    else
      out += fmt::format("\\x{:02x}", c);
  }
  if (text.size() > limit) out += fmt::format("... ({} bytes)", text.size());
  return out;
}

// Little-endian integers at `at`; the caller has checked that the bytes are there.
std::uint64_t little_endian(std::string_view bytes, std::size_t at, int width) {
  std::uint64_t value = 0;
  for (int i = width - 1; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(bytes[at + i]);
  return value;
}
std::uint16_t get_u16(std::string_view bytes, std::size_t at) {
  return static_cast<std::uint16_t>(little_endian(bytes, at, 2));
}
std::uint32_t get_u32(std::string_view bytes, std::size_t at) {
  return static_cast<std::uint32_t>(little_endian(bytes, at, 4));
}
std::uint64_t get_u64(std::string_view bytes, std::size_t at) { return little_endian(bytes, at, 8); }

void put(std::string& out, std::uint64_t value, int width) {
  for (int i = 0; i < width; ++i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
}
void put_u16(std::string& out, std::uint64_t value) { put(out, value, 2); }
void put_u32(std::string& out, std::uint64_t value) { put(out, value, 4); }

// zlib's CRC-32, fed in pieces because zlib takes a length as a 32-bit uInt.
std::uint32_t crc32_of(std::string_view bytes) {
  uLong crc = ::crc32(0, nullptr, 0);
  for (std::size_t at = 0; at < bytes.size();) {
    const auto chunk = static_cast<uInt>(std::min<std::size_t>(bytes.size() - at, std::size_t{1} << 30));
    crc = ::crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + at), chunk);
    at += chunk;
  }
  return static_cast<std::uint32_t>(crc);
}

// --- .npy -------------------------------------------------------------------------------------

constexpr std::string_view npy_magic = "\x93NUMPY";
constexpr std::size_t array_align = 64;    // numpy aligns the data to 64 bytes
constexpr std::size_t growth_digits = 21;  // numpy leaves room to rewrite the first dim in place
constexpr int max_rank = 64;               // numpy's own limit (NPY_MAXDIMS)

struct NpyCode {
  DType dtype;
  std::string_view code;  // the descr without its byte-order mark
};
constexpr NpyCode npy_codes[] = {{f32, "f4"}, {f64, "f8"}, {i32, "i4"}, {i64, "i8"}, {boolean, "b1"}, {f16, "f2"}};

DType dtype_from_descr(std::string_view descr, std::string_view what) {
  if (descr.size() >= 2) {
    const char order = descr[0];
    for (const NpyCode& entry : npy_codes) {
      if (descr.substr(1) != entry.code) continue;
      if (order == '>' && dtype_size(entry.dtype) > 1)
        fail(what, fmt::format("dtype '{}' is big-endian; Fovea reads little-endian data only (in NumPy: "
                               "a.astype('<{}'))",
                               descr, entry.code));
      if (order == '<' || order == '=' || order == '|' || order == '>') return entry.dtype;
    }
  }
  fail(what, fmt::format("dtype '{}' is not supported (Fovea reads <f2, <f4, <f8, <i4, <i8 and |b1)", quote(descr)));
}

std::string descr_of(DType dtype, std::string_view what) {
  if (dtype == boolean) return "|b1";
  for (const NpyCode& entry : npy_codes)
    if (entry.dtype == dtype) return fmt::format("<{}", entry.code);
  fail(what, fmt::format("{} has no NumPy dtype (convert to f32 first)", dtype_name(dtype)));
}

// Python's repr of a shape tuple: "()", "(5,)", "(2, 3)".
std::string shape_repr(const std::vector<std::int64_t>& dims) {
  if (dims.size() == 1) return fmt::format("({},)", dims[0]);
  return fmt::format("({})", fmt::join(dims, ", "));
}

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<std::int64_t> dims;
};

// The header dict, a Python literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// parsed by hand: the three keys once each and nothing else, strings in either quote, the
// booleans True and False, a tuple of non-negative integers (an old Python 2 file may write
// "3L"). Spaces may surround every token; the dict may end in a comma.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, std::string_view what) : text_(text), what_(what) {}

  NpyHeader parse() {
    NpyHeader header;
    std::set<std::string> seen;
    expect('{', "the header dict does not start with '{'");
    while (!accept('}')) {
      const std::string key = string_literal("a key");
      if (!seen.insert(key).second) fail(fmt::format("the key '{}' appears twice", quote(key)));
      expect(':', "a key is not followed by ':'");
      if (key == "descr") {
        if (peek() == '[') fail("structured dtypes (a list of fields) are not supported");
        header.descr = string_literal("the descr");
      } else if (key == "fortran_order") {
        header.fortran_order = boolean();
      } else if (key == "shape") {
        header.dims = tuple();
      } else {
        fail(fmt::format("unexpected key '{}' (a header holds descr, fortran_order and shape)", quote(key)));
      }
      if (!accept(',')) {
        expect('}', "an entry is followed by neither ',' nor '}'");
        break;
      }
    }
    skip_space();
    if (position_ != text_.size()) fail("bytes after the closing '}'");
    for (const char* key : {"descr", "fortran_order", "shape"})
      if (!seen.contains(key)) fail(fmt::format("the key '{}' is missing", key));
    return header;
  }

 private:
  [[noreturn]] void fail(const std::string& message) const {
    const std::size_t end = text_.find_last_not_of(" \n");  // the padding says nothing
    fovea::fail(what_, fmt::format("bad header {}: {}", quote(text_.substr(0, end + 1)), message));
  }

  void skip_space() {
    while (position_ < text_.size() && (text_[position_] == ' ' || text_[position_] == '\n' ||
                                        text_[position_] == '\t' || text_[position_] == '\r'))
      ++position_;
  }
  char peek() {
    skip_space();
    return position_ < text_.size() ? text_[position_] : '\0';
  }
  bool accept(char c) {
    if (peek() != c) return false;
    ++position_;
    return true;
  }
  void expect(char c, const char* message) {
    if (!accept(c)) fail(message);
  }

  std::string string_literal(const char* role) {
    const char quote_mark = peek();
    if (quote_mark != '\'' && quote_mark != '"') fail(fmt::format("{} is not a quoted string", role));
    const std::size_t end = text_.find(quote_mark, position_ + 1);
    if (end == std::string_view::npos) fail(fmt::format("{} is an unterminated string", role));
    const std::string_view body = text_.substr(position_ + 1, end - position_ - 1);
    if (body.find('\\') != std::string_view::npos) fail(fmt::format("{} holds an escape sequence", role));
    position_ = end + 1;
    return std::string(body);
  }

  bool boolean() {
    skip_space();
    for (const auto& [word, value] : {std::pair{std::string_view("True"), true}, {std::string_view("False"), false}})
      if (text_.substr(position_, word.size()) == word) {
        position_ += word.size();
        return value;
      }
    fail("fortran_order is neither True nor False");
  }

  std::vector<std::int64_t> tuple() {
    std::vector<std::int64_t> dims;
    expect('(', "the shape is not a tuple");
    while (!accept(')')) {
      dims.push_back(integer());
      if (dims.size() > max_rank) fail(fmt::format("the shape has more than {} dims", max_rank));
      if (!accept(',')) {
        expect(')', "a dim is followed by neither ',' nor ')'");
        break;
      }
    }
    return dims;
  }

  std::int64_t integer() {
    skip_space();
    constexpr std::int64_t max_dim = std::int64_t{1} << 62;
    std::int64_t value = 0;
    const std::size_t begin = position_;
    while (position_ < text_.size() && text_[position_] >= '0' && text_[position_] <= '9') {
      const int digit = text_[position_++] - '0';
      // Checked before multiplying, so that no digit string overflows the int64.
      if (value > (max_dim - digit) / 10) fail("a dim is absurdly large");
      value = value * 10 + digit;
    }
    if (position_ == begin) fail("a dim is not a non-negative integer");
    if (position_ < text_.size() && text_[position_] == 'L') ++position_;
    return value;
  }

  std::string_view text_;
  std::string_view what_;
  std::size_t position_ = 0;
};

// Copies column-major elements (the first index varying fastest) into row-major order.
void fortran_to_row_major(const std::byte* in, std::byte* out, const Shape& shape, std::size_t element_bytes) {
  const int rank = shape.rank();
  std::vector<std::int64_t> stride(static_cast<std::size_t>(rank), 1), index(static_cast<std::size_t>(rank), 0);
  for (int axis = rank - 2; axis >= 0; --axis) stride[axis] = stride[axis + 1] * shape[axis + 1];
  const std::int64_t n = shape.numel();
  std::int64_t offset = 0;  // row-major position of `index`
  for (std::int64_t k = 0; k < n; ++k) {
    std::memcpy(out + offset * element_bytes, in + k * element_bytes, element_bytes);
    for (int axis = 0; axis < rank; ++axis) {
      offset += stride[axis];
      if (++index[axis] < shape[axis]) break;
      offset -= stride[axis] * shape[axis];
      index[axis] = 0;
    }
  }
}

// The magic, the version and the header length; returns the header's text and where the data
// begins.
std::pair<std::string_view, std::size_t> npy_header_text(std::string_view bytes, std::string_view what) {
  if (!bytes.starts_with(npy_magic) && !npy_magic.starts_with(bytes))
    fail(what, fmt::format("bad magic {}: a .npy file starts with \\x93NUMPY; is this a NumPy file?",
                           quote(bytes.substr(0, 6))));
  if (bytes.size() < 10) fail(what, fmt::format("truncated: {} bytes, a .npy header needs at least 10", bytes.size()));
  const auto major = static_cast<unsigned char>(bytes[6]), minor = static_cast<unsigned char>(bytes[7]);
  if ((major != 1 && major != 2 && major != 3) || minor != 0)
    fail(what, fmt::format("format version {}.{} is not supported (Fovea reads 1.0, 2.0 and 3.0)", major, minor));
  const std::size_t prefix = major == 1 ? 10 : 12;
  if (bytes.size() < prefix)
    fail(what,
         fmt::format("truncated: {} bytes, a version {}.0 header needs at least {}", bytes.size(), major, prefix));
  const std::uint64_t length = major == 1 ? get_u16(bytes, 8) : get_u32(bytes, 8);
  if (length > bytes.size() - prefix)
    fail(what, fmt::format("truncated: the header claims {} bytes, the file holds {} after the prefix", length,
                           bytes.size() - prefix));
  return {bytes.substr(prefix, length), prefix + length};
}

Tensor parse_npy_as(std::string_view bytes, std::string_view what) {
  const auto [text, data_begin] = npy_header_text(bytes, what);
  const NpyHeader header = HeaderParser(text, what).parse();
  const DType dtype = dtype_from_descr(header.descr, what);
  Shape shape(header.dims);
  const std::optional<std::int64_t> needed = shape.checked_bytes(dtype_size(dtype));
  if (!needed) fail(what, fmt::format("shape {} is absurd", shape_repr(header.dims)));
  const std::string_view data = bytes.substr(data_begin);
  if (static_cast<std::uint64_t>(*needed) != data.size())
    fail(what, fmt::format("shape {} of '{}' needs {} bytes of data, the file holds {}{}", shape_repr(header.dims),
                           header.descr, *needed, data.size(),
                           data.size() < static_cast<std::uint64_t>(*needed) ? " (truncated?)" : ""));
  Tensor tensor = Tensor::empty(dtype, std::move(shape));
  const auto* in = reinterpret_cast<const std::byte*>(data.data());
  if (header.fortran_order && tensor.rank() > 1)
    fortran_to_row_major(in, tensor.raw(), tensor.shape(), dtype_size(dtype));
  else if (!data.empty())
    std::memcpy(tensor.raw(), in, data.size());
  if (dtype == boolean)
    for (std::uint8_t b : tensor.data<std::uint8_t>())
      if (b > 1) fail(what, fmt::format("a '|b1' element holds {}, not 0 or 1", b));
  return tensor;
}

std::string npy_bytes_as(const Tensor& tensor, std::string_view what) {
  if (!tensor.defined()) fail(what, "the tensor is undefined");
  if (tensor.device() != Device::cpu) fail(what, "the tensor is not in host memory");
  const std::vector<std::int64_t>& dims = tensor.shape().dims();
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
                                 descr_of(tensor.dtype(), what), shape_repr(dims));
  if (!dims.empty()) dict.append(growth_digits - fmt::formatted_size("{}", dims[0]), ' ');
  // numpy's padding: spaces then '\n' so that the data starts at a multiple of 64, always at least
  // one space; version 2.0 (a 4-byte length) only when the header outgrows 1.0's 2-byte length.
  const std::size_t with_newline = dict.size() + 1;
  std::size_t prefix = 10;
  std::size_t padding = array_align - (prefix + with_newline) % array_align;
  if (with_newline + padding > 0xFFFF) {
    prefix = 12;
    padding = array_align - (prefix + with_newline) % array_align;
  }
  std::string out(npy_magic);
  out += static_cast<char>(prefix == 10 ? 1 : 2);
  out += '\0';
  put(out, with_newline + padding, prefix == 10 ? 2 : 4);
  out += dict;
  out.append(padding, ' ');
  out += '\n';
  out.append(reinterpret_cast<const char*>(tensor.raw()), tensor.nbytes());
  return out;
}

std::string read_whole_file(const std::filesystem::path& path, std::string_view what) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) fail(what, "no such file");
  if (std::filesystem::is_directory(status)) fail(what, "is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(what, fmt::format("cannot open: {}", std::strerror(errno)));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail(what, "cannot read");
  return bytes;
}

void write_atomically(const std::filesystem::path& path, const std::string& bytes) {
  AtomicFile file(path.string());
  file.write(bytes);
  file.commit();
}

// --- .npz: zip archives ------------------------------------------------------------------------

// Record signatures and the fixed sizes of the records (PKWARE's APPNOTE.TXT).
constexpr std::uint32_t local_signature = 0x04034b50, central_signature = 0x02014b50;
constexpr std::uint32_t end_signature = 0x06054b50, zip64_end_signature = 0x06064b50;
constexpr std::uint32_t zip64_locator_signature = 0x07064b50;
constexpr std::size_t local_bytes = 30, central_bytes = 46, end_bytes = 22, zip64_locator_bytes = 20;
constexpr std::size_t zip64_end_bytes = 56;
constexpr std::uint32_t saturated32 = 0xFFFFFFFF;  // "see the zip64 field"
constexpr std::uint16_t method_stored = 0, method_deflated = 8;
constexpr std::uint16_t zip64_extra_id = 0x0001;
// Deflate cannot shrink data by more than about 1032 to 1; a member claiming more is corrupt,
// and this bound keeps a lying size from allocating more than the archive could ever inflate to.
constexpr std::uint64_t max_deflate_ratio = 1032;

struct Member {
  std::string name;  // as in the archive, "w.npy"
  std::uint16_t flags = 0, method = 0;
  std::uint32_t crc = 0;
  std::uint64_t compressed = 0, uncompressed = 0, offset = 0;
};

struct Directory {
  std::uint64_t entries = 0, size = 0, offset = 0;
};

// Reads the end of central directory record (the last one, searching back over a comment of up to
// 64 KiB) and, when the archive has one, the zip64 end record that supersedes its counts.
Directory find_directory(std::string_view zip, std::string_view what) {
  if (zip.size() < end_bytes) fail(what, fmt::format("not a zip archive: {} bytes", zip.size()));
  std::optional<std::size_t> end;
  const std::size_t lowest = zip.size() - end_bytes > 0xFFFF ? zip.size() - end_bytes - 0xFFFF : 0;
  for (std::size_t at = zip.size() - end_bytes + 1; at-- > lowest;)
    if (get_u32(zip, at) == end_signature) {
      end = at;
      break;
    }
  if (!end) fail(what, "not a zip archive: no end of central directory record (truncated?)");
  if (get_u16(zip, *end + 4) != 0 || get_u16(zip, *end + 6) != 0)
    fail(what, "multi-disk zip archives are not supported");
  Directory directory{get_u16(zip, *end + 10), get_u32(zip, *end + 12), get_u32(zip, *end + 16)};
  std::uint64_t directory_end = *end;
  if (*end >= zip64_locator_bytes && get_u32(zip, *end - zip64_locator_bytes) == zip64_locator_signature) {
    const std::uint64_t record = get_u64(zip, *end - zip64_locator_bytes + 8);
    if (record > *end - zip64_locator_bytes || *end - zip64_locator_bytes - record < zip64_end_bytes ||
        get_u32(zip, record) != zip64_end_signature)
      fail(what, "the zip64 end of central directory locator points to no zip64 end record");
    directory = Directory{get_u64(zip, record + 32), get_u64(zip, record + 40), get_u64(zip, record + 48)};
    directory_end = record;
  } else if (directory.size == saturated32 || directory.offset == saturated32) {
    fail(what, "the end of central directory record needs a zip64 record, and there is none");
  }
  if (directory.offset > directory_end || directory.size > directory_end - directory.offset)
    fail(what, fmt::format("the central directory ({} bytes at {}) lies outside the archive", directory.size,
                           directory.offset));
  if (directory.entries > directory.size / central_bytes)
    fail(what,
         fmt::format("{} entries cannot fit in a central directory of {} bytes", directory.entries, directory.size));
  return directory;
}

// The zip64 extended information field of a central directory entry: the 64-bit values of the
// fields that read 0xFFFFFFFF, in the order uncompressed size, compressed size, offset.
void read_zip64_extra(std::string_view extra, Member& member, std::uint32_t offset32, std::string_view what) {
  std::uint64_t* const fields[] = {&member.uncompressed, &member.compressed, &member.offset};
  const bool wanted[] = {member.uncompressed == saturated32, member.compressed == saturated32, offset32 == saturated32};
  for (std::size_t at = 0; at + 4 <= extra.size();) {
    const std::uint16_t id = get_u16(extra, at), size = get_u16(extra, at + 2);
    if (size > extra.size() - at - 4) fail(what, "an extra field runs past its entry");
    if (id == zip64_extra_id) {
      std::size_t field = at + 4;
      for (int k = 0; k < 3; ++k) {
        if (!wanted[k]) continue;
        if (field + 8 > at + 4 + size) fail(what, "the zip64 extra field is too short");
        *fields[k] = get_u64(extra, field);
        field += 8;
      }
      return;
    }
    at += 4 + size;
  }
  if (wanted[0] || wanted[1] || wanted[2]) fail(what, "sizes of 0xFFFFFFFF without a zip64 extra field");
}

std::vector<Member> read_directory(std::string_view zip, std::string_view what) {
  const Directory directory = find_directory(zip, what);
  const std::string_view listing = zip.substr(directory.offset, directory.size);
  std::vector<Member> members;
  std::size_t at = 0;
  for (std::uint64_t k = 0; k < directory.entries; ++k) {
    if (listing.size() - at < central_bytes || get_u32(listing, at) != central_signature)
      fail(what, fmt::format("central directory entry {} is damaged or missing", k));
    const std::size_t name_bytes = get_u16(listing, at + 28), extra_bytes = get_u16(listing, at + 30);
    const std::size_t comment_bytes = get_u16(listing, at + 32);
    if (listing.size() - at - central_bytes < name_bytes + extra_bytes + comment_bytes)
      fail(what, fmt::format("central directory entry {} runs past the directory", k));
    Member member;
    member.name = std::string(listing.substr(at + central_bytes, name_bytes));
    member.flags = get_u16(listing, at + 8);
    member.method = get_u16(listing, at + 10);
    member.crc = get_u32(listing, at + 16);
    member.compressed = get_u32(listing, at + 20);
    member.uncompressed = get_u32(listing, at + 24);
    const std::uint32_t offset32 = get_u32(listing, at + 42);
    member.offset = offset32;
    const std::string where = fmt::format("{}: member '{}'", what, quote(member.name));
    read_zip64_extra(listing.substr(at + central_bytes + name_bytes, extra_bytes), member, offset32, where);
    members.push_back(std::move(member));
    at += central_bytes + name_bytes + extra_bytes + comment_bytes;
  }
  return members;
}

// Inflates raw deflate data (no zlib or gzip wrapper) that must come to exactly `size` bytes.
std::string inflate_raw(std::string_view in, std::uint64_t size, std::string_view what) {
  if (size / max_deflate_ratio > in.size())
    fail(what, fmt::format("{} compressed bytes cannot inflate to the {} the directory claims", in.size(), size));
  std::string out(size, '\0');
  z_stream stream{};
  if (inflateInit2(&stream, -MAX_WBITS) != Z_OK) fail(what, "zlib cannot start inflating");
  std::size_t in_at = 0, out_at = 0;
  int status = Z_OK;
  constexpr std::size_t chunk = std::size_t{1} << 30;  // zlib counts in 32-bit uInt
  while (status == Z_OK) {
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + in_at));
    stream.avail_in = static_cast<uInt>(std::min(in.size() - in_at, chunk));
    stream.next_out = reinterpret_cast<Bytef*>(out.data() + out_at);
    stream.avail_out = static_cast<uInt>(std::min(out.size() - out_at, chunk));
    const uInt in_offered = stream.avail_in, out_offered = stream.avail_out;
    status = inflate(&stream, Z_NO_FLUSH);
    in_at += in_offered - stream.avail_in;
    out_at += out_offered - stream.avail_out;
  }
  inflateEnd(&stream);
  if (status == Z_BUF_ERROR && out_at == out.size())
    fail(what, fmt::format("the deflated data inflates to more than the {} bytes the directory claims", size));
  if (status == Z_BUF_ERROR) fail(what, "the deflated data is truncated");
  if (status != Z_STREAM_END) fail(what, "corrupt deflated data");
  if (out_at != out.size())
    fail(what, fmt::format("the deflated data inflates to {} bytes, the directory claims {}", out_at, size));
  return out;
}

// A member's bytes, as stored, after its local header.
std::string_view member_payload(std::string_view zip, const Member& member, std::string_view what) {
  if (member.offset > zip.size() || zip.size() - member.offset < local_bytes ||
      get_u32(zip, member.offset) != local_signature)
    fail(what, fmt::format("no local header at offset {}", member.offset));
  const std::uint64_t begin =
      member.offset + local_bytes + get_u16(zip, member.offset + 26) + get_u16(zip, member.offset + 28);
  if (begin > zip.size() || member.compressed > zip.size() - begin)
    fail(what, fmt::format("its {} bytes of data run past the end of the archive (truncated?)", member.compressed));
  return zip.substr(begin, member.compressed);
}

// One member's array: the bytes found, inflated where deflated, their CRC-32 checked.
Tensor read_member(std::string_view zip, const Member& member, std::string_view what) {
  if (member.flags & 1) fail(what, "the member is encrypted");
  const std::string_view payload = member_payload(zip, member, what);
  std::string inflated;
  std::string_view data = payload;
  if (member.method == method_deflated) {
    inflated = inflate_raw(payload, member.uncompressed, what);
    data = inflated;
  } else if (member.method != method_stored) {
    fail(what, fmt::format("compression method {} is not supported (Fovea reads stored and deflated members)",
                           member.method));
  } else if (member.compressed != member.uncompressed) {
    fail(what, fmt::format("a stored member of {} bytes claims to hold {}", member.compressed, member.uncompressed));
  }
  const std::uint32_t crc = crc32_of(data);
  if (crc != member.crc)
    fail(what, fmt::format("CRC-32 mismatch: the directory says {:08x}, the data gives {:08x}; the archive is "
                           "damaged",
                           member.crc, crc));
  return parse_npy_as(data, what);
}

NamedArrays parse_npz_as(std::string_view zip, std::string_view what) {
  NamedArrays arrays;
  std::set<std::string> names;
  for (const Member& member : read_directory(zip, what)) {
    const std::string where = fmt::format("{}: member '{}'", what, quote(member.name));
    if (!member.name.ends_with(".npy")) fail(where, "not a .npy member (an .npz holds <name>.npy members only)");
    std::string name = member.name.substr(0, member.name.size() - 4);
    if (!names.insert(name).second) fail(where, "a second member of this name");
    arrays.emplace_back(std::move(name), read_member(zip, member, where));
  }
  return arrays;
}

// Deflates `in` as raw deflate data (zlib's default level).
std::string deflate_raw(std::string_view in, std::string_view what) {
  z_stream stream{};
  if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    fail(what, "zlib cannot start deflating");
  std::string out(deflateBound(&stream, in.size()), '\0');
  std::size_t in_at = 0, out_at = 0;
  constexpr std::size_t chunk = std::size_t{1} << 30;  // zlib counts in 32-bit uInt
  int status = Z_OK;
  while (status == Z_OK) {
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + in_at));
    stream.avail_in = static_cast<uInt>(std::min(in.size() - in_at, chunk));
    stream.next_out = reinterpret_cast<Bytef*>(out.data() + out_at);
    stream.avail_out = static_cast<uInt>(std::min(out.size() - out_at, chunk));
    const uInt in_offered = stream.avail_in, out_offered = stream.avail_out;
    status = deflate(&stream, in_at + in_offered == in.size() ? Z_FINISH : Z_NO_FLUSH);
    in_at += in_offered - stream.avail_in;
    out_at += out_offered - stream.avail_out;
  }
  deflateEnd(&stream);
  if (status != Z_STREAM_END) fail(what, "zlib failed to deflate");
  out.resize(out_at);
  return out;
}

// The fields a local header and a central directory entry share, from "version needed" to the
// extra field's length. Times are fixed at 1980-01-01 00:00, the earliest a zip can hold.
void put_common_fields(std::string& out, std::uint16_t method, std::uint32_t crc, std::size_t compressed,
                       std::size_t uncompressed, const std::string& name) {
  const bool utf8 = std::any_of(name.begin(), name.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
  put_u16(out, 20);                   // version needed: 2.0
  put_u16(out, utf8 ? 1u << 11 : 0);  // flags: bit 11, the name is UTF-8
  put_u16(out, method);
  put_u16(out, 0);                        // time 00:00:00
  put_u16(out, (0 << 9) | (1 << 5) | 1);  // date 1980-01-01
  put_u32(out, crc);
  put_u32(out, compressed);
  put_u32(out, uncompressed);
  put_u16(out, name.size());
  put_u16(out, 0);  // no extra field
}

std::string npz_bytes_as(const NamedArrays& arrays, bool compress, std::string_view what) {
  std::string zip, directory;
  std::set<std::string> names;
  const std::uint16_t method = compress ? method_deflated : method_stored;
  for (const auto& [name, tensor] : arrays) {
    if (name.empty()) fail(what, "an array has an empty name");
    if (!names.insert(name).second) fail(what, fmt::format("two arrays are named '{}'", name));
    const std::string where = fmt::format("{}: array '{}'", what, name);
    const std::string member = name + ".npy";
    const std::string data = npy_bytes_as(tensor, where);
    const std::string payload = compress ? deflate_raw(data, where) : std::string();
    const std::string_view stored = compress ? std::string_view(payload) : std::string_view(data);
    if (member.size() > 0xFFFF) fail(where, "the name is too long for a zip archive");
    if (std::max(data.size(), stored.size()) >= saturated32 || zip.size() >= saturated32 || arrays.size() >= 0xFFFF)
      fail(where, "the archive would need zip64 fields, which Fovea does not write (4 GiB or 65535 members)");
    const std::uint32_t crc = crc32_of(data);
    put_u32(directory, central_signature);
    put_u16(directory, (3 << 8) | 20);  // made by: Unix, zip 2.0
    put_common_fields(directory, method, crc, stored.size(), data.size(), member);
    put_u16(directory, 0);            // comment length
    put_u16(directory, 0);            // disk number
    put_u16(directory, 0);            // internal attributes
    put_u32(directory, 0644u << 16);  // external attributes: a regular file, rw-r--r--
    put_u32(directory, zip.size());   // the local header's offset
    directory += member;
    put_u32(zip, local_signature);
    put_common_fields(zip, method, crc, stored.size(), data.size(), member);
    zip += member;
    zip += stored;
  }
  if (zip.size() >= saturated32 || directory.size() >= saturated32)
    fail(what, "the archive would need zip64 fields, which Fovea does not write (over 4 GiB)");
  const std::size_t directory_offset = zip.size();
  zip += directory;
  put_u32(zip, end_signature);
  put_u16(zip, 0);  // this disk
  put_u16(zip, 0);  // the directory's disk
  put_u16(zip, arrays.size());
  put_u16(zip, arrays.size());
  put_u32(zip, directory.size());
  put_u32(zip, directory_offset);
  put_u16(zip, 0);  // comment length
  return zip;
}

}  // namespace

Tensor parse_npy(std::string_view bytes, std::string_view what) { return parse_npy_as(bytes, what); }

std::string npy_bytes(const Tensor& tensor) { return npy_bytes_as(tensor, "npy_bytes"); }

Tensor read_npy(const std::filesystem::path& path) {
  const std::string what = fmt::format("read_npy: {}", path.string());
  return parse_npy_as(read_whole_file(path, what), what);
}

void write_npy(const std::filesystem::path& path, const Tensor& tensor) {
  write_atomically(path, npy_bytes_as(tensor, fmt::format("write_npy: {}", path.string())));
}

NamedArrays parse_npz(std::string_view bytes, std::string_view what) { return parse_npz_as(bytes, what); }

std::string npz_bytes(const NamedArrays& arrays, bool compress) { return npz_bytes_as(arrays, compress, "npz_bytes"); }

NamedArrays read_npz(const std::filesystem::path& path) {
  const std::string what = fmt::format("read_npz: {}", path.string());
  return parse_npz_as(read_whole_file(path, what), what);
}

void write_npz(const std::filesystem::path& path, const NamedArrays& arrays, bool compress) {
  write_atomically(path, npz_bytes_as(arrays, compress, fmt::format("write_npz: {}", path.string())));
}

}  // namespace fovea
