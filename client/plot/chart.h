// A figure of line charts and bar charts, drawn into a PNG with Cairo (Debian:
// libcairo2-dev). Cairo is a well-kept C library that draws, writes PNG and
// needs no display or external program, so `d2lora plot` works wherever the
// CLI runs (a container, CI); the axes, ticks and legends are the small part
// drawn here. No LibTorch.
#pragma once

#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"

namespace d2lora::plot {

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y); a non-finite y breaks the line
  bool markers = false;                           // a dot at every point (sparse series)
};

struct LineChart {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<Series> series;
  std::string empty_text = "no data";  // shown when no series has a finite point
  double reference = -1;               // a dashed line at this y (e.g. chance); < 0: none
  std::string reference_label;
  bool percent = false;                // y in [0, 1] shown as percentages
};

struct Bar {
  std::string label;
  double value = 0;
  double error = 0;  // drawn as +/- error; 0 draws none
};

struct BarChart {
  std::string title;
  std::string y_label;
  std::vector<Bar> bars;
  bool percent = false;      // values in [0, 1] shown as percentages, axis 0..100 %
  double reference = -1;     // a dashed line at this value (e.g. chance); < 0: none
  std::string reference_label;
};

using Chart = std::variant<LineChart, BarChart>;

struct Figure {
  std::string title;
  std::vector<Chart> charts;  // laid out two per row, in order
  int chart_width = 560;      // pixels per chart
  int chart_height = 340;
};

// "nice" tick positions covering [lo, hi]: about `target` steps of 1, 2 or 5
// times a power of ten. Exposed for the tests.
std::vector<double> NiceTicks(double lo, double hi, int target = 5);

// Draws `figure` and writes it to `path` as a PNG, whole or not at all
// (PATH.tmp, then renamed). Errors name the path.
absl::Status WritePng(const Figure& figure, const std::string& path);

}  // namespace d2lora::plot
