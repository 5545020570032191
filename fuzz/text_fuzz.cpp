#include "fovea/io/text.h"
#include "fuzz_targets.h"
#include "memory_file.h"

namespace fovea::fuzz {

// Loads the bytes as a text corpus and checks the vocabulary, the ids and the split.
int fuzz_text(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::int64_t context = 1 + data[0] % 16;
  const double held_out = data[1] / 256.0;
  const MemoryFile file(data + 2, size - 2);
  try {
    const TextCorpus corpus = load_text_corpus(file.path(), held_out, context);
    require(corpus.size() == static_cast<std::int64_t>(size - 2), "ids are not one per byte");
    for (std::size_t k = 0; k < corpus.characters.size(); ++k) {
      const auto byte = static_cast<unsigned char>(corpus.characters[k]);
      require(k == 0 || static_cast<unsigned char>(corpus.characters[k - 1]) < byte, "characters not sorted");
      require(corpus.id[byte] == static_cast<std::int32_t>(k), "id and characters disagree");
    }
    for (std::size_t i = 0; i < corpus.ids.size(); ++i) {
      const std::int32_t id = corpus.ids[i];
      require(id >= 0 && id < corpus.vocabulary_size(), "an id out of range");
      require(corpus.characters[static_cast<std::size_t>(id)] == corpus.text[i], "an id decodes to another byte");
    }
    require(corpus.held_out_begin > context && corpus.size() - corpus.held_out_begin > context,
            "a part too short for one window");
  } catch (const Error&) {
    // A clear refusal is a correct answer to bad bytes.
  }
  return 0;
}

}  // namespace fovea::fuzz
