#include "fovea/io/plot.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "fovea/io/checkpoint.h"

namespace fovea {

namespace {

// Tableau's ten colours: distinct for the usual handful of series.
constexpr std::array<const char*, 10> palette = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

// The step between ticks: 1, 2 or 5 times a power of ten, near range / target.
double nice_step(double range, int target) {
  const double raw = range / std::max(target, 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double fraction = raw / magnitude;
  const double nice = fraction < 1.5 ? 1.0 : fraction < 3.0 ? 2.0 : fraction < 7.0 ? 5.0 : 10.0;
  return nice * magnitude;
}

// A tick label with just the decimals the step needs: 0.25, 1.5, 1000, 2e+06.
std::string tick_label(double value, double step) {
  if (value == 0.0) return "0";
  const double size = std::max(std::abs(value), step);
  if (size >= 1e6 || step < 1e-4) return fmt::format("{:g}", value);
  const int decimals = std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9)));
  return fmt::format("{:.{}f}", value, decimals);
}

// An axis: a data interval [low, high] mapped to pixels, with its ticks.
struct Axis {
  double low = 0, high = 1;
  bool log = false;
  std::vector<double> ticks;
  std::vector<std::string> labels;

  double fraction(double v) const {
    const double t = log ? std::log10(v) : v;
    return (t - low) / (high - low);
  }
};

Axis linear_axis(double min, double max) {
  Axis axis;
  if (!(min <= max)) {  // no finite data at all
    min = 0;
    max = 1;
  }
  if (min == max) {
    const double pad = min != 0 ? std::abs(min) * 0.1 : 1.0;
    min -= pad;
    max += pad;
  }
  const double step = nice_step(max - min, 6);
  axis.low = std::floor(min / step) * step;
  axis.high = std::ceil(max / step) * step;
  // At most a few dozen ticks, even where k + 1 == k (values near 1e17 spanning a few units).
  double k = std::floor(min / step);
  for (int i = 0; i < 40 && k * step <= axis.high + step * 1e-9; ++i, k += 1) {
    axis.ticks.push_back(k * step + 0.0);  // + 0.0 turns -0 into 0
    axis.labels.push_back(tick_label(k * step + 0.0, step));
  }
  return axis;
}

// Decades on a log axis, with 2 and 5 between them when the range is short.
Axis log_axis(double min, double max) {
  Axis axis;
  axis.log = true;
  if (!(min <= max)) {
    min = 1;
    max = 10;
  }
  const double low = std::floor(std::log10(min)), high = std::ceil(std::log10(max));
  axis.low = low;
  axis.high = high > low ? high : low + 1;
  const bool minor = axis.high - axis.low <= 2;
  const double every = std::ceil((axis.high - axis.low) / 10);  // decades between labelled ticks
  for (double k = axis.low; k <= axis.high; k += every) {
    for (double m : {1.0, 2.0, 5.0}) {
      if (m != 1.0 && (!minor || k == axis.high)) continue;
      const double v = m * std::pow(10.0, k);
      axis.ticks.push_back(v);
      axis.labels.push_back(fmt::format("{:g}", v));
    }
  }
  return axis;
}

bool usable(double x, double y, bool log_y) { return std::isfinite(x) && std::isfinite(y) && (!log_y || y > 0); }

std::string number(double v) { return fmt::format("{:.2f}", v); }

}  // namespace

std::vector<double> nice_ticks(double low, double high, int target) {
  if (!std::isfinite(low) || !std::isfinite(high) || !(low < high)) return {};
  const double step = nice_step(high - low, target);
  std::vector<double> ticks;
  double k = std::ceil(low / step - 1e-9);
  for (int i = 0; i < 4 * std::max(target, 1) + 4 && k * step <= high + step * 1e-9; ++i, k += 1)
    ticks.push_back(k * step + 0.0);
  return ticks;
}

