#include "common/rpc/training_gauges.h"

namespace d2lora::rpc {
namespace {

struct Def {
  const char* name;
  const char* help;
};

constexpr Def kDefs[] = {
    {"d2lora_train_step", "Optimizer steps done"},
    {"d2lora_train_total_steps", "Optimizer steps the run will take"},
    {"d2lora_train_loss", "Token-mean training loss of the latest global batch"},
    {"d2lora_train_loss_ema", "Exponential moving average of the training loss (decay 0.9)"},
    {"d2lora_train_volatility", "Training volatility: std of step-to-step loss changes over the window"},
    {"d2lora_train_loss_cv", "Coefficient of variation of the loss over the window"},
    {"d2lora_train_spikes", "Steps so far whose loss exceeded 1.5x the loss EMA"},
    {"d2lora_train_tokens_per_second", "Training throughput, real tokens per second, all ranks"},
    {"d2lora_train_learning_rate", "Learning rate of the latest step"},
    {"d2lora_train_grad_norm", "Global gradient L2 norm before clipping"},
    {"d2lora_train_tau_mean", "Mean effective tau over D2-LoRA layers"},
    {"d2lora_train_skipped_steps", "Steps skipped for a non-finite loss or gradient"},
    {"d2lora_train_rollbacks", "Rollbacks by the training guard so far (spec guard:)"},
    {"d2lora_train_eval_accuracy", "Latest validation accuracy (multiple choice)"},
    {"d2lora_train_eval_loss", "Latest validation loss"},
};

}  // namespace

TrainingGauges::TrainingGauges(prometheus::Registry& registry) {
  for (const Def& def : kDefs) {
    series_[def.name].family = &prometheus::BuildGauge().Name(def.name).Help(def.help).Register(registry);
  }
}

std::vector<std::string> TrainingGauges::Names() {
  std::vector<std::string> names;
  for (const Def& def : kDefs) names.emplace_back(def.name);
  return names;
}

void TrainingGauges::SetOne(Series& series, const std::string& job_id, double value) {
  auto it = series.by_job.find(job_id);
  if (it == series.by_job.end()) {
    it = series.by_job.emplace(job_id, &series.family->Add({{"job_id", job_id}})).first;
  }
  it->second->Set(value);
}

void TrainingGauges::RemoveOne(Series& series, const std::string& job_id) {
  auto it = series.by_job.find(job_id);
  if (it == series.by_job.end()) return;
  series.family->Remove(it->second);
  series.by_job.erase(it);
}

void TrainingGauges::Set(const std::string& job_id, const v1::TrainingMetrics& m) {
  std::lock_guard<std::mutex> lock(mu_);
  auto set = [&](const char* name, double value) { SetOne(series_[name], job_id, value); };
  auto set_optional = [&](const char* name, bool has, double value) {
    if (has) {
      SetOne(series_[name], job_id, value);
    } else {
      RemoveOne(series_[name], job_id);
    }
  };
  set("d2lora_train_step", static_cast<double>(m.step()));
  set("d2lora_train_total_steps", static_cast<double>(m.total_steps()));
  set("d2lora_train_loss", m.loss());
  set_optional("d2lora_train_loss_ema", m.has_loss_ema(), m.loss_ema());
  set_optional("d2lora_train_volatility", m.has_volatility(), m.volatility());
  set_optional("d2lora_train_loss_cv", m.has_loss_cv(), m.loss_cv());
  set("d2lora_train_spikes", static_cast<double>(m.spikes_total()));
  set("d2lora_train_tokens_per_second", m.tokens_per_second());
  set("d2lora_train_learning_rate", m.lr());
  set("d2lora_train_grad_norm", m.grad_norm());
  set_optional("d2lora_train_tau_mean", m.has_tau_mean(), m.tau_mean());
  set("d2lora_train_skipped_steps", static_cast<double>(m.skipped_steps()));
  set("d2lora_train_rollbacks", static_cast<double>(m.rollbacks_total()));
  set_optional("d2lora_train_eval_accuracy", m.has_eval_accuracy(), m.eval_accuracy());
  set_optional("d2lora_train_eval_loss", m.has_eval_loss(), m.eval_loss());
}

void TrainingGauges::Remove(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [name, series] : series_) RemoveOne(series, job_id);
}

}  // namespace d2lora::rpc
