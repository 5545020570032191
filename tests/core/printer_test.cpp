#include <doctest/doctest.h>

#include <string>

#include <fovea/fovea.h>

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The line of `text` that contains `part`, or "" when none does.
std::string line_with(const std::string& text, const std::string& part) {
  const std::size_t at = text.find(part);
  if (at == std::string::npos) return "";
  const std::size_t begin = text.rfind('\n', at) + 1;  // npos + 1 == 0 on the first line
  const std::size_t end = text.find('\n', at);
  return text.substr(begin, end - begin);
}

// A test op with two outputs (a value and its negation), so that the ".k" suffix shows.
std::vector<fovea::TensorType> infer_two_copies(const fovea::InferContext& ctx) { return {ctx.input(0), ctx.input(0)}; }
const fovea::OpDef two_copies_op{.name = "two_copies", .min_inputs = 1, .max_inputs = 1, .infer = infer_two_copies};

}  // namespace

TEST_CASE("to_text lists placeholders as arguments and every op with its type, scope and the user's line") {
  fovea::Graph g;
  auto x = g.placeholder("x", fovea::f32, {2, 3});
  fovea::Value y;
  {
    auto scope = g.scope("block");
    auto b = g.parameter("b", fovea::f32, {3}, fovea::init::zeros());
    y = fovea::relu(fovea::add(x, b));
  }
  const std::string text = fovea::to_text(g);

  CHECK(contains(text, "graph main(%x: f32[2,3]) {"));
  CHECK(contains(text, "@block/b = parameter zeros : f32[3]"));
  CHECK(contains(text, "%2 = add(%x, @block/b) : f32[2,3]"));
  CHECK(contains(text, "%3 = relu(%2) : f32[2,3]"));
  // The comment names the scoped node and this file (its last two path components) and line.
  const std::string add_line = line_with(text, "= add(");
  CHECK(contains(add_line, "# block/add"));
  CHECK(contains(add_line, "core/printer_test.cpp:"));
  CHECK(contains(line_with(text, "= relu("), "# block/relu"));
  CHECK_FALSE(contains(text, "return"));
  CHECK(text.ends_with("}\n"));
}

TEST_CASE("to_text aligns the comments of a graph's lines in one column") {
  fovea::Graph g;
  auto x = g.placeholder("x", fovea::f32, {2, 3});
  auto y = fovea::exp(fovea::neg(x));
  const std::string text = fovea::to_text(g, {y});
  const std::string first = line_with(text, "= neg(");
  const std::string second = line_with(text, "= exp(");
  REQUIRE(contains(first, "#"));
  CHECK(first.find('#') == second.find('#'));
  CHECK(first.find("printer_test.cpp") == second.find("printer_test.cpp"));
}

TEST_CASE("to_text with outputs prints only the nodes they depend on and a return line") {
  fovea::Graph g;
  auto x = g.placeholder("x", fovea::f32, {4});
  auto unused = g.placeholder("unused", fovea::f32, {5});
  auto kept = fovea::exp(x);
  auto dropped = fovea::sin(unused);
  auto also_kept = fovea::tanh(x);
  const std::string text = fovea::to_text(g, {kept, also_kept});

  CHECK(contains(text, "graph main(%x: f32[4]) {"));
  CHECK(contains(text, "exp(%x) : f32[4]"));
  CHECK(contains(text, "tanh(%x) : f32[4]"));
  CHECK_FALSE(contains(text, "unused"));
  CHECK_FALSE(contains(text, "sin("));
  CHECK(contains(text, "  return %2, %4\n}"));
  (void)dropped;
}

TEST_CASE("to_text prints small constants inline and large ones by type only") {
  fovea::Graph g;
  auto x = g.placeholder("x", fovea::f32, {2, 2});
  auto small = g.constant(fovea::Tensor::from<float>({1, 2, 3, 4}, {2, 2}));
  auto large = g.constant(fovea::Tensor::full(fovea::f32, {10, 10}, 0.5));
  auto y = x * 0.5f + small;
  fovea::add(y, g.constant(fovea::Tensor::full(fovea::f32, {2, 2}, 1.0)));
  (void)large;
  const std::string text = fovea::to_text(g);

  CHECK(contains(text, "= constant [[1, 2], [3, 4]] : f32[2,2]"));
  CHECK(contains(text, "= constant : f32[10,10]"));
  CHECK(contains(text, "= constant 0.5 : f32[]"));
  CHECK(contains(text, "= constant [[1, 1], [1, 1]] : f32[2,2]"));
}

