// Shapes whose element or byte count does not fit in 64 bits are refused where they are made,
// and sizes that fit but that no machine can hold are errors too, never a crash or bad_alloc.
#include <string>

#include "testing.h"

using namespace fovea;
using fovea::testing::error_of;

namespace {

constexpr std::int64_t two_to(int k) { return std::int64_t{1} << k; }

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("a shape whose element count overflows has no numel") {
  const Shape square{two_to(40), two_to(40)};  // 2^80 elements: unchecked, the product wrapped to 0
  CHECK_FALSE(square.checked_numel().has_value());
  CHECK_THROWS_WITH_AS(square.numel(), doctest::Contains("[1099511627776,1099511627776]"), Error);
  // A 0 in front does not excuse the overflowing stride of the dims after it.
  CHECK_FALSE(Shape{0, two_to(40), two_to(40)}.checked_numel().has_value());
  CHECK(Shape{two_to(40), two_to(40), 0}.checked_numel() == 0);
  // 2^62+1 elements fit in an int64, but not 4 bytes each: unchecked, that was a 4-byte buffer.
  const Shape long_vector{two_to(62) + 1};
  CHECK(long_vector.checked_numel() == two_to(62) + 1);
  CHECK_FALSE(long_vector.checked_bytes(4).has_value());
  CHECK(long_vector.checked_bytes(1) == two_to(62) + 1);
  CHECK(Shape{}.checked_bytes(8) == 8);
}

TEST_CASE("a placeholder whose element or byte count overflows names itself, its shape and the user's line") {
  Graph g;
  const int line = __LINE__ + 1;
  const std::string bytes = error_of([&] { g.placeholder("x", f32, {two_to(62) + 1}); });
  CHECK(contains(bytes, "placeholder"));
  CHECK(contains(bytes, "'x'"));
  CHECK(contains(bytes, "[4611686018427387905]"));
  CHECK(contains(bytes, "shape_test.cpp:" + std::to_string(line)));
  const std::string elements = error_of([&] { g.placeholder("y", f32, {two_to(40), two_to(40)}); });
  CHECK(contains(elements, "'y'"));
  CHECK(contains(elements, "[1099511627776,1099511627776]"));
  CHECK(g.size() == 0);
}

TEST_CASE("a parameter whose byte count overflows is refused before any buffer is made") {
  Graph g;
  const std::string what = error_of([&] { g.parameter("w", f64, {two_to(61), 4}, init::zeros()); });
  CHECK(contains(what, "'w'"));
  CHECK(contains(what, "[2305843009213693952,4]"));
  CHECK(contains(what, "shape_test.cpp:"));
  CHECK(g.size() == 0);
}

TEST_CASE("an op whose inferred output overflows names the node being built") {
  Graph g;
  Value column = g.placeholder("column", f32, {two_to(32), 1});  // 16 GiB each: representable
  Value row = g.placeholder("row", f32, {1, two_to(32)});
  const int line = __LINE__ + 1;
  const std::string what = error_of([&] { (void)(column + row); });
  CHECK(contains(what, "node 'add'"));
  CHECK(contains(what, "f32[4294967296,4294967296]"));
  CHECK(contains(what, "shape_test.cpp:" + std::to_string(line)));
}

TEST_CASE("a tensor too large to count or to allocate is a fovea::Error naming its shape and bytes") {
  CHECK_THROWS_WITH_AS(Tensor::zeros(f32, {two_to(62) + 1}), doctest::Contains("f32[4611686018427387905]"), Error);
  CHECK_THROWS_WITH_AS(Tensor::empty(f32, {two_to(40), two_to(40)}), doctest::Contains("64-bit"), Error);
  // 4 TiB is a valid size that no test machine has.
  const std::string what = error_of([] { (void)Tensor::empty(f32, {two_to(40)}); });
  CHECK(contains(what, "f32[1099511627776]"));
  CHECK(contains(what, "4398046511104 bytes"));
}

TEST_CASE("a parameter too large for memory names itself and leaves no node behind") {
  Graph g;
  const std::string what = error_of([&] { g.parameter("huge", f32, {two_to(40)}, init::zeros()); });
  CHECK(contains(what, "'huge'"));
  CHECK(contains(what, "4398046511104 bytes"));
  CHECK(contains(what, "shape_test.cpp:"));
  CHECK(g.size() == 0);
  CHECK_NOTHROW(g.verify());
}
