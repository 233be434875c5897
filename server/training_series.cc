#include "server/training_series.h"

namespace d2lora::server {
namespace {

struct Def {
  const char* name;
  const char* help;
};

constexpr Def kGauges[] = {
    {"d2lora_train_step", "Optimizer steps done"},
    {"d2lora_train_total_steps", "Optimizer steps the run will take"},
    {"d2lora_train_loss", "Token-mean training loss of the latest global batch"},
    {"d2lora_train_loss_ema", "Exponential moving average of the training loss (decay 0.9)"},
    {"d2lora_train_volatility", "Training volatility: std of step-to-step loss changes over the window"},
    {"d2lora_train_loss_cv", "Coefficient of variation of the loss over the window"},
    {"d2lora_train_learning_rate", "Learning rate of the latest step"},
    {"d2lora_train_grad_norm", "Global gradient L2 norm before clipping"},
    {"d2lora_train_tau_mean", "Mean effective tau over D2-LoRA layers"},
    {"d2lora_train_eval_accuracy", "Latest validation accuracy (multiple choice)"},
    {"d2lora_train_eval_loss", "Latest validation loss"},
};

constexpr Def kCounters[] = {
    {"d2lora_train_tokens_total", "Real tokens trained on by the job's current attempt, all ranks"},
    {"d2lora_train_spikes_total", "Steps whose loss exceeded 1.5x the loss EMA"},
    {"d2lora_train_skipped_steps_total", "Steps skipped for a non-finite loss or gradient"},
    {"d2lora_train_rollbacks_total", "Rollbacks by the training guard (spec guard:)"},
};

template <typename Metric>
void RemoveJob(std::map<std::string, Metric*>& by_job, prometheus::Family<Metric>& family, const std::string& job_id) {
  auto it = by_job.find(job_id);
  if (it == by_job.end()) return;
  family.Remove(it->second);
  by_job.erase(it);
}

}  // namespace

TrainingSeries::TrainingSeries(prometheus::Registry& registry) {
  for (const Def& def : kGauges) {
    gauges_[def.name].family = &prometheus::BuildGauge().Name(def.name).Help(def.help).Register(registry);
  }
  for (const Def& def : kCounters) {
    counters_[def.name].family = &prometheus::BuildCounter().Name(def.name).Help(def.help).Register(registry);
  }
}

std::vector<std::string> TrainingSeries::Names() {
  std::vector<std::string> names;
  for (const Def& def : kGauges) names.emplace_back(def.name);
  for (const Def& def : kCounters) names.emplace_back(def.name);
  return names;
}

void TrainingSeries::SetGauge(const std::string& name, const std::string& job_id, double value) {
  Series<prometheus::Gauge>& series = gauges_.at(name);
  auto it = series.by_job.find(job_id);
  if (it == series.by_job.end()) {
    it = series.by_job.emplace(job_id, &series.family->Add({{"job_id", job_id}})).first;
  }
  it->second->Set(value);
}

void TrainingSeries::SetCounter(const std::string& name, const std::string& job_id, double cumulative) {
  Series<prometheus::Counter>& series = counters_.at(name);
  auto it = series.by_job.find(job_id);
  if (it != series.by_job.end() && cumulative < it->second->Value()) {
    // A new attempt counts from zero: a fresh series, a counter reset to Prometheus.
    RemoveJob(series.by_job, *series.family, job_id);
    it = series.by_job.end();
  }
  if (it == series.by_job.end()) {
    it = series.by_job.emplace(job_id, &series.family->Add({{"job_id", job_id}})).first;
  }
  it->second->Increment(cumulative - it->second->Value());
}

void TrainingSeries::Set(const std::string& job_id, const v1::TrainingMetrics& m) {
  std::lock_guard<std::mutex> lock(mu_);
  auto optional = [&](const char* name, bool has, double value) {
    if (has) {
      SetGauge(name, job_id, value);
    } else {
      RemoveJob(gauges_.at(name).by_job, *gauges_.at(name).family, job_id);
    }
  };
  SetGauge("d2lora_train_step", job_id, static_cast<double>(m.step()));
  SetGauge("d2lora_train_total_steps", job_id, static_cast<double>(m.total_steps()));
  SetGauge("d2lora_train_loss", job_id, m.loss());
  optional("d2lora_train_loss_ema", m.has_loss_ema(), m.loss_ema());
  optional("d2lora_train_volatility", m.has_volatility(), m.volatility());
  optional("d2lora_train_loss_cv", m.has_loss_cv(), m.loss_cv());
  SetGauge("d2lora_train_learning_rate", job_id, m.lr());
  SetGauge("d2lora_train_grad_norm", job_id, m.grad_norm());
  optional("d2lora_train_tau_mean", m.has_tau_mean(), m.tau_mean());
  optional("d2lora_train_eval_accuracy", m.has_eval_accuracy(), m.eval_accuracy());
  optional("d2lora_train_eval_loss", m.has_eval_loss(), m.eval_loss());
  SetCounter("d2lora_train_tokens_total", job_id, static_cast<double>(m.tokens_total()));
  SetCounter("d2lora_train_spikes_total", job_id, static_cast<double>(m.spikes_total()));
  SetCounter("d2lora_train_skipped_steps_total", job_id, static_cast<double>(m.skipped_steps()));
  SetCounter("d2lora_train_rollbacks_total", job_id, static_cast<double>(m.rollbacks_total()));
}

void TrainingSeries::Remove(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [name, series] : gauges_) RemoveJob(series.by_job, *series.family, job_id);
  for (auto& [name, series] : counters_) RemoveJob(series.by_job, *series.family, job_id);
}

}  // namespace d2lora::server
