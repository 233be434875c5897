#include "worker/daemon/metrics_tail.h"

#include <utility>

#include "common/rpc/metrics_convert.h"
#include "common/trainer/metrics_events.h"

namespace d2lora::worker {
MetricsTail::MetricsTail(std::string path) : lines_(std::move(path)) {}

MetricsUpdate MetricsTail::Read() {
  MetricsUpdate update;
  for (const std::string& line : lines_.Read()) Apply(line, update);
  return update;
}

void MetricsTail::Apply(absl::string_view line, MetricsUpdate& update) {
  std::optional<trainer::MetricsEvent> event = trainer::ParseEventLine(line);
  if (!event.has_value()) return;
  if (const auto* step = std::get_if<trainer::StepMetrics>(&event->body)) {
    v1::TrainingMetrics m = rpc::TrainingMetricsToProto(*step);
    if (step->skipped) ++skipped_;
    m.set_skipped_steps(skipped_);
    tokens_ += step->tokens;
    m.set_tokens_total(tokens_);
    // The latest evaluation travels with every later step.
    if (latest_.has_eval_loss()) m.set_eval_loss(latest_.eval_loss());
    if (latest_.has_eval_accuracy()) m.set_eval_accuracy(latest_.eval_accuracy());
    if (latest_.has_eval_rouge_l()) m.set_eval_rouge_l(latest_.eval_rouge_l());
    latest_ = std::move(m);
    has_latest_ = true;
    update.has_metrics = true;
    update.metrics = latest_;
  } else if (const auto* eval = std::get_if<trainer::EvalMetrics>(&event->body)) {
    v1::EvalResult e = rpc::EvalResultToProto(*eval);
    // An evaluation replaces the previous one's figures (a field it lacks is cleared).
    if (e.has_loss()) latest_.set_eval_loss(e.loss()); else latest_.clear_eval_loss();
    if (e.has_accuracy()) latest_.set_eval_accuracy(e.accuracy()); else latest_.clear_eval_accuracy();
    if (e.has_rouge_l()) latest_.set_eval_rouge_l(e.rouge_l()); else latest_.clear_eval_rouge_l();
    update.evals.push_back(std::move(e));
    if (has_latest_) {
      update.has_metrics = true;
      update.metrics = latest_;
    }
  } else if (const auto* checkpoint = std::get_if<trainer::CheckpointInfo>(&event->body)) {
    update.checkpoints.push_back(CheckpointEvent{checkpoint->step, checkpoint->path});
  } else if (const auto* rollback = std::get_if<trainer::RollbackInfo>(&event->body)) {
    v1::Rollback r;
    r.set_step(rollback->step);
    r.set_restored_step(rollback->restored_step);
    r.set_reason(rollback->reason);
    r.set_rollbacks(rollback->rollbacks);
    r.set_max_rollbacks(rollback->max_rollbacks);
    r.set_lr_scale(rollback->lr_scale);
    r.set_first_skipped_batch(rollback->first_skipped_batch);
    r.set_last_skipped_batch(rollback->last_skipped_batch);
    latest_.set_rollbacks_total(r.rollbacks());
    update.rollbacks.push_back(std::move(r));
    if (has_latest_) {
      update.has_metrics = true;
      update.metrics = latest_;
    }
  } else if (std::holds_alternative<trainer::EndInfo>(event->body)) {
    update.ended = true;
  }
}

}  // namespace d2lora::worker
