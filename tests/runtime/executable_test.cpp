// compile() and run(): feeds are checked before anything runs, every mistake names the
// placeholder and the caller's line, and executables survive the graph growing.
#include "testing.h"

using namespace fovea;

TEST_CASE("a missing feed names the placeholder, its type and the caller's line") {
  Graph g;
  Value x = g.placeholder("x", f32, {2, 3});
  Value b = g.placeholder("bias", f32, {3});
  auto exe = compile(g, {x + b});
  const int line = __LINE__ + 2;
  try {
    exe.run({{x, Tensor::zeros(f32, {2, 3})}});
    FAIL("expected fovea::Error");
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK(what.find("placeholder 'bias' (f32[3]") != std::string::npos);
    CHECK(what.find("was not fed") != std::string::npos);
    CHECK(what.find("executable_test.cpp:" + std::to_string(line)) != std::string::npos);
  }
}

TEST_CASE("a feed of the wrong shape or dtype is rejected with both types") {
  Graph g;
  Value x = g.placeholder("x", f32, {2, 3});
  auto exe = compile(g, {fovea::relu(x)});
  CHECK_THROWS_WITH_AS(exe.run({{x, Tensor::zeros(f32, {3, 2})}}),
                       doctest::Contains("expects f32[2,3], but was fed f32[3,2]"), Error);
  CHECK_THROWS_WITH_AS(exe.run({{x, Tensor::zeros(f64, {2, 3})}}),
                       doctest::Contains("expects f32[2,3], but was fed f64[2,3]"), Error);
  CHECK_THROWS_WITH_AS(exe.run({{x, Tensor()}}), doctest::Contains("an undefined tensor"), Error);
}

TEST_CASE("feeding a non-placeholder, another graph's value or the same placeholder twice is an error") {
  Graph g, other;
  Value x = g.placeholder("x", f32, {2});
  Value unused = g.placeholder("unused", f32, {2});
  Value y = fovea::exp(x);
  Value foreign = other.placeholder("x", f32, {2});
  auto exe = compile(g, {y});
  const Tensor t = Tensor::zeros(f32, {2});
  CHECK_THROWS_WITH_AS(exe.run({{y, t}}), doctest::Contains("is not a placeholder"), Error);
  CHECK_NOTHROW(exe.run({{x, t}, {unused, t}}));  // not needed by these outputs: checked, then ignored
  CHECK_THROWS_WITH_AS(exe.run({{x, t}, {unused, Tensor::zeros(f32, {3})}}), doctest::Contains("expects f32[2]"),
                       Error);
  CHECK_THROWS_WITH_AS(exe.run({{foreign, t}}), doctest::Contains("is not a placeholder of graph"), Error);
  CHECK_THROWS_WITH_AS(exe.run({{x, t}, {x, t}}), doctest::Contains("fed twice"), Error);
}

TEST_CASE("compiling another graph's value or an undefined value is an error") {
  Graph g, other;
  Value x = g.placeholder("x", f32, {2});
  Value y = other.placeholder("y", f32, {2});
  CHECK_THROWS_WITH_AS(compile(g, {y}), doctest::Contains("belongs to graph"), Error);
  CHECK_THROWS_WITH_AS(compile(g, {Value{}}), doctest::Contains("undefined"), Error);
  CHECK_THROWS_WITH_AS(fovea::exp(x) + y, doctest::Contains("belongs to graph"), Error);
}

TEST_CASE("parameters are used in place: writing the persistent buffer changes the next run") {
  Graph g;
  Value x = g.placeholder("x", f32, {3});
  Value w = g.parameter("w", f32, {3}, init::ones());
  auto exe = compile(g, {x * w});
  const Tensor tx = Tensor::from<float>({1, 2, 3}, {3});
  CHECK(exe.run({{x, tx}})[0].at(2) == 3.0);
  g.parameter_value(w).data<float>()[2] = 10.0f;
  CHECK(exe.run({{x, tx}})[0].at(2) == 30.0);
}

TEST_CASE("an executable keeps working after the graph grows") {
  Graph g;
  Value x = g.placeholder("x", f32, {4});
  auto exe = compile(g, {fovea::exp(x)});
  for (int i = 0; i < 1000; ++i) (void)fovea::sin(x);  // forces the node storage to grow
  Tensor got = exe.run({{x, Tensor::zeros(f32, {4})}})[0];
  CHECK(got.at(3) == 1.0);
}

