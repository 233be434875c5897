#include "client/plot/chart.h"

#include <cairo.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"

namespace d2lora::plot {
namespace {

struct Rgb {
  double r, g, b;
};
// Colour-blind-safe (Okabe-Ito).
constexpr std::array<Rgb, 7> kPalette = {{{0.00, 0.45, 0.70},
                                          {0.90, 0.62, 0.00},
                                          {0.00, 0.62, 0.45},
                                          {0.80, 0.40, 0.00},
                                          {0.34, 0.71, 0.91},
                                          {0.80, 0.47, 0.65},
                                          {0.94, 0.89, 0.26}}};
void SetColour(cairo_t* cr, const Rgb& c, double alpha = 1.0) { cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha); }

constexpr double kTitleFont = 15, kFont = 11.5, kSmallFont = 10.5;

enum class Align { kLeft, kCentre, kRight };
void Text(cairo_t* cr, double x, double y, const std::string& s, double size, Align align = Align::kLeft,
          bool bold = false) {
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  double dx = align == Align::kLeft ? 0 : align == Align::kCentre ? -e.x_advance / 2 : -e.x_advance;
  cairo_move_to(cr, x + dx, y);
  cairo_show_text(cr, s.c_str());
}

double TextWidth(cairo_t* cr, const std::string& s, double size) {
  cairo_set_font_size(cr, size);
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  return e.x_advance;
}

std::string TickLabel(double v, double step, bool percent) {
  if (percent) v *= 100, step *= 100;
  int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  std::string s = absl::StrFormat("%.*f", std::min(decimals, 6), v);
  if (s == "-0") s = "0";
  if (std::fabs(v) >= 1e5 || (v != 0 && std::fabs(v) < 1e-4)) s = absl::StrFormat("%.2g", v);
  return percent ? s + "%" : s;
}

// The plot area of a chart at (x0, y0) of size w x h, with its axes.
struct Area {
  double left, top, width, height;
  double x_lo, x_hi, y_lo, y_hi;
  double X(double x) const { return left + (x - x_lo) / (x_hi - x_lo) * width; }
  double Y(double y) const { return top + height - (y - y_lo) / (y_hi - y_lo) * height; }
};

// Draws a chart's title in its w x h cell at (x0, y0) and returns the plot
// area inside the cell (room left for the tick labels), axes [0, 1] x [0, 1].
Area Frame(cairo_t* cr, double x0, double y0, double w, double h, const std::string& title) {
  cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
  Text(cr, x0 + w / 2, y0 + 20, title, kTitleFont - 2, Align::kCentre, /*bold=*/true);
  return Area{x0 + 70, y0 + 32, w - 70 - 18, h - 32 - 48, 0, 1, 0, 1};
}

// Grid, ticks and labels for `a`; `x_ticks` empty draws no x ticks.
void Axes(cairo_t* cr, const Area& a, const std::vector<double>& x_ticks, const std::vector<double>& y_ticks,
          bool percent_y, const std::string& x_label, const std::string& y_label) {
  cairo_set_line_width(cr, 1);
  const double y_step = y_ticks.size() > 1 ? y_ticks[1] - y_ticks[0] : 1;
  for (double t : y_ticks) {
    double y = std::round(a.Y(t)) + 0.5;
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, a.left, y);
    cairo_line_to(cr, a.left + a.width, y);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
    Text(cr, a.left - 6, y + 4, TickLabel(t, y_step, percent_y), kSmallFont, Align::kRight);
  }
  const double x_step = x_ticks.size() > 1 ? x_ticks[1] - x_ticks[0] : 1;
  for (double t : x_ticks) {
    double x = std::round(a.X(t)) + 0.5;
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, x, a.top);
    cairo_line_to(cr, x, a.top + a.height);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
    Text(cr, x, a.top + a.height + 15, TickLabel(t, x_step, false), kSmallFont, Align::kCentre);
  }
  cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
  cairo_rectangle(cr, std::round(a.left) + 0.5, std::round(a.top) + 0.5, std::round(a.width), std::round(a.height));
  cairo_stroke(cr);
  cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
  if (!x_label.empty()) Text(cr, a.left + a.width / 2, a.top + a.height + 32, x_label, kFont, Align::kCentre);
  if (!y_label.empty()) {
    cairo_save(cr);
    cairo_translate(cr, a.left - 52, a.top + a.height / 2);
    cairo_rotate(cr, -M_PI / 2);
    Text(cr, 0, 0, y_label, kFont, Align::kCentre);
    cairo_restore(cr);
  }
}

