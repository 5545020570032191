// IDX files: round trips through gzip-compressed and plain files, and every way a file can be
// broken giving a fovea::Error that names the file.
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fovea/fovea.h>

#include "testing.h"

namespace {

using Bytes = std::vector<unsigned char>;

// A directory of its own for each test case (CTest runs cases side by side), removed at the end.
// A temporary directory of this file's tests (tests/testing.h).
struct TempDir : fovea::testing::TempDir {
  explicit TempDir(const std::string& tag) : fovea::testing::TempDir("idx-" + tag) {}
};

void put_u32(Bytes& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<unsigned char>(v >> shift));
}

// Header (00 00 type rank, big-endian dims) followed by `payload`.
Bytes idx_bytes(unsigned char type, const std::vector<std::uint32_t>& dims, const Bytes& payload) {
  Bytes out = {0, 0, type, static_cast<unsigned char>(dims.size())};
  for (std::uint32_t d : dims) put_u32(out, d);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

void write_plain(const std::string& path, const Bytes& bytes) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void write_gzip(const std::string& path, const Bytes& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  REQUIRE(file != nullptr);
  if (!bytes.empty())
    REQUIRE(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(file) == Z_OK);
}

Bytes read_plain(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

// Runs `f`, which must throw fovea::Error; returns its message.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const fovea::Error& e) {
    return e.what();
  }
  FAIL("no fovea::Error was thrown");
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("read_idx reads gzip-compressed u8 images into an i32 tensor of the file's dims") {
  TempDir dir("u8");
  Bytes payload;
  for (int i = 0; i < 2 * 3 * 4; ++i) payload.push_back(static_cast<unsigned char>(i * 11 % 256));
  const std::string path = dir.file("images-idx3-ubyte.gz");
  write_gzip(path, idx_bytes(0x08, {2, 3, 4}, payload));

  const fovea::Tensor t = fovea::read_idx(path);
  CHECK(t.dtype() == fovea::i32);
  CHECK(t.shape() == fovea::Shape{2, 3, 4});
  for (int i = 0; i < 24; ++i) CHECK(t.at(i) == payload[static_cast<std::size_t>(i)]);
}

TEST_CASE("read_idx decodes big-endian i8, i16, i32, f32 and f64 elements") {
  TempDir dir("types");
  SUBCASE("i8 -> i32") {
    write_gzip(dir.file("a.gz"), idx_bytes(0x09, {3}, {0x80, 0xFF, 0x7F}));
    const fovea::Tensor t = fovea::read_idx(dir.file("a.gz"));
    CHECK(t.dtype() == fovea::i32);
    CHECK(t.at(0) == -128);
    CHECK(t.at(1) == -1);
    CHECK(t.at(2) == 127);
  }
  SUBCASE("i16 -> i32") {
    write_gzip(dir.file("a.gz"), idx_bytes(0x0B, {2}, {0x80, 0x00, 0x01, 0x02}));
    const fovea::Tensor t = fovea::read_idx(dir.file("a.gz"));
    CHECK(t.dtype() == fovea::i32);
    CHECK(t.at(0) == -32768);
    CHECK(t.at(1) == 258);
  }
  SUBCASE("i32 -> i32") {
    write_gzip(dir.file("a.gz"), idx_bytes(0x0C, {1, 2}, {0xFF, 0xFF, 0xFF, 0xFE, 0x01, 0x02, 0x03, 0x04}));
    const fovea::Tensor t = fovea::read_idx(dir.file("a.gz"));
    CHECK(t.shape() == fovea::Shape{1, 2});
    CHECK(t.at(0) == -2);
    CHECK(t.at(1) == 0x01020304);
  }
  SUBCASE("f32 -> f32") {
    Bytes payload;
    for (float v : {-1.5f, 3.25f, 1e-20f}) put_u32(payload, std::bit_cast<std::uint32_t>(v));
    write_gzip(dir.file("a.gz"), idx_bytes(0x0D, {3}, payload));
    const fovea::Tensor t = fovea::read_idx(dir.file("a.gz"));
    CHECK(t.dtype() == fovea::f32);
    CHECK(t.at(0) == -1.5);
    CHECK(t.at(1) == 3.25);
    CHECK(t.at(2) == static_cast<double>(1e-20f));
  }
  SUBCASE("f64 -> f64") {
    Bytes payload;
    for (double v : {-0.1, 1e300}) {
      const auto bits = std::bit_cast<std::uint64_t>(v);
      put_u32(payload, static_cast<std::uint32_t>(bits >> 32));
      put_u32(payload, static_cast<std::uint32_t>(bits));
    }
    write_gzip(dir.file("a.gz"), idx_bytes(0x0E, {2}, payload));
    const fovea::Tensor t = fovea::read_idx(dir.file("a.gz"));
    CHECK(t.dtype() == fovea::f64);
    CHECK(t.at(0) == -0.1);
    CHECK(t.at(1) == 1e300);
  }
}

TEST_CASE("read_idx reads uncompressed IDX files, rank-0 files and files with a zero dim") {
  TempDir dir("plain");
  write_plain(dir.file("plain"), idx_bytes(0x08, {2, 2}, {1, 2, 3, 4}));
  const fovea::Tensor t = fovea::read_idx(dir.file("plain"));
  CHECK(t.shape() == fovea::Shape{2, 2});
  CHECK(t.at(3) == 4);

  write_plain(dir.file("scalar"), idx_bytes(0x08, {}, {42}));
  const fovea::Tensor s = fovea::read_idx(dir.file("scalar"));
  CHECK(s.rank() == 0);
  CHECK(s.item() == 42);

  write_gzip(dir.file("empty.gz"), idx_bytes(0x0D, {0, 28}, {}));
  CHECK(fovea::read_idx(dir.file("empty.gz")).shape() == fovea::Shape{0, 28});
}

TEST_CASE("read_idx_file keeps the raw type, dims and bytes") {
  TempDir dir("raw");
  write_gzip(dir.file("a.gz"), idx_bytes(0x0B, {1, 2}, {0x01, 0x02, 0x03, 0x04}));
  const fovea::IdxFile idx = fovea::read_idx_file(dir.file("a.gz"));
  CHECK(idx.type == fovea::IdxType::i16);
  CHECK(idx.dims == std::vector<std::int64_t>{1, 2});
  CHECK(idx.bytes == Bytes{0x01, 0x02, 0x03, 0x04});
  CHECK(fovea::idx_type_name(idx.type) == "i16");
  CHECK(fovea::idx_type_size(idx.type) == 2);
}

TEST_CASE("read_idx of a missing file or a directory names the path") {
  TempDir dir("missing");
  const std::string missing = dir.file("no-such-file.gz");
  const std::string message = error_of([&] { fovea::read_idx(missing); });
  CHECK(contains(message, missing));
  CHECK(contains(message, "no such file"));
  CHECK(contains(error_of([&] { fovea::read_idx(dir.path.string()); }), "directory"));
  // A missing dataset file comes with the command that installs the dataset.
  CHECK(contains(error_of([&] { fovea::read_idx(dir.file("train-images-idx3-ubyte.gz")); }),
                 "apt-get install dataset-fashion-mnist"));
}

TEST_CASE("read_idx rejects a bad magic number, naming the file") {
  TempDir dir("magic");
  const std::string path = dir.file("bad.gz");
  SUBCASE("nonzero leading bytes") { write_gzip(path, {0x1F, 0x00, 0x08, 0x01, 0, 0, 0, 1, 7}); }
  SUBCASE("unknown type byte") { write_gzip(path, {0x00, 0x00, 0x07, 0x01, 0, 0, 0, 1, 7}); }
  SUBCASE("a text file") { write_plain(path, {'h', 'e', 'l', 'l', 'o', '\n'}); }
  const std::string message = error_of([&] { fovea::read_idx(path); });
  CHECK(contains(message, path));
  CHECK(contains(message, "bad magic number"));
}

TEST_CASE("read_idx reports a file cut short at every point, naming the file") {
  TempDir dir("truncated");
  const Bytes whole = idx_bytes(0x0D, {2, 3}, Bytes(2 * 3 * 4, 0x3F));
  for (std::size_t length = 0; length < whole.size(); ++length) {
    CAPTURE(length);
    const Bytes cut(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(length));
    for (bool gzip : {false, true}) {
      const std::string path = dir.file(gzip ? "cut.gz" : "cut");
      if (gzip)
        write_gzip(path, cut);
      else
        write_plain(path, cut);
      const std::string message = error_of([&] { fovea::read_idx(path); });
      CHECK(contains(message, path));
      CHECK(contains(message, "truncated"));
      if (length >= 4 + 8) CHECK(contains(message, fmt::format("need 24 bytes of data, got {}", length - 12)));
    }
  }
}

TEST_CASE("read_idx reports a gzip stream cut short or corrupted") {
  TempDir dir("gzip");
  Bytes payload;
  for (int i = 0; i < 4000; ++i) payload.push_back(static_cast<unsigned char>(i * 7919 % 251));
  const std::string path = dir.file("a.gz");
  write_gzip(path, idx_bytes(0x08, {4000}, payload));
  const Bytes compressed = read_plain(path);
  REQUIRE(compressed.size() > 40);

  SUBCASE("cut in the middle of the stream") {
    write_plain(path,
                Bytes(compressed.begin(), compressed.begin() + static_cast<std::ptrdiff_t>(compressed.size() / 2)));
  }
  SUBCASE("cut inside the trailer") { write_plain(path, Bytes(compressed.begin(), compressed.end() - 3)); }
  SUBCASE("a flipped byte in the compressed data") {
    Bytes broken = compressed;
    broken[broken.size() / 2] ^= 0x55;
    write_plain(path, broken);
  }
  const std::string message = error_of([&] { fovea::read_idx(path); });
  CHECK(contains(message, path));
}

TEST_CASE("read_idx rejects absurd dims without allocating for them") {
  TempDir dir("absurd");
  const std::string path = dir.file("absurd.gz");
  SUBCASE("a product above 2^31 elements") {
    write_gzip(path, idx_bytes(0x08, {65536, 65536, 1}, {1, 2, 3}));
    const std::string message = error_of([&] { fovea::read_idx(path); });
    CHECK(contains(message, path));
    CHECK(contains(message, "absurd dims [65536,65536,1]"));
  }
  SUBCASE("a product that would overflow 64 bits") {
    write_gzip(path, idx_bytes(0x0E, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, {}));
    CHECK(contains(error_of([&] { fovea::read_idx(path); }), "absurd dims"));
  }
  SUBCASE("a header claiming 8 GiB of doubles in a tiny file") {
    // Reads what is there, then reports it: no 8 GiB allocation on the way (this finishes at once).
    write_gzip(path, idx_bytes(0x0E, {1u << 30}, {1, 2, 3, 4, 5}));
    const auto start = std::chrono::steady_clock::now();
    const std::string message = error_of([&] { fovea::read_idx(path); });
    CHECK(contains(message, "need 8589934592 bytes of data, got 5"));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
  }
  SUBCASE("a rank-255 header cut short") {
    write_gzip(path, {0, 0, 0x08, 255, 0, 0, 0, 1});
    CHECK(contains(error_of([&] { fovea::read_idx(path); }), "rank 255 needs 1020 bytes of dims, got 4"));
  }
}

TEST_CASE("read_idx rejects bytes after the data, since they mean the dims are wrong") {
  TempDir dir("trailing");
  const std::string path = dir.file("a.gz");
  write_gzip(path, idx_bytes(0x08, {2}, {1, 2, 3}));
  const std::string message = error_of([&] { fovea::read_idx(path); });
  CHECK(contains(message, path));
  CHECK(contains(message, "after the 2 bytes of data"));
}
