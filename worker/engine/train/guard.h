// The training guard (spec `guard:`): decides when a step rolls the run back,
// and keeps what a rollback leaves behind. Pure bookkeeping, no tensors; the
// trainer holds the in-memory checkpoint and does the restoring.
//
// A step is rolled back, before its update is applied, when the guard is on
// (guard.spike_factor > 0) and either
//   - its global loss is finite and > spike_factor x the loss EMA of the steps
//     before it (the volatility tracker's EMA, decay 0.9; never on the first
//     step, which has no EMA), or
//   - its loss or gradient is non-finite for the (max_nonfinite_steps + 1)-th
//     step in a row (where an unguarded run fails).
// Every rank sees the same all-reduced loss and makes the same decision, so
// no extra collective is needed. Each rollback multiplies the learning rate
// by lr_backoff and skips the global batch that triggered it plus the next
// skip_batches global batches (by index: epoch * steps_per_epoch + step, so
// the same batches on every rank and after a resume). The (max_rollbacks+1)-th
// trigger fails the run with "training diverged: ...". The state goes into
// checkpoints (trainer_state.json "guard"), so a resumed run keeps its LR
// scale, its count and its skipped batches.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/spec_types.h"

namespace d2lora::engine {

struct GuardState {
  int64_t rollbacks = 0;
  double lr_scale = 1.0;         // lr_backoff ^ rollbacks
  std::set<int64_t> skipped;     // global batch indices never trained on
};

nlohmann::json GuardStateToJson(const GuardState& state);
// Errors (DataLoss) name the field; `where` prefixes them (the file).
absl::StatusOr<GuardState> GuardStateFromJson(const nlohmann::json& j, const std::string& where);

class TrainingGuard {
 public:
  TrainingGuard(const GuardSpec& spec, int64_t max_nonfinite_steps)
      : spec_(spec), max_nonfinite_steps_(max_nonfinite_steps) {}

  bool enabled() const { return spec_.enabled(); }

  // Why step `step` (1-based) must be rolled back, or nullopt. `finite`: the
  // loss and the gradient norm are finite; `nonfinite_streak`: non-finite
  // steps in a row including this one; `loss_ema`: the EMA before it.
  std::optional<std::string> Check(int64_t step, double loss, bool finite, std::optional<double> loss_ema,
                                   int64_t nonfinite_streak) const;

  // Records a rollback that `reason` caused, on global batch `bad_batch`.
  // FailedPrecondition "training diverged: ..." naming guard.max_rollbacks, with
  // the reason DIVERGED (common/trainer/error_file.h), once the count would
  // exceed it (the state is then unchanged).
  absl::Status Record(int64_t bad_batch, const std::string& reason);

  bool Skips(int64_t global_batch) const { return state_.skipped.count(global_batch) > 0; }
  double lr_scale() const { return state_.lr_scale; }
  const GuardState& state() const { return state_; }
  const GuardSpec& spec() const { return spec_; }
  void Restore(GuardState state) { state_ = std::move(state); }

 private:
  GuardSpec spec_;
  int64_t max_nonfinite_steps_;
  GuardState state_;
};

}  // namespace d2lora::engine
