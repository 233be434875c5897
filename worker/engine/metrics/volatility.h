// Training volatility: how much the loss jumps from step to step, over a
// sliding window (reported with every step) and over the whole run (for the
// summary). The tracker's state goes into checkpoints so that a resumed run
// reports exactly what an uninterrupted one would have.
//
// Definitions, for the losses l_1, l_2, ... added so far:
//
//   window        the last `window` losses (fewer at the start of a run).
//   volatility    sample standard deviation (divisor n-1) of the consecutive
//                 differences l_{i+1} - l_i of the losses in the window (so up
//                 to window-1 differences); unset until there are >= 2
//                 differences (3 losses).
//   loss_cv       sample standard deviation (n-1) of the losses in the window
//                 divided by their mean; unset with < 2 losses or a mean of 0.
//   EMA           an exponential moving average of the losses: the first loss
//                 sets ema = l_1; after each later step's spike test,
//                 ema = ema_decay * ema + (1 - ema_decay) * l.
//   spike         a step whose loss > spike_factor * the EMA of the losses
//                 before it (the first step is never a spike).
//   spikes_in_window  spike steps still in the window; spikes_total all of them.
//
// A non-finite loss (a step the trainer skipped) is not added: it changes no
// statistic and counts as no step; Add returns the current statistics.
//
// Whole-run statistics (run()): over all losses added, the sample standard
// deviation of every consecutive difference (Welford's method, unset until 2
// differences), the mean absolute difference (unset until 1), the first and
// last loss (unset until 1 step) and the number of spikes.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "worker/engine/metrics/callbacks.h"

namespace d2lora::engine {

struct RunVolatility {
  int64_t steps = 0;  // finite losses added
  std::optional<double> volatility;
  std::optional<double> mean_abs_change;
  std::optional<double> loss_first;
  std::optional<double> loss_last;
  int64_t spikes = 0;
};

class VolatilityTracker {
 public:
  // `window` < 1 is taken as 1 (volatility then stays unset; it needs >= 3).
  explicit VolatilityTracker(int64_t window = 50, double spike_factor = 1.5, double ema_decay = 0.9);

  // Adds this step's loss and returns the statistics after it.
  VolatilityStats Add(double loss);

  // The statistics as of the last Add (all unset/0 before the first).
  VolatilityStats stats() const;
  RunVolatility run() const;

  int64_t window() const { return window_; }
  double spike_factor() const { return spike_factor_; }
  double ema_decay() const { return ema_decay_; }

  // The whole state, for checkpoints. Doubles are written by nlohmann-json in
  // shortest round-trip form, so FromJson(ToJson()) continues bit-identically.
  nlohmann::json ToJson() const;
  // Errors (InvalidArgument) name the offending key.
  static absl::StatusOr<VolatilityTracker> FromJson(const nlohmann::json& state);

 private:
  int64_t window_;
  double spike_factor_;
  double ema_decay_;

  std::deque<double> losses_;  // the window, oldest first
  std::deque<bool> spikes_;    // whether each step in the window was a spike
  std::optional<double> ema_;  // unset before the first loss
  int64_t spikes_total_ = 0;

  // Whole run: steps, Welford over consecutive differences, |difference| sum.
  int64_t steps_ = 0;
  std::optional<double> loss_first_;
  int64_t diff_count_ = 0;
  double diff_mean_ = 0;
  double diff_m2_ = 0;
  double abs_change_sum_ = 0;
};

}  // namespace d2lora::engine
