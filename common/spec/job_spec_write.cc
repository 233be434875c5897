// The canonical YAML and JSON forms of a job spec, and spec equality.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/spec/job_spec.h"

namespace d2lora::spec {
namespace {

// The shortest decimal form that reads back as exactly `v`.
std::string ShortestDouble(double v) {
  char buf[40];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

void Str(YAML::Emitter& out, const char* key, const std::string& value) {
  out << YAML::Key << key << YAML::Value;
  if (value.empty()) {
    out << YAML::Null;  // "not set"; reads back as the default
  } else {
    out << YAML::DoubleQuoted << value;
  }
}
void Plain(YAML::Emitter& out, const char* key, const std::string& value) {
  out << YAML::Key << key << YAML::Value << value;
}
void Int(YAML::Emitter& out, const char* key, int64_t value) {
  Plain(out, key, std::to_string(value));
}
void Double(YAML::Emitter& out, const char* key, double value) {
  Plain(out, key, ShortestDouble(value));
}
void Bool(YAML::Emitter& out, const char* key, bool value) {
  Plain(out, key, value ? "true" : "false");
}
void Begin(YAML::Emitter& out, const char* section) {
  out << YAML::Key << section << YAML::Value << YAML::BeginMap;
}

nlohmann::json OrNull(const std::string& s) { return s.empty() ? nlohmann::json() : nlohmann::json(s); }

}  // namespace

bool operator==(const JobSpec& a, const JobSpec& b) {
  const AdapterOptions& x = a.adapter;
  const AdapterOptions& y = b.adapter;
  const bool adapter = x.method == y.method && x.r == y.r && x.alpha == y.alpha &&
                       x.use_rslora == y.use_rslora && x.dropout == y.dropout &&
                       x.tau_init == y.tau_init && x.tau_learnable == y.tau_learnable &&
                       x.projection_strength == y.projection_strength && x.residual == y.residual &&
                       x.norm_grad == y.norm_grad && x.dtype == y.dtype &&
                       x.target_modules == y.target_modules && x.seed == y.seed;
  const DataSpec& d = a.data;
  const DataSpec& e = b.data;
  const TrainSpec& t = a.train;
  const TrainSpec& u = b.train;
  return adapter && a.name == b.name && a.model == b.model && a.method == b.method &&
         d.train == e.train && d.validation == e.validation && d.format == e.format &&
         d.max_seq_len == e.max_seq_len && d.skip_invalid == e.skip_invalid &&
         t.epochs == u.epochs && t.max_steps == u.max_steps && t.batch_size == u.batch_size &&
         t.micro_batch_size == u.micro_batch_size && t.lr == u.lr && t.schedule == u.schedule &&
         t.warmup_steps == u.warmup_steps && t.weight_decay == u.weight_decay &&
         t.grad_clip == u.grad_clip && t.seed == u.seed &&
         t.checkpoint_every == u.checkpoint_every && t.keep_checkpoints == u.keep_checkpoints &&
         t.max_nonfinite_steps == u.max_nonfinite_steps &&
         t.activation_checkpointing == u.activation_checkpointing && t.dtype == u.dtype &&
         a.eval.every == b.eval.every && a.eval.scoring == b.eval.scoring &&
         a.eval.max_examples == b.eval.max_examples &&
         a.eval.generate_max_new_tokens == b.eval.generate_max_new_tokens &&
         a.metrics.volatility_window == b.metrics.volatility_window &&
         a.metrics.log_every == b.metrics.log_every && a.guard.spike_factor == b.guard.spike_factor &&
         a.guard.max_rollbacks == b.guard.max_rollbacks && a.guard.lr_backoff == b.guard.lr_backoff &&
         a.guard.skip_batches == b.guard.skip_batches && a.output.dir == b.output.dir &&
         a.resources.min_world_size == b.resources.min_world_size &&
         a.resources.elastic_wait_seconds == b.resources.elastic_wait_seconds &&
         a.output.merge == b.output.merge && a.output.merge_dtype == b.output.merge_dtype &&
         a.output.merge_check == b.output.merge_check &&
         a.output.merge_thresholds.max_row_norm_deviation == b.output.merge_thresholds.max_row_norm_deviation &&
         a.output.merge_thresholds.max_cast_error == b.output.merge_thresholds.max_cast_error &&
         a.output.merge_thresholds.max_logit_diff == b.output.merge_thresholds.max_logit_diff &&
         a.output.merge_thresholds.max_kl == b.output.merge_thresholds.max_kl &&
         a.output.merge_thresholds.max_accuracy_gap_pp == b.output.merge_thresholds.max_accuracy_gap_pp &&
         a.resources.world_size == b.resources.world_size &&
         a.resources.device == b.resources.device && a.resources.threads == b.resources.threads;
}

std::string JobSpecToYaml(const JobSpec& s) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  Str(out, "name", s.name);
  Str(out, "model", s.model);
  Plain(out, "method", TrainingMethodName(s.method));

