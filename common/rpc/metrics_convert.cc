#include "common/rpc/metrics_convert.h"

#include <cmath>
#include <optional>

namespace d2lora::rpc {
namespace {

template <typename Setter>
void SetOptional(const std::optional<double>& v, Setter set) {
  if (v.has_value() && std::isfinite(*v)) set(*v);
}

}  // namespace

v1::TrainingMetrics TrainingMetricsToProto(const trainer::StepMetrics& step) {
  v1::TrainingMetrics m;
  m.set_step(step.step);
  m.set_total_steps(step.total_steps);
  m.set_epoch(step.epoch);
  m.set_loss(step.loss);
  m.set_lr(step.lr);
  m.set_grad_norm(step.grad_norm);
  m.set_tokens_per_second(step.tokens_per_second);
  m.set_elapsed_seconds(step.elapsed_seconds);
  m.set_spikes_total(step.volatility.spikes_total);
  m.set_rollbacks_total(step.rollbacks);
  SetOptional(step.volatility.loss_ema, [&](double v) { m.set_loss_ema(v); });
  SetOptional(step.volatility.volatility, [&](double v) { m.set_volatility(v); });
  SetOptional(step.volatility.loss_cv, [&](double v) { m.set_loss_cv(v); });
  if (step.tau.has_value()) SetOptional(step.tau->mean, [&](double v) { m.set_tau_mean(v); });
  SetOptional(step.eta_seconds, [&](double v) { m.set_eta_seconds(v); });
  return m;
}

v1::EvalResult EvalResultToProto(const trainer::EvalMetrics& eval) {
  v1::EvalResult e;
  e.set_step(eval.step);
  e.set_final(eval.final);
  SetOptional(eval.loss, [&](double v) { e.set_loss(v); });
  SetOptional(eval.perplexity, [&](double v) { e.set_perplexity(v); });
  SetOptional(eval.accuracy, [&](double v) { e.set_accuracy(v); });
  SetOptional(eval.rouge_l, [&](double v) { e.set_rouge_l(v); });
  e.set_scoring(eval.scoring);
  return e;
}

}  // namespace d2lora::rpc
