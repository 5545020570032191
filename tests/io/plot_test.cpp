// SVG charts: well-formed XML, one polyline per series, escaped text, bad values skipped.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <fovea/fovea.h>

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::size_t count(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (std::size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++n;
  return n;
}

// A small XML check: every tag closes in order, attribute values are quoted, and text holds no
// bare '<' or '&' outside an entity. Returns "" when well formed, else what is wrong.
std::string xml_problem(const std::string& xml) {
  std::vector<std::string> open;
  std::size_t i = 0;
  while (i < xml.size()) {
    if (xml[i] == '&') {
      const std::size_t semicolon = xml.find(';', i);
      if (semicolon == std::string::npos || semicolon - i > 6) return "bare & at " + std::to_string(i);
      i = semicolon + 1;
      continue;
    }
    if (xml[i] != '<') {
      ++i;
      continue;
    }
    std::size_t end = i + 1;
    char quote = 0;
    while (end < xml.size() && (quote || xml[end] != '>')) {
      if (xml[end] == '<' && !quote) return "'<' inside a tag at " + std::to_string(end);
      if (xml[end] == '"' || xml[end] == '\'') quote = quote == xml[end] ? 0 : (quote ? quote : xml[end]);
      ++end;
    }
    if (end >= xml.size()) return "unterminated tag at " + std::to_string(i);
    const std::string tag = xml.substr(i + 1, end - i - 1);
    const std::string name = tag.substr(tag[0] == '/' ? 1 : 0, tag.find_first_of(" />", 1) - (tag[0] == '/' ? 1 : 0));
    if (tag[0] == '/') {
      if (open.empty() || open.back() != name)
        return "</" + name + "> closes " + (open.empty() ? "nothing" : open.back());
      open.pop_back();
    } else if (tag.back() != '/') {
      open.push_back(name);
    }
    i = end + 1;
  }
  return open.empty() ? "" : "<" + open.back() + "> never closed";
}

bool well_formed_svg(const std::string& svg) {
  const std::string problem = xml_problem(svg);
  if (!problem.empty()) MESSAGE(problem);
  return problem.empty() && svg.rfind("<svg ", 0) == 0 && svg.substr(svg.size() - 7) == "</svg>\n";
}

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();
constexpr double inf_value = std::numeric_limits<double>::infinity();

}  // namespace

TEST_CASE("line_chart_svg draws one polyline per series, a legend, and escapes every label") {
  const std::vector<fovea::Series> series = {
      {"train <ema>", {0, 100, 200, 300}, {2.3, 0.9, 0.6, 0.5}},
      {"test & \"val\"", {100, 300}, {1.0, 0.7}},
  };
  const std::string svg =
      fovea::line_chart_svg(series, {.title = "loss < 1 & falling", .x_label = "step", .y_label = "cross-entropy"});
  CHECK(well_formed_svg(svg));
  CHECK(count(svg, "<polyline") == 2);
  CHECK(contains(svg, "train &lt;ema&gt;"));
  CHECK(contains(svg, "test &amp; &quot;val&quot;"));
  CHECK(contains(svg, "loss &lt; 1 &amp; falling"));
  CHECK(contains(svg, ">cross-entropy</text>"));
  CHECK(!contains(svg, "<ema>"));
  // Round ticks: the x axis runs 0..300 in steps of 50, y 0.4..2.4 in steps of 0.2.
  CHECK(contains(svg, ">150</text>"));
  CHECK(contains(svg, ">0.4</text>"));
  CHECK(contains(svg, ">1.0</text>"));
  CHECK(contains(svg, ">2.4</text>"));
}