  const AdapterOptions& a = s.adapter;
  Begin(out, "adapter");
  Int(out, "r", a.r);
  Double(out, "alpha", a.alpha);
  out << YAML::Key << "target_modules" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const std::string& m : a.target_modules) out << YAML::DoubleQuoted << m;
  out << YAML::EndSeq;
  Double(out, "dropout", a.dropout);
  Bool(out, "use_rslora", a.use_rslora);
  Double(out, "tau_init", a.tau_init);
  Bool(out, "tau_learnable", a.tau_learnable);
  Double(out, "projection_strength", a.projection_strength);
  Bool(out, "residual", a.residual);
  Plain(out, "norm_grad", NormGradName(a.norm_grad));
  Plain(out, "dtype", AdapterDtypeName(a.dtype));
  out << YAML::EndMap;

  Begin(out, "data");
  Str(out, "train", s.data.train);
  Str(out, "validation", s.data.validation);
  Plain(out, "format", s.data.format);
  Int(out, "max_seq_len", s.data.max_seq_len);
  Bool(out, "skip_invalid", s.data.skip_invalid);
  out << YAML::EndMap;

  const TrainSpec& t = s.train;
  Begin(out, "train");
  Int(out, "epochs", t.epochs);
  Int(out, "max_steps", t.max_steps);
  Int(out, "batch_size", t.batch_size);
  Int(out, "micro_batch_size", t.micro_batch_size);
  Double(out, "lr", t.lr);
  Plain(out, "schedule", LrScheduleName(t.schedule));
  Int(out, "warmup_steps", t.warmup_steps);
  Double(out, "weight_decay", t.weight_decay);
  Double(out, "grad_clip", t.grad_clip);
  Plain(out, "seed", std::to_string(t.seed));
  Int(out, "checkpoint_every", t.checkpoint_every);
  Int(out, "keep_checkpoints", t.keep_checkpoints);
  Int(out, "max_nonfinite_steps", t.max_nonfinite_steps);
  Bool(out, "activation_checkpointing", t.activation_checkpointing);
  Plain(out, "dtype", ComputeDtypeName(t.dtype));
  out << YAML::EndMap;

  Begin(out, "eval");
  Int(out, "every", s.eval.every);
  Plain(out, "scoring", ChoiceScoringName(s.eval.scoring));
  Int(out, "max_examples", s.eval.max_examples);
  Int(out, "generate_max_new_tokens", s.eval.generate_max_new_tokens);
  out << YAML::EndMap;

  Begin(out, "metrics");
  Int(out, "volatility_window", s.metrics.volatility_window);
  Int(out, "log_every", s.metrics.log_every);
  out << YAML::EndMap;

  Begin(out, "guard");
  Double(out, "spike_factor", s.guard.spike_factor);
  Int(out, "max_rollbacks", s.guard.max_rollbacks);
  Double(out, "lr_backoff", s.guard.lr_backoff);
  Int(out, "skip_batches", s.guard.skip_batches);
  out << YAML::EndMap;

  Begin(out, "output");
  Str(out, "dir", s.output.dir);
  Bool(out, "merge", s.output.merge);
  Plain(out, "merge_dtype", MergeDtypeName(s.output.merge_dtype));
  Bool(out, "merge_check", s.output.merge_check);
  Double(out, "merge_max_row_norm_deviation", s.output.merge_thresholds.max_row_norm_deviation);
  Double(out, "merge_max_cast_error", s.output.merge_thresholds.max_cast_error);
  Double(out, "merge_max_logit_diff", s.output.merge_thresholds.max_logit_diff);
  Double(out, "merge_max_kl", s.output.merge_thresholds.max_kl);
  Double(out, "merge_max_accuracy_gap_pp", s.output.merge_thresholds.max_accuracy_gap_pp);
  out << YAML::EndMap;

