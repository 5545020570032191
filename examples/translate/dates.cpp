#include "dates.h"

#include <algorithm>
#include <stdexcept>

namespace dates {

namespace {

constexpr std::array<std::string_view, 12> month_names = {"january",   "february", "march",    "april",
                                                          "may",       "june",     "july",     "august",
                                                          "september", "october",  "november", "december"};
constexpr std::array<std::string_view, 7> weekday_names = {"monday", "tuesday",  "wednesday", "thursday",
                                                           "friday", "saturday", "sunday"};

// SplitMix64 (Steele, Lea & Flood, 2014): z = x + φ·2⁶⁴, then two xor-shift-multiply rounds.
// A full-period generator whose output is a good 64-bit hash of its input.
std::uint64_t splitmix64(std::uint64_t x) {
  std::uint64_t z = x + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::string two_digits(int n) { return std::string(1, char('0' + n / 10 % 10)) + char('0' + n % 10); }

// "1st", "2nd", "3rd", "4th", ..., "11th", "12th", "13th", ..., "21st", "22nd", "23rd", "31st".
std::string ordinal(int day) {
  const int last = day % 10;
  const bool teen = day % 100 >= 11 && day % 100 <= 13;
  const char* suffix = teen || last > 3 || last == 0 ? "th" : last == 1 ? "st" : last == 2 ? "nd" : "rd";
  return std::to_string(day) + suffix;
}

// Builds a sentence piece by piece, recording where each field lands.
class Writer {
 public:
  void text(std::string_view s) { out_.text += s; }
  void field(Span Rendered::*which, const std::string& s) {
    const int begin = static_cast<int>(out_.text.size());
    out_.text += s;
    out_.*which = {begin, static_cast<int>(out_.text.size())};
  }
  Rendered done() { return std::move(out_); }

 private:
  Rendered out_;
};

}  // namespace

bool is_leap_year(int year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

int days_in_month(int year, int month) {
  constexpr std::array<int, 12> days = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && is_leap_year(year) ? 29 : days[static_cast<std::size_t>(month - 1)];
}

// Sakamoto's method: Jan and Feb count as months 13 and 14 of the previous year, so that the
// leap day falls at the end of a "year"; t[m] is the weekday offset of month m's first day.
//   w = (y + ⌊y/4⌋ - ⌊y/100⌋ + ⌊y/400⌋ + t[m] + d) mod 7,   0 = Sunday
int day_of_week(const Date& date) {
  constexpr std::array<int, 12> t = {0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4};
  const int y = date.year - (date.month < 3 ? 1 : 0);
  const int sunday_based = (y + y / 4 - y / 100 + y / 400 + t[static_cast<std::size_t>(date.month - 1)] + date.day) % 7;
  return (sunday_based + 6) % 7;
}

int day_number(const Date& date) {
  int n = 0;
  for (int y = first_year; y < date.year; ++y) n += is_leap_year(y) ? 366 : 365;
  for (int m = 1; m < date.month; ++m) n += days_in_month(date.year, m);
  return n + date.day - 1;
}

Date date_from_number(int number) {
  Date date{first_year, 1, 1};
  while (number >= (is_leap_year(date.year) ? 366 : 365)) number -= is_leap_year(date.year++) ? 366 : 365;
  while (number >= days_in_month(date.year, date.month)) number -= days_in_month(date.year, date.month++);
  date.day = number + 1;
  return date;
}

int date_count() {
  static const int count = day_number({last_year, 12, 31}) + 1;
  return count;
}

std::string iso(const Date& date) {
  return std::to_string(date.year) + "-" + two_digits(date.month) + "-" + two_digits(date.day);
}

Rendered render(const Date& d, int format) {
  const std::string day = std::to_string(d.day), dd = two_digits(d.day);
  const std::string month_number = std::to_string(d.month), mm = two_digits(d.month);
  const std::string month(month_names[static_cast<std::size_t>(d.month - 1)]);
  const std::string mon = month.substr(0, 3);
  const std::string weekday(weekday_names[static_cast<std::size_t>(day_of_week(d))]);
  const std::string year = std::to_string(d.year), yy = two_digits(d.year % 100);
  Writer w;
  switch (format) {
    case 0:  // tuesday, 3rd of march 1998
      w.field(&Rendered::weekday, weekday), w.text(", "), w.field(&Rendered::day, ordinal(d.day)), w.text(" of ");
      w.field(&Rendered::month, month), w.text(" "), w.field(&Rendered::year, year);
      break;
    case 1:  // 03/03/98
      w.field(&Rendered::day, dd), w.text("/"), w.field(&Rendered::month, mm), w.text("/"),
          w.field(&Rendered::year, yy);
      break;
    case 2:  // 3 mar 1998
      w.field(&Rendered::day, day), w.text(" "), w.field(&Rendered::month, mon), w.text(" "),
          w.field(&Rendered::year, year);
      break;
    case 3:  // march 3, 1998
      w.field(&Rendered::month, month), w.text(" "), w.field(&Rendered::day, day), w.text(", ");
      w.field(&Rendered::year, year);
      break;
    case 4:  // 1998.03.03
      w.field(&Rendered::year, year), w.text("."), w.field(&Rendered::month, mm), w.text("."),
          w.field(&Rendered::day, dd);
      break;
    case 5:  // 3.3.1998
      w.field(&Rendered::day, day), w.text("."), w.field(&Rendered::month, month_number), w.text(".");
      w.field(&Rendered::year, year);
      break;
    case 6:  // the 3rd of march, 1998
      w.text("the "), w.field(&Rendered::day, ordinal(d.day)), w.text(" of "), w.field(&Rendered::month, month);
      w.text(", "), w.field(&Rendered::year, year);
      break;
    case 7:  // tue, mar 3, 1998
      w.field(&Rendered::weekday, weekday.substr(0, 3)), w.text(", "), w.field(&Rendered::month, mon), w.text(" ");
      w.field(&Rendered::day, day), w.text(", "), w.field(&Rendered::year, year);
      break;
    case 8:  // 03-03-1998
      w.field(&Rendered::day, dd), w.text("-"), w.field(&Rendered::month, mm), w.text("-"),
          w.field(&Rendered::year, year);
      break;
    case 9:  // tuesday 3 march 98
      w.field(&Rendered::weekday, weekday), w.text(" "), w.field(&Rendered::day, day), w.text(" ");
      w.field(&Rendered::month, month), w.text(" "), w.field(&Rendered::year, yy);
      break;
    case 10:  // 19980303
      w.field(&Rendered::year, year), w.field(&Rendered::month, mm), w.field(&Rendered::day, dd);
      break;
    case 11:  // 3rd march 1998
      w.field(&Rendered::day, ordinal(d.day)), w.text(" "), w.field(&Rendered::month, month), w.text(" ");
      w.field(&Rendered::year, year);
      break;
    default:
      throw std::invalid_argument("dates::render: no format " + std::to_string(format));
  }
  return w.done();
}

// One in eight (date, format) pairs is held out, chosen by a hash of the pair.
bool is_held_out(const Date& date, int format) {
  const std::uint64_t key = static_cast<std::uint64_t>(day_number(date)) * 64 + static_cast<std::uint64_t>(format);
  return splitmix64(key ^ 0x5eed0fda7e5ull) % 8 == 0;
}

// --- Vocabularies ----------------------------------------------------------------------------

Vocabulary::Vocabulary(std::string_view characters) : characters_(characters) {
  ids_.fill(-1);
  for (std::size_t i = 0; i < characters_.size(); ++i)
    ids_[static_cast<unsigned char>(characters_[i])] = static_cast<std::int32_t>(i) + 3;
}

std::int32_t Vocabulary::id(char c) const {
  const std::int32_t id = ids_[static_cast<unsigned char>(c)];
  if (id < 0) throw std::invalid_argument(std::string("dates::Vocabulary: no character '") + c + "'");
  return id;
}

char Vocabulary::character(std::int32_t id) const {
  return id >= 3 && id < size() ? characters_[static_cast<std::size_t>(id - 3)] : '?';
}

const Vocabulary& source_vocabulary() {
  static const Vocabulary vocabulary(" ,./-0123456789abcdefghijklmnopqrstuvwxyz");
  return vocabulary;
}

const Vocabulary& target_vocabulary() {
  static const Vocabulary vocabulary("-0123456789");
  return vocabulary;
}

int max_source_length() {
  // The longest month name, with a two-digit ordinal day and every weekday, in every format.
  static const int longest = [] {
    int n = 0;
    for (int day = 21; day <= 27; ++day)
      for (int format = 0; format < format_count; ++format)
        n = std::max(n, static_cast<int>(render({1950, 9, day}, format).text.size()));
    return n;
  }();
  return longest;
}

// --- Sentences and batches -------------------------------------------------------------------

Generator::Generator(std::uint64_t seed, Split split, std::vector<int> formats)
    : state_(splitmix64(seed)), split_(split), formats_(std::move(formats)) {
  if (formats_.empty())
    for (int f = 0; f < format_count; ++f) formats_.push_back(f);
  for (int f : formats_)
    if (f < 0 || f >= format_count) throw std::invalid_argument("dates::Generator: no format " + std::to_string(f));
}

std::uint64_t Generator::next_random() {
  state_ += 0x9e3779b97f4a7c15ull;
  return splitmix64(state_);
}

Example Generator::next() {
  const bool want_held_out = split_ == Split::held_out;
  for (;;) {
    const Date date = date_from_number(static_cast<int>(next_random() % static_cast<std::uint64_t>(date_count())));
    const int format = formats_[next_random() % formats_.size()];
    if (is_held_out(date, format) != want_held_out) continue;
    return {date, format, render(date, format), iso(date)};
  }
}

Batch make_batch(Generator& generator, std::int64_t count, std::int64_t source_length) {
  const Vocabulary& source = source_vocabulary();
  const Vocabulary& target = target_vocabulary();
  const auto rows = static_cast<std::size_t>(count);
  const auto s_len = static_cast<std::size_t>(source_length), t_len = static_cast<std::size_t>(target_length + 1);
  Batch batch;
  batch.source.assign(rows * s_len, pad);
  batch.decoder_input.assign(rows * t_len, pad);
  batch.decoder_target.assign(rows * t_len, pad);
  for (std::size_t b = 0; b < rows; ++b) {
    Example example = generator.next();
    const std::string& text = example.source.text;
    if (text.size() >= s_len)
      throw std::invalid_argument("dates::make_batch: \"" + text + "\" and EOS do not fit in " +
                                  std::to_string(source_length) + " tokens");
    for (std::size_t i = 0; i < text.size(); ++i) batch.source[b * s_len + i] = source.id(text[i]);
    batch.source[b * s_len + text.size()] = eos;
    batch.decoder_input[b * t_len] = bos;
    for (std::size_t i = 0; i < example.target.size(); ++i) {
      batch.decoder_input[b * t_len + i + 1] = target.id(example.target[i]);
      batch.decoder_target[b * t_len + i] = target.id(example.target[i]);
    }
    batch.decoder_target[b * t_len + example.target.size()] = eos;
    batch.examples.push_back(std::move(example));
  }
  return batch;
}

}  // namespace dates