std::string escape_xml(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// --- Line chart -------------------------------------------------------------------------------

namespace {

// A line chart's frame: its axes and the plot area inside the margins (title above, tick
// labels and axis names around), in pixels.
struct Frame {
  Axis x_axis, y_axis;
  double width = 0, height = 0, left = 0, right = 0, top = 0, bottom = 0;

  double px(double x) const { return left + x_axis.fraction(x) * (right - left); }
  double py(double y) const { return bottom - y_axis.fraction(y) * (bottom - top); }
};

// Rejects series whose x and y differ in length, and a chart too small or too large.
void check_chart(const std::vector<Series>& series, const ChartOptions& options) {
  for (const Series& s : series)
    if (s.x.size() != s.y.size())
      throw Error(
          fmt::format("line_chart_svg: series '{}' has {} x values but {} y values", s.name, s.x.size(), s.y.size()));
  if (options.width < 200 || options.height < 150 || options.width > 20000 || options.height > 20000)
    throw Error(fmt::format("line_chart_svg: a {}x{} chart is too small or too large (200x150 .. 20000x20000)",
                            options.width, options.height));
}

// The axes over the data's extent (the usable points of every series), and the plot area.
Frame chart_frame(const std::vector<Series>& series, const ChartOptions& options) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  double x_min = inf, x_max = -inf, y_min = inf, y_max = -inf;
  for (const Series& s : series)
    for (std::size_t i = 0; i < s.x.size(); ++i)
      if (usable(s.x[i], s.y[i], options.log_y)) {
        x_min = std::min(x_min, s.x[i]);
        x_max = std::max(x_max, s.x[i]);
        y_min = std::min(y_min, s.y[i]);
        y_max = std::max(y_max, s.y[i]);
      }
  Frame f;
  f.x_axis = linear_axis(x_min, x_max);
  f.y_axis = options.log_y ? log_axis(y_min, y_max) : linear_axis(y_min, y_max);
  f.width = options.width;
  f.height = options.height;
  f.left = 72;
  f.right = f.width - 20;
  f.top = options.title.empty() ? 20 : 44;
  f.bottom = f.height - 52;
  return f;
}

// The white page and the title.
std::string chart_page(const ChartOptions& options, const Frame& f) {
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n",
      options.width, options.height);
  if (!options.title.empty())
    svg +=
        fmt::format("<text x=\"{}\" y=\"26\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
                    number(f.width / 2), escape_xml(options.title));
  return svg;
}

// Grid lines, tick labels, the plot area's border and the axis names.
std::string chart_axes(const ChartOptions& options, const Frame& f) {
  std::string svg = "<g stroke=\"#e6e6e6\" stroke-width=\"1\">\n";
  for (double t : f.x_axis.ticks)
    svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\"/>\n", number(f.px(t)), number(f.top),
                       number(f.bottom));
  for (double t : f.y_axis.ticks)
    svg += fmt::format("<line x1=\"{1}\" y1=\"{0}\" x2=\"{2}\" y2=\"{0}\"/>\n", number(f.py(t)), number(f.left),
                       number(f.right));
  svg += "</g>\n<g fill=\"#333\">\n";
  for (std::size_t i = 0; i < f.x_axis.ticks.size(); ++i)
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", number(f.px(f.x_axis.ticks[i])),
                       number(f.bottom + 17), escape_xml(f.x_axis.labels[i]));
  for (std::size_t i = 0; i < f.y_axis.ticks.size(); ++i)
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", number(f.left - 6),
                       number(f.py(f.y_axis.ticks[i]) + 4), escape_xml(f.y_axis.labels[i]));
  svg += "</g>\n";
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\n",
                     number(f.left), number(f.top), number(f.right - f.left), number(f.bottom - f.top));
  if (!options.x_label.empty())
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", number((f.left + f.right) / 2),
                       number(f.height - 14), escape_xml(options.x_label));
  if (!options.y_label.empty())
    svg += fmt::format("<text transform=\"translate(18,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                       number((f.top + f.bottom) / 2), escape_xml(options.y_label));
  return svg;
}