void ReferenceLine(cairo_t* cr, const Area& a, double value, const std::string& label) {
  if (value < 0 || value < a.y_lo || value > a.y_hi) return;
  double y = a.Y(value);
  const double dash[] = {6, 4};
  cairo_set_dash(cr, dash, 2, 0);
  cairo_set_source_rgb(cr, 0.45, 0.1, 0.1);
  cairo_set_line_width(cr, 1.3);
  cairo_move_to(cr, a.left, y);
  cairo_line_to(cr, a.left + a.width, y);
  cairo_stroke(cr);
  cairo_set_dash(cr, nullptr, 0, 0);
  if (!label.empty()) Text(cr, a.left + 6, y - 5, label, kSmallFont);
}

void DrawLineChart(cairo_t* cr, const LineChart& chart, double x0, double y0, double w, double h) {
  Area a = Frame(cr, x0, y0, w, h, chart.title);
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
  for (const Series& s : chart.series) {
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      x_lo = std::min(x_lo, x), x_hi = std::max(x_hi, x);
      y_lo = std::min(y_lo, y), y_hi = std::max(y_hi, y);
    }
  }
  if (!std::isfinite(x_lo)) {
    Axes(cr, a, {}, {}, false, chart.x_label, chart.y_label);
    cairo_set_source_rgb(cr, 0.45, 0.45, 0.45);
    Text(cr, a.left + a.width / 2, a.top + a.height / 2, chart.empty_text, kFont, Align::kCentre);
    return;
  }
  if (chart.reference >= 0) y_lo = std::min(y_lo, chart.reference), y_hi = std::max(y_hi, chart.reference);
  if (x_hi == x_lo) x_lo -= 0.5, x_hi += 0.5;
  if (y_hi == y_lo) y_lo -= std::max(0.5, std::fabs(y_lo) * 0.1), y_hi += std::max(0.5, std::fabs(y_hi) * 0.1);
  std::vector<double> y_ticks = NiceTicks(y_lo, y_hi);
  std::vector<double> x_ticks = NiceTicks(x_lo, x_hi, 6);
  a.x_lo = x_lo, a.x_hi = x_hi;
  a.y_lo = std::min(y_lo, y_ticks.front()), a.y_hi = std::max(y_hi, y_ticks.back());
  std::vector<double> shown_x;
  for (double t : x_ticks) {
    if (t >= x_lo - 1e-9 && t <= x_hi + 1e-9) shown_x.push_back(t);
  }
  Axes(cr, a, shown_x, y_ticks, chart.percent, chart.x_label, chart.y_label);
  ReferenceLine(cr, a, chart.reference, chart.reference_label);

  cairo_save(cr);
  cairo_rectangle(cr, a.left - 4, a.top - 4, a.width + 8, a.height + 8);  // whole markers at the edges
  cairo_clip(cr);
  for (size_t i = 0; i < chart.series.size(); ++i) {
    const Series& s = chart.series[i];
    SetColour(cr, kPalette[i % kPalette.size()]);
    cairo_set_line_width(cr, 1.8);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    bool open = false;
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) {
        open = false;
        continue;
      }
      if (open) {
        cairo_line_to(cr, a.X(x), a.Y(y));
      } else {
        cairo_move_to(cr, a.X(x), a.Y(y));
        open = true;
      }
    }
    cairo_stroke(cr);
    if (s.markers) {
      for (const auto& [x, y] : s.points) {
        if (!std::isfinite(x) || !std::isfinite(y)) continue;
        cairo_arc(cr, a.X(x), a.Y(y), 3.2, 0, 2 * M_PI);
        cairo_fill(cr);
      }
    }
  }
  cairo_restore(cr);

  // The legend: the series with data, in the corner of the plot that hides the fewest points.
  std::vector<size_t> listed;
  for (size_t i = 0; i < chart.series.size(); ++i) {
    for (const auto& [x, y] : chart.series[i].points) {
      if (std::isfinite(x) && std::isfinite(y)) {
        listed.push_back(i);
        break;
      }
    }
  }
  double legend_w = 0;
  for (size_t i : listed) legend_w = std::max(legend_w, TextWidth(cr, chart.series[i].name, kSmallFont));
  const double box_w = legend_w + 34, box_h = 16.0 * static_cast<double>(listed.size()) + 4;
  double best_x = 0, best_y = 0;
  int64_t best_hidden = -1;
  for (int corner = 0; corner < 4; ++corner) {  // top right, bottom right, top left, bottom left
    double bx = corner < 2 ? a.left + a.width - box_w - 4 : a.left + 6;
    double by = corner % 2 == 0 ? a.top + 6 : a.top + a.height - box_h - 6;
    int64_t hidden = 0;
    for (const Series& s : chart.series) {
      for (const auto& [x, y] : s.points) {
        if (!std::isfinite(x) || !std::isfinite(y)) continue;
        double px = a.X(x), py = a.Y(y);
        hidden += px >= bx - 6 && px <= bx + box_w + 6 && py >= by - 6 && py <= by + box_h + 6;
      }
    }
    if (best_hidden < 0 || hidden < best_hidden) best_hidden = hidden, best_x = bx, best_y = by;
  }
  cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
  cairo_rectangle(cr, best_x, best_y, box_w, box_h);
  cairo_fill(cr);
  for (size_t k = 0; k < listed.size(); ++k) {
    const size_t i = listed[k];
    double y = best_y + 16.0 * static_cast<double>(k) + 10;
    SetColour(cr, kPalette[i % kPalette.size()]);
    cairo_set_line_width(cr, 2.5);
    cairo_move_to(cr, best_x + 4, y);
    cairo_line_to(cr, best_x + 24, y);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
    Text(cr, best_x + 29, y + 4, chart.series[i].name, kSmallFont);
  }
}

