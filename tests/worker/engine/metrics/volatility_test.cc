#include "worker/engine/metrics/volatility.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace d2lora::engine {
namespace {

using ::testing::HasSubstr;

constexpr double kTol = 1e-12;

// The series used below, window 4, spike factor 1.5, EMA decay 0.9:
//
//   step      1    2    3    4    5    6    7    8    9
//   loss     2.0  1.8  1.9  1.5  3.0  1.4  1.3  1.2  1.1
//
// Spikes: the EMA before each step is 2.0, 1.98, 1.972, 1.9248, 2.03232, ...
// (ema' = 0.9 ema + 0.1 loss); thresholds 1.5 x EMA are 3.0, 2.97, 2.958,
// 2.8872, 3.04848, 2.953632, ... Only step 5 (3.0 > 2.8872) is a spike; it
// leaves the 4-step window at step 9.
//
// Window statistics, by hand (exact fractions):
//   step 2: window {2.0, 1.8}: mean 1.9, var ((0.1^2 + 0.1^2) / 1) = 1/50,
//           cv = sqrt(1/50) / 1.9 = 0.07443229275647...; one difference: no volatility.
//   step 3: diffs {-0.2, 0.1}: mean -0.05, var (0.15^2 + 0.15^2) / 1 = 9/200,
//           volatility = sqrt(9/200) = 0.21213203435596...
//           window {2.0, 1.8, 1.9}: mean 1.9, var (0.01 + 0.01 + 0) / 2 = 1/100, cv = 0.1 / 1.9.
//   step 4: diffs {-0.2, 0.1, -0.4}: mean -1/6, deviations -1/30, 8/30, -7/30,
//           var (1 + 64 + 49) / 900 / 2 = 19/300, volatility = sqrt(19/300) = 0.25166114784235...
//           window {2.0, 1.8, 1.9, 1.5}: mean 1.8, var (0.04 + 0 + 0.01 + 0.09) / 3 = 7/150,
//           cv = sqrt(7/150) / 1.8 = 0.12001371663718...
//   step 5: window {1.8, 1.9, 1.5, 3.0} (2.0 slid out): diffs {0.1, -0.4, 1.5}, mean 0.4,
//           var (0.09 + 0.64 + 1.21) / 2 = 97/100, volatility = 0.98488578017961...
//           mean 2.05, var (0.0625 + 0.0225 + 0.3025 + 0.9025) / 3 = 43/100,
//           cv = sqrt(0.43) / 2.05 = 0.31987504996595...
//   step 8: window {3.0, 1.4, 1.3, 1.2}: diffs {-1.6, -0.1, -0.1}, mean -0.6,
//           var (1 + 0.25 + 0.25) / 2 = 3/4, volatility = 0.86602540378443...
//   step 9: window {1.4, 1.3, 1.2, 1.1}: diffs all -0.1, volatility 0 (up to rounding).
//
// Whole-run statistics are derived in RunStatistics below.
const std::vector<double> kLosses = {2.0, 1.8, 1.9, 1.5, 3.0, 1.4, 1.3, 1.2, 1.1};

TEST(VolatilityTrackerTest, HandComputedSeries) {
  VolatilityTracker t(4, 1.5, 0.9);
  std::vector<VolatilityStats> s;
  for (double l : kLosses) s.push_back(t.Add(l));

  EXPECT_FALSE(s[0].volatility.has_value());
  EXPECT_FALSE(s[0].loss_cv.has_value());
  EXPECT_EQ(s[0].window_steps, 1);

  EXPECT_FALSE(s[1].volatility.has_value());
  EXPECT_NEAR(*s[1].loss_cv, std::sqrt(1.0 / 50) / 1.9, kTol);

  EXPECT_NEAR(*s[2].volatility, std::sqrt(9.0 / 200), kTol);
  EXPECT_NEAR(*s[2].volatility, 0.21213203435596426, kTol);
  EXPECT_NEAR(*s[2].loss_cv, 0.1 / 1.9, kTol);

  EXPECT_NEAR(*s[3].volatility, 0.2516611478423583, kTol);
  EXPECT_NEAR(*s[3].loss_cv, 0.12001371663718259, kTol);
  EXPECT_EQ(s[3].window_steps, 4);

  EXPECT_NEAR(*s[4].volatility, 0.9848857801796105, kTol);
  EXPECT_NEAR(*s[4].loss_cv, 0.3198750499659513, kTol);
  EXPECT_EQ(s[4].window_steps, 4);

  EXPECT_NEAR(*s[7].volatility, std::sqrt(0.75), kTol);
  EXPECT_NEAR(*s[8].volatility, 0.0, 1e-9);

  // The spike at step 5 stays in the window for steps 5..8.
  const std::vector<int64_t> in_window = {0, 0, 0, 0, 1, 1, 1, 1, 0};
  for (size_t i = 0; i < kLosses.size(); ++i) {
    EXPECT_EQ(s[i].spikes_in_window, in_window[i]) << "step " << i + 1;
    EXPECT_EQ(s[i].spikes_total, i >= 4 ? 1 : 0) << "step " << i + 1;
  }
}

TEST(VolatilityTrackerTest, RunStatistics) {
  VolatilityTracker t(4, 1.5, 0.9);
  EXPECT_EQ(t.run().steps, 0);
  EXPECT_FALSE(t.run().loss_first.has_value());
  for (double l : kLosses) t.Add(l);
  const RunVolatility r = t.run();
  EXPECT_EQ(r.steps, 9);
  EXPECT_EQ(r.spikes, 1);
  EXPECT_EQ(*r.loss_first, 2.0);
  EXPECT_EQ(*r.loss_last, 1.1);
  // Differences d = -0.2, 0.1, -0.4, 1.5, -1.6, -0.1, -0.1, -0.1: sum -0.9, mean -0.1125;
  // sum of squares 0.04 + 0.01 + 0.16 + 2.25 + 2.56 + 0.01 x 3 = 5.05;
  // var = (5.05 - 8 x 0.1125^2) / 7 = (5.05 - 0.10125) / 7 = 4.94875 / 7 = 3959/5600.
  EXPECT_NEAR(*r.volatility, std::sqrt(3959.0 / 5600), kTol);
  EXPECT_NEAR(*r.volatility, 0.8408116826699578, kTol);
  // |d| sum 0.2 + 0.1 + 0.4 + 1.5 + 1.6 + 0.3 = 4.1, over 8: 41/80.
  EXPECT_NEAR(*r.mean_abs_change, 41.0 / 80, kTol);
}

TEST(VolatilityTrackerTest, FirstStepNeverSpikesAndSpikeUsesEmaBefore) {
  VolatilityTracker t(10, 1.5, 0.5);
  EXPECT_EQ(t.Add(100.0).spikes_total, 0);
  // EMA before is 100: 150 is not > 150, 151 would be.
  EXPECT_EQ(t.Add(150.0).spikes_total, 0);  // ema -> 125
  EXPECT_EQ(t.Add(187.6).spikes_total, 1);  // > 187.5
}

TEST(VolatilityTrackerTest, ZeroMeanLeavesCvUnset) {
  VolatilityTracker t;
  t.Add(1.0);
  const VolatilityStats s = t.Add(-1.0);
  EXPECT_FALSE(s.loss_cv.has_value());
  EXPECT_EQ(s.window_steps, 2);
}

TEST(VolatilityTrackerTest, NonFiniteLossesAreNotCounted) {
  VolatilityTracker a(4), b(4);
  for (double l : {2.0, 1.8, 1.9}) {
    a.Add(l);
    b.Add(l);
  }
  const VolatilityStats before = b.stats();
  for (double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                     -std::numeric_limits<double>::infinity()}) {
    const VolatilityStats s = b.Add(bad);
    EXPECT_EQ(s.window_steps, before.window_steps);
    EXPECT_EQ(*s.volatility, *before.volatility);
    EXPECT_EQ(s.spikes_total, 0);
  }
  EXPECT_EQ(b.run().steps, 3);
  // Afterwards the two trackers agree exactly.
  EXPECT_EQ(*a.Add(1.5).volatility, *b.Add(1.5).volatility);
  EXPECT_EQ(a.ToJson(), b.ToJson());
}