// One polyline per series, clipped to the plot area.
std::string chart_lines(const std::vector<Series>& series, const ChartOptions& options, const Frame& f) {
  std::string svg = fmt::format(
      "<clipPath id=\"plot-area\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/></clipPath>\n"
      "<g clip-path=\"url(#plot-area)\" fill=\"none\" stroke-width=\"1.5\" stroke-linejoin=\"round\">\n",
      number(f.left), number(f.top), number(f.right - f.left), number(f.bottom - f.top));
  for (std::size_t k = 0; k < series.size(); ++k) {
    const Series& s = series[k];
    const char* colour = palette[k % palette.size()];
    std::string points;
    std::size_t count = 0;
    double last_x = 0, last_y = 0;
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!usable(s.x[i], s.y[i], options.log_y)) continue;
      last_x = f.px(s.x[i]);
      last_y = f.py(s.y[i]);
      if (count++ > 0) points += ' ';
      points += number(last_x) + "," + number(last_y);
    }
    svg += fmt::format("<polyline stroke=\"{}\" points=\"{}\"><title>{}</title></polyline>\n", colour, points,
                       escape_xml(s.name));
    if (count == 1)  // a single point draws no line; mark it
      svg += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{}\"/>\n", number(last_x), number(last_y), colour);
  }
  return svg + "</g>\n";
}

// The legend, top right inside the plot area.
std::string chart_legend(const std::vector<Series>& series, const Frame& f) {
  if (series.empty()) return "";
  std::size_t longest = 0;
  for (const Series& s : series) longest = std::max(longest, s.name.size());
  const double box_width = 34 + 7.0 * static_cast<double>(std::min<std::size_t>(longest, 40));
  const double box_height = 8 + 18.0 * static_cast<double>(series.size());
  const double bx = f.right - box_width - 8, by = f.top + 8;
  std::string svg = fmt::format(
      "<g>\n<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"white\" fill-opacity=\"0.85\" "
      "stroke=\"#bbb\"/>\n",
      number(bx), number(by), number(box_width), number(box_height));
  for (std::size_t k = 0; k < series.size(); ++k) {
    const double y = by + 16 + 18.0 * static_cast<double>(k);
    svg += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\"/>\n",
                       number(bx + 6), number(y - 4), number(bx + 26), number(y - 4), palette[k % palette.size()]);
    svg += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", number(bx + 30), number(y), escape_xml(series[k].name));
  }
  return svg + "</g>\n";
}

}  // namespace

std::string line_chart_svg(const std::vector<Series>& series, const ChartOptions& options) {
  check_chart(series, options);
  const Frame frame = chart_frame(series, options);
  return chart_page(options, frame) + chart_axes(options, frame) + chart_lines(series, options, frame) +
         chart_legend(series, frame) + "</svg>\n";
}

void write_loss_curve(const std::string& svg_path, const std::vector<Series>& series, ChartOptions options) {
  if (options.x_label.empty()) options.x_label = "step";
  if (options.y_label.empty()) options.y_label = "loss";
  write_file_atomically(svg_path, line_chart_svg(series, options));
}

// --- Heatmap ----------------------------------------------------------------------------------

// Colour of t in [0, 1]: linear from white (255,255,255) to dark blue (8,48,107).
static std::string heat_colour(double t) {
  t = std::clamp(t, 0.0, 1.0);
  auto channel = [t](int from, int to) { return static_cast<int>(std::lround(from + (to - from) * t)); };
  return fmt::format("#{:02x}{:02x}{:02x}", channel(255, 8), channel(255, 48), channel(255, 107));
}