TEST_CASE("outputs are fresh tensors: later runs do not change earlier results") {
  Graph g;
  Value x = g.placeholder("x", f32, {2});
  auto exe = compile(g, {x + 1.0f});
  Tensor first = exe.run({{x, Tensor::from<float>({1, 2}, {2})}})[0];
  Tensor second = exe.run({{x, Tensor::from<float>({5, 6}, {2})}})[0];
  CHECK(first.at(0) == 2.0);
  CHECK(second.at(0) == 6.0);
  CHECK(first.raw() != second.raw());
}

TEST_CASE("an output tensor the caller dropped is reused by the next run instead of reallocated") {
  Graph g;
  Value x = g.placeholder("x", f32, {1000});
  Value y = fovea::exp(x) * 2.0f;  // y feeds z too: its kernel and z's read the same Tensor
  Value z = y + 1.0f;
  auto exe = compile(g, {y, z});
  const std::byte* first_y;
  {
    auto out = exe.run({{x, Tensor::zeros(f32, {1000})}});
    first_y = out[0].raw();
    CHECK(out[0].at(999) == 2.0);
    CHECK(out[1].at(999) == 3.0);
  }
  auto again = exe.run({{x, Tensor::full(f32, {1000}, std::log(2.0))}});
  CHECK(again[0].raw() == first_y);
  CHECK(again[0].at(5) == doctest::Approx(4.0));
  CHECK(again[1].at(5) == doctest::Approx(5.0));
  auto held = exe.run({{x, Tensor::zeros(f32, {1000})}});  // `again` still held: a new buffer
  CHECK(held[0].raw() != again[0].raw());
  CHECK(again[0].at(5) == doctest::Approx(4.0));
  CHECK(held[1].at(5) == doctest::Approx(3.0));
}

TEST_CASE("a value that is both input and output, or a parameter output, is returned correctly") {
  Graph g;
  Value x = g.placeholder("x", f32, {2});
  Value w = g.parameter("w", f32, {2}, init::constant(3.0));
  auto out = testing::run(g, {x, w, x * w}, {{x, Tensor::from<float>({1, 2}, {2})}});
  CHECK(out[0].at(1) == 2.0);
  CHECK(out[1].at(1) == 3.0);
  CHECK(out[2].at(1) == 6.0);
}

TEST_CASE("the executable prints its schedule with buffers") {
  Graph g;
  Value x = g.placeholder("x", f32, {2});
  auto exe = compile(g, {fovea::relu(x)});
  const std::string s = exe.to_string();
  CHECK(s.find("relu") != std::string::npos);
  CHECK(s.find("planned peak") != std::string::npos);
}

TEST_CASE("a feed holding NaN or infinity is rejected with the placeholder and the element's index") {
  Graph g;
  Value x = g.placeholder("images", f32, {2, 3});
  auto exe = compile(g, {fovea::relu(x)});
  Tensor bad = Tensor::zeros(f32, {2, 3});
  bad.data<float>()[4] = std::nanf("");
  CHECK_THROWS_WITH_AS(exe.run({{x, bad}}),
                       doctest::Contains("placeholder 'images' was fed NaN at element 4 (index [1,1]"), Error);
  bad.data<float>()[4] = -INFINITY;
  CHECK_THROWS_WITH_AS(exe.run({{x, bad}}), doctest::Contains("-inf"), Error);
  auto unchecked = compile(g, {fovea::relu(x)}, cpu(), {.check_finite_feeds = false});
  CHECK_NOTHROW(unchecked.run({{x, bad}}));
}

TEST_CASE("an arena no machine can hold is a fovea::Error naming its largest buffer, not bad_alloc") {
  Graph g;
  // 2^40 f32 elements: 4 TiB, a size that fits in 64 bits but in no test machine's memory.
  const int line = __LINE__ + 1;
  Value x = g.placeholder("x", f32, {std::int64_t{1} << 40});
  Value y = fovea::exp(x);
  try {
    (void)compile(g, {fovea::reduce_sum(y)});
    FAIL("expected fovea::Error");
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK(what.find("cannot allocate the arena of") != std::string::npos);
    CHECK(what.find("f32[1099511627776]") != std::string::npos);
    CHECK(what.find("4398046511104 bytes") != std::string::npos);
    CHECK(e.node().size() > 0);
    CHECK((e.node() == "x" || e.node() == "exp"));
    if (e.node() == "x") CHECK(what.find("executable_test.cpp:" + std::to_string(line)) != std::string::npos);
  }
}