void DrawBarChart(cairo_t* cr, const BarChart& chart, double x0, double y0, double w, double h) {
  Area a = Frame(cr, x0, y0, w, h, chart.title);
  double top = chart.percent ? 1.0 : 0;
  for (const Bar& b : chart.bars) top = std::max(top, b.value + std::max(0.0, b.error));
  if (top <= 0) top = 1;
  std::vector<double> y_ticks = NiceTicks(0, top);
  a.y_hi = std::max(top, y_ticks.back());
  Axes(cr, a, {}, y_ticks, chart.percent, "", chart.y_label);
  if (chart.bars.empty()) {
    cairo_set_source_rgb(cr, 0.45, 0.45, 0.45);
    Text(cr, a.left + a.width / 2, a.top + a.height / 2, "no data", kFont, Align::kCentre);
    return;
  }
  const double slot = a.width / static_cast<double>(chart.bars.size());
  for (size_t i = 0; i < chart.bars.size(); ++i) {
    const Bar& b = chart.bars[i];
    double cx = a.left + slot * (static_cast<double>(i) + 0.5);
    double bw = std::min(slot * 0.6, 90.0);
    double value = std::isfinite(b.value) ? std::max(0.0, b.value) : 0.0;
    SetColour(cr, kPalette[i % kPalette.size()]);
    cairo_rectangle(cr, cx - bw / 2, a.Y(value), bw, a.Y(0) - a.Y(value));
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    if (b.error > 0) {
      cairo_set_line_width(cr, 1.4);
      double lo = a.Y(std::max(0.0, value - b.error)), hi = a.Y(value + b.error);
      cairo_move_to(cr, cx, lo);
      cairo_line_to(cr, cx, hi);
      cairo_move_to(cr, cx - 6, lo);
      cairo_line_to(cr, cx + 6, lo);
      cairo_move_to(cr, cx - 6, hi);
      cairo_line_to(cr, cx + 6, hi);
      cairo_stroke(cr);
    }
    std::string label = chart.percent ? absl::StrFormat("%.1f%%", value * 100) : absl::StrFormat("%.4g", value);
    if (b.error > 0) {
      absl::StrAppend(&label, chart.percent ? absl::StrFormat(" ± %.1f", b.error * 100)
                                            : absl::StrFormat(" ± %.2g", b.error));
    }
    Text(cr, cx, a.Y(value + std::max(0.0, b.error)) - 6, label, kSmallFont, Align::kCentre, /*bold=*/true);
    Text(cr, cx, a.top + a.height + 16, b.label, kFont, Align::kCentre);
  }
  ReferenceLine(cr, a, chart.reference, chart.reference_label);
}

