// A synthetic parallel corpus for the translator: calendar dates written the many ways people
// write them, paired with their ISO 8601 form.
//
//   "tuesday, 3rd of march 1998"  →  "1998-03-03"
//   "03/03/98"                    →  "1998-03-03"
//   "the 3rd of march, 1998"      →  "1998-03-03"
//
// Everything is generated in code and deterministic from a seed: the same seed gives the same
// sentences on any machine (the random numbers come from SplitMix64, not from a standard
// library distribution whose output varies between implementations).
//
// Train and held-out sentences never share a (date, format) pair: a hash of the pair puts
// every pair in exactly one of the two partitions (about one in eight is held out), and each
// generator draws only from its own partition. Held-out accuracy therefore measures whether
// the model learnt to read dates, not whether it remembered sentences.
//
// Two-digit years ("03/03/98") are unambiguous because the corpus spans 1950–2049: 50–99 mean
// 19xx and 00–49 mean 20xx. Day and month are always in that order in numeric formats
// (03/04/98 is the 3rd of April), as in most of the world.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dates {

struct Date {
  int year = 2000;  // 1950 .. 2049
  int month = 1;    // 1 .. 12
  int day = 1;      // 1 .. days_in_month(year, month)
  friend bool operator==(const Date&, const Date&) = default;
};

inline constexpr int first_year = 1950;
inline constexpr int last_year = 2049;

bool is_leap_year(int year);
int days_in_month(int year, int month);
// 0 = Monday .. 6 = Sunday, from the proleptic Gregorian calendar (Sakamoto's method).
int day_of_week(const Date& date);
// Days since 1950-01-01: 0 .. date_count()-1, and back.
int day_number(const Date& date);
Date date_from_number(int number);
int date_count();

// "1998-03-03": the translation target.
std::string iso(const Date& date);

// Where a field sits in a sentence: characters [begin, end). Empty (begin == end) when the
// format does not spell the field out (a weekday in "03/03/98").
struct Span {
  int begin = 0, end = 0;
  bool contains(int position) const { return position >= begin && position < end; }
  int size() const { return end - begin; }
};

// A sentence, with the spans of the characters that carry each field of the date.
struct Rendered {
  std::string text;
  Span day, month, year, weekday;
};

// The human formats. Their names are examples of the 3rd of March 1998.
inline constexpr std::array<std::string_view, 12> format_names = {
    "tuesday, 3rd of march 1998",  // weekday, ordinal day, month name
    "03/03/98",                    // dd/mm/yy
    "3 mar 1998",                  // day, abbreviated month
    "march 3, 1998",               // US long form
    "1998.03.03",                  // yyyy.mm.dd
    "3.3.1998",                    // d.m.yyyy
    "the 3rd of march, 1998",      // spoken
    "tue, mar 3, 1998",            // abbreviated weekday and month
    "03-03-1998",                  // dd-mm-yyyy
    "tuesday 3 march 98",          // weekday, two-digit year
    "19980303",                    // compact yyyymmdd
    "3rd march 1998",              // ordinal day, month name
};
inline constexpr int format_count = static_cast<int>(format_names.size());

// `date` in format `format` (0 .. format_count-1). Weekdays agree with the date.
Rendered render(const Date& date, int format);

// The partition of a (date, format) pair: true for the held-out one.
bool is_held_out(const Date& date, int format);

// --- Vocabularies ----------------------------------------------------------------------------
// Character-level, with three special tokens shared by both sides.
inline constexpr std::int32_t pad = 0, bos = 1, eos = 2;

class Vocabulary {
 public:
  // `characters` become ids 3, 4, ...
  explicit Vocabulary(std::string_view characters);
  std::int32_t size() const { return static_cast<std::int32_t>(characters_.size()) + 3; }
  // The id of `c`; throws std::invalid_argument for a character outside the vocabulary.
  std::int32_t id(char c) const;
  // The character of `id`, or '?' for the special tokens.
  char character(std::int32_t id) const;

 private:
  std::string characters_;
  std::array<std::int32_t, 256> ids_{};
};

// Source: lowercase letters, digits, punctuation, space. Target: digits and '-'.
const Vocabulary& source_vocabulary();
const Vocabulary& target_vocabulary();

// --- Sentences and batches -------------------------------------------------------------------
struct Example {
  Date date;
  int format = 0;
  Rendered source;
  std::string target;  // iso(date)
};

inline constexpr int target_length = 10;  // "yyyy-mm-dd"

// The longest sentence any format produces, in characters.
int max_source_length();

enum class Split { train, held_out };

// Draws random (date, format) pairs of one partition, uniformly over dates and formats.
class Generator {
 public:
  // `formats`: the formats to draw from (empty: all of them).
  Generator(std::uint64_t seed, Split split, std::vector<int> formats = {});
  Example next();

 private:
  std::uint64_t next_random();
  std::uint64_t state_;
  Split split_;
  std::vector<int> formats_;
};

// Token ids for one batch, row-major, ready to copy into i32 tensors:
//   source         [B, source_length]: the sentence's characters, then EOS, then PAD
//   decoder_input  [B, target_length + 1]: BOS, then the ISO characters (teacher forcing)
//   decoder_target [B, target_length + 1]: the ISO characters, then EOS
struct Batch {
  std::vector<Example> examples;
  std::vector<std::int32_t> source, decoder_input, decoder_target;
};

// `count` sentences from `generator`, encoded. Every sentence must be shorter than
// source_length (max_source_length() + 1 always suffices); throws std::invalid_argument if not.
Batch make_batch(Generator& generator, std::int64_t count, std::int64_t source_length);

}  // namespace dates
