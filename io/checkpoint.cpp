#include "fovea/io/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace fovea {

// safetensors stores little-endian data; tensors are copied byte for byte.
static_assert(std::endian::native == std::endian::little, "checkpoint I/O assumes a little-endian machine");

// --- AtomicFile -------------------------------------------------------------------------------

namespace {

// "<path>.tmp-<pid>-<16 random hex digits>": in the same directory as `path` (so the rename
// cannot cross file systems) and unpredictable, so that neither a second writer nor a planted
// file sits there. The pid tells apart processes forked with the same generator state.
std::string temporary_name(const std::string& path) {
  static thread_local std::mt19937_64 random((std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}());
  return fmt::format("{}.tmp-{}-{:016x}", path, static_cast<long>(::getpid()), random());
}

}  // namespace

// O_EXCL: the name must be new (a name that exists, a symlink included, is never opened);
// O_NOFOLLOW: never through a symlink. Mode 0666 less the umask, as any new file gets.
AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  constexpr int attempts = 64;
  for (int attempt = 0; attempt < attempts && fd_ < 0; ++attempt) {
    temporary_ = temporary_name(path_);
    fd_ = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd_ < 0 && errno != EEXIST && errno != ELOOP) fail("cannot create");
  }
  if (fd_ < 0) fail(fmt::format("found {} names taken in a row, the last", attempts));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(temporary_.c_str());
  }
}

void AtomicFile::fail(const std::string& what) {
  const std::string reason = std::strerror(errno);
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(temporary_.c_str());
    fd_ = -1;
  }
  throw Error(fmt::format("writing {}: {} {}: {}", path_, what, temporary_, reason));
}

void AtomicFile::write(const void* data, std::size_t bytes) {
  if (fd_ < 0) throw Error(fmt::format("writing {}: the file was already committed", path_));
  const auto* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd_, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("cannot write to");
    p += n;
    bytes -= static_cast<std::size_t>(n);
  }
}

void AtomicFile::commit() {
  if (fd_ < 0) throw Error(fmt::format("writing {}: the file was already committed", path_));
  if (::fsync(fd_) != 0) fail("cannot sync");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(temporary_.c_str());
    throw Error(fmt::format("writing {}: cannot close {}: {}", path_, temporary_, reason));
  }
  if (::rename(temporary_.c_str(), path_.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(temporary_.c_str());
    throw Error(fmt::format("writing {}: cannot rename {} to it: {}", path_, temporary_, reason));
  }
  // Make the rename itself durable (best effort: some file systems refuse to sync a directory).
  std::error_code ec;
  const std::string dir = std::filesystem::absolute(path_, ec).parent_path().string();
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

void write_file_atomically(const std::string& path, const std::string& text) {
  AtomicFile file(path);
  file.write(text);
  file.commit();
}

// --- dtypes -----------------------------------------------------------------------------------

std::string safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "F32";
    case DType::f64:
      return "F64";
    case DType::i32:
      return "I32";
    case DType::i64:
      return "I64";
    case DType::boolean:
      return "BOOL";
    case DType::bf16:
      return "BF16";
    case DType::f16:
      return "F16";
  }
  return "?";
}

namespace {

std::optional<DType> dtype_from_safetensors(const std::string& name) {
  for (DType t : {f32, f64, i32, i64, boolean})  // parameters and state are never half
    if (safetensors_dtype_name(t) == name) return t;
  return std::nullopt;
}

// The other dtypes of the format, which Fovea cannot hold.
bool other_safetensors_dtype(const std::string& name) {
  static const std::set<std::string> others = {"F16", "BF16", "F8_E4M3", "F8_E5M2", "I8",
                                               "U8",  "I16",  "U16",     "U32",     "U64"};
  return others.contains(name);
}

std::string type_string(DType dtype, const Shape& shape) {
  return fmt::format("{}{}", dtype_name(dtype), shape.to_string());
}

constexpr const char* metadata_key = "__metadata__";
// A header larger than this is not a checkpoint but a corrupt length (the reference
// implementation draws the same line).
constexpr std::uint64_t max_header_bytes = 100'000'000;
// A safetensors header nests three deep ({ "w": { "shape": [ ); deeper JSON is not a header, and
// values nested without bound would overflow the stack of whatever walks them recursively.
constexpr int max_header_depth = 16;
// Error messages quote at most this many bytes of anything read from a file.
constexpr std::size_t max_quoted_bytes = 80;

// The checksum Fovea writes: the first entry of the metadata, at a fixed place in the header,
//   {"__metadata__":{"fovea.checksum":"crc32:89abcdef", ...
// The CRC-32 (zlib's) covers the whole header as written, padding included, with the eight hex
// digits read as "00000000", then the data section. Any flipped bit in the header (a metadata
// value such as an epoch, a shape, an offset) or in the data changes it.
constexpr const char* checksum_key = "fovea.checksum";
constexpr const char* checksum_algorithm = "crc32:";
constexpr std::string_view checksum_prefix = R"({"__metadata__":{"fovea.checksum":"crc32:)";
constexpr std::size_t checksum_digits = 8;