std::string heatmap_svg(const Tensor& matrix, const std::vector<std::string>& row_labels,
                        const std::vector<std::string>& col_labels, const std::string& title) {
  if (!matrix.defined() || matrix.rank() != 2 || !is_floating(matrix.dtype()))
    throw Error(fmt::format("heatmap_svg: needs an f32 or f64 [rows, cols] matrix, got {}{}",
                            dtype_name(matrix.dtype()), matrix.shape().to_string()));
  const std::int64_t rows = matrix.shape()[0], cols = matrix.shape()[1];
  if (!row_labels.empty() && static_cast<std::int64_t>(row_labels.size()) != rows)
    throw Error(fmt::format("heatmap_svg: {} row labels for {} rows", row_labels.size(), rows));
  if (!col_labels.empty() && static_cast<std::int64_t>(col_labels.size()) != cols)
    throw Error(fmt::format("heatmap_svg: {} column labels for {} columns", col_labels.size(), cols));
  auto row_name = [&](std::int64_t r) { return row_labels.empty() ? std::to_string(r) : row_labels[r]; };
  auto col_name = [&](std::int64_t c) { return col_labels.empty() ? std::to_string(c) : col_labels[c]; };

  // The colour scale spans the finite values.
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (std::int64_t i = 0; i < matrix.numel(); ++i) {
    const double v = matrix.at(i);
    if (std::isfinite(v)) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  if (!(lo <= hi)) lo = hi = 0;

  // Square cells sized to fit about 600 pixels; labels thinned out when cells get small.
  const double cell = std::clamp(600.0 / static_cast<double>(std::max<std::int64_t>({rows, cols, 1})), 2.0, 40.0);
  const std::int64_t label_every = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(10.0 / cell)));
  const double font = std::min(12.0, std::max(cell, 10.0) * 0.9);
  std::size_t longest_row = 1, longest_col = 1;
  for (std::int64_t r = 0; r < rows; ++r) longest_row = std::max(longest_row, row_name(r).size());
  for (std::int64_t c = 0; c < cols; ++c) longest_col = std::max(longest_col, col_name(c).size());
  const double left = 12 + std::min(0.6 * font * static_cast<double>(longest_row), 200.0);
  const double top = (title.empty() ? 10 : 36) + std::min(0.6 * font * static_cast<double>(longest_col), 200.0) + 8;
  const double grid_width = cell * static_cast<double>(cols), grid_height = cell * static_cast<double>(rows);
  const double width = left + grid_width + 90, height = std::max(top + grid_height + 20, top + 140);

  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"{2}\">\n<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n",
      number(width), number(height), number(font));
  if (!title.empty())
    svg +=
        fmt::format("<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
                    number(width / 2), escape_xml(title));

  // Labels: rows on the left, columns on top, written upwards.
  svg += "<g fill=\"#333\">\n";
  for (std::int64_t r = 0; r < rows; r += label_every)
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\" dominant-baseline=\"middle\">{}</text>\n",
                       number(left - 4), number(top + (static_cast<double>(r) + 0.5) * cell), escape_xml(row_name(r)));
  for (std::int64_t c = 0; c < cols; c += label_every)
    svg += fmt::format("<text transform=\"translate({},{}) rotate(-90)\" dominant-baseline=\"middle\">{}</text>\n",
                       number(left + (static_cast<double>(c) + 0.5) * cell), number(top - 4), escape_xml(col_name(c)));
  svg += "</g>\n";

  // The cells, each with its value as a tooltip.
  svg += "<g>\n";
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      const double v = matrix.at(r * cols + c);
      const std::string fill = std::isfinite(v) ? heat_colour(hi > lo ? (v - lo) / (hi - lo) : 0.0) : "#d9d9d9";
      svg += fmt::format(
          "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{} / {}: {:.6g}</title></rect>\n",
          number(left + static_cast<double>(c) * cell), number(top + static_cast<double>(r) * cell), number(cell),
          number(cell), fill, escape_xml(row_name(r)), escape_xml(col_name(c)), v);
    }
  svg += "</g>\n";

  // The colour bar: the scale's top (dark) to bottom (white), with its ends labelled.
  const double bar_x = left + grid_width + 16, bar_height = std::max(grid_height, 120.0);
  svg += fmt::format(
      "<defs><linearGradient id=\"heat-scale\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">"
      "<stop offset=\"0\" stop-color=\"{}\"/><stop offset=\"1\" stop-color=\"{}\"/></linearGradient></defs>\n"
      "<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"{}\" fill=\"url(#heat-scale)\" stroke=\"#999\"/>\n"
      "<text x=\"{}\" y=\"{}\" dominant-baseline=\"middle\">{:.4g}</text>\n"
      "<text x=\"{}\" y=\"{}\" dominant-baseline=\"middle\">{:.4g}</text>\n",
      heat_colour(0), heat_colour(1), number(bar_x), number(top), number(bar_height), number(bar_x + 18),
      number(top + 6), hi, number(bar_x + 18), number(top + bar_height - 6), lo);
  svg += "</svg>\n";
  return svg;
}

