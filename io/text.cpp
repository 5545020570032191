#include "fovea/io/text.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>

#include <fmt/format.h>

namespace fovea {

namespace {

namespace fs = std::filesystem;

// The whole of one regular file.
std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("read_text: {}: cannot open: {}", path.string(), std::strerror(errno)));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error(fmt::format("read_text: {}: cannot read: {}", path.string(), std::strerror(errno)));
  return bytes;
}

}  // namespace

std::string read_text(const std::string& location) {
  std::error_code error;
  const fs::file_status status = fs::status(location, error);
  if (!fs::exists(status)) throw Error(fmt::format("read_text: {}: no such file or folder", location));
  if (fs::is_regular_file(status)) return read_file(location);
  // A FIFO or a device could block or never end: only files and folders hold text.
  if (!fs::is_directory(status))
    throw Error(fmt::format("read_text: {}: neither a regular file nor a folder", location));
  std::vector<fs::path> files;
  for (const fs::directory_entry& entry : fs::directory_iterator(location, error))
    if (entry.is_regular_file() && !entry.is_symlink() && !entry.path().has_extension()) files.push_back(entry.path());
  if (error) throw Error(fmt::format("read_text: {}: cannot list the folder: {}", location, error.message()));
  std::sort(files.begin(), files.end());
  std::string text;
  for (const fs::path& file : files) text += read_file(file);
  return text;
}

// id[b] = the rank of byte b among the bytes the text uses; ids[i] = id[text[i]].
TextCorpus make_text_corpus(std::string text, double held_out_fraction, std::int64_t context,
                            const std::string& source) {
  if (!std::isfinite(held_out_fraction) || held_out_fraction < 0 || held_out_fraction >= 1)
    throw Error(
        fmt::format("make_text_corpus: {}: the held-out fraction {} is not in [0, 1)", source, held_out_fraction));
  if (context < 1) throw Error(fmt::format("make_text_corpus: {}: the context {} is not positive", source, context));

  TextCorpus corpus;
  corpus.text = std::move(text);
  std::array<bool, 256> used{};
  for (char c : corpus.text) used[static_cast<unsigned char>(c)] = true;
  corpus.id.fill(-1);
  for (std::size_t b = 0; b < used.size(); ++b)
    if (used[b]) {
      corpus.id[b] = static_cast<std::int32_t>(corpus.characters.size());
      corpus.characters += static_cast<char>(b);
    }
  corpus.ids.resize(corpus.text.size());
  for (std::size_t i = 0; i < corpus.text.size(); ++i)
    corpus.ids[i] = corpus.id[static_cast<unsigned char>(corpus.text[i])];

  // A window is `context` characters and the next one, its last target.
  const std::int64_t total = corpus.size();
  corpus.held_out_begin = static_cast<std::int64_t>(static_cast<double>(total) * (1.0 - held_out_fraction));
  const std::int64_t window = context + 1;
  if (corpus.held_out_begin < window || total - corpus.held_out_begin < window)
    throw Error(
        fmt::format("{}: {} characters are too few for windows of {} in both the training part and the "
                    "held-out part ({} of it); use a longer text or a shorter context",
                    source, total, context, held_out_fraction));
  return corpus;
}

TextCorpus load_text_corpus(const std::string& location, double held_out_fraction, std::int64_t context) {
  return make_text_corpus(read_text(location), held_out_fraction, context, location);
}

}  // namespace fovea
