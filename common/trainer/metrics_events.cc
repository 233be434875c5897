#include "common/trainer/metrics_events.h"

#include <cmath>
#include <limits>
#include <utility>

namespace d2lora::trainer {
namespace {

using json = nlohmann::json;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// --- writing

json Num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

void PutOptional(json& j, const char* key, const std::optional<double>& v) {
  if (v.has_value()) j[key] = Num(*v);
}

json ToJson(const EndInfo& end) { return json{{"summary", end.summary}}; }

// --- reading

// A number; null (a non-finite value) is NaN; absent or not a number: `fallback`.
double Number(const json& j, const char* key, double fallback = 0) {
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  if (it->is_null()) return kNaN;
  if (it->is_number()) return it->get<double>();
  return fallback;
}

// Present and a number (a null is unset).
std::optional<double> Optional(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

int64_t Integer(const json& j, const char* key, int64_t fallback = 0) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return fallback;
  if (it->is_number_float()) {
    const double v = it->get<double>();
    return std::isfinite(v) ? static_cast<int64_t>(v) : fallback;
  }
  if (it->is_number_unsigned()) return static_cast<int64_t>(it->get<uint64_t>());
  return it->get<int64_t>();
}

bool Bool(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

std::string String(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

RunInfo ReadRunInfo(const json& j) {
  RunInfo r;
  r.name = String(j, "name");
  r.method = String(j, "method");
  r.total_steps = Integer(j, "total_steps");
  r.start_step = Integer(j, "start_step");
  r.steps_per_epoch = Integer(j, "steps_per_epoch");
  r.world_size = Integer(j, "world_size", 1);
  r.trainable_parameters = Integer(j, "trainable_parameters");
  r.total_parameters = Integer(j, "total_parameters");
  r.output_dir = String(j, "output_dir");
  return r;
}

StepMetrics ReadStep(const json& j) {
  StepMetrics m;
  m.step = Integer(j, "step");
  m.total_steps = Integer(j, "total_steps");
  m.epoch = Integer(j, "epoch");
  m.loss = Number(j, "loss");
  m.lr = Number(j, "lr");
  m.grad_norm = Number(j, "grad_norm");
  m.tokens = Integer(j, "tokens");
  m.tokens_per_second = Number(j, "tokens_per_second");
  m.step_seconds = Number(j, "step_seconds");
  m.compute_seconds = Number(j, "compute_seconds");
  m.allreduce_seconds = Number(j, "allreduce_seconds");
  m.elapsed_seconds = Number(j, "elapsed_seconds");
  m.eta_seconds = Optional(j, "eta_seconds");
  if (j.contains("tau_mean")) m.tau = TauStats{Number(j, "tau_mean"), Number(j, "tau_min"), Number(j, "tau_max")};
  m.volatility.volatility = Optional(j, "volatility");
  m.volatility.loss_cv = Optional(j, "loss_cv");
  m.volatility.loss_ema = Optional(j, "loss_ema");
  m.volatility.spikes_in_window = Integer(j, "spikes_in_window");
  m.volatility.spikes_total = Integer(j, "spikes_total");
  m.volatility.window_steps = Integer(j, "window_steps");
  m.skipped = Bool(j, "skipped");
  m.rollbacks = Integer(j, "rollbacks_total");
  return m;
}

EvalMetrics ReadEval(const json& j) {
  EvalMetrics e;
  e.step = Integer(j, "step");
  e.final = Bool(j, "final");
  e.loss = Optional(j, "loss");
  e.perplexity = Optional(j, "perplexity");
  e.accuracy = Optional(j, "accuracy");
  e.scoring = String(j, "scoring");
  e.rouge_l = Optional(j, "rouge_l");
  e.examples = Integer(j, "examples");
  e.seconds = Number(j, "seconds");
  return e;
}

RollbackInfo ReadRollback(const json& j) {
  RollbackInfo r;
  r.step = Integer(j, "step");
  r.restored_step = Integer(j, "restored_step");
  r.reason = String(j, "reason");
  r.rollbacks = Integer(j, "rollbacks");
  r.max_rollbacks = Integer(j, "max_rollbacks");
  r.lr_scale = Number(j, "lr_scale", 1);
  r.first_skipped_batch = Integer(j, "first_skipped_batch");
  r.last_skipped_batch = Integer(j, "last_skipped_batch");
  return r;
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

const char* EventName(const MetricsEvent& event) {
  static constexpr const char* kNames[] = {"start", "step", "eval", "checkpoint", "rollback", "end"};
  return kNames[event.body.index()];
}

namespace {

// `fields` with "event" and "time" added; a non-object `fields` goes under "value".
json Event(absl::string_view event, double time, json fields) {
  if (!fields.is_object()) fields = json{{"value", std::move(fields)}};
  fields["event"] = std::string(event);
  fields["time"] = Num(time);
  return fields;
}

}  // namespace

std::string EventLine(const MetricsEvent& event) {
  json fields = std::visit([](const auto& body) { return ToJson(body); }, event.body);
  return Event(EventName(event), event.time, std::move(fields)).dump(-1, ' ', false, json::error_handler_t::replace);
}

json ToJson(const CheckpointMetrics& metrics) {
  json j = json::object();
  if (metrics.train) j["train"] = ToJson(*metrics.train);
  if (metrics.eval) j["eval"] = ToJson(*metrics.eval);
  return j;
}

CheckpointMetrics CheckpointMetricsFromJson(const json& j) {
  CheckpointMetrics m;
  if (!j.is_object()) return m;
  if (auto it = j.find("train"); it != j.end() && it->is_object()) m.train = ReadStep(*it);
  if (auto it = j.find("eval"); it != j.end() && it->is_object()) m.eval = ReadEval(*it);
  return m;
}

std::optional<MetricsEvent> ParseEventLine(absl::string_view line) {
  const json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  const std::string name = String(j, "event");
  MetricsEvent event;
  event.time = Number(j, "time");
  if (name == "start") {
    event.body = ReadRunInfo(j);
  } else if (name == "step") {
    event.body = ReadStep(j);
  } else if (name == "eval") {
    event.body = ReadEval(j);
  } else if (name == "checkpoint") {
    event.body = CheckpointInfo{Integer(j, "step"), String(j, "path")};
  } else if (name == "rollback") {
    event.body = ReadRollback(j);
  } else if (name == "end") {
    auto summary = j.find("summary");
    event.body = EndInfo{summary != j.end() ? *summary : json(nullptr)};
  } else {
    return std::nullopt;
  }
  return event;
}

}  // namespace d2lora::trainer
