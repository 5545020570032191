// Charts as SVG text, written by hand: loss curves while training, heatmaps of attention maps
// or confusion matrices. No plotting library; a browser shows the files.
//
//   fovea::Series train{"train", steps, losses}, test{"test", epochs_x, test_losses};
//   fovea::write_loss_curve("loss.svg", {train, test}, {.title = "MLP on Fashion-MNIST", .log_y = true});
//
// Points whose x or y is NaN or infinite (or y <= 0 on a log axis) are skipped; the line joins
// the points around them. Smoothing (an EMA overlay) is the caller's business: pass it as
// another series.
#pragma once

#include <string>
#include <vector>

#include "fovea/core/tensor.h"

namespace fovea {

struct Series {
  std::string name;
  std::vector<double> x, y;  // the same length
};

struct ChartOptions {
  std::string title{}, x_label{}, y_label{};  // {}: designated initializers may leave them out
  bool log_y = false;
  int width = 720, height = 420;
};

// A line chart: axes with round-numbered ticks and grid lines, one polyline per series (in the
// order given, colours from a fixed palette), a legend naming them.
std::string line_chart_svg(const std::vector<Series>& series, const ChartOptions& options);

// Writes line_chart_svg atomically (temporary file, then rename), so that a viewer refreshing
// the file during training never sees half of it. Empty labels default to "loss" and "step".
void write_loss_curve(const std::string& svg_path, const std::vector<Series>& series, ChartOptions options = {});

// A heatmap of an f32 or f64 [rows, cols] matrix: white for its smallest value to dark blue for
// its largest, a colour bar, the labels on both axes (empty vectors: row and column numbers),
// and each cell's value as a tooltip.
std::string heatmap_svg(const Tensor& matrix, const std::vector<std::string>& row_labels,
                        const std::vector<std::string>& col_labels, const std::string& title);

// A grid of small images, one tile per image of an f32 or f64 [count, height, width] tensor,
// `columns` tiles a row, each scaled to its own range: grey from black (its minimum) to white
// (its maximum), or with `diverging` a scale symmetric about zero from blue through white to
// red (learned filters, whose sign matters). `labels` (empty, or one per image) go under the
// tiles; each pixel's value is a tooltip.
struct ImageGridOptions {
  std::string title{};
  std::vector<std::string> labels{};
  int columns = 8;
  double tile = 72;  // pixels per tile side (the longer side of a non-square image)
  bool diverging = false;
};
std::string image_grid_svg(const Tensor& images, const ImageGridOptions& options);

// Round tick values covering [low, high]: steps of 1, 2 or 5 × 10^k, about `target` of them.
std::vector<double> nice_ticks(double low, double high, int target = 6);

// Text made safe inside XML: & < > " ' become entities.
std::string escape_xml(const std::string& text);

}  // namespace fovea
