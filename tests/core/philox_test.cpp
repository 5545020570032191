#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include <fovea/backends/cpu/philox_lanes.h>
#include <fovea/core/philox.h>

namespace philox = fovea::philox;

namespace {

void check_block(const philox::Block& got, const philox::Block& want) {
  for (int lane = 0; lane < 4; ++lane) {
    CAPTURE(lane);
    CHECK(got.v[lane] == want.v[lane]);
  }
}

}  // namespace

TEST_CASE("philox4x32_10 matches the Random123 known answer for a zero counter and key") {
  check_block(philox::philox4x32_10({{0, 0, 0, 0}}, 0, 0), {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}});
}

TEST_CASE("philox4x32_10 matches the Random123 known answer for the digits-of-pi counter and key") {
  check_block(philox::philox4x32_10({{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u),
              {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}});
}

TEST_CASE("philox4x32_10 matches the Random123 known answer for an all-ones counter and key") {
  check_block(philox::philox4x32_10({{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu),
              {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}});
}

TEST_CASE("philox words put the block in the counter's low half and the stream in its high half") {
  const std::uint64_t seed = 0x0123456789abcdefull, stream = 0xfedcba9876543210ull, block = 0x1122334455667788ull;
  const philox::Block want =
      philox::philox4x32_10({{0x55667788u, 0x11223344u, 0x76543210u, 0xfedcba98u}}, 0x89abcdefu, 0x01234567u);
  check_block(philox::words(seed, stream, block), want);
}

TEST_CASE("philox uniform element i is lane i%4 of block i/4, scaled into the unit interval") {
  for (std::uint64_t i = 0; i < 64; ++i) {
    const philox::Block b = philox::words(7, 3, i / 4);
    const double u = philox::uniform(7, 3, i);
    CHECK(u == static_cast<double>(b.v[i % 4] >> 8) / 16777216.0);
    CHECK(u >= 0.0);
    CHECK(u < 1.0);
  }
  CHECK(philox::to_unit(0xffffffffu) < 1.0);
  CHECK(philox::to_unit(0u) == 0.0);
}

TEST_CASE("philox uniform over 1e5 samples has mean 1/2 and variance 1/12") {
  constexpr int n = 100000;
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < n; ++i) {
    const double u = philox::uniform(42, 9, static_cast<std::uint64_t>(i));
    sum += u;
    sum_sq += u * u;
  }
  const double mean = sum / n, variance = sum_sq / n - mean * mean;
  // Standard errors: 0.0009 for the mean, 0.0003 for the variance.
  CHECK(std::abs(mean - 0.5) < 0.005);
  CHECK(std::abs(variance - 1.0 / 12.0) < 0.002);
}

TEST_CASE("philox normal over 1e5 samples has mean 0 and standard deviation 1") {
  constexpr int n = 100000;
  double sum = 0, sum_sq = 0, sum_4 = 0;
  for (int i = 0; i < n; ++i) {
    const double z = philox::normal(42, 9, static_cast<std::uint64_t>(i));
    REQUIRE(std::isfinite(z));
    sum += z;
    sum_sq += z * z;
    sum_4 += z * z * z * z;
  }
  const double mean = sum / n, stddev = std::sqrt(sum_sq / n - mean * mean);
  CHECK(std::abs(mean) < 0.02);
  CHECK(std::abs(stddev - 1.0) < 0.02);
  CHECK(std::abs(sum_4 / n - 3.0) < 0.15);  // the fourth moment of a normal is 3
}

TEST_CASE("philox draws differ between streams, seeds and blocks") {
  int same_stream = 0, same_seed = 0;
  for (std::uint64_t i = 0; i < 1000; ++i) {
    const double u = philox::uniform(1, 2, i);
    same_stream += u == philox::uniform(1, 3, i);
    same_seed += u == philox::uniform(2, 2, i);
  }
  // Equal 24-bit draws happen by chance with odds 1000/2^24.
  CHECK(same_stream <= 1);
  CHECK(same_seed <= 1);
  CHECK(philox::uniform(1, 2, 0) != philox::uniform(1, 2, 4));
}

TEST_CASE("philox mix scatters neighbouring inputs") {
  CHECK(philox::mix(0) != philox::mix(1));
  CHECK(philox::mix(1) != philox::mix(2));
  CHECK(philox::mix(12345) == philox::mix(12345));
}

TEST_CASE("philox_uniform_run draws exactly philox::uniform's numbers from any starting element") {
  for (std::int64_t begin : {0, 1, 3, 4, 31, 1000003}) {
    for (std::int64_t n : {0, 1, 5, 32, 33, 100}) {
      std::vector<double> y(static_cast<std::size_t>(n));
      fovea::cpu_backend::portable::philox_uniform_run<double>(77, (1ull << 33) + 5, -1.0, 2.0, begin, n, y.data());
      for (std::int64_t i = 0; i < n; ++i) {
        CAPTURE(begin);
        CAPTURE(i);
        REQUIRE(y[static_cast<std::size_t>(i)] ==
                -1.0 + 3.0 * fovea::philox::uniform(77, (1ull << 33) + 5, static_cast<std::uint64_t>(begin + i)));
      }
    }
  }
}