TEST_CASE("line_chart_svg skips NaN and infinite points without crashing") {
  const std::vector<fovea::Series> series = {
      {"noisy", {0, 1, 2, 3, nan_value, 5}, {1.0, nan_value, inf_value, 0.5, 0.2, -inf_value}}};
  const std::string svg = fovea::line_chart_svg(series, {});
  CHECK(well_formed_svg(svg));
  CHECK(count(svg, "<polyline") == 1);
  CHECK(!contains(svg, "nan"));
  CHECK(!contains(svg, "inf"));
  // Two usable points, (0, 1) and (3, 0.5): two coordinate pairs in the polyline.
  const std::size_t begin = svg.find("points=\"", svg.find("<polyline")) + 8;
  const std::string points = svg.substr(begin, svg.find('"', begin) - begin);
  CHECK(count(points, ",") == 2);
}

TEST_CASE("line_chart_svg handles no series, empty series and a single point") {
  CHECK(well_formed_svg(fovea::line_chart_svg({}, {})));
  const std::string empty = fovea::line_chart_svg({{"nothing yet", {}, {}}}, {.title = "t"});
  CHECK(well_formed_svg(empty));
  CHECK(count(empty, "<polyline") == 1);
  const std::string single = fovea::line_chart_svg({{"one", {5}, {0.25}}, {"none", {}, {}}}, {});
  CHECK(well_formed_svg(single));
  CHECK(count(single, "<polyline") == 2);
  CHECK(count(single, "<circle") == 1);
}

TEST_CASE("line_chart_svg with log_y ticks at powers of ten and skips values that are not positive") {
  const std::vector<fovea::Series> series = {{"loss", {1, 2, 3, 4}, {2.0, 0.0, -1.0, 0.05}}};
  const std::string svg = fovea::line_chart_svg(series, {.log_y = true});
  CHECK(well_formed_svg(svg));
  CHECK(contains(svg, ">0.01</text>"));
  CHECK(contains(svg, ">0.1</text>"));
  CHECK(contains(svg, ">1</text>"));
  CHECK(contains(svg, ">10</text>"));
  const std::size_t begin = svg.find("points=\"", svg.find("<polyline")) + 8;
  CHECK(count(svg.substr(begin, svg.find('"', begin) - begin), ",") == 2);
}

TEST_CASE("line_chart_svg rejects series whose x and y differ in length") {
  CHECK_THROWS_AS(fovea::line_chart_svg({{"bad", {1, 2}, {1}}}, {}), fovea::Error);
  CHECK_THROWS_AS(fovea::line_chart_svg({}, {.width = 10, .height = 10}), fovea::Error);
}

TEST_CASE("nice_ticks picks steps of 1, 2 or 5 times a power of ten") {
  CHECK(fovea::nice_ticks(0, 1) == std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1});
  CHECK(fovea::nice_ticks(0, 1400) == std::vector<double>{0, 200, 400, 600, 800, 1000, 1200, 1400});
  CHECK(fovea::nice_ticks(-3, 7) == std::vector<double>{-2, 0, 2, 4, 6});
  CHECK(fovea::nice_ticks(1, 1).empty());
  CHECK(fovea::nice_ticks(0, inf_value).empty());
  CHECK(fovea::nice_ticks(1e17, 1e17 + 64).size() <= 28);  // no endless loop where k + 1 == k
}