cairo_status_t AppendPng(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

}  // namespace

std::vector<double> NiceTicks(double lo, double hi, int target) {
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  const double raw = (hi - lo) / std::max(1, target);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * magnitude;
    if (step >= raw) break;
  }
  std::vector<double> ticks;
  for (double t = std::floor(lo / step) * step; t < hi + step * 0.999; t += step) {
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0.0 : t);
    if (ticks.size() > 100) break;
  }
  return ticks;
}

absl::Status WritePng(const Figure& figure, const std::string& path) {
  const int columns = figure.charts.size() > 1 ? 2 : 1;
  const int rows = std::max<int>(1, static_cast<int>((figure.charts.size() + 1) / 2));
  const int title_h = figure.title.empty() ? 8 : 36;
  const int width = columns * figure.chart_width, height = title_h + rows * figure.chart_height;
  std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)> surface(
      cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height), &cairo_surface_destroy);
  if (cairo_surface_status(surface.get()) != CAIRO_STATUS_SUCCESS) {
    return absl::InternalError(absl::StrCat(path, ": cannot make a ", width, "x", height, " image: ",
                                            cairo_status_to_string(cairo_surface_status(surface.get()))));
  }
  std::unique_ptr<cairo_t, decltype(&cairo_destroy)> cr(cairo_create(surface.get()), &cairo_destroy);
  cairo_set_source_rgb(cr.get(), 1, 1, 1);
  cairo_paint(cr.get());
  if (!figure.title.empty()) {
    cairo_set_source_rgb(cr.get(), 0.1, 0.1, 0.1);
    Text(cr.get(), width / 2.0, 25, figure.title, kTitleFont, Align::kCentre, /*bold=*/true);
  }
  for (size_t i = 0; i < figure.charts.size(); ++i) {
    const double x0 = static_cast<double>(i % 2) * figure.chart_width;
    const double y0 = title_h + static_cast<double>(i / 2) * figure.chart_height;
    if (const auto* line = std::get_if<LineChart>(&figure.charts[i])) {
      DrawLineChart(cr.get(), *line, x0, y0, figure.chart_width, figure.chart_height);
    } else {
      DrawBarChart(cr.get(), std::get<BarChart>(figure.charts[i]), x0, y0, figure.chart_width,
                   figure.chart_height);
    }
  }
  cairo_surface_flush(surface.get());
  std::string png;
  cairo_status_t status = cairo_surface_write_to_png_stream(surface.get(), &AppendPng, &png);
  if (status != CAIRO_STATUS_SUCCESS) {
    return absl::InternalError(absl::StrCat(path, ": cannot encode the PNG: ", cairo_status_to_string(status)));
  }
  return WriteFileAtomically(path, png);
}

}  // namespace d2lora::plot
