#include "worker/engine/metrics/metrics_json.h"

#include <chrono>
#include <cmath>
#include <optional>
#include <string>
#include <utility>

namespace d2lora::engine {
namespace {

using json = nlohmann::json;

json Num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

void PutOptional(json& j, const char* key, const std::optional<double>& v) {
  if (v.has_value()) j[key] = Num(*v);
}

}  // namespace

json ToJson(const RunInfo& info) {
  return json{
      {"name", info.name},
      {"method", info.method},
      {"total_steps", info.total_steps},
      {"start_step", info.start_step},
      {"steps_per_epoch", info.steps_per_epoch},
      {"world_size", info.world_size},
      {"trainable_parameters", info.trainable_parameters},
      {"total_parameters", info.total_parameters},
      {"output_dir", info.output_dir},
  };
}

json ToJson(const StepMetrics& m) {
  json j{
      {"step", m.step},
      {"total_steps", m.total_steps},
      {"epoch", m.epoch},
      {"loss", Num(m.loss)},
      {"lr", Num(m.lr)},
      {"grad_norm", Num(m.grad_norm)},
      {"tokens", m.tokens},
      {"tokens_per_second", Num(m.tokens_per_second)},
      {"step_seconds", Num(m.step_seconds)},
      {"compute_seconds", Num(m.compute_seconds)},
      {"allreduce_seconds", Num(m.allreduce_seconds)},
      {"elapsed_seconds", Num(m.elapsed_seconds)},
      {"spikes_in_window", m.volatility.spikes_in_window},
      {"spikes_total", m.volatility.spikes_total},
      {"window_steps", m.volatility.window_steps},
      {"skipped", m.skipped},
      {"rollbacks_total", m.rollbacks},
  };
  PutOptional(j, "eta_seconds", m.eta_seconds);
  PutOptional(j, "volatility", m.volatility.volatility);
  PutOptional(j, "loss_cv", m.volatility.loss_cv);
  PutOptional(j, "loss_ema", m.volatility.loss_ema);
  if (m.tau.has_value()) {
    j["tau_mean"] = Num(m.tau->mean);
    j["tau_min"] = Num(m.tau->min);
    j["tau_max"] = Num(m.tau->max);
  }
  return j;
}

json ToJson(const RollbackInfo& r) {
  return json{
      {"step", r.step},
      {"restored_step", r.restored_step},
      {"reason", r.reason},
      {"rollbacks", r.rollbacks},
      {"max_rollbacks", r.max_rollbacks},
      {"lr_scale", Num(r.lr_scale)},
      {"first_skipped_batch", r.first_skipped_batch},
      {"last_skipped_batch", r.last_skipped_batch},
  };
}

json ToJson(const EvalMetrics& m) {
  json j{
      {"step", m.step},
      {"final", m.final},
      {"examples", m.examples},
      {"seconds", Num(m.seconds)},
  };
  PutOptional(j, "loss", m.loss);
  PutOptional(j, "perplexity", m.perplexity);
  PutOptional(j, "accuracy", m.accuracy);
  PutOptional(j, "rouge_l", m.rouge_l);
  if (!m.scoring.empty()) j["scoring"] = m.scoring;
  return j;
}

json ToJson(const CheckpointInfo& info) { return json{{"step", info.step}, {"path", info.path}}; }

json ToJson(const RunVolatility& r) {
  json j{{"steps", r.steps}, {"spikes", r.spikes}};
  PutOptional(j, "volatility", r.volatility);
  PutOptional(j, "mean_abs_change", r.mean_abs_change);
  PutOptional(j, "loss_first", r.loss_first);
  PutOptional(j, "loss_last", r.loss_last);
  return j;
}

json Event(absl::string_view event, double time, json fields) {
  if (!fields.is_object()) fields = json{{"value", std::move(fields)}};
  fields["event"] = std::string(event);
  fields["time"] = Num(time);
  return fields;
}

double UnixNow() {
  using std::chrono::duration;
  using std::chrono::system_clock;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

}  // namespace d2lora::engine
