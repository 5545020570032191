// Text corpora for character-level models: the bytes of a text file (or of a folder's plain-text
// files), the vocabulary of the bytes they use, every character as an id, and a split into a
// training part and a held-out part at the end.
//
//   fovea::TextCorpus corpus = fovea::load_text_corpus("/usr/share/games/fortunes", 0.05, 64);
//   corpus.vocabulary_size();           // distinct bytes
//   corpus.ids[i];                       // id of byte i, in 0 .. vocabulary_size()-1
//   corpus.held_out_begin;               // ids[0, held_out_begin) train, the rest is held out
//
// The text is any bytes (it need not be UTF-8). Every failure is a fovea::Error naming the
// file or folder: missing, unreadable, or too short for windows of the given context.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "fovea/core/error.h"

namespace fovea {

struct TextCorpus {
  std::string text;
  std::string characters;              // id → byte, sorted
  std::array<std::int32_t, 256> id{};  // byte → id, -1 when the text never uses it
  std::vector<std::int32_t> ids;       // ids[i] = id[text[i]]
  std::int64_t held_out_begin = 0;     // the held-out part is ids[held_out_begin, size)

  std::int64_t size() const { return static_cast<std::int64_t>(ids.size()); }
  std::int64_t vocabulary_size() const { return static_cast<std::int64_t>(characters.size()); }
};

// The bytes of `location`: a file's, or, for a folder, those of its regular files without an
// extension (so the fortune database's .dat indexes and .u8 links are left out), concatenated in
// name order. Symlinks inside a folder are skipped.
std::string read_text(const std::string& location);

// The corpus of `text` (read from `source`, named in errors): its vocabulary and ids, with the
// last `held_out_fraction` (in [0, 1)) held out. Both parts must hold a window of `context`
// characters and the one after it.
TextCorpus make_text_corpus(std::string text, double held_out_fraction, std::int64_t context,
                            const std::string& source);

// read_text then make_text_corpus.
TextCorpus load_text_corpus(const std::string& location, double held_out_fraction, std::int64_t context);

}  // namespace fovea
