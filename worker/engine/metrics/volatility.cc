#include "worker/engine/metrics/volatility.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace d2lora::engine {
namespace {

using json = nlohmann::json;

constexpr int64_t kStateVersion = 1;

// Sample standard deviation (n-1) of `xs`, two-pass; needs xs.size() >= 2.
double SampleStd(const std::vector<double>& xs, double* mean_out = nullptr) {
  double sum = 0;
  for (double x : xs) sum += x;
  const double mean = sum / static_cast<double>(xs.size());
  double ss = 0;
  for (double x : xs) ss += (x - mean) * (x - mean);
  if (mean_out != nullptr) *mean_out = mean;
  return std::sqrt(ss / static_cast<double>(xs.size() - 1));
}

absl::Status Bad(absl::string_view key, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("volatility state: \"", key, "\" ", what));
}

absl::StatusOr<const json*> Field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return Bad(key, "is missing");
  return &*it;
}

absl::StatusOr<double> GetDouble(const json& j, const char* key) {
  D2_ASSIGN_OR_RETURN(const json* v, Field(j, key));
  if (!v->is_number()) return Bad(key, "must be a number");
  const double d = v->get<double>();
  if (!std::isfinite(d)) return Bad(key, "must be finite");
  return d;
}

absl::StatusOr<int64_t> GetCount(const json& j, const char* key) {
  D2_ASSIGN_OR_RETURN(const json* v, Field(j, key));
  if (!v->is_number_integer() || (v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX)) {
    return Bad(key, "must be an integer");
  }
  const int64_t n = v->get<int64_t>();
  if (n < 0) return Bad(key, "must not be negative");
  return n;
}

}  // namespace

VolatilityTracker::VolatilityTracker(int64_t window, double spike_factor, double ema_decay)
    : window_(std::max<int64_t>(window, 1)), spike_factor_(spike_factor), ema_decay_(ema_decay) {}

VolatilityStats VolatilityTracker::Add(double loss) {
  if (!std::isfinite(loss)) return stats();

  bool spike = false;
  if (!ema_.has_value()) {
    ema_ = loss;
  } else {
    spike = loss > spike_factor_ * *ema_;
    ema_ = ema_decay_ * *ema_ + (1 - ema_decay_) * loss;
  }
  if (spike) ++spikes_total_;

  if (steps_ == 0) {
    loss_first_ = loss;
  } else {
    const double diff = loss - losses_.back();
    ++diff_count_;
    const double delta = diff - diff_mean_;
    diff_mean_ += delta / static_cast<double>(diff_count_);
    diff_m2_ += delta * (diff - diff_mean_);
    abs_change_sum_ += std::fabs(diff);
  }
  ++steps_;

  losses_.push_back(loss);
  spikes_.push_back(spike);
  while (static_cast<int64_t>(losses_.size()) > window_) {
    losses_.pop_front();
    spikes_.pop_front();
  }
  return stats();
}

VolatilityStats VolatilityTracker::stats() const {
  VolatilityStats s;
  s.window_steps = static_cast<int64_t>(losses_.size());
  s.spikes_total = spikes_total_;
  s.spikes_in_window = std::count(spikes_.begin(), spikes_.end(), true);
  s.loss_ema = ema_;
  if (losses_.size() >= 2) {
    const std::vector<double> xs(losses_.begin(), losses_.end());
    double mean = 0;
    const double sd = SampleStd(xs, &mean);
    if (mean != 0) s.loss_cv = sd / mean;
  }
  if (losses_.size() >= 3) {
    std::vector<double> diffs;
    diffs.reserve(losses_.size() - 1);
    for (size_t i = 1; i < losses_.size(); ++i) diffs.push_back(losses_[i] - losses_[i - 1]);
    s.volatility = SampleStd(diffs);
  }
  return s;
}

RunVolatility VolatilityTracker::run() const {
  RunVolatility r;
  r.steps = steps_;
  r.spikes = spikes_total_;
  r.loss_first = loss_first_;
  if (!losses_.empty()) r.loss_last = losses_.back();
  if (diff_count_ >= 1) r.mean_abs_change = abs_change_sum_ / static_cast<double>(diff_count_);
  if (diff_count_ >= 2) r.volatility = std::sqrt(diff_m2_ / static_cast<double>(diff_count_ - 1));
  return r;
}