bool SameBits(double x, double y) { return std::memcmp(&x, &y, sizeof(double)) == 0; }

void ExpectIdentical(const VolatilityStats& x, const VolatilityStats& y) {
  ASSERT_EQ(x.volatility.has_value(), y.volatility.has_value());
  if (x.volatility) {
    EXPECT_TRUE(SameBits(*x.volatility, *y.volatility));
  }
  ASSERT_EQ(x.loss_cv.has_value(), y.loss_cv.has_value());
  if (x.loss_cv) {
    EXPECT_TRUE(SameBits(*x.loss_cv, *y.loss_cv));
  }
  EXPECT_EQ(x.spikes_in_window, y.spikes_in_window);
  EXPECT_EQ(x.spikes_total, y.spikes_total);
  EXPECT_EQ(x.window_steps, y.window_steps);
}

TEST(VolatilityTrackerTest, JsonRoundTripIsBitExactMidSeries) {
  // Losses with long binary expansions, so that a lossy double printout would show.
  std::vector<double> losses;
  double x = 0.1;
  for (int i = 0; i < 80; ++i) {
    x = std::fmod(x * 3.7 + 0.123456789, 1.0);
    losses.push_back(2.0 + x + (i % 17 == 0 ? 3.0 : 0.0) + 1.0 / 3.0);
  }
  VolatilityTracker straight(8, 1.5, 0.9);
  VolatilityTracker first_half(8, 1.5, 0.9);
  for (size_t i = 0; i < 37; ++i) {
    straight.Add(losses[i]);
    first_half.Add(losses[i]);
  }
  // Through text, as a checkpoint stores it.
  const std::string text = first_half.ToJson().dump();
  absl::StatusOr<VolatilityTracker> resumed = VolatilityTracker::FromJson(nlohmann::json::parse(text));
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->ToJson().dump(), text);
  ExpectIdentical(resumed->stats(), straight.stats());
  for (size_t i = 37; i < losses.size(); ++i) {
    ExpectIdentical(resumed->Add(losses[i]), straight.Add(losses[i]));
  }
  const RunVolatility a = resumed->run(), b = straight.run();
  EXPECT_EQ(a.steps, b.steps);
  EXPECT_EQ(a.spikes, b.spikes);
  EXPECT_GT(a.spikes, 0);
  EXPECT_TRUE(SameBits(*a.volatility, *b.volatility));
  EXPECT_TRUE(SameBits(*a.mean_abs_change, *b.mean_abs_change));
  EXPECT_TRUE(SameBits(*a.loss_first, *b.loss_first));
  EXPECT_TRUE(SameBits(*a.loss_last, *b.loss_last));
  EXPECT_EQ(resumed->ToJson().dump(), straight.ToJson().dump());
}

