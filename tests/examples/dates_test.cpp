// The translator's date corpus (examples/translate/dates.h): a calendar that agrees with known
// dates, sentences whose fields sit where their spans say, train and held-out partitions that
// never share a (date, format) pair, and batches laid out as the model expects.
#include <cctype>
#include <set>
#include <string>
#include <utility>

#include "dates.h"
#include "testing.h"

namespace {

// The weekday names as the corpus writes them, Monday first.
const char* const weekday_names[] = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"};

}  // namespace

TEST_CASE("day_of_week agrees with known dates, leap days included") {
  CHECK(dates::day_of_week({1998, 3, 3}) == 1);    // a Tuesday
  CHECK(dates::day_of_week({1950, 1, 1}) == 6);    // a Sunday
  CHECK(dates::day_of_week({1969, 7, 20}) == 6);   // the Moon landing, a Sunday
  CHECK(dates::day_of_week({2000, 1, 1}) == 5);    // a Saturday
  CHECK(dates::day_of_week({2000, 2, 29}) == 1);   // a Tuesday (2000 is a leap year)
  CHECK(dates::day_of_week({2049, 12, 31}) == 4);  // a Friday
  // Consecutive days advance the weekday by one, across months, years and leap days.
  for (int n = 1; n < dates::date_count(); ++n) {
    const dates::Date previous = dates::date_from_number(n - 1), date = dates::date_from_number(n);
    if (dates::day_of_week(date) != (dates::day_of_week(previous) + 1) % 7) FAIL_CHECK(dates::iso(date));
  }
}

TEST_CASE("day numbers count every day of 1950-2049 once, in order") {
  CHECK(dates::date_count() == 36525);  // 100 years, 25 of them leap (1952 .. 2048; 2000 is one)
  CHECK(dates::date_from_number(0) == dates::Date{1950, 1, 1});
  CHECK(dates::date_from_number(dates::date_count() - 1) == dates::Date{2049, 12, 31});
  CHECK(dates::iso(dates::date_from_number(dates::day_number({2000, 2, 29}))) == "2000-02-29");
  for (int n = 0; n < dates::date_count(); ++n)
    if (dates::day_number(dates::date_from_number(n)) != n) FAIL_CHECK(n);
}

TEST_CASE("every format renders the 3rd of March 1998 as its name says") {
  for (int format = 0; format < dates::format_count; ++format) {
    CAPTURE(format);
    CHECK(dates::render({1998, 3, 3}, format).text == dates::format_names[static_cast<std::size_t>(format)]);
  }
  CHECK(dates::render({2004, 11, 22}, 0).text == "monday, 22nd of november 2004");
  CHECK(dates::render({2011, 12, 13}, 6).text == "the 13th of december, 2011");
  CHECK(dates::render({1951, 1, 21}, 11).text == "21st january 1951");
  CHECK(dates::render({2001, 8, 9}, 1).text == "09/08/01");
  CHECK_THROWS_AS(dates::render({1998, 3, 3}, dates::format_count), std::invalid_argument);
}

TEST_CASE("the spans of every sentence hold its day, month, year and a weekday that fits the date") {
  const auto month_of = [](const std::string& text) {
    static const char* const names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                        "jul", "aug", "sep", "oct", "nov", "dec"};
    if (std::isdigit(static_cast<unsigned char>(text[0]))) return std::stoi(text);
    for (int m = 0; m < 12; ++m)
      if (text.starts_with(names[m])) return m + 1;
    return -1;
  };
  for (int n = 0; n < dates::date_count(); n += 11) {  // every weekday, month and year
    const dates::Date date = dates::date_from_number(n);
    for (int format = 0; format < dates::format_count; ++format) {
      const dates::Rendered r = dates::render(date, format);
      const auto field = [&](dates::Span span) {
        return r.text.substr(static_cast<std::size_t>(span.begin), static_cast<std::size_t>(span.size()));
      };
      CAPTURE(r.text);
      REQUIRE(static_cast<int>(r.text.size()) <= dates::max_source_length());
      CHECK(std::stoi(field(r.day)) == date.day);  // stoi stops at an ordinal's "st"
      CHECK(month_of(field(r.month)) == date.month);
      CHECK(std::stoi(field(r.year)) == (r.year.size() == 2 ? date.year % 100 : date.year));
      if (r.weekday.size() > 0)
        CHECK(std::string(weekday_names[dates::day_of_week(date)]).starts_with(field(r.weekday)));
      for (char c : r.text) CHECK_NOTHROW(dates::source_vocabulary().id(c));
    }
  }
}

