// safetensors files and graph checkpoints: round trips, the byte layout Python expects, atomic
// writes, and a clear fovea::Error for every kind of broken file or mismatched graph.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <fovea/fovea.h>

#include "testing.h"

namespace {

using Bytes = std::vector<unsigned char>;

// A temporary directory of this file's tests (tests/testing.h).
struct TempDir : fovea::testing::TempDir {
  explicit TempDir(const std::string& tag) : fovea::testing::TempDir("checkpoint-" + tag) {}
};

Bytes read_bytes(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void put_le(Bytes& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<unsigned char>(v >> (8 * i)));
}

// A safetensors file by hand: the 8-byte length, the header padded with spaces, the data.
Bytes safetensors_bytes(std::string header, const Bytes& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  Bytes out;
  put_le(out, header.size(), 8);
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

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

bool same_bytes(const fovea::Tensor& a, const fovea::Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

}  // namespace

TEST_CASE("save_safetensors then load_safetensors round-trips every dtype, odd shapes and the metadata") {
  TempDir dir("roundtrip");
  using fovea::testing::random_tensor;
  const std::vector<std::pair<std::string, fovea::Tensor>> tensors = {
      {"layer/w", random_tensor(fovea::f32, {2, 3}, 1)},
      {"layer/b", random_tensor(fovea::f64, {3}, 2)},
      {"counts", random_tensor(fovea::i32, {2, 2, 2}, 3, -100, 100)},
      {"step", fovea::Tensor::scalar<std::int64_t>(-1234567890123)},
      {"mask", random_tensor(fovea::boolean, {5}, 4)},
      {"empty", fovea::Tensor::zeros(fovea::f32, {0, 3})},
  };
  const std::map<std::string, std::string> metadata = {{"epoch", "3"}, {"note", "quotes \" and \\ survive"}};
  const std::string path = dir.file("model.safetensors");
  fovea::save_safetensors(path, tensors, metadata);

  const fovea::LoadedTensors loaded = fovea::load_safetensors(path);
  CHECK(loaded.metadata == metadata);
  REQUIRE(loaded.tensors.size() == tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    CAPTURE(tensors[i].first);
    CHECK(loaded.tensors[i].first == tensors[i].first);  // in data order, which is the order saved
    CHECK(same_bytes(loaded.tensors[i].second, tensors[i].second));
  }
}

TEST_CASE("save_safetensors writes the 8-byte little-endian header length and a JSON header padded to 8") {
  TempDir dir("layout");
  const std::string path = dir.file("a.safetensors");
  fovea::save_safetensors(path, {{"w", fovea::Tensor::from<float>({1.5f, -2.0f, 0.25f}, {3})}}, {{"k", "v"}});
  const Bytes bytes = read_bytes(path);
  REQUIRE(bytes.size() >= 8);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[static_cast<std::size_t>(i)];
  CHECK(n % 8 == 0);
  REQUIRE(bytes.size() == 8 + n + 12);
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  CHECK(header.front() == '{');
  CHECK(header[header.find_last_not_of(' ')] == '}');  // then only padding
  CHECK(header.starts_with(R"({"__metadata__":{"fovea.checksum":"crc32:)"));
  CHECK(contains(header, R"(","k":"v"})"));
  CHECK(contains(header, R"("w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]})"));
  float values[3];
  std::memcpy(values, bytes.data() + 8 + n, 12);
  CHECK(values[0] == 1.5f);
  CHECK(values[1] == -2.0f);
  CHECK(values[2] == 0.25f);
}

TEST_CASE("load_safetensors reads a file laid out by hand the way Python's safetensors writes it") {
  TempDir dir("python");
  // Python: save_file({"b": torch.tensor([[-7]]), "a": torch.tensor([1.5, -2.0])}, "x.safetensors",
  // metadata={"format": "pt"}) lays out the I64 first (larger alignment), then the F32.
  Bytes data;
  put_le(data, static_cast<std::uint64_t>(-7), 8);
  put_le(data, std::bit_cast<std::uint32_t>(1.5f), 4);
  put_le(data, std::bit_cast<std::uint32_t>(-2.0f), 4);
  const std::string header = R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
                             R"("b":{"dtype":"I64","shape":[1,1],"data_offsets":[0,8]}})";
  const std::string path = dir.file("x.safetensors");
  write_bytes(path, safetensors_bytes(header, data));

  const fovea::LoadedTensors loaded = fovea::load_safetensors(path);
  CHECK(loaded.metadata.at("format") == "pt");
  REQUIRE(loaded.tensors.size() == 2);
  CHECK(loaded.tensors[0].first == "b");
  CHECK(loaded.tensors[0].second.dtype() == fovea::i64);
  CHECK(loaded.tensors[0].second.shape() == fovea::Shape{1, 1});
  CHECK(loaded.tensors[0].second.at(0) == -7);
  CHECK(loaded.tensors[1].first == "a");
  CHECK(loaded.tensors[1].second.dtype() == fovea::f32);
  CHECK(loaded.tensors[1].second.at(0) == 1.5);
  CHECK(loaded.tensors[1].second.at(1) == -2.0);
}

// The names of the files in `dir`, sorted.
std::vector<std::string> files_in(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST_CASE("save_safetensors writes atomically: no temporary is left and an existing file is replaced whole") {
  TempDir dir("atomic");
  const std::string path = dir.file("ckpt.safetensors");
  fovea::save_safetensors(path, {{"x", fovea::Tensor::full(fovea::f32, {4}, 1.0)}});
  fovea::save_safetensors(path, {{"x", fovea::Tensor::full(fovea::f32, {4}, 2.0)}});
  CHECK(files_in(dir.path) == std::vector<std::string>{"ckpt.safetensors"});
  CHECK(fovea::load_safetensors(path).tensors[0].second.at(3) == 2.0);

  // A save that fails halfway (a bad name) leaves the previous checkpoint and no temporary file.
  CHECK_THROWS_AS(fovea::save_safetensors(path, {{"y", fovea::Tensor::zeros(fovea::f32, {1})},
                                                 {"y", fovea::Tensor::zeros(fovea::f32, {1})}}),
                  fovea::Error);
  CHECK(files_in(dir.path) == std::vector<std::string>{"ckpt.safetensors"});
  CHECK(fovea::load_safetensors(path).tensors[0].first == "x");
}

TEST_CASE("save_safetensors rejects duplicate, empty and reserved names and undefined tensors") {
  TempDir dir("names");
  const std::string path = dir.file("a.safetensors");
  const fovea::Tensor t = fovea::Tensor::zeros(fovea::f32, {1});
  CHECK(contains(error_of([&] { fovea::save_safetensors(path, {{"a", t}, {"a", t}}); }), "two tensors are named 'a'"));
  CHECK(contains(error_of([&] { fovea::save_safetensors(path, {{"", t}}); }), "empty name"));
  CHECK(contains(error_of([&] { fovea::save_safetensors(path, {{"__metadata__", t}}); }), "reserved"));
  CHECK(contains(error_of([&] { fovea::save_safetensors(path, {{"u", fovea::Tensor()}}); }), "'u' is undefined"));
  CHECK(!std::filesystem::exists(path));
}

TEST_CASE("load_safetensors rejects broken files with an error naming the file and the tensor") {
  TempDir dir("corrupt");
  const std::string path = dir.file("bad.safetensors");
  Bytes four_floats(16, 0);
  std::string expected_message;
  std::string tensor;

  SUBCASE("missing file") { expected_message = "no such file"; }
  SUBCASE("shorter than the length field") {
    write_bytes(path, {1, 2, 3});
    expected_message = "truncated: 3 bytes";
  }
  SUBCASE("header length larger than the file") {
    Bytes bytes;
    put_le(bytes, 1000, 8);
    bytes.insert(bytes.end(), 20, ' ');
    write_bytes(path, bytes);
    expected_message = "header length 1000 is larger than the rest of the file (20 bytes)";
  }
  SUBCASE("header length near 2^64") {
    Bytes bytes;
    put_le(bytes, ~std::uint64_t{0}, 8);
    bytes.insert(bytes.end(), 20, ' ');
    write_bytes(path, bytes);
    expected_message = "is larger than the rest of the file";
  }
  SUBCASE("bad JSON") {
    write_bytes(path, safetensors_bytes(R"({"a": {"dtype": "F32",)", four_floats));
    expected_message = "not valid JSON";
  }
  SUBCASE("JSON that is not an object") {
    write_bytes(path, safetensors_bytes("[1, 2]", four_floats));
    expected_message = "not a JSON object";
  }
  SUBCASE("offsets out of range") {
    write_bytes(path, safetensors_bytes(R"({"w":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", four_floats));
    expected_message = "data_offsets [0, 32] run past the end of the data (16 bytes)";
    tensor = "w";
  }
  SUBCASE("offsets that do not match dtype and shape") {
    write_bytes(path, safetensors_bytes(R"({"w":{"dtype":"F64","shape":[3],"data_offsets":[0,16]}})", four_floats));
    expected_message = "span 16 bytes, but F64 [3] takes 3 elements of 8 bytes";
    tensor = "w";
  }
  SUBCASE("overlapping tensors") {
    write_bytes(path, safetensors_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
                                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                        four_floats));
    expected_message = "overlap those of tensor 'a'";
    tensor = "b";
  }
  SUBCASE("a gap between tensors") {
    write_bytes(path, safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                        four_floats));
    expected_message = "gap of 4 unused bytes";
    tensor = "b";
  }
  SUBCASE("bytes after the last tensor") {
    write_bytes(path, safetensors_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})", four_floats));
    expected_message = "4 bytes after the last tensor";
  }
  SUBCASE("unknown dtype") {
    write_bytes(path, safetensors_bytes(R"({"w":{"dtype":"Q7","shape":[4],"data_offsets":[0,16]}})", four_floats));
    expected_message = "unknown dtype 'Q7'";
    tensor = "w";
  }
  SUBCASE("a dtype Fovea cannot hold") {
    write_bytes(path, safetensors_bytes(R"({"w":{"dtype":"F16","shape":[8],"data_offsets":[0,16]}})", four_floats));
    expected_message = "dtype F16 is not supported";
    tensor = "w";
  }
  SUBCASE("a missing field") {
    write_bytes(path, safetensors_bytes(R"({"w":{"dtype":"F32","data_offsets":[0,16]}})", four_floats));
    expected_message = "has no 'shape'";
    tensor = "w";
  }
  SUBCASE("a negative dim") {
    write_bytes(path, safetensors_bytes(R"({"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", four_floats));
    expected_message = "holds something other than sizes";
    tensor = "w";
  }
  SUBCASE("dims whose product overflows") {
    write_bytes(path, safetensors_bytes(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],)"
                                        R"("data_offsets":[0,16]}})",
                                        four_floats));
    expected_message = "is absurd";
    tensor = "w";
  }
  SUBCASE("a BOOL element that is neither 0 nor 1") {
    write_bytes(path, safetensors_bytes(R"({"m":{"dtype":"BOOL","shape":[16],"data_offsets":[0,16]}})",
                                        Bytes{0, 1, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
    expected_message = "holds 2, not 0 or 1";
    tensor = "m";
  }
  SUBCASE("metadata that is not strings") {
    write_bytes(path, safetensors_bytes(R"({"__metadata__":{"step":3}})", {}));
    expected_message = "entry 'step' is not a string";
  }
  const std::string message = error_of([&] { fovea::load_safetensors(path); });
  CHECK(contains(message, path));
  CHECK(contains(message, expected_message));
  if (!tensor.empty()) CHECK(contains(message, fmt::format("tensor '{}'", tensor)));
}

TEST_CASE("load_safetensors reports a saved file truncated at any point") {
  TempDir dir("truncated");
  const std::string path = dir.file("whole.safetensors");
  fovea::save_safetensors(
      path, {{"a", fovea::Tensor::full(fovea::f64, {3}, 1.0)}, {"b", fovea::Tensor::full(fovea::i32, {5}, 2.0)}});
  const Bytes whole = read_bytes(path);
  const std::string cut_path = dir.file("cut.safetensors");
  for (std::size_t length = 0; length < whole.size(); ++length) {
    CAPTURE(length);
    write_bytes(cut_path, Bytes(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(length)));
    CHECK(contains(error_of([&] { fovea::load_safetensors(cut_path); }), cut_path));
  }
}

TEST_CASE("save_checkpoint then load_checkpoint restores parameters into the buffers executables read") {
  TempDir dir("graph");
  const std::string path = dir.file("mlp.safetensors");

  fovea::Graph g;
  g.set_seed(1);
  fovea::Value x = g.placeholder("x", fovea::f32, {2, 3});
  fovea::Value w, steps;
  {
    auto scope = g.scope("layer");
    w = g.parameter("w", fovea::f32, {2, 3}, fovea::init::normal(0.0, 1.0));
    steps = g.parameter("steps", fovea::f64, {}, fovea::init::constant(41));
  }
  fovea::Value y = x + w;
  fovea::Executable exe = fovea::compile(g, {y});
  const fovea::Tensor zeros = fovea::Tensor::zeros(fovea::f32, {2, 3});
  const fovea::Tensor saved_w = g.parameter_value(w).clone();

  fovea::save_checkpoint(path, g, {{"epoch", "7"}});
  CHECK(!std::filesystem::exists(path + ".tmp"));

  // Training moves on: the buffers change in place.
  std::byte* w_buffer = g.parameter_value(w).raw();
  for (float& v : g.parameter_value(w).data<float>()) v = 100.0f;
  g.parameter_value(steps).data<double>()[0] = 0;
  CHECK(exe.run({{x, zeros}})[0].at(0) == 100.0);

  const std::map<std::string, std::string> metadata = fovea::load_checkpoint(path, g);
  CHECK(metadata.at("epoch") == "7");
  CHECK(g.parameter_value(w).raw() == w_buffer);  // the same buffer, not a new tensor
  CHECK(same_bytes(g.parameter_value(w), saved_w));
  CHECK(g.parameter_value(steps).item() == 41);
  fovea::testing::check_close(exe.run({{x, zeros}})[0], saved_w);

  // The file names parameters by their scoped names.
  const fovea::LoadedTensors file = fovea::load_safetensors(path);
  std::vector<std::string> names;
  for (const auto& [name, tensor] : file.tensors) names.push_back(name);
  CHECK(names == std::vector<std::string>{"layer/w", "layer/steps"});
}

TEST_CASE("load_checkpoint lists every difference in one error and changes nothing") {
  TempDir dir("mismatch");
  const std::string path = dir.file("a.safetensors");
  {
    fovea::Graph a("a");
    a.parameter("w", fovea::f32, {2, 3}, fovea::init::ones());
    a.parameter("b", fovea::f32, {3}, fovea::init::ones());
    a.parameter("same", fovea::f32, {2}, fovea::init::ones());
    a.parameter("adam/step", fovea::f64, {}, fovea::init::ones());
    fovea::save_checkpoint(path, a);
  }
  fovea::Graph b("b");
  fovea::Value w = b.parameter("w", fovea::f32, {3, 2}, fovea::init::zeros());
  b.parameter("b", fovea::f64, {3}, fovea::init::zeros());
  fovea::Value same = b.parameter("same", fovea::f32, {2}, fovea::init::zeros());
  b.parameter("extra", fovea::f32, {1}, fovea::init::zeros());

  const std::string message = error_of([&] { fovea::load_checkpoint(path, b); });
  CHECK(contains(message, path));
  CHECK(contains(message, "graph 'b'"));
  CHECK(contains(message, "4 differences"));
  CHECK(contains(message, "'w': the graph has f32[3,2], the file has f32[2,3]"));
  CHECK(contains(message, "'b': the graph has f64[3], the file has f32[3]"));
  CHECK(contains(message, "missing in the file: 'extra' (f32[1])"));
  CHECK(contains(message, "unexpected in the file: 'adam/step' (f64[])"));
  CHECK(!contains(message, "'same'"));
  // Nothing was copied, not even the parameter that matched.
  CHECK(b.parameter_value(same).at(0) == 0.0);
  CHECK(b.parameter_value(w).at(0) == 0.0);
}

// --- Untrusted headers ------------------------------------------------------------------------

TEST_CASE("load_safetensors rejects a header nested 200,000 deep with an error, not a stack overflow") {
  TempDir dir("deep");
  const std::string path = dir.file("deep.safetensors");
  constexpr std::size_t depth = 200'000;
  // Deep in a shape (the old error path printed it whole, recursively), in the metadata, at the top.
  for (const auto& [before, after] : std::vector<std::pair<std::string, std::string>>{
           {R"({"w":{"dtype":"F32","shape":)", R"(,"data_offsets":[0,4]}})"},
           {R"({"__metadata__":{"k":)", "}}"},
           {"", ""}}) {
    const std::string header = before + std::string(depth, '[') + std::string(depth, ']') + after;
    write_bytes(path, safetensors_bytes(header, Bytes(4, 0)));
    const std::string message = error_of([&] { fovea::load_safetensors(path); });
    CHECK(contains(message, path));
    CHECK(contains(message, "nests arrays and objects more than"));
  }
  // Brackets inside strings are not nesting.
  const std::string header = R"({"__metadata__":{"k":")" + std::string(1000, '[') + R"("}})";
  write_bytes(path, safetensors_bytes(header, {}));
  CHECK(fovea::load_safetensors(path).metadata.at("k") == std::string(1000, '['));
}

TEST_CASE("load_safetensors quotes at most a few dozen bytes of the file in its errors") {
  TempDir dir("quote");
  const std::string path = dir.file("big.safetensors");
  const std::string long_name(100'000, 'n');
  std::string long_shape = "[";
  for (int i = 0; i < 100'000; ++i) long_shape += "1,";
  long_shape += "\"x\"]";
  for (
      const std::string& header :
      {R"({")" + long_name +
           R"(":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
       R"({"w":{"dtype":")" + long_name + R"(","shape":[1],"data_offsets":[0,4]}})",
       R"({"w":{"dtype":"F32","shape":)" + long_shape + R"(,"data_offsets":[0,4]}})",
       R"({"w":{"dtype":"F32","shape":[1],"data_offsets":)" + long_shape + "}}",
       R"({"__metadata__":{")" + long_name + R"(":1}})", R"({"w":")" + long_name + "\xff\"}"}) {
    write_bytes(path, safetensors_bytes(header, Bytes(4, 0)));
    const std::string message = error_of([&] { fovea::load_safetensors(path); });
    CAPTURE(message.substr(0, 300));
    CHECK(contains(message, path));
    CHECK(message.size() < 700);
  }
}

// --- Atomic writes ----------------------------------------------------------------------------

// Contents writer `id` saves: a tensor filled with id, and id in the metadata.
void save_as_writer(const std::string& path, int id) {
  fovea::save_safetensors(path, {{"x", fovea::Tensor::full(fovea::f32, {16'384}, id)}},
                          {{"writer", std::to_string(id)}});
}

// The file loads, and is wholly one writer's: every element and the metadata name the same id.
void check_one_writer(const std::string& path) {
  const fovea::LoadedTensors loaded = fovea::load_safetensors(path);
  REQUIRE(loaded.tensors.size() == 1);
  const int id = std::stoi(loaded.metadata.at("writer"));
  for (float v : loaded.tensors[0].second.data<float>()) REQUIRE(v == static_cast<float>(id));
}

TEST_CASE("threads saving different contents to one path always leave a whole file of one of them") {
  TempDir dir("threads");
  const std::string path = dir.file("shared.safetensors");
  save_as_writer(path, 0);
  std::atomic<int> failures{0};
  std::atomic<bool> writing{true};
  std::vector<std::thread> writers;
  for (int id = 1; id <= 4; ++id)
    writers.emplace_back([&, id] {
      for (int round = 0; round < 40; ++round) try {
          save_as_writer(path, id);
        } catch (const std::exception&) {
          ++failures;
        }
    });
  // A reader meanwhile always finds a whole file.
  int reads = 0, bad_reads = 0;
  std::thread reader([&] {
    while (writing) try {
        ++reads;
        const fovea::LoadedTensors loaded = fovea::load_safetensors(path);
        const float first = loaded.tensors.at(0).second.data<float>()[0];
        for (float v : loaded.tensors[0].second.data<float>())
          if (v != first) throw fovea::Error("mixed");
        if (std::to_string(static_cast<int>(first)) != loaded.metadata.at("writer")) throw fovea::Error("mixed");
      } catch (const std::exception&) {
        ++bad_reads;
      }
  });
  for (std::thread& t : writers) t.join();
  writing = false;
  reader.join();
  CHECK(failures == 0);
  CHECK(bad_reads == 0);
  CHECK(reads > 0);
  check_one_writer(path);
  CHECK(files_in(dir.path) == std::vector<std::string>{"shared.safetensors"});
}

TEST_CASE("processes saving different contents to one path always leave a whole file of one of them") {
  TempDir dir("processes");
  const std::string path = dir.file("shared.safetensors");
  for (int trial = 0; trial < 5; ++trial) {
    std::vector<pid_t> children;
    for (int id = 1; id <= 3; ++id) {
      const pid_t pid = ::fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        int status = 0;
        try {
          for (int round = 0; round < 20; ++round) save_as_writer(path, id);
        } catch (...) {
          status = 1;
        }
        ::_exit(status);
      }
      children.push_back(pid);
    }
    for (pid_t pid : children) {
      int status = 0;
      REQUIRE(::waitpid(pid, &status, 0) == pid);
      CHECK(WIFEXITED(status));
      CHECK(WEXITSTATUS(status) == 0);
    }
    check_one_writer(path);
    CHECK(files_in(dir.path) == std::vector<std::string>{"shared.safetensors"});
  }
}

TEST_CASE("save_safetensors never writes through a planted <path>.tmp, symlink or file") {
  TempDir dir("planted");
  const std::string path = dir.file("ckpt.safetensors");
  const std::string victim = dir.file("victim.txt");
  write_bytes(victim, Bytes{'k', 'e', 'e', 'p'});

  SUBCASE("a symlink to another file") {
    std::filesystem::create_symlink(victim, path + ".tmp");
    save_as_writer(path, 3);
    CHECK(std::filesystem::is_symlink(path + ".tmp"));
  }
  SUBCASE("a regular file") {
    write_bytes(path + ".tmp", Bytes{'m', 'i', 'n', 'e'});
    save_as_writer(path, 3);
    CHECK(read_bytes(path + ".tmp") == Bytes{'m', 'i', 'n', 'e'});
  }
  CHECK(read_bytes(victim) == Bytes{'k', 'e', 'e', 'p'});
  CHECK(!std::filesystem::is_symlink(path));
  check_one_writer(path);
}

TEST_CASE("save_safetensors creates files with the mode any new file gets (0666 less the umask)") {
  TempDir dir("mode");
  const std::string path = dir.file("ckpt.safetensors");
  const mode_t old_mask = ::umask(0);
  save_as_writer(path, 1);
  ::umask(old_mask);
  struct stat info {};
  REQUIRE(::stat(path.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0666);
}

// --- Checksum ---------------------------------------------------------------------------------

TEST_CASE("a checksum makes every flipped bit of a saved file, data or metadata, an error naming the file") {
  TempDir dir("bitflip");
  const std::string path = dir.file("ckpt.safetensors");
  fovea::save_safetensors(path, {{"w", fovea::Tensor::from<float>({1.5f, -2.0f, 0.25f}, {3})}}, {{"epoch", "7"}});
  const fovea::LoadedTensors whole = fovea::load_safetensors(path);
  CHECK(whole.metadata == std::map<std::string, std::string>{{"epoch", "7"}});  // the checksum is not metadata
  const Bytes bytes = read_bytes(path);
  const std::string flipped_path = dir.file("flipped.safetensors");
  for (std::size_t bit = 0; bit < bytes.size() * 8; ++bit) {
    CAPTURE(bit / 8);
    CAPTURE(bit % 8);
    Bytes flipped = bytes;
    flipped[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
    write_bytes(flipped_path, flipped);
    CHECK(contains(error_of([&] { fovea::load_safetensors(flipped_path); }), flipped_path));
  }
  // The epoch 7 -> 6 and the last element's lowest bit say it in words.
  const std::string text(bytes.begin(), bytes.end());
  for (const std::size_t at : {text.find(R"("epoch":"7")") + 9, bytes.size() - 4}) {
    Bytes flipped = bytes;
    flipped[at] ^= 1;
    write_bytes(flipped_path, flipped);
    CHECK(contains(error_of([&] { fovea::load_safetensors(flipped_path); }), "checksum mismatch"));
  }
}

TEST_CASE("a checksum entry that is moved or malformed is an error, and save reserves its key") {
  TempDir dir("checksum");
  const std::string path = dir.file("a.safetensors");
  const Bytes data(4, 0);
  for (const std::string& metadata :
       std::vector<std::string>{R"("k":"v","fovea.checksum":"crc32:00000000")", R"("fovea.checksum":"crc32:0000000")",
                                R"("fovea.checksum":"md5:00000000")", R"("fovea.checksum":"crc32:ABCDEF00")"}) {
    CAPTURE(metadata);
    write_bytes(path, safetensors_bytes(R"({"__metadata__":{)" + metadata +
                                            R"(},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                        data));
    CHECK(contains(error_of([&] { fovea::load_safetensors(path); }), "checksum"));
  }
  CHECK(contains(error_of([&] { fovea::save_safetensors(path, {}, {{"fovea.checksum", "x"}}); }), "reserved"));
}