TEST(VolatilityTrackerTest, EmptyTrackerRoundTrips) {
  VolatilityTracker t(5, 2.0, 0.8);
  absl::StatusOr<VolatilityTracker> r = VolatilityTracker::FromJson(t.ToJson());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->window(), 5);
  EXPECT_EQ(r->spike_factor(), 2.0);
  EXPECT_EQ(r->ema_decay(), 0.8);
  EXPECT_EQ(r->stats().window_steps, 0);
}

TEST(VolatilityTrackerTest, FromJsonErrorsNameTheKey) {
  VolatilityTracker t(3);
  for (double l : {1.0, 2.0, 3.0, 4.0}) t.Add(l);
  const nlohmann::json good = t.ToJson();
  auto error_of = [](const nlohmann::json& j) {
    absl::StatusOr<VolatilityTracker> r = VolatilityTracker::FromJson(j);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : std::string(r.status().message());
  };
  nlohmann::json j = good;
  j.erase("ema");
  EXPECT_THAT(error_of(j), HasSubstr("\"ema\" is missing"));
  j = good;
  j["window"] = "three";
  EXPECT_THAT(error_of(j), HasSubstr("\"window\" must be an integer"));
  j = good;
  j["losses"].push_back(5.0);
  EXPECT_THAT(error_of(j), HasSubstr("\"losses\""));
  j = good;
  j["spikes"] = nlohmann::json::array();
  EXPECT_THAT(error_of(j), HasSubstr("\"spikes\""));
  j = good;
  j["diff_mean"] = nullptr;
  EXPECT_THAT(error_of(j), HasSubstr("\"diff_mean\" must be a number"));
  j = good;
  j["version"] = 2;
  EXPECT_THAT(error_of(j), HasSubstr("\"version\""));
  EXPECT_THAT(error_of(nlohmann::json::array()), HasSubstr("JSON object"));
}

}  // namespace
}  // namespace d2lora::engine
