// NumPy .npy and .npz files: byte-exact headers of what numpy.save writes, round trips of every
// dtype and of scalars and empty arrays, column-major files, stored and deflated archives (one of
// them written by numpy itself), and every way a file can be broken giving a fovea::Error that
// names the file and the member.
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fovea/fovea.h>

#include "testing.h"

namespace {

using namespace std::string_literals;

// A directory of its own for each test case (CTest runs cases side by side), removed at the end.
// A temporary directory of this file's tests (tests/testing.h).
struct TempDir : fovea::testing::TempDir {
  explicit TempDir(const std::string& tag) : fovea::testing::TempDir("npy-" + tag) {}
};

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

// A tensor whose bytes follow a pattern (booleans 0 and 1), so that round trips compare bytes.
fovea::Tensor patterned(fovea::DType dtype, fovea::Shape shape) {
  fovea::Tensor t = fovea::Tensor::empty(dtype, std::move(shape));
  for (std::size_t i = 0; i < t.nbytes(); ++i)
    t.raw()[i] = static_cast<std::byte>(dtype == fovea::boolean ? i % 2 : (i * 37 + 11) % 251);
  return t;
}

bool same(const fovea::Tensor& a, const fovea::Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// A .npy file with the given header dict, padded as numpy pads it (version 1.0), then `data`.
std::string npy_file(const std::string& dict, const std::string& data) {
  std::string header = dict;
  header.append(64 - (10 + header.size() + 1) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY\x01\x00"s;
  out += static_cast<char>(header.size() & 0xFF);
  out += static_cast<char>(header.size() >> 8);
  return out + header + data;
}

void put(std::string& out, std::uint64_t value, int width) {
  for (int i = 0; i < width; ++i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
}

std::string raw_deflate(const std::string& in) {
  z_stream stream{};
  REQUIRE(deflateInit2(&stream, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&stream, in.size()), '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  stream.avail_in = static_cast<uInt>(in.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&stream, Z_FINISH) == Z_STREAM_END);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

struct ZipMember {
  std::string name, data;
  bool deflate = false;
  bool zip64 = false;  // sizes and offset in a zip64 extra field of the central directory
};

// A zip archive assembled field by field, independently of Fovea's writer.
std::string zip_archive(const std::vector<ZipMember>& members) {
  std::string zip, directory;
  for (const ZipMember& m : members) {
    const std::string stored = m.deflate ? raw_deflate(m.data) : m.data;
    const auto crc = static_cast<std::uint32_t>(
        crc32(0, reinterpret_cast<const Bytef*>(m.data.data()), static_cast<uInt>(m.data.size())));
    const std::size_t offset = zip.size();
    put(zip, 0x04034b50, 4);
    put(zip, 20, 2);
    put(zip, 0, 2);
    put(zip, m.deflate ? 8 : 0, 2);
    put(zip, 0, 4);
    put(zip, crc, 4);
    put(zip, stored.size(), 4);
    put(zip, m.data.size(), 4);
    put(zip, m.name.size(), 2);
    put(zip, 0, 2);
    zip += m.name + stored;
    put(directory, 0x02014b50, 4);
    put(directory, 20, 2);
    put(directory, m.zip64 ? 45 : 20, 2);
    put(directory, 0, 2);
    put(directory, m.deflate ? 8 : 0, 2);
    put(directory, 0, 4);
    put(directory, crc, 4);
    put(directory, m.zip64 ? 0xFFFFFFFF : stored.size(), 4);
    put(directory, m.zip64 ? 0xFFFFFFFF : m.data.size(), 4);
    put(directory, m.name.size(), 2);
    put(directory, m.zip64 ? 28 : 0, 2);
    put(directory, 0, 6);  // comment length, disk, internal attributes
    put(directory, 0, 4);  // external attributes
    put(directory, m.zip64 ? 0xFFFFFFFF : offset, 4);
    directory += m.name;
    if (m.zip64) {
      put(directory, 1, 2);
      put(directory, 24, 2);
      put(directory, m.data.size(), 8);
      put(directory, stored.size(), 8);
      put(directory, offset, 8);
    }
  }
  const std::size_t directory_offset = zip.size();
  zip += directory;
  put(zip, 0x06054b50, 4);
  put(zip, 0, 4);
  put(zip, members.size(), 2);
  put(zip, members.size(), 2);
  put(zip, directory.size(), 4);
  put(zip, directory_offset, 4);
  put(zip, 0, 2);
  return zip;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

const std::string dict_2x3_f32 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";

}  // namespace

TEST_CASE("npy_bytes writes what numpy.save writes for np.arange(6, dtype='<f4').reshape(2, 3)") {
  const fovea::Tensor t = fovea::Tensor::from<float>({0, 1, 2, 3, 4, 5}, {2, 3});
  // numpy 2.4: the dict, 20 spaces of room to grow the first dim, padding to 128 bytes in all.
  std::string expected = "\x93NUMPY\x01\x00\x76\x00"s + dict_2x3_f32;
  expected.append(117 - dict_2x3_f32.size(), ' ');
  expected += '\n';
  for (float v : {0.f, 1.f, 2.f, 3.f, 4.f, 5.f}) expected.append(reinterpret_cast<const char*>(&v), 4);
  const std::string bytes = fovea::npy_bytes(t);
  CHECK(bytes.size() == 128 + 24);
  CHECK(bytes == expected);
  CHECK(same(fovea::parse_npy(bytes, "arange"), t));
}

TEST_CASE("npy_bytes writes numpy's header for scalars, 1-d arrays and booleans") {
  const std::string scalar = fovea::npy_bytes(fovea::Tensor::scalar(2.5));
  const std::string dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (), }";
  CHECK(scalar.substr(0, 128) == "\x93NUMPY\x01\x00\x76\x00"s + dict + std::string(117 - dict.size(), ' ') + "\n");
  CHECK(scalar.size() == 136);
  const std::string flags = fovea::npy_bytes(fovea::Tensor::from<std::uint8_t>({1, 0, 1}, {3}));
  CHECK(contains(flags.substr(0, 128), "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }"));
  CHECK(flags.size() == 131);
  CHECK(contains(fovea::npy_bytes(patterned(fovea::f16, {4})), "'descr': '<f2'"));
}

TEST_CASE("npy round trips every dtype through bytes and files: scalars, empty, size-1 and larger shapes") {
  const TempDir dir("roundtrip");
  const std::vector<fovea::Shape> shapes = {{}, {0}, {1}, {1, 1, 1}, {7}, {2, 3}, {3, 0, 2}, {2, 3, 4, 5}};
  for (fovea::DType dtype : {fovea::f32, fovea::f64, fovea::i32, fovea::i64, fovea::boolean, fovea::f16}) {
    for (const fovea::Shape& shape : shapes) {
      CAPTURE(fovea::dtype_name(dtype));
      CAPTURE(shape.to_string());
      const fovea::Tensor t = patterned(dtype, shape);
      const std::string bytes = fovea::npy_bytes(t);
      CHECK(bytes.find('\n') % 64 == 63);  // the data starts 64-byte aligned
      CHECK(same(fovea::parse_npy(bytes, "memory"), t));
      const auto path = dir.file("a.npy");
      fovea::write_npy(path, t);
      CHECK(same(fovea::read_npy(path), t));
    }
  }
}

TEST_CASE("read_npy reads column-major files into row-major tensors") {
  // numpy.save(np.asfortranarray(np.arange(6, dtype='<i8').reshape(2, 3))), byte for byte.
  std::string file = "\x93NUMPY\x01\x00\x76\x00{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3), }"s;
  file.append(128 - file.size() - 1, ' ');
  file += '\n';
  for (std::int64_t v : {0, 3, 1, 4, 2, 5}) file.append(reinterpret_cast<const char*>(&v), 8);
  const fovea::Tensor t = fovea::parse_npy(file, "fortran");
  CHECK(same(t, fovea::Tensor::from<std::int64_t>({0, 1, 2, 3, 4, 5}, {2, 3})));

  // Rank 3: element [i, j, k] sits at i + 2 j + 6 k in column-major order.
  std::vector<float> column_major(24), row_major(24);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) {
        const float v = static_cast<float>(100 * i + 10 * j + k);
        column_major[static_cast<std::size_t>(i + 2 * j + 6 * k)] = v;
        row_major[static_cast<std::size_t>(12 * i + 4 * j + k)] = v;
      }
  const std::string data(reinterpret_cast<const char*>(column_major.data()), 96);
  const fovea::Tensor cube =
      fovea::parse_npy(npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 4), }", data), "cube");
  CHECK(same(cube, fovea::Tensor::from<float>(row_major, {2, 3, 4})));
  const fovea::Tensor empty =
      fovea::parse_npy(npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 0), }", ""), "empty");
  CHECK(empty.shape() == fovea::Shape{2, 0});
}

TEST_CASE("parse_npy accepts header versions 2.0 and 3.0 and the dict spellings Python allows") {
  const std::string data(24, '\0');
  std::string v2 = "\x93NUMPY\x02\x00"s;
  const std::string header = dict_2x3_f32 + std::string(128 - 12 - dict_2x3_f32.size() - 1, ' ') + "\n";
  put(v2, header.size(), 4);
  v2 += header + data;
  CHECK(fovea::parse_npy(v2, "v2").shape() == fovea::Shape{2, 3});
  std::string v3 = v2;
  v3[6] = 3;
  CHECK(fovea::parse_npy(v3, "v3").shape() == fovea::Shape{2, 3});
  for (const std::string dict : {"{\"shape\": (2,3), \"descr\": \"=f4\", \"fortran_order\": False}",
                                 "{ 'descr' : '<f4' , 'fortran_order' : False , 'shape' : ( 2L , 3L , ) , }",
                                 "{'descr':'|f4','fortran_order':False,'shape':(2,3)}"}) {
    CAPTURE(dict);
    CHECK(fovea::parse_npy(npy_file(dict, data), "variant").shape() == fovea::Shape{2, 3});
  }
  CHECK(fovea::parse_npy(npy_file("{'descr': '>b1', 'fortran_order': False, 'shape': (1,), }", "\1"s), "b").dtype() ==
        fovea::boolean);
}

TEST_CASE("parse_npy refuses unsupported dtypes, naming the file and the dtype") {
  const std::string data(8, '\0');
  const auto with_descr = [&](const std::string& descr) {
    return npy_file("{'descr': " + descr + ", 'fortran_order': False, 'shape': (2,), }", data);
  };
  const std::string big = error_of([&] { fovea::parse_npy(with_descr("'>f4'"), "big.npy"); });
  CHECK(contains(big, "big.npy"));
  CHECK(contains(big, "big-endian"));
  for (const char* descr : {"'|u1'", "'<u4'", "'<c8'", "'<i2'", "'O'", "'<U1'", "''"}) {
    CAPTURE(descr);
    const std::string message = error_of([&] { fovea::parse_npy(with_descr(descr), "odd.npy"); });
    CHECK(contains(message, "odd.npy"));
    CHECK(contains(message, "not supported"));
  }
  CHECK(contains(error_of([&] { fovea::parse_npy(with_descr("[('a', '<f4')]"), "rec.npy"); }), "structured"));
  CHECK(contains(error_of([] { fovea::npy_bytes(patterned(fovea::bf16, {2})); }), "bf16 has no NumPy dtype"));
  const TempDir dir("bf16");
  CHECK(contains(error_of([&] { fovea::write_npy(dir.file("h.npy"), patterned(fovea::bf16, {2})); }), "h.npy"));
  CHECK(!std::filesystem::exists(dir.file("h.npy")));
}

TEST_CASE("parse_npy refuses malformed files with a fovea::Error naming them") {
  const std::string data(24, '\0');
  const std::string good = npy_file(dict_2x3_f32, data);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"PK\3\4" + good.substr(4), "bad magic"},
      {good.substr(0, 9), "truncated"},
      {good.substr(0, 100), "truncated"},
      {good.substr(0, good.size() - 1), "needs 24 bytes"},
      {good + "x", "needs 24 bytes"},
      {"\x93NUMPY\x04\x00"s + good.substr(8), "version 4.0"},
      {npy_file("{'descr': '<f4', 'fortran_order': False}", data), "'shape' is missing"},
      {npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", data), "unexpected key"},
      {npy_file("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (6,)}", data), "twice"},
      {npy_file("{'descr': '<f4', 'fortran_order': 0, 'shape': (6,)}", data), "neither True nor False"},
      {npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (-6,)}", data), "not a non-negative integer"},
      {npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (6,) x", data), "neither ',' nor '}'"},
      {npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (6,)} x", data), "after the closing"},
      {npy_file("{'descr: '<f4', 'fortran_order': False, 'shape': (6,)}", data), "bad header"},
      {npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4)}", data), "absurd"},
      {npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", data), "absurd"},
      {npy_file("{'descr': '|b1', 'fortran_order': False, 'shape': (2,)}", "\1\2"s), "not 0 or 1"},
  };
  for (const auto& [bytes, reason] : cases) {
    CAPTURE(reason);
    const std::string message = error_of([&] { fovea::parse_npy(bytes, "bad.npy"); });
    CHECK(contains(message, "bad.npy"));
    CHECK(contains(message, reason));
  }
  std::string rank65 = "(";
  for (int i = 0; i < 65; ++i) rank65 += "1,";
  CHECK(contains(error_of([&] {
                   fovea::parse_npy(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': " + rank65 + ")}",
                                             std::string(4, '\0')),
                                    "deep.npy");
                 }),
                 "more than 64 dims"));
  // Every prefix of a good file is refused, never read past.
  for (std::size_t cut = 0; cut < good.size(); ++cut)
    CHECK_THROWS_AS(fovea::parse_npy(good.substr(0, cut), "cut"), fovea::Error);
}

TEST_CASE("read_npy of a missing file or a directory names the path") {
  const TempDir dir("missing");
  CHECK(contains(error_of([&] { fovea::read_npy(dir.file("none.npy")); }), "none.npy: no such file"));
  CHECK(contains(error_of([&] { fovea::read_npy(dir.path); }), "is a directory"));
  CHECK(contains(error_of([&] { fovea::read_npz(dir.file("none.npz")); }), "read_npz"));
}

TEST_CASE("read_npz reads an archive numpy.savez wrote, zip64 local headers included") {
  // numpy 2.4: np.savez(f, a=np.arange(3, dtype='<i4')); numpy forces a zip64 extra field into
  // every local header.
  const std::string archive = from_hex(
      "504b03042d00000000000000210002ecbda9ffffffffffffffff05001400612e6e7079010010008c000000000000008c00000000000000"
      "934e554d5059010076007b276465736372273a20273c6934272c2027666f727472616e5f6f72646572273a2046616c73652c2027736861"
      "7065273a2028332c292c207d20202020202020202020202020202020202020202020202020202020202020202020202020202020202020"
      "20202020202020202020202020202020200a000000000100000002000000504b01022d032d00000000000000210002ecbda98c0000008c"
      "000000050000000000000000000000800100000000612e6e7079504b0506000000000100010033000000c30000000000");
  REQUIRE(archive.size() == 268);
  const fovea::NamedArrays arrays = fovea::parse_npz(archive, "numpy.npz");
  REQUIRE(arrays.size() == 1);
  CHECK(arrays[0].first == "a");
  CHECK(same(arrays[0].second, fovea::Tensor::from<std::int32_t>({0, 1, 2}, {3})));
}

TEST_CASE("npz round trips stored and deflated archives in order, through bytes and files") {
  const TempDir dir("npz");
  const fovea::NamedArrays arrays = {{"weights", patterned(fovea::f32, {3, 4})},
                                     {"bias", patterned(fovea::f64, {4})},
                                     {"step", fovea::Tensor::scalar<std::int64_t>(1200)},
                                     {"mask", patterned(fovea::boolean, {5})},
                                     {"empty", patterned(fovea::i32, {0, 3})},
                                     {"half/x", patterned(fovea::f16, {2, 2})}};
  for (bool compress : {false, true}) {
    CAPTURE(compress);
    const auto path = dir.file(compress ? "c.npz" : "s.npz");
    fovea::write_npz(path, arrays, compress);
    for (const fovea::NamedArrays& back :
         {fovea::read_npz(path), fovea::parse_npz(fovea::npz_bytes(arrays, compress), "m")}) {
      REQUIRE(back.size() == arrays.size());
      for (std::size_t i = 0; i < arrays.size(); ++i) {
        CHECK(back[i].first == arrays[i].first);
        CHECK(same(back[i].second, arrays[i].second));
      }
    }
  }
  const fovea::NamedArrays zeros = {{"z", fovea::Tensor::zeros(fovea::f32, {1000})}};
  CHECK(fovea::npz_bytes(zeros, true).size() < fovea::npz_bytes(zeros, false).size() / 4);
  CHECK(fovea::parse_npz(fovea::npz_bytes({}), "none").empty());
  CHECK(contains(error_of([&] {
                   fovea::write_npz(dir.file("d.npz"), {{"a", zeros[0].second}, {"a", zeros[0].second}});
                 }),
                 "two arrays are named 'a'"));
  CHECK(contains(error_of([&] { fovea::npz_bytes({{"", zeros[0].second}}); }), "empty name"));
}

TEST_CASE("read_npz reads deflated members and zip64 directory fields written by another zip writer") {
  const fovea::Tensor a = patterned(fovea::f32, {8, 8});
  const fovea::Tensor b = fovea::Tensor::zeros(fovea::i64, {300});
  const std::string archive = zip_archive({{"a.npy", fovea::npy_bytes(a), true, false},
                                           {"b.npy", fovea::npy_bytes(b), true, true},
                                           {"c.npy", fovea::npy_bytes(a), false, true}});
  const fovea::NamedArrays arrays = fovea::parse_npz(archive, "zlib.npz");
  REQUIRE(arrays.size() == 3);
  CHECK(arrays[0].first == "a");
  CHECK(same(arrays[0].second, a));
  CHECK(same(arrays[1].second, b));
  CHECK(same(arrays[2].second, a));
}

TEST_CASE("read_npz refuses damaged archives, naming the file and the member") {
  const std::string member = fovea::npy_bytes(patterned(fovea::f32, {4}));
  const std::string stored = zip_archive({{"w.npy", member}});
  std::string flipped = stored;
  flipped[30 + 5 + 130] ^= 1;  // a data byte of the member
  const std::string deflated = zip_archive({{"w.npy", member, true}});
  std::string bad_method = stored;
  bad_method[stored.size() - 22 - 51 + 10] = 12;  // the central directory's method: bzip2
  const std::vector<std::pair<std::string, std::string>> cases = {
      {flipped, "CRC-32 mismatch"},
      {bad_method, "compression method 12"},
      {zip_archive({{"w.txt", member}}), "not a .npy member"},
      {zip_archive({{"w.npy", member}, {"w.npy", member}}), "a second member"},
      {zip_archive({{"w.npy", "not an array"}}), "bad magic"},
      {stored.substr(0, stored.size() - 1), "no end of central directory"},
      {"PK", "not a zip archive"},
      {stored.substr(40), "outside the archive"},
  };
  for (const auto& [bytes, reason] : cases) {
    CAPTURE(reason);
    const std::string message = error_of([&] { fovea::parse_npz(bytes, "bad.npz"); });
    CHECK(contains(message, "bad.npz"));
    CHECK(contains(message, reason));
  }
  CHECK(contains(error_of([&] { fovea::parse_npz(flipped, "bad.npz"); }), "member 'w.npy'"));
  // Every prefix and every flipped byte of the archives loads or is refused, never read past.
  for (const std::string& archive : {stored, deflated}) {
    for (std::size_t cut = 0; cut < archive.size(); ++cut) {
      CHECK_THROWS_AS(fovea::parse_npz(archive.substr(0, cut), "cut"), fovea::Error);
      std::string damaged = archive;
      damaged[cut] = static_cast<char>(damaged[cut] ^ 0xA5);
      try {
        fovea::parse_npz(damaged, "damaged");
      } catch (const fovea::Error&) {
        // A refusal is a correct answer.
      }
    }
  }
}
