#include "client/plot/chart.h"

#include <cairo.h>

#include <cmath>
#include <filesystem>
#include <memory>

#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace d2lora::plot {
namespace {

using ::d2lora::testing::TempDir;

TEST(NiceTicksTest, StepsOfOneTwoOrFive) {
  EXPECT_EQ(NiceTicks(0, 1), (std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}));
  std::vector<double> t = NiceTicks(3, 97);
  ASSERT_EQ(t.size(), 6u);
  EXPECT_EQ(t.front(), 0);
  EXPECT_EQ(t.back(), 100);
  t = NiceTicks(1.701, 1.719);
  ASSERT_GE(t.size(), 3u);
  EXPECT_NEAR(t[1] - t[0], 0.005, 1e-12);
  EXPECT_LE(t.front(), 1.701);
  EXPECT_GE(t.back(), 1.719);
  EXPECT_EQ(NiceTicks(2, 2), std::vector<double>{2});  // no range: one tick
  EXPECT_EQ(NiceTicks(-5, 5, 2), (std::vector<double>{-5, 0, 5}));
}

struct Image {
  std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)> surface{nullptr, &cairo_surface_destroy};
  int width() const { return cairo_image_surface_get_width(surface.get()); }
  int height() const { return cairo_image_surface_get_height(surface.get()); }
  // Pixels within `tolerance` (per channel, 0..255) of the colour.
  int Count(int r, int g, int b, int tolerance = 12) const {
    cairo_surface_flush(surface.get());
    const unsigned char* data = cairo_image_surface_get_data(surface.get());
    const int stride = cairo_image_surface_get_stride(surface.get());
    int n = 0;
    for (int y = 0; y < height(); ++y) {
      const auto* row = reinterpret_cast<const uint32_t*>(data + y * stride);
      for (int x = 0; x < width(); ++x) {
        const int pr = (row[x] >> 16) & 0xff, pg = (row[x] >> 8) & 0xff, pb = row[x] & 0xff;
        n += std::abs(pr - r) <= tolerance && std::abs(pg - g) <= tolerance && std::abs(pb - b) <= tolerance;
      }
    }
    return n;
  }
};

Image ReadPng(const std::string& path) {
  Image image;
  image.surface.reset(cairo_image_surface_create_from_png(path.c_str()));
  EXPECT_EQ(cairo_surface_status(image.surface.get()), CAIRO_STATUS_SUCCESS) << path;
  return image;
}

TEST(ChartTest, DrawsLinesAndBarsIntoAPng) {
  LineChart lines;
  lines.title = "loss";
  Series s{"run", {}, false};
  for (int i = 1; i <= 50; ++i) s.points.emplace_back(i, 5.0 / i);
  s.points.emplace_back(51, std::nan(""));  // breaks the line, no crash
  lines.series.push_back(s);
  BarChart bars;
  bars.percent = true;
  bars.reference = 0.25;
  bars.bars = {{"base", 0.26, 0.02}, {"tuned", 0.71, 0.02}};
  Figure figure;
  figure.title = "a figure";
  figure.charts = {lines, bars};
  TempDir tmp;
  const std::string path = tmp.file("f.png");
  ASSERT_TRUE(WritePng(figure, path).ok());
  Image image = ReadPng(path);
  EXPECT_EQ(image.width(), 2 * figure.chart_width);
  EXPECT_EQ(image.height(), 36 + figure.chart_height);
  // The first palette colour (0, 115, 179) draws the line and the first bar,
  // the second (230, 158, 0) the second bar: their areas are in proportion.
  const int blue = image.Count(0, 115, 179, 30), orange = image.Count(230, 158, 0, 30);
  EXPECT_GT(blue, 2000);
  EXPECT_GT(orange, 2 * 2000);
  EXPECT_GT(image.Count(255, 255, 255), image.width() * image.height() / 2);  // mostly background
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(ChartTest, EmptyChartsStillDraw) {
  LineChart empty;
  empty.series.push_back({"nothing", {{1, std::nan("")}}, false});
  Figure figure;
  figure.charts = {empty, BarChart{}, LineChart{}};
  TempDir tmp;
  ASSERT_TRUE(WritePng(figure, tmp.file("e.png")).ok());
  Image image = ReadPng(tmp.file("e.png"));
  EXPECT_EQ(image.height(), 8 + 2 * figure.chart_height);  // two rows, no title
}

TEST(ChartTest, AnUnwritablePathIsAnErrorNamingIt) {
  TempDir tmp;
  const std::string path = tmp.file("no/such/dir/f.png");
  absl::Status status = WritePng(Figure{}, path);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find(tmp.file("no/such/dir")), std::string::npos) << status;
}

}  // namespace
}  // namespace d2lora::plot