TEST_CASE("train and held-out sentences never share a (date, format) pair, and a seed fixes the sentences") {
  dates::Generator train(1, dates::Split::train), held_out(1, dates::Split::held_out);
  std::set<std::pair<int, int>> train_pairs, held_out_pairs;
  for (int i = 0; i < 4000; ++i) {
    const dates::Example a = train.next(), b = held_out.next();
    train_pairs.insert({dates::day_number(a.date), a.format});
    held_out_pairs.insert({dates::day_number(b.date), b.format});
    CHECK_FALSE(dates::is_held_out(a.date, a.format));
    CHECK(dates::is_held_out(b.date, b.format));
    CHECK(a.target == dates::iso(a.date));
  }
  for (const auto& pair : held_out_pairs) CHECK_FALSE(train_pairs.contains(pair));
  // About one pair in eight is held out.
  int held = 0;
  for (int n = 0; n < dates::date_count(); ++n) held += dates::is_held_out(dates::date_from_number(n), n % 12);
  CHECK(held > dates::date_count() / 10);
  CHECK(held < dates::date_count() / 6);

  dates::Generator again(1, dates::Split::train), other(2, dates::Split::train);
  dates::Generator first(1, dates::Split::train);
  int same = 0;
  for (int i = 0; i < 100; ++i) {
    const dates::Example a = first.next(), b = again.next(), c = other.next();
    CHECK(a.source.text == b.source.text);
    same += a.source.text == c.source.text ? 1 : 0;
  }
  CHECK(same < 5);
}

TEST_CASE("a generator restricted to some formats draws only those") {
  dates::Generator generator(3, dates::Split::held_out, {1, 4});
  for (int i = 0; i < 200; ++i) {
    const int format = generator.next().format;
    CHECK((format == 1 || format == 4));
  }
  CHECK_THROWS_AS(dates::Generator(3, dates::Split::train, {12}), std::invalid_argument);
}

TEST_CASE("a batch holds the source then EOS then PAD, BOS then the ISO date, and the ISO date then EOS") {
  dates::Generator generator(5, dates::Split::train);
  const std::int64_t rows = 3, length = dates::max_source_length() + 1, t_len = dates::target_length + 1;
  const dates::Batch batch = dates::make_batch(generator, rows, length);
  REQUIRE(batch.examples.size() == 3);
  REQUIRE(batch.source.size() == static_cast<std::size_t>(rows * length));
  REQUIRE(batch.decoder_input.size() == static_cast<std::size_t>(rows * t_len));
  const dates::Vocabulary& source = dates::source_vocabulary();
  const dates::Vocabulary& target = dates::target_vocabulary();
  for (std::int64_t b = 0; b < rows; ++b) {
    const std::string& text = batch.examples[static_cast<std::size_t>(b)].source.text;
    const std::string& iso = batch.examples[static_cast<std::size_t>(b)].target;
    const auto at = [&](const std::vector<std::int32_t>& ids, std::int64_t width, std::size_t i) {
      return ids[static_cast<std::size_t>(b * width) + i];
    };
    for (std::size_t i = 0; i < text.size(); ++i) CHECK(source.character(at(batch.source, length, i)) == text[i]);
    CHECK(at(batch.source, length, text.size()) == dates::eos);
    for (std::size_t i = text.size() + 1; i < static_cast<std::size_t>(length); ++i)
      CHECK(at(batch.source, length, i) == dates::pad);
    CHECK(at(batch.decoder_input, t_len, 0) == dates::bos);
    for (std::size_t i = 0; i < iso.size(); ++i) {
      CHECK(target.character(at(batch.decoder_input, t_len, i + 1)) == iso[i]);
      CHECK(target.character(at(batch.decoder_target, t_len, i)) == iso[i]);
    }
    CHECK(at(batch.decoder_target, t_len, iso.size()) == dates::eos);
  }
  // A source window too short for a sentence and its EOS is refused.
  CHECK_THROWS_AS(dates::make_batch(generator, 1, 8), std::invalid_argument);
}
