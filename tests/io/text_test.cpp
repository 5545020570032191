// Text corpora (io/text.h): a file or a folder's plain-text files as bytes, the vocabulary of the
// bytes used, the ids, the split, and a clear fovea::Error for anything unusable.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <fovea/fovea.h>
#include <fovea/io/text.h>

namespace {

struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag)
      : path(std::filesystem::temp_directory_path() / fmt::format("fovea-text-{}-{}", tag, ::getpid())) {
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name, const std::string& text) const {
    std::ofstream(path / name, std::ios::binary) << text;
    return (path / name).string();
  }
};

std::string error_of(const auto& f) {
  try {
    f();
  } catch (const fovea::Error& e) {
    return e.what();
  }
  return "no fovea::Error";
}

}  // namespace

TEST_CASE("load_text_corpus: the sorted bytes used are the vocabulary, ids index it, the end is held out") {
  TempDir dir("basic");
  const std::string path = dir.file("t",
                                    "abracadabra\xff"
                                    "abracadabra");
  const fovea::TextCorpus corpus = fovea::load_text_corpus(path, 0.25, 3);
  CHECK(corpus.characters == "abcdr\xff");
  CHECK(corpus.vocabulary_size() == 6);
  CHECK(corpus.id['a'] == 0);
  CHECK(corpus.id['z'] == -1);
  CHECK(corpus.id[0xff] == 5);
  REQUIRE(corpus.size() == 23);
  CHECK(corpus.ids[1] == 1);   // b
  CHECK(corpus.ids[11] == 5);  // 0xff
  CHECK(corpus.held_out_begin == 17);
}

TEST_CASE("read_text of a folder joins its files without an extension in name order") {
  TempDir dir("folder");
  dir.file("b", "second ");
  dir.file("a", "first ");
  dir.file("a.dat", "index");
  std::filesystem::create_symlink(dir.path / "a", dir.path / "c");
  CHECK(fovea::read_text(dir.path.string()) == "first second ");
}

TEST_CASE("load_text_corpus names the file when it is missing, not a file, or too short") {
  TempDir dir("errors");
  const std::string missing = (dir.path / "missing").string();
  CHECK(error_of([&] { fovea::load_text_corpus(missing, 0.05, 8); }).find(missing) != std::string::npos);
  const std::string fifo = (dir.path / "fifo").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK(error_of([&] { fovea::load_text_corpus(fifo, 0.05, 8); }).find("neither a regular file") != std::string::npos);
  const std::string short_text = dir.file("short", "0123456789");
  CHECK(error_of([&] { fovea::load_text_corpus(short_text, 0.5, 5); }).find("too few") != std::string::npos);
  CHECK(fovea::load_text_corpus(short_text, 0.5, 4).held_out_begin == 5);
  CHECK(error_of([&] { fovea::load_text_corpus(short_text, 1.0, 1); }).find("not in [0, 1)") != std::string::npos);
  CHECK(error_of([&] { fovea::load_text_corpus(short_text, 0.5, 0); }).find("not positive") != std::string::npos);
}