namespace {

// One pixel's colour: grey for t in [0, 1], or for a diverging scale t in [-1, 1] from blue
// (33,102,172) through white to red (178,24,43).
std::string pixel_colour(double t, bool diverging) {
  auto mix = [](double a, double b, double u) { return static_cast<int>(std::lround(a + (b - a) * u)); };
  if (!diverging) {
    const int grey = mix(0, 255, std::clamp(t, 0.0, 1.0));
    return fmt::format("rgb({0},{0},{0})", grey);
  }
  const double u = std::clamp(std::abs(t), 0.0, 1.0);
  if (t < 0) return fmt::format("rgb({},{},{})", mix(255, 33, u), mix(255, 102, u), mix(255, 172, u));
  return fmt::format("rgb({},{},{})", mix(255, 178, u), mix(255, 24, u), mix(255, 43, u));
}

}  // namespace

std::string image_grid_svg(const Tensor& images, const ImageGridOptions& o) {
  if (!images.defined() || images.rank() != 3 || !is_floating(images.dtype()))
    throw Error(fmt::format("image_grid_svg: needs an f32 or f64 [count, height, width] tensor, got {}{}",
                            dtype_name(images.dtype()), images.shape().to_string()));
  const std::int64_t count = images.shape()[0], h = images.shape()[1], w = images.shape()[2];
  if (!o.labels.empty() && static_cast<std::int64_t>(o.labels.size()) != count)
    throw Error(fmt::format("image_grid_svg: {} labels for {} images", o.labels.size(), count));
  const std::int64_t columns =
      std::max<std::int64_t>(1, std::min<std::int64_t>(o.columns, std::max<std::int64_t>(count, 1)));
  const std::int64_t rows = (count + columns - 1) / columns;
  const double pixel = o.tile / static_cast<double>(std::max<std::int64_t>({h, w, 1}));
  const double label_height = o.labels.empty() ? 0 : 14, gap = 8, top = o.title.empty() ? gap : 30;
  const double tile_w = pixel * static_cast<double>(w), tile_h = pixel * static_cast<double>(h);
  const double width = gap + static_cast<double>(columns) * (tile_w + gap);
  const double height = top + static_cast<double>(rows) * (tile_h + label_height + gap);
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n",
      number(width), number(height));
  if (!o.title.empty())
    svg += fmt::format("<text x=\"{}\" y=\"20\" font-size=\"14\">{}</text>\n", number(gap), escape_xml(o.title));
  for (std::int64_t k = 0; k < count; ++k) {
    // Each tile on its own scale: [min, max], or [-m, m] with m its largest magnitude.
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (std::int64_t i = 0; i < h * w; ++i) {
      const double v = images.at(k * h * w + i);
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    }
    if (!(lo <= hi)) lo = hi = 0;
    const double magnitude = std::max(std::abs(lo), std::abs(hi));
    const double x0 = gap + static_cast<double>(k % columns) * (tile_w + gap);
    const double y0 = top + static_cast<double>(k / columns) * (tile_h + label_height + gap);
    for (std::int64_t r = 0; r < h; ++r)
      for (std::int64_t c = 0; c < w; ++c) {
        const double v = images.at((k * h + r) * w + c);
        const double t = o.diverging ? (magnitude > 0 ? v / magnitude : 0) : (hi > lo ? (v - lo) / (hi - lo) : 0.5);
        svg +=
            fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{:.4g}</title></rect>\n",
                        number(x0 + pixel * static_cast<double>(c)), number(y0 + pixel * static_cast<double>(r)),
                        number(pixel + 0.05), number(pixel + 0.05), pixel_colour(t, o.diverging), v);
      }
    if (!o.labels.empty())
      svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", number(x0 + tile_w / 2),
                         number(y0 + tile_h + 12), escape_xml(o.labels[static_cast<std::size_t>(k)]));
  }
  return svg + "</svg>\n";
}

}  // namespace fovea
