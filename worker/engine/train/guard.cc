#include "worker/engine/train/guard.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/trainer/error_file.h"

namespace d2lora::engine {

nlohmann::json GuardStateToJson(const GuardState& state) {
  return {{"rollbacks", state.rollbacks},
          {"lr_scale", state.lr_scale},
          {"skipped_batches", nlohmann::json(std::vector<int64_t>(state.skipped.begin(), state.skipped.end()))}};
}

absl::StatusOr<GuardState> GuardStateFromJson(const nlohmann::json& j, const std::string& where) {
  auto bad = [&](const char* what) { return absl::DataLossError(absl::StrCat(where, ": guard.", what)); };
  if (!j.is_object()) return bad("not an object");
  GuardState s;
  auto rollbacks = j.find("rollbacks");
  if (rollbacks == j.end() || !rollbacks->is_number_integer() || rollbacks->get<int64_t>() < 0) {
    return bad("rollbacks: missing or not an integer >= 0");
  }
  s.rollbacks = rollbacks->get<int64_t>();
  auto scale = j.find("lr_scale");
  if (scale == j.end() || !scale->is_number() || !(scale->get<double>() > 0) || scale->get<double>() > 1) {
    return bad("lr_scale: missing or not in (0, 1]");
  }
  s.lr_scale = scale->get<double>();
  auto skipped = j.find("skipped_batches");
  if (skipped == j.end() || !skipped->is_array()) return bad("skipped_batches: missing or not a list");
  for (const auto& b : *skipped) {
    if (!b.is_number_integer() || b.get<int64_t>() < 0) return bad("skipped_batches: not integers >= 0");
    s.skipped.insert(b.get<int64_t>());
  }
  return s;
}

std::optional<std::string> TrainingGuard::Check(int64_t step, double loss, bool finite,
                                                std::optional<double> loss_ema, int64_t nonfinite_streak) const {
  if (!enabled()) return std::nullopt;
  if (!finite) {
    if (nonfinite_streak <= max_nonfinite_steps_) return std::nullopt;  // skipped and counted, as unguarded
    return absl::StrCat("non-finite ", std::isfinite(loss) ? "gradients" : "loss", " at step ", step, ", ",
                        nonfinite_streak, " step(s) in a row (train.max_nonfinite_steps = ", max_nonfinite_steps_,
                        ")");
  }
  if (loss_ema.has_value() && loss > spec_.spike_factor * *loss_ema) {
    return absl::StrFormat("loss spike at step %d: loss %.6g > guard.spike_factor %g x EMA %.6g", step, loss,
                           spec_.spike_factor, *loss_ema);
  }
  return std::nullopt;
}

absl::Status TrainingGuard::Record(int64_t bad_batch, const std::string& reason) {
  if (state_.rollbacks >= spec_.max_rollbacks) {
    return trainer::WithReason(
        absl::FailedPreconditionError(absl::StrCat("training diverged: ", reason, "; ", state_.rollbacks,
                                                   " rollback(s) already (guard.max_rollbacks = ", spec_.max_rollbacks,
                                                   "); lower train.lr or guard.lr_backoff, or raise guard.skip_batches")),
        trainer::FailureReason::kDiverged);
  }
  ++state_.rollbacks;
  state_.lr_scale *= spec_.lr_backoff;
  for (int64_t b = bad_batch; b <= bad_batch + spec_.skip_batches; ++b) state_.skipped.insert(b);
  return absl::OkStatus();
}

}  // namespace d2lora::engine
