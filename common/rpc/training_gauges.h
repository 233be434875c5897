// The per-job training series that the coordinator and the workers both
// export, labelled job_id (not "job": Prometheus reserves that label for the
// scrape job and would rename ours to exported_job). A job's series are removed
// when it ends.
//
//   d2lora_train_step, d2lora_train_total_steps, d2lora_train_loss,
//   d2lora_train_loss_ema, d2lora_train_volatility, d2lora_train_loss_cv,
//   d2lora_train_spikes, d2lora_train_tokens_per_second,
//   d2lora_train_learning_rate, d2lora_train_grad_norm, d2lora_train_tau_mean,
//   d2lora_train_skipped_steps, d2lora_train_rollbacks, d2lora_train_eval_accuracy,
//   d2lora_train_eval_loss
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "d2lora/v1/job.pb.h"

namespace d2lora::rpc {

class TrainingGauges {
 public:
  explicit TrainingGauges(prometheus::Registry& registry);

  // Sets the job's series; optional figures that are unset leave their series absent.
  void Set(const std::string& job_id, const v1::TrainingMetrics& metrics);
  void Remove(const std::string& job_id);

  // Every metric name exported, for tests and docs.
  static std::vector<std::string> Names();

 private:
  struct Series {
    prometheus::Family<prometheus::Gauge>* family;
    std::map<std::string, prometheus::Gauge*> by_job;
  };
  void SetOne(Series& series, const std::string& job_id, double value);
  void RemoveOne(Series& series, const std::string& job_id);

  std::mutex mu_;
  std::map<std::string, Series> series_;  // by metric name
};

}  // namespace d2lora::rpc