TEST_CASE("to_text names outputs of multi-output nodes with a .k suffix") {
  fovea::Graph g;
  auto x = g.placeholder("x", fovea::f32, {3});
  std::vector<fovea::Value> inputs{x};
  auto outs = g.apply(two_copies_op, inputs, {}, std::source_location::current());
  auto y = fovea::sub(outs[1], outs[0]);
  const std::string text = fovea::to_text(g, {y});

  CHECK(contains(text, "%1.0, %1.1 = two_copies(%x) : f32[3], f32[3]"));
  CHECK(contains(text, "%2 = sub(%1.1, %1.0) : f32[3]"));
}

TEST_CASE("to_text options hide locations and attributes and tag backward and update nodes") {
  fovea::Graph g;
  auto x = g.placeholder("x", fovea::f32, {2});
  auto forward = fovea::exp(x);
  g.set_role(fovea::NodeRole::backward);
  auto backward = fovea::mul(forward, x);
  g.set_role(fovea::NodeRole::update);
  auto update = fovea::sub(x, backward);
  g.set_role(fovea::NodeRole::forward);

  const std::string tagged = fovea::to_text(g, {update});
  CHECK(contains(line_with(tagged, "= mul("), "f32[2] [backward]"));
  CHECK(contains(line_with(tagged, "= sub("), "f32[2] [update]"));
  CHECK_FALSE(contains(line_with(tagged, "= exp("), "[backward]"));
  CHECK_FALSE(contains(line_with(tagged, "= exp("), "[forward]"));

  const std::string plain = fovea::to_text(g, {update}, {.show_locations = false, .roles = false});
  CHECK_FALSE(contains(plain, "#"));
  CHECK_FALSE(contains(plain, "[backward]"));
  CHECK(contains(plain, "  %2 = mul(%1, %x) : f32[2]\n"));

  fovea::Graph h;
  auto p = h.placeholder("p", fovea::f32, {2});
  auto q = h.apply1(fovea::ops::add, std::vector<fovea::Value>{p, p}, {{"note", std::string("hi")}},
                    std::source_location::current());
  CHECK(contains(fovea::to_text(h, {q}), "add(%p, %p) {note=\"hi\"} : f32[2]"));
  CHECK(contains(fovea::to_text(h, {q}, {.show_attributes = false}), "add(%p, %p) : f32[2]"));
}

TEST_CASE("to_text prints non-trainable state apart from parameters") {
  fovea::Graph g;
  auto w = g.parameter("w", fovea::f32, {3}, fovea::init::ones());
  auto moment = g.state("moment", fovea::f32, {3}, fovea::init::zeros());
  auto y = fovea::mul(w, moment);
  const std::string text = fovea::to_text(g, {y});
  CHECK(contains(text, "@w = parameter ones : f32[3]"));
  CHECK(contains(text, "@moment = state zeros : f32[3]"));
  CHECK(contains(text, "mul(@w, @moment) : f32[3]"));
}

TEST_CASE("to_text quotes names that could be misread") {
  fovea::Graph g("my graph");
  auto x = g.placeholder("input \"x\"", fovea::f32, {2});
  auto y = g.placeholder("2", fovea::f32, {2});
  auto z = x + y;
  const std::string text = fovea::to_text(g, {z});
  CHECK(contains(text, "graph \"my graph\"(%\"input \\\"x\\\"\": f32[2], %\"2\": f32[2]) {"));
  CHECK(contains(text, "add(%\"input \\\"x\\\"\", %\"2\") : f32[2]"));
}

TEST_CASE("to_text with an output from another graph throws fovea::Error") {
  fovea::Graph g, other("other");
  g.placeholder("x", fovea::f32, {2});
  auto foreign = other.placeholder("y", fovea::f32, {2});
  CHECK_THROWS_AS(fovea::to_text(g, {foreign}), fovea::Error);
  CHECK_THROWS_AS(fovea::to_text(g, {fovea::Value()}), fovea::Error);
}

TEST_CASE("short_location keeps the file's last two path components") {
  CHECK(fovea::short_location(fovea::SourceLoc()) == "");
  fovea::SourceLoc where;
  where.file = "/work/main/examples/quickstart/main.cpp";
  where.line = 21;
  CHECK(fovea::short_location(where) == "quickstart/main.cpp:21");
  where.file = "main.cpp";
  CHECK(fovea::short_location(where) == "main.cpp:21");
}
