// The per-job training series, labelled job_id (not "job": Prometheus
// reserves that label for the scrape job and would rename ours to
// exported_job). Only the coordinator exports them: the worker running rank 0
// forwards the figures in its heartbeats, so each series has one source and
// the rules and dashboards need no deduplication. A job's series are removed
// when it ends.
//
// Gauges:   d2lora_train_step, d2lora_train_total_steps, d2lora_train_loss,
//           d2lora_train_loss_ema, d2lora_train_volatility, d2lora_train_loss_cv,
//           d2lora_train_learning_rate, d2lora_train_grad_norm, d2lora_train_tau_mean,
//           d2lora_train_eval_accuracy, d2lora_train_eval_loss
// Counters: d2lora_train_tokens_total, d2lora_train_spikes_total,
//           d2lora_train_skipped_steps_total, d2lora_train_rollbacks_total
//           (throughput is rate(d2lora_train_tokens_total[...]) in PromQL)
//
// The counters hold the attempt's cumulative figures as the trainer reports
// them: a new attempt counts from zero again, which Prometheus' rate() and
// increase() treat as the counter reset of a restarted process.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "d2lora/v1/job.pb.h"

namespace d2lora::server {

class TrainingSeries {
 public:
  explicit TrainingSeries(prometheus::Registry& registry);
  TrainingSeries(const TrainingSeries&) = delete;
  TrainingSeries& operator=(const TrainingSeries&) = delete;

  // Sets the job's series; optional figures that are unset leave their series absent.
  void Set(const std::string& job_id, const v1::TrainingMetrics& metrics);
  void Remove(const std::string& job_id);

  // Every metric name exported, for tests and docs.
  static std::vector<std::string> Names();

 private:
  template <typename Metric>
  struct Series {
    prometheus::Family<Metric>* family = nullptr;
    std::map<std::string, Metric*> by_job;
  };
  void SetGauge(const std::string& name, const std::string& job_id, double value);
  void SetCounter(const std::string& name, const std::string& job_id, double cumulative);

  std::mutex mu_;
  std::map<std::string, Series<prometheus::Gauge>> gauges_;      // by metric name
  std::map<std::string, Series<prometheus::Counter>> counters_;  // by metric name
};

}  // namespace d2lora::server
