// Value statistics (Executable::set_value_statistics, runtime/statistics.cpp): every floating
// output of every step summarised after a run, the non-finite elements counted apart, and the
// summaries up to the failing node kept when anomaly mode stops a run.
#include <cmath>
#include <limits>
#include <vector>

#include "testing.h"

using namespace fovea;

namespace {

// The summary of `value` in the last run's statistics, which the test expects to hold it.
const ValueStatistics& statistics_of(const Executable& exe, const Value& value) {
  for (const ValueStatistics& s : exe.value_statistics())
    if (s.value == value.ref()) return s;
  FAIL("no statistics for " << value.name());
  return exe.value_statistics().front();
}

// The histogram as (bin, count) for its non-empty bins.
std::vector<std::pair<std::size_t, std::uint32_t>> occupied_bins(const ValueStatistics& s) {
  std::vector<std::pair<std::size_t, std::uint32_t>> bins;
  for (std::size_t i = 0; i < s.histogram.size(); ++i)
    if (s.histogram[i] > 0) bins.emplace_back(i, s.histogram[i]);
  return bins;
}

}  // namespace

TEST_CASE("value statistics summarise every floating output of a run and skip integer ones") {
  Graph g;
  const Value x = g.placeholder("x", f32, {8});
  const Value doubled = x * 2.0;
  const Value total = reduce_sum(doubled);
  const Value as_int = cast(doubled, i32);
  const Value as_half = cast(doubled, f16);
  Executable exe = compile(g, {total, as_int, as_half});
  const Tensor values = Tensor::from<float>({0, 1, 2, 3, 4, 5, 6, 7}, {8});
  exe.run({{x, values}});
  CHECK(exe.value_statistics().empty());  // off by default

  exe.set_value_statistics(true);
  exe.run({{x, values}});
  REQUIRE(exe.value_statistics().size() == 3);  // doubled, total and the half cast; not the i32 cast
  // 0, 2, ..., 14: mean 7, population standard deviation √21; bin i covers [14·i/24, 14·(i+1)/24).
  const ValueStatistics& d = statistics_of(exe, doubled);
  CHECK(d.count == 8);
  CHECK(d.nan_count == 0);
  CHECK(d.inf_count == 0);
  CHECK(d.min == 0);
  CHECK(d.max == 14);
  CHECK(d.mean == doctest::Approx(7));
  CHECK(d.std == doctest::Approx(std::sqrt(21.0)));
  REQUIRE(d.histogram.size() == ValueStatistics::bins);
  const std::vector<std::pair<std::size_t, std::uint32_t>> expected{{0, 1},  {3, 1},  {6, 1},  {10, 1},
                                                                    {13, 1}, {17, 1}, {20, 1}, {23, 1}};
  CHECK(occupied_bins(d) == expected);
  // A single element: no spread, everything in the first bin.
  const ValueStatistics& t = statistics_of(exe, total);
  CHECK(t.count == 1);
  CHECK(t.min == 56);
  CHECK(t.max == 56);
  CHECK(t.std == 0);
  CHECK(occupied_bins(t) == std::vector<std::pair<std::size_t, std::uint32_t>>{{0, 1}});
  // The f16 output, read as f16.
  CHECK(statistics_of(exe, as_half).max == 14);
  CHECK(statistics_of(exe, as_half).mean == doctest::Approx(7));

  exe.set_value_statistics(false);
  exe.run({{x, values}});
  CHECK(exe.value_statistics().size() == 3);  // the last run with statistics on
}

TEST_CASE("value statistics count NaN and infinities apart and summarise only the finite elements") {
  Graph g;
  const Value x = g.placeholder("x", f64, {6});
  const Value y = x * 1.0;
  Executable exe = compile(g, {y}, cpu(), {.check_finite_feeds = false});
  exe.set_value_statistics(true);
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  exe.run({{x, Tensor::from<double>({1, nan, inf, -inf, 3, nan}, {6})}});
  const ValueStatistics& s = statistics_of(exe, y);
  CHECK(s.count == 6);
  CHECK(s.nan_count == 2);
  CHECK(s.inf_count == 2);
  CHECK(s.min == 1);
  CHECK(s.max == 3);
  CHECK(s.mean == 2);
  CHECK(s.std == 1);
  CHECK(occupied_bins(s) == std::vector<std::pair<std::size_t, std::uint32_t>>{{0, 1}, {23, 1}});

  // No finite element: counts only, no range and no histogram.
  exe.run({{x, Tensor::from<double>({nan, nan, inf, inf, -inf, nan}, {6})}});
  const ValueStatistics& none = statistics_of(exe, y);
  CHECK(none.nan_count == 3);
  CHECK(none.inf_count == 3);
  CHECK(none.min == 0);
  CHECK(none.max == 0);
  CHECK(none.histogram.empty());
}

TEST_CASE("in anomaly mode a run stopped at a node keeps the statistics up to and including that node") {
  Graph g;
  const Value x = g.placeholder("x", f32, {3});
  const Value shifted = x + 1.0;
  const Value back = shifted - 1.0;
  const Value logged = fovea::log(back);  // log(0) = -inf out of finite inputs: anomaly mode stops here
  const Value scaled = logged * 2.0;
  Executable exe = compile(g, {scaled}, cpu(), {.check_finite = true});
  exe.set_value_statistics(true);
  CHECK_THROWS_AS(exe.run({{x, Tensor::from<float>({1, 0, 2}, {3})}}), Error);
  const std::vector<ValueStatistics>& all = exe.value_statistics();
  REQUIRE(all.size() == 3);
  CHECK(all[0].value == shifted.ref());
  CHECK(all[1].value == back.ref());
  CHECK(all[2].value == logged.ref());
  CHECK(all[2].inf_count == 1);
  CHECK(all[2].max == doctest::Approx(std::log(2.0)));

  // A healthy run summarises every step, the last one included.
  exe.run({{x, Tensor::from<float>({1, 3, 2}, {3})}});
  CHECK(exe.value_statistics().size() == 4);
  CHECK(exe.value_statistics().back().value == scaled.ref());
}

TEST_CASE("value statistics say which node made a NaN or an infinity and which only passed one on") {
  Graph g;
  const Value x = g.placeholder("x", f32, {4});
  const Value mask = g.constant(Tensor::from<float>({0, -std::numeric_limits<float>::infinity(), 0, 0}, {4}));
  const Value masked = x + mask;        // -inf from the mask: passed on, not made
  const Value logged = fovea::log(x);   // log(0) = -inf and log(-1) = NaN: made here
  const Value doubled = logged * 2.0f;  // passed on
  const Value scaled = x * 800.0f;
  const Value in_place = fovea::exp(scaled);  // overflows to +inf from finite inputs (written in place)
  Executable exe = compile(g, {masked, doubled, in_place});
  exe.set_value_statistics(true);
  exe.run({{x, Tensor::from<float>({1, 0, -1, 2}, {4})}});
  CHECK_FALSE(statistics_of(exe, masked).made_non_finite);
  CHECK(statistics_of(exe, logged).made_non_finite);
  CHECK_FALSE(statistics_of(exe, doubled).made_non_finite);
  CHECK(statistics_of(exe, in_place).made_non_finite);
  CHECK_FALSE(statistics_of(exe, scaled).made_non_finite);
}