std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t bytes) {
  const auto* p = static_cast<const Bytef*>(data);
  while (bytes > 0) {  // zlib takes the length as a 32-bit uInt
    const auto chunk = static_cast<uInt>(std::min<std::size_t>(bytes, std::size_t{1} << 30));
    crc = static_cast<std::uint32_t>(::crc32(crc, p, chunk));
    p += chunk;
    bytes -= chunk;
  }
  return crc;
}

// At most max_quoted_bytes of untrusted text, cut on a UTF-8 character boundary.
std::string quote(const std::string& text, std::size_t limit = max_quoted_bytes) {
  if (text.size() <= limit) return text;
  std::size_t cut = limit;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return fmt::format("{}... ({} bytes)", text.substr(0, cut), text.size());
}

// A JSON value from the file, as JSON, cut like quote(). The value is at most max_header_depth
// deep (checked before parsing), so dumping it cannot recurse deeply.
std::string quote(const nlohmann::json& value) {
  return quote(value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

// The deepest nesting of arrays and objects in JSON text, scanned without parsing (strings are
// skipped, escapes included), stopping as soon as it exceeds `limit`.
int json_depth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;  // the escaped character cannot end the string
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return deepest;
}

// True when `key` is one flipped bit away from the checksum key: a damaged key must not pass for
// a file without a checksum.
bool damaged_checksum_key(const std::string& key) {
  const std::string_view expected = checksum_key;
  if (key.size() != expected.size()) return false;
  int flipped = 0;
  for (std::size_t i = 0; i < key.size(); ++i)
    flipped += std::popcount(static_cast<unsigned>(static_cast<unsigned char>(key[i] ^ expected[i])));
  return flipped == 1;
}

}  // namespace

// --- Saving -----------------------------------------------------------------------------------

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Header: metadata first, then the tensors in the order given, their data back to back.
  // The checksum goes first with zeros for digits; they are filled in once the data is hashed.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  meta[checksum_key] = std::string(checksum_algorithm) + std::string(checksum_digits, '0');
  for (const auto& [key, value] : metadata) {
    if (key == checksum_key)
      throw Error(fmt::format("save_safetensors: {}: the metadata key '{}' is reserved for the checksum Fovea writes",
                              path, key));
    meta[key] = value;
  }
  header[metadata_key] = std::move(meta);
  std::set<std::string> seen;
  std::uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name.empty()) throw Error(fmt::format("save_safetensors: {}: a tensor has an empty name", path));
    if (name == metadata_key)
      throw Error(fmt::format("save_safetensors: {}: '{}' is reserved for the metadata", path, name));
    if (!seen.insert(name).second)
      throw Error(fmt::format("save_safetensors: {}: two tensors are named '{}'", path, name));
    if (!tensor.defined()) throw Error(fmt::format("save_safetensors: {}: tensor '{}' is undefined", path, name));
    if (tensor.device() != Device::cpu)
      throw Error(fmt::format("save_safetensors: {}: tensor '{}' is not in host memory", path, name));
    nlohmann::ordered_json entry;
    entry["dtype"] = safetensors_dtype_name(tensor.dtype());
    entry["shape"] = tensor.shape().dims();
    entry["data_offsets"] = {offset, offset + tensor.nbytes()};
    header[name] = std::move(entry);
    offset += tensor.nbytes();
  }

  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("save_safetensors: {}: cannot encode the header (names and metadata must be UTF-8): {}",
                            path, e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-byte aligned

  // CRC-32 of the header with zero digits, then of the data; the digits replace the zeros.
  if (!text.starts_with(checksum_prefix)) throw Error("save_safetensors: internal error: the checksum is misplaced");
  std::uint32_t crc = crc32_update(0, text.data(), text.size());
  for (const auto& [name, tensor] : tensors) crc = crc32_update(crc, tensor.raw(), tensor.nbytes());
  text.replace(checksum_prefix.size(), checksum_digits, fmt::format("{:08x}", crc));

  unsigned char length[8];
  std::uint64_t n = text.size();
  for (unsigned char& byte : length) {
    byte = static_cast<unsigned char>(n & 0xFF);
    n >>= 8;
  }
  AtomicFile file(path);
  file.write(length, sizeof length);
  file.write(text);
  for (const auto& [name, tensor] : tensors) file.write(tensor.raw(), tensor.nbytes());
  file.commit();
}

