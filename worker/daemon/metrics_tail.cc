#include "worker/daemon/metrics_tail.h"

#include <cmath>
#include <limits>
#include <utility>

#include <nlohmann/json.hpp>

namespace d2lora::worker {
namespace {

using json = nlohmann::json;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A number field; null (a non-finite value) is NaN; absent or not a number: `fallback`.
double Number(const json& j, const char* key, double fallback = 0) {
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  if (it->is_null()) return kNaN;
  if (it->is_number()) return it->get<double>();
  return fallback;
}

int64_t Integer(const json& j, const char* key, int64_t fallback = 0) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return fallback;
  if (it->is_number_float()) return static_cast<int64_t>(it->get<double>());
  return it->get<int64_t>();
}

// Present and a (finite) number.
bool HasNumber(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number();
}

template <typename Setter>
void SetOptional(const json& j, const char* key, Setter set) {
  if (HasNumber(j, key)) set(j[key].get<double>());
}

}  // namespace

MetricsTail::MetricsTail(std::string path) : lines_(std::move(path)) {}

MetricsUpdate MetricsTail::Read() {
  MetricsUpdate update;
  for (const std::string& line : lines_.Read()) Apply(line, update);
  return update;
}

void MetricsTail::Apply(absl::string_view line, MetricsUpdate& update) {
  json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return;
  auto event_it = j.find("event");
  if (event_it == j.end() || !event_it->is_string()) return;
  const std::string event = event_it->get<std::string>();
  if (event == "step") {
    v1::TrainingMetrics m;
    m.set_step(Integer(j, "step"));
    m.set_total_steps(Integer(j, "total_steps"));
    m.set_epoch(Integer(j, "epoch"));
    m.set_loss(Number(j, "loss"));
    m.set_lr(Number(j, "lr"));
    m.set_grad_norm(Number(j, "grad_norm"));
    m.set_tokens_per_second(Number(j, "tokens_per_second"));
    m.set_elapsed_seconds(Number(j, "elapsed_seconds"));
    m.set_spikes_total(Integer(j, "spikes_total"));
    m.set_rollbacks_total(Integer(j, "rollbacks_total"));
    SetOptional(j, "loss_ema", [&](double v) { m.set_loss_ema(v); });
    SetOptional(j, "volatility", [&](double v) { m.set_volatility(v); });
    SetOptional(j, "loss_cv", [&](double v) { m.set_loss_cv(v); });
    SetOptional(j, "tau_mean", [&](double v) { m.set_tau_mean(v); });
    SetOptional(j, "eta_seconds", [&](double v) { m.set_eta_seconds(v); });
    auto skipped = j.find("skipped");
    if (skipped != j.end() && skipped->is_boolean() && skipped->get<bool>()) ++skipped_;
    // A cumulative count, if the trainer ever writes one, wins.
    m.set_skipped_steps(HasNumber(j, "skipped_steps") ? Integer(j, "skipped_steps") : skipped_);
    // The latest evaluation travels with every later step.
    if (latest_.has_eval_loss()) m.set_eval_loss(latest_.eval_loss());
    if (latest_.has_eval_accuracy()) m.set_eval_accuracy(latest_.eval_accuracy());
    if (latest_.has_eval_rouge_l()) m.set_eval_rouge_l(latest_.eval_rouge_l());
    latest_ = std::move(m);
    has_latest_ = true;
    update.has_metrics = true;
    update.metrics = latest_;
  } else if (event == "eval") {
    v1::EvalResult e;
    e.set_step(Integer(j, "step"));
    auto final_it = j.find("final");
    e.set_final(final_it != j.end() && final_it->is_boolean() && final_it->get<bool>());
    SetOptional(j, "loss", [&](double v) { e.set_loss(v); });
    SetOptional(j, "perplexity", [&](double v) { e.set_perplexity(v); });
    SetOptional(j, "accuracy", [&](double v) { e.set_accuracy(v); });
    SetOptional(j, "rouge_l", [&](double v) { e.set_rouge_l(v); });
    auto scoring = j.find("scoring");
    if (scoring != j.end() && scoring->is_string()) e.set_scoring(scoring->get<std::string>());
    // An evaluation replaces the previous one's figures (a field it lacks is cleared).
    if (e.has_loss()) latest_.set_eval_loss(e.loss()); else latest_.clear_eval_loss();
    if (e.has_accuracy()) latest_.set_eval_accuracy(e.accuracy()); else latest_.clear_eval_accuracy();
    if (e.has_rouge_l()) latest_.set_eval_rouge_l(e.rouge_l()); else latest_.clear_eval_rouge_l();
    update.evals.push_back(std::move(e));
    if (has_latest_) {
      update.has_metrics = true;
      update.metrics = latest_;
    }
  } else if (event == "checkpoint") {
    CheckpointEvent c;
    c.step = Integer(j, "step");
    auto path = j.find("path");
    if (path != j.end() && path->is_string()) c.path = path->get<std::string>();
    update.checkpoints.push_back(std::move(c));
  } else if (event == "rollback") {
    v1::Rollback r;
    r.set_step(Integer(j, "step"));
    r.set_restored_step(Integer(j, "restored_step"));
    auto reason = j.find("reason");
    if (reason != j.end() && reason->is_string()) r.set_reason(reason->get<std::string>());
    r.set_rollbacks(Integer(j, "rollbacks"));
    r.set_max_rollbacks(Integer(j, "max_rollbacks"));
    r.set_lr_scale(Number(j, "lr_scale", 1));
    r.set_first_skipped_batch(Integer(j, "first_skipped_batch"));
    r.set_last_skipped_batch(Integer(j, "last_skipped_batch"));
    latest_.set_rollbacks_total(r.rollbacks());
    update.rollbacks.push_back(std::move(r));
    if (has_latest_) {
      update.has_metrics = true;
      update.metrics = latest_;
    }
  } else if (event == "end") {
    update.ended = true;
  }
}

}  // namespace d2lora::worker