json VolatilityTracker::ToJson() const {
  json j = {
      {"version", kStateVersion},
      {"window", window_},
      {"spike_factor", spike_factor_},
      {"ema_decay", ema_decay_},
      {"losses", json(std::vector<double>(losses_.begin(), losses_.end()))},
      {"spikes", json(std::vector<bool>(spikes_.begin(), spikes_.end()))},
      {"spikes_total", spikes_total_},
      {"steps", steps_},
      {"diff_count", diff_count_},
      {"diff_mean", diff_mean_},
      {"diff_m2", diff_m2_},
      {"abs_change_sum", abs_change_sum_},
  };
  if (ema_.has_value()) j["ema"] = *ema_;
  if (loss_first_.has_value()) j["loss_first"] = *loss_first_;
  return j;
}

absl::StatusOr<VolatilityTracker> VolatilityTracker::FromJson(const json& state) {
  if (!state.is_object()) {
    return absl::InvalidArgumentError("volatility state must be a JSON object");
  }
  D2_ASSIGN_OR_RETURN(int64_t version, GetCount(state, "version"));
  if (version != kStateVersion) {
    return Bad("version", absl::StrCat("is ", version, "; this build reads ", kStateVersion));
  }
  D2_ASSIGN_OR_RETURN(int64_t window, GetCount(state, "window"));
  if (window < 1) return Bad("window", "must be at least 1");
  D2_ASSIGN_OR_RETURN(double spike_factor, GetDouble(state, "spike_factor"));
  D2_ASSIGN_OR_RETURN(double ema_decay, GetDouble(state, "ema_decay"));
  VolatilityTracker t(window, spike_factor, ema_decay);

  D2_ASSIGN_OR_RETURN(const json* losses, Field(state, "losses"));
  if (!losses->is_array()) return Bad("losses", "must be an array of numbers");
  if (static_cast<int64_t>(losses->size()) > window) {
    return Bad("losses", absl::StrCat("holds ", losses->size(), " losses; the window is ", window));
  }
  for (size_t i = 0; i < losses->size(); ++i) {
    const json& v = (*losses)[i];
    if (!v.is_number() || !std::isfinite(v.get<double>())) {
      return Bad("losses", absl::StrCat("[", i, "] must be a finite number"));
    }
    t.losses_.push_back(v.get<double>());
  }
  D2_ASSIGN_OR_RETURN(const json* spikes, Field(state, "spikes"));
  if (!spikes->is_array() || spikes->size() != losses->size()) {
    return Bad("spikes", "must be an array of booleans as long as \"losses\"");
  }
  for (size_t i = 0; i < spikes->size(); ++i) {
    if (!(*spikes)[i].is_boolean()) return Bad("spikes", absl::StrCat("[", i, "] must be a boolean"));
    t.spikes_.push_back((*spikes)[i].get<bool>());
  }

  D2_ASSIGN_OR_RETURN(t.spikes_total_, GetCount(state, "spikes_total"));
  D2_ASSIGN_OR_RETURN(t.steps_, GetCount(state, "steps"));
  D2_ASSIGN_OR_RETURN(t.diff_count_, GetCount(state, "diff_count"));
  D2_ASSIGN_OR_RETURN(t.diff_mean_, GetDouble(state, "diff_mean"));
  D2_ASSIGN_OR_RETURN(t.diff_m2_, GetDouble(state, "diff_m2"));
  D2_ASSIGN_OR_RETURN(t.abs_change_sum_, GetDouble(state, "abs_change_sum"));

  if (t.steps_ < static_cast<int64_t>(t.losses_.size())) {
    return Bad("steps", "is smaller than the number of losses in the window");
  }
  if ((t.steps_ == 0) != t.losses_.empty()) {
    return Bad("losses", "must be empty exactly when \"steps\" is 0");
  }
  if (t.diff_count_ != std::max<int64_t>(t.steps_ - 1, 0)) {
    return Bad("diff_count", "must be \"steps\" - 1");
  }
  if (t.spikes_total_ < std::count(t.spikes_.begin(), t.spikes_.end(), true)) {
    return Bad("spikes_total", "is smaller than the spikes in the window");
  }
  if (t.steps_ > 0) {
    D2_ASSIGN_OR_RETURN(double ema, GetDouble(state, "ema"));
    D2_ASSIGN_OR_RETURN(double first, GetDouble(state, "loss_first"));
    t.ema_ = ema;
    t.loss_first_ = first;
  }
  return t;
}

}  // namespace d2lora::engine