// --- Loading ----------------------------------------------------------------------------------

namespace {

// One tensor of the header, checked against the file but not read yet.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  std::uint64_t begin, end;
};

class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {}

  [[noreturn]] void fail(const std::string& message) const {
    throw Error(fmt::format("load_safetensors: {}: {}", path_, message));
  }
  [[noreturn]] void fail(const std::string& tensor, const std::string& message) const {
    fail(fmt::format("tensor '{}': {}", quote(tensor), message));
  }

  LoadedTensors read() {
    open();
    const nlohmann::json header = parse_header();
    LoadedTensors out;
    std::vector<Entry> entries;
    for (const auto& [key, value] : header.items()) {
      if (key == metadata_key)
        out.metadata = parse_metadata(value);
      else
        entries.push_back(parse_entry(key, value));
    }
    check_layout(entries);
    // In file order (check_layout sorted them), so the checksum sees the data section as stored.
    for (const Entry& e : entries) out.tensors.emplace_back(e.name, read_data(e));
    verify_checksum();
    return out;
  }

 private:
  void open() {
    std::error_code ec;
    const auto status = std::filesystem::status(path_, ec);
    if (!std::filesystem::exists(status)) fail("no such file");
    if (!std::filesystem::is_regular_file(status)) fail("not a regular file");
    file_size_ = std::filesystem::file_size(path_, ec);
    if (ec) fail(fmt::format("cannot read its size: {}", ec.message()));
    stream_.open(path_, std::ios::binary);
    if (!stream_) fail(fmt::format("cannot open: {}", std::strerror(errno)));
  }

  nlohmann::json parse_header() {
    if (file_size_ < 8)
      fail(
          fmt::format("truncated: {} bytes, but the header length alone takes 8; not a safetensors file?", file_size_));
    unsigned char length[8];
    stream_.read(reinterpret_cast<char*>(length), 8);
    if (!stream_) fail("cannot read the header length");
    header_bytes_ = 0;
    for (int i = 7; i >= 0; --i) header_bytes_ = (header_bytes_ << 8) | length[i];
    if (header_bytes_ > file_size_ - 8)
      fail(
          fmt::format("the header length {} is larger than the rest of the file ({} bytes): truncated or not a "
                      "safetensors file",
                      header_bytes_, file_size_ - 8));
    if (header_bytes_ > max_header_bytes)
      fail(fmt::format("the header length {} is absurd (more than {} bytes)", header_bytes_, max_header_bytes));
    std::string& text = header_text_;
    text.assign(header_bytes_, '\0');
    stream_.read(text.data(), static_cast<std::streamsize>(text.size()));
    if (!stream_) fail("cannot read the header");
    if (json_depth(text, max_header_depth) > max_header_depth)
      fail(fmt::format("the header nests arrays and objects more than {} deep; a safetensors header nests 3 deep",
                       max_header_depth));
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      fail(fmt::format("the header is not valid JSON: {}", quote(e.what(), 4 * max_quoted_bytes)));
    }
    if (!header.is_object()) fail("the header is not a JSON object");
    data_bytes_ = file_size_ - 8 - header_bytes_;
    return header;
  }

  // The metadata strings, less Fovea's checksum (kept aside for verify_checksum()).
  std::map<std::string, std::string> parse_metadata(const nlohmann::json& value) {
    if (!value.is_object()) fail("__metadata__ is not an object of strings");
    std::map<std::string, std::string> metadata;
    for (const auto& [key, item] : value.items()) {
      if (!item.is_string()) fail(fmt::format("__metadata__ entry '{}' is not a string", quote(key)));
      if (damaged_checksum_key(key))
        fail(fmt::format("__metadata__ entry '{}' is a damaged '{}': the file is corrupt", quote(key), checksum_key));
      if (key == checksum_key)
        parse_checksum(item.get<std::string>());
      else
        metadata[key] = item.get<std::string>();
    }
    return metadata;
  }

  // The checksum must be where save_safetensors writes it, "crc32:" and 8 lowercase hex digits.
  void parse_checksum(const std::string& value) {
    const std::size_t digits_at = checksum_prefix.size();
    const bool in_place = header_text_.starts_with(checksum_prefix) &&
                          header_text_.size() > digits_at + checksum_digits &&
                          header_text_[digits_at + checksum_digits] == '"';
    const std::string digits = in_place ? header_text_.substr(digits_at, checksum_digits) : "";
    const bool well_formed = in_place && value == checksum_algorithm + digits &&
                             std::all_of(digits.begin(), digits.end(),
                                         [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
    if (!well_formed)
      fail(
          fmt::format("the checksum entry \"{}\": \"{}\" is damaged or not where Fovea writes it (first in the "
                      "header, \"{}\" and 8 lowercase hex digits); the file is corrupt, or another tool edited it "
                      "(then remove the entry to load it unchecked)",
                      checksum_key, quote(value), checksum_algorithm));
    expected_checksum_ = static_cast<std::uint32_t>(std::stoul(digits, nullptr, 16));
    // The header as it was hashed: the digits read as zeros.
    std::string hashed = header_text_;
    hashed.replace(digits_at, checksum_digits, checksum_digits, '0');
    checksum_ = crc32_update(0, hashed.data(), hashed.size());
  }

  void verify_checksum() const {
    if (!expected_checksum_) return;  // a file from another tool
    if (checksum_ != *expected_checksum_)
      fail(
          fmt::format("checksum mismatch: the header says crc32 {:08x}, the contents give {:08x}; the file is "
                      "corrupt (a bit flipped on disk or in a copy?), its data and metadata cannot be trusted",
                      *expected_checksum_, checksum_));
  }

  Entry parse_entry(const std::string& name, const nlohmann::json& value) const {
    if (!value.is_object()) fail(name, "the entry is not an object with dtype, shape and data_offsets");
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!value.contains(field)) fail(name, fmt::format("the entry has no '{}'", field));

    const nlohmann::json& dtype = value["dtype"];
    if (!dtype.is_string()) fail(name, "dtype is not a string");
    const std::string dtype_text = dtype.get<std::string>();
    const std::optional<DType> type = dtype_from_safetensors(dtype_text);
    if (!type && other_safetensors_dtype(dtype_text))
      fail(name, fmt::format("dtype {} is not supported (Fovea holds F32, F64, I32, I64 and BOOL)", dtype_text));
    if (!type) fail(name, fmt::format("unknown dtype '{}'", quote(dtype_text)));

    const nlohmann::json& shape = value["shape"];
    if (!shape.is_array()) fail(name, "shape is not an array");
    const nlohmann::json& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
      fail(name, fmt::format("data_offsets {} is not a pair [begin, end] of byte offsets", quote(offsets)));
    const auto begin = offsets[0].get<std::uint64_t>(), end = offsets[1].get<std::uint64_t>();
    if (begin > end) fail(name, fmt::format("data_offsets [{}, {}] end before they begin", begin, end));
    if (end > data_bytes_)
      fail(name, fmt::format("data_offsets [{}, {}] run past the end of the data ({} bytes): truncated file?", begin,
                             end, data_bytes_));

    // Dims must keep every product representable (Shape multiplies them in int64).
    constexpr std::uint64_t max_product = std::uint64_t{1} << 62;
    std::vector<std::int64_t> dims;
    std::uint64_t product = 1;  // of the nonzero dims
    bool has_zero = false;
    for (const nlohmann::json& d : shape) {
      if (!d.is_number_unsigned()) fail(name, fmt::format("shape {} holds something other than sizes", quote(shape)));
      const auto size = d.get<std::uint64_t>();
      if (size == 0) {
        has_zero = true;
      } else {
        if (product > max_product / size) fail(name, fmt::format("shape {} is absurd", quote(shape)));
        product *= size;
      }
      dims.push_back(static_cast<std::int64_t>(size));
    }
    const std::uint64_t numel = has_zero ? 0 : product;
    const std::uint64_t span = end - begin;
    if (numel > span / dtype_size(*type) || numel * dtype_size(*type) != span)
      fail(name, fmt::format("data_offsets [{}, {}] span {} bytes, but {} {} takes {} elements of {} bytes", begin, end,
                             span, dtype_text, quote(shape), numel, dtype_size(*type)));
    return Entry{name, *type, Shape(dims), begin, end};
  }

  // The tensors must tile the data section exactly: no overlap, no gap, nothing after the last.
  void check_layout(std::vector<Entry>& entries) const {
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
    std::uint64_t position = 0;
    const Entry* previous = nullptr;
    for (const Entry& e : entries) {
      if (e.begin < position)
        fail(e.name, fmt::format("data_offsets [{}, {}] overlap those of tensor '{}' [{}, {}]", e.begin, e.end,
                                 quote(previous->name), previous->begin, previous->end));
      if (e.begin > position)
        fail(e.name, fmt::format("data_offsets [{}, {}] leave a gap of {} unused bytes before them", e.begin, e.end,
                                 e.begin - position));
      position = e.end;
      previous = &e;
    }
    if (position != data_bytes_)
      fail(fmt::format("{} bytes after the last tensor's data belong to no tensor", data_bytes_ - position));
  }

  Tensor read_data(const Entry& e) {
    Tensor t = Tensor::empty(e.dtype, e.shape);
    stream_.seekg(static_cast<std::streamoff>(8 + header_bytes_ + e.begin));
    stream_.read(reinterpret_cast<char*>(t.raw()), static_cast<std::streamsize>(t.nbytes()));
    if (!stream_) fail(e.name, "cannot read its data (was the file truncated while reading?)");
    if (expected_checksum_) checksum_ = crc32_update(checksum_, t.raw(), t.nbytes());
    if (e.dtype == boolean)
      for (std::uint8_t b : t.data<std::uint8_t>())
        if (b > 1) fail(e.name, fmt::format("a BOOL element holds {}, not 0 or 1", b));
    return t;
  }

  std::string path_;
  std::ifstream stream_;
  std::uint64_t file_size_ = 0, header_bytes_ = 0, data_bytes_ = 0;
  std::string header_text_;
  std::optional<std::uint32_t> expected_checksum_;  // from the metadata, when the file has one
  std::uint32_t checksum_ = 0;                      // of what was read so far
};

}  // namespace

