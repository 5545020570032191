#include <doctest/doctest.h>

#include <fovea/fovea.h>

TEST_CASE("a placeholder fed through add and relu gives the elementwise result") {
  fovea::Graph g;
  auto x = g.placeholder("x", fovea::f32, {2, 3});
  auto y = fovea::relu(x + 1.0f);
  auto exe = fovea::compile(g, {y});
  auto out = exe.run({{x, fovea::Tensor::from<float>({-3, -1, 0, 1, 2, -0.5f}, {2, 3})}});
  REQUIRE(out.size() == 1);
  const std::vector<float> want{0, 0, 1, 2, 3, 0.5f};
  for (int i = 0; i < 6; ++i) CHECK(out[0].at(i) == doctest::Approx(want[i]));
}

// A Value made from a raw ValueRef is the only way to name a node that does not exist yet (a
// cycle, or an id past the end): every place that takes Values refuses it with a fovea::Error.
TEST_CASE("a Value made from a raw ref to a node not built yet is refused, so no cycle can be spelled") {
  fovea::Graph g;
  fovea::Value x = g.placeholder("x", fovea::f32, {3});
  // The id the next node will get: exp(next) would be its own input.
  const fovea::Value next(&g, fovea::ValueRef{static_cast<std::uint32_t>(g.size()), 0});
  std::string what = "(no error)";
  const int line = __LINE__ + 2;
  try {
    (void)fovea::exp(next);
  } catch (const fovea::Error& e) {
    what = e.what();
  }
  CHECK(what.find("is not an output of any node built so far") != std::string::npos);
  CHECK(what.find("graph_test.cpp:" + std::to_string(line)) != std::string::npos);
  const fovea::Value far(&g, fovea::ValueRef{1000000, 0});
  CHECK_THROWS_WITH_AS(x + far, doctest::Contains("%1000000.0"), fovea::Error);
  const fovea::Value no_such_output(&g, fovea::ValueRef{0, 3});
  CHECK_THROWS_WITH_AS(fovea::exp(no_such_output), doctest::Contains("%0.3"), fovea::Error);
  CHECK(g.size() == 1);  // nothing was added
  CHECK_NOTHROW(g.verify());
}

TEST_CASE("a raw Value's type, name and node throw instead of reading past the graph") {
  fovea::Graph g;
  const fovea::Value raw(&g, fovea::ValueRef{7, 0});
  CHECK_THROWS_WITH_AS(raw.shape(), doctest::Contains("names no node output of graph 'main'"), fovea::Error);
  CHECK_THROWS_AS(raw.name(), fovea::Error);
  CHECK_THROWS_AS(raw.node(), fovea::Error);
  CHECK_FALSE(g.contains(raw.ref()));
}

TEST_CASE("compile and run refuse a raw Value that names no node, and one from another graph") {
  fovea::Graph g, other;
  fovea::Value x = g.placeholder("x", fovea::f32, {2});
  (void)other.placeholder("a", fovea::f32, {2});
  (void)other.placeholder("b", fovea::f32, {2});
  const fovea::Value raw(&g, fovea::ValueRef{5, 0});
  CHECK_THROWS_WITH_AS(fovea::compile(g, {raw}), doctest::Contains("compile: output 0 (%5.0)"), fovea::Error);
  // Valid in the other graph, absent from this one: still refused as another graph's value.
  const fovea::Value foreign(&other, fovea::ValueRef{1, 0});
  CHECK_THROWS_WITH_AS(fovea::compile(g, {foreign}), doctest::Contains("belongs to graph"), fovea::Error);
  CHECK_THROWS_WITH_AS(x + foreign, doctest::Contains("belongs to graph"), fovea::Error);
  auto exe = fovea::compile(g, {fovea::exp(x)});
  const fovea::Tensor t = fovea::Tensor::zeros(fovea::f32, {2});
  CHECK_THROWS_WITH_AS(exe.run({{x, t}, {raw, t}}), doctest::Contains("a feed names %5.0"), fovea::Error);
  CHECK_THROWS_AS(fovea::compile(g, {fovea::exp(x)}, fovea::cpu(), {.updates = {raw}}), fovea::Error);
}

// What a LocationScope must guarantee (core/graph.h): nodes and the sources' errors name its
// line, an inner scope keeps the outer one's, and the previous location comes back on exit,
// by an exception too.
TEST_CASE("a LocationScope locates nodes and source errors at its line, keeps an outer one and restores on exit") {
  fovea::Graph g;
  const fovea::SourceLoc user = std::source_location::current();
  const auto at_user = [&](const fovea::SourceLoc& where) { return where.line == user.line; };
  const auto error_at_user = [&](auto&& build) {
    try {
      build();
    } catch (const fovea::Error& e) {
      return at_user(e.where());
    }
    return false;
  };
  fovea::Value x;
  {
    auto at = g.at(user);
    x = g.placeholder("x", fovea::f32, {2, 3});
    CHECK(at_user(x.node().where));
    CHECK(at_user(fovea::relu(x).node().where));
    CHECK(at_user(g.parameter("w", fovea::f32, {3}, fovea::init::ones()).node().where));
    // Errors raised before a node exists, and by shape inference, name the scope's line too.
    CHECK(error_at_user([&] { (void)g.parameter("bad", fovea::i32, {3}, fovea::init::zeros()); }));
    CHECK(error_at_user([&] { (void)g.state("w", fovea::f32, {3}, fovea::init::zeros()); }));
    CHECK(error_at_user([&] { (void)g.placeholder("negative", fovea::f32, {-1}); }));
    CHECK(error_at_user([&] { (void)g.scalar(0.5, fovea::i32); }));
    CHECK(error_at_user([&] { (void)g.constant(fovea::Tensor()); }));
    CHECK(error_at_user([&] { (void)fovea::matmul(x, x); }));
    {
      auto inner = g.at(std::source_location::current());
      CHECK(at_user(inner.where()));
      CHECK(at_user(fovea::exp(x).node().where));
    }
    CHECK(at_user(g.location_override()));
    // An exception leaving an inner scope restores the outer location.
    CHECK_THROWS_AS(
        [&] {
          auto inner = g.at(std::source_location::current());
          (void)fovea::matmul(x, x);
        }(),
        fovea::Error);
    CHECK(at_user(g.location_override()));
  }
  CHECK_FALSE(g.location_override().known());
  CHECK_FALSE(at_user(fovea::exp(x).node().where));
  // And so does one leaving the outermost scope: no location stays in force.
  CHECK_THROWS_AS(
      [&] {
        auto at = g.at(user);
        (void)fovea::matmul(x, x);
      }(),
      fovea::Error);
  CHECK_FALSE(g.location_override().known());
}