TEST_CASE("write_loss_curve writes the SVG atomically with default axis names") {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / fmt::format("fovea-plot-{}", ::getpid());
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "loss.svg").string();
  fovea::write_loss_curve(path, {{"train", {1, 2, 3}, {3, 2, 1}}});
  CHECK(!std::filesystem::exists(path + ".tmp"));
  std::ifstream in(path);
  const std::string svg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(well_formed_svg(svg));
  CHECK(contains(svg, ">step</text>"));
  CHECK(contains(svg, ">loss</text>"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("heatmap_svg colours cells from white to dark blue with labels and value tooltips") {
  const fovea::Tensor m = fovea::Tensor::from<float>({0, 1, 2, 3, 4, 8}, {2, 3});
  const std::string svg = fovea::heatmap_svg(m, {"query <0>", "q1"}, {"k&0", "k1", "k2"}, "attention");
  CHECK(well_formed_svg(svg));
  CHECK(count(svg, "<title>") == 6);
  CHECK(contains(svg, "fill=\"#ffffff\"><title>query &lt;0&gt; / k&amp;0: 0</title>"));
  CHECK(contains(svg, "fill=\"#08306b\"><title>q1 / k2: 8</title>"));
  CHECK(contains(svg, ">attention</text>"));
}

TEST_CASE("heatmap_svg numbers rows and columns when no labels are given and greys out NaN cells") {
  const fovea::Tensor m = fovea::Tensor::from<double>({1, nan_value, 3, inf_value}, {2, 2});
  const std::string svg = fovea::heatmap_svg(m, {}, {}, "");
  CHECK(well_formed_svg(svg));
  CHECK(contains(svg, "<title>0 / 1: nan</title>"));
  CHECK(contains(svg, "fill=\"#d9d9d9\"><title>1 / 1: inf</title>"));
  CHECK(well_formed_svg(fovea::heatmap_svg(fovea::Tensor::zeros(fovea::f32, {0, 4}), {}, {}, "empty")));
}

TEST_CASE("heatmap_svg rejects a matrix that is not a float matrix and labels of the wrong count") {
  CHECK_THROWS_AS(fovea::heatmap_svg(fovea::Tensor::zeros(fovea::f32, {4}), {}, {}, ""), fovea::Error);
  CHECK_THROWS_AS(fovea::heatmap_svg(fovea::Tensor::zeros(fovea::i32, {2, 2}), {}, {}, ""), fovea::Error);
  CHECK_THROWS_AS(fovea::heatmap_svg(fovea::Tensor::zeros(fovea::f32, {2, 2}), {"a"}, {}, ""), fovea::Error);
  CHECK_THROWS_AS(fovea::heatmap_svg(fovea::Tensor::zeros(fovea::f32, {2, 2}), {}, {"a", "b", "c"}, ""), fovea::Error);
}

TEST_CASE("image_grid_svg draws one rect per pixel, each tile on its own scale, with labels and tooltips") {
  // Two 2x3 images: the first 0..5, the second all 7 (a flat tile is drawn mid-grey).
  fovea::Tensor images = fovea::Tensor::zeros(fovea::f32, {2, 2, 3});
  for (int i = 0; i < 6; ++i) {
    images.data<float>()[static_cast<std::size_t>(i)] = static_cast<float>(i);
    images.data<float>()[static_cast<std::size_t>(6 + i)] = 7.0f;
  }
  const std::string svg = fovea::image_grid_svg(images, {.title = "maps <&>", .labels = {"a", "b"}, .columns = 1});
  CHECK(well_formed_svg(svg));
  CHECK(count(svg, "<rect x=") == 12);
  CHECK(svg.find("rgb(0,0,0)") != std::string::npos);        // the first tile's minimum
  CHECK(svg.find("rgb(255,255,255)") != std::string::npos);  // and its maximum
  CHECK(svg.find("rgb(128,128,128)") != std::string::npos);  // the flat tile
  CHECK(svg.find("maps &lt;&amp;&gt;") != std::string::npos);
  CHECK(svg.find("<title>5</title>") != std::string::npos);
  CHECK(svg.find(">b</text>") != std::string::npos);
  // Diverging: symmetric about zero, negative blue, positive red.
  const fovea::Tensor signed_values = fovea::Tensor::from<double>({-2, 0, 1, 2}, {1, 2, 2});
  const std::string diverging = fovea::image_grid_svg(signed_values, {.diverging = true});
  CHECK(diverging.find("rgb(33,102,172)") != std::string::npos);
  CHECK(diverging.find("rgb(178,24,43)") != std::string::npos);
  CHECK(diverging.find("rgb(255,255,255)") != std::string::npos);
  CHECK_THROWS_AS(fovea::image_grid_svg(fovea::Tensor::zeros(fovea::f32, {4, 4}), {}), fovea::Error);
  CHECK_THROWS_AS(fovea::image_grid_svg(images, {.labels = {"only one"}}), fovea::Error);
}