LoadedTensors load_safetensors(const std::string& path) { return Reader(path).read(); }

// --- Graph checkpoints ------------------------------------------------------------------------

void save_checkpoint(const std::string& path, Graph& g, const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (Value p : g.persistent_values()) tensors.emplace_back(p.name(), g.parameter_value(p));
  save_safetensors(path, tensors, metadata);
}

std::map<std::string, std::string> load_checkpoint(const std::string& path, Graph& g) {
  LoadedTensors loaded = load_safetensors(path);

  // Compare everything first; copy only when nothing differs.
  std::map<std::string, const Tensor*> in_file;
  for (const auto& [name, tensor] : loaded.tensors) in_file[name] = &tensor;
  std::vector<std::string> differences;
  std::vector<std::pair<Tensor*, const Tensor*>> copies;
  std::set<std::string> matched;
  for (Value p : g.persistent_values()) {
    Tensor& target = g.parameter_value(p);
    auto it = in_file.find(p.name());
    if (it == in_file.end()) {
      differences.push_back(
          fmt::format("missing in the file: '{}' ({})", p.name(), type_string(target.dtype(), target.shape())));
      continue;
    }
    matched.insert(p.name());
    const Tensor& source = *it->second;
    if (source.dtype() != target.dtype() || source.shape() != target.shape())
      differences.push_back(fmt::format("'{}': the graph has {}, the file has {}", p.name(),
                                        type_string(target.dtype(), target.shape()),
                                        quote(type_string(source.dtype(), source.shape()))));
    else
      copies.emplace_back(&target, &source);
  }
  for (const auto& [name, tensor] : loaded.tensors)
    if (!matched.contains(name))
      differences.push_back(fmt::format("unexpected in the file: '{}' ({})", quote(name),
                                        quote(type_string(tensor.dtype(), tensor.shape()))));

  if (!differences.empty()) {
    std::string message = fmt::format(
        "load_checkpoint: {} does not match the parameters of graph '{}' ({} {}); "
        "nothing was loaded:",
        path, g.name(), differences.size(), differences.size() == 1 ? "difference" : "differences");
    constexpr std::size_t max_listed = 40;  // a file of a million stray tensors makes a short message
    for (std::size_t i = 0; i < std::min(differences.size(), max_listed); ++i)
      message += fmt::format("\n  - {}", differences[i]);
    if (differences.size() > max_listed) message += fmt::format("\n  ... and {} more", differences.size() - max_listed);
    throw Error(message);
  }
  // Into the existing buffers: compiled executables hold pointers to them.
  for (const auto& [target, source] : copies) std::memcpy(target->raw(), source->raw(), source->nbytes());
  return loaded.metadata;
}

}  // namespace fovea