  Begin(out, "resources");
  Int(out, "world_size", s.resources.world_size);
  Plain(out, "device", DeviceKindName(s.resources.device));
  Int(out, "threads", s.resources.threads);
  Int(out, "min_world_size", s.resources.min_world_size);
  Int(out, "elastic_wait_seconds", s.resources.elastic_wait_seconds);
  out << YAML::EndMap;

  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

nlohmann::json JobSpecToJson(const JobSpec& s) {
  const AdapterOptions& a = s.adapter;
  const TrainSpec& t = s.train;
  nlohmann::json j;
  j["name"] = s.name;
  j["model"] = s.model;
  j["method"] = TrainingMethodName(s.method);
  j["adapter"] = {{"r", a.r},
                  {"alpha", a.alpha},
                  {"target_modules", a.target_modules},
                  {"dropout", a.dropout},
                  {"use_rslora", a.use_rslora},
                  {"tau_init", a.tau_init},
                  {"tau_learnable", a.tau_learnable},
                  {"projection_strength", a.projection_strength},
                  {"residual", a.residual},
                  {"norm_grad", NormGradName(a.norm_grad)},
                  {"dtype", AdapterDtypeName(a.dtype)}};
  j["data"] = {{"train", s.data.train},
               {"validation", OrNull(s.data.validation)},
               {"format", s.data.format},
               {"max_seq_len", s.data.max_seq_len},
               {"skip_invalid", s.data.skip_invalid}};
  j["train"] = {{"epochs", t.epochs},
                {"max_steps", t.max_steps},
                {"batch_size", t.batch_size},
                {"micro_batch_size", t.micro_batch_size},
                {"lr", t.lr},
                {"schedule", LrScheduleName(t.schedule)},
                {"warmup_steps", t.warmup_steps},
                {"weight_decay", t.weight_decay},
                {"grad_clip", t.grad_clip},
                {"seed", t.seed},
                {"checkpoint_every", t.checkpoint_every},
                {"keep_checkpoints", t.keep_checkpoints},
                {"max_nonfinite_steps", t.max_nonfinite_steps},
                {"activation_checkpointing", t.activation_checkpointing},
                {"dtype", ComputeDtypeName(t.dtype)}};
  j["eval"] = {{"every", s.eval.every},
               {"scoring", ChoiceScoringName(s.eval.scoring)},
               {"max_examples", s.eval.max_examples},
               {"generate_max_new_tokens", s.eval.generate_max_new_tokens}};
  j["metrics"] = {{"volatility_window", s.metrics.volatility_window},
                  {"log_every", s.metrics.log_every}};
  j["guard"] = {{"spike_factor", s.guard.spike_factor},
                {"max_rollbacks", s.guard.max_rollbacks},
                {"lr_backoff", s.guard.lr_backoff},
                {"skip_batches", s.guard.skip_batches}};
  const MergeThresholds& mt = s.output.merge_thresholds;
  j["output"] = {{"dir", s.output.dir},
                 {"merge", s.output.merge},
                 {"merge_dtype", MergeDtypeName(s.output.merge_dtype)},
                 {"merge_check", s.output.merge_check},
                 {"merge_max_row_norm_deviation", mt.max_row_norm_deviation},
                 {"merge_max_cast_error", mt.max_cast_error},
                 {"merge_max_logit_diff", mt.max_logit_diff},
                 {"merge_max_kl", mt.max_kl},
                 {"merge_max_accuracy_gap_pp", mt.max_accuracy_gap_pp}};
  j["resources"] = {{"world_size", s.resources.world_size},
                    {"device", DeviceKindName(s.resources.device)},
                    {"threads", s.resources.threads},
                    {"min_world_size", s.resources.min_world_size},
                    {"elastic_wait_seconds", s.resources.elastic_wait_seconds}};
  return j;
}

}  // namespace d2lora::spec
