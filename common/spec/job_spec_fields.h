// The job spec's keys, in one list: the schema (known keys, overrides), the
// reader, the canonical YAML and JSON writers and spec equality all walk it
// (job_spec.cc, job_spec_write.cc). A new key is one line here plus its
// struct member, default and range check (job_spec.h, ValidateJobSpec).
//
// ForEachField(v) calls, in the canonical order (each section's keys together):
//   v.Value(section, key, get)              int64_t, uint64_t, double, bool, a
//                                           string (written quoted) or a list of strings
//   v.Plain(section, key, get)              a string written unquoted (a name)
//   v.Named(section, key, get, name, parse) an enumeration, written by name
// where get(spec) is the member: `const` or not as the spec is. section "" is
// the top level. Walked by common/spec and by common/rpc/spec_convert.cc
// (the wire form finds each key's field by name).
#pragma once

#include "common/spec/job_spec.h"

namespace d2lora::spec::internal {

template <typename V>
void ForEachField(V& v) {
#define D2_GET(member) [](auto& s) -> auto& { return s.member; }
  v.Value("", "name", D2_GET(name));
  v.Value("", "model", D2_GET(model));
  v.Value("", "model_id", D2_GET(model_id));
  v.Named("", "method", D2_GET(method), TrainingMethodName, ParseTrainingMethod);

  v.Value("init", "adapter", D2_GET(init.adapter));
  v.Value("init", "from_job", D2_GET(init.from_job));
  v.Value("init", "step", D2_GET(init.step));

  v.Value("adapter", "r", D2_GET(adapter.r));
  v.Value("adapter", "alpha", D2_GET(adapter.alpha));
  v.Value("adapter", "target_modules", D2_GET(adapter.target_modules));
  v.Value("adapter", "dropout", D2_GET(adapter.dropout));
  v.Value("adapter", "use_rslora", D2_GET(adapter.use_rslora));
  v.Value("adapter", "tau_init", D2_GET(adapter.tau_init));
  v.Value("adapter", "tau_learnable", D2_GET(adapter.tau_learnable));
  v.Value("adapter", "projection_strength", D2_GET(adapter.projection_strength));
  v.Value("adapter", "residual", D2_GET(adapter.residual));
  v.Named("adapter", "norm_grad", D2_GET(adapter.norm_grad), NormGradName, ParseNormGrad);
  v.Named("adapter", "dtype", D2_GET(adapter.dtype), AdapterDtypeName, ParseAdapterDtype);

  v.Value("data", "train", D2_GET(data.train));
  v.Value("data", "validation", D2_GET(data.validation));
  v.Plain("data", "format", D2_GET(data.format));
  v.Value("data", "max_seq_len", D2_GET(data.max_seq_len));
  v.Value("data", "skip_invalid", D2_GET(data.skip_invalid));

  v.Value("train", "epochs", D2_GET(train.epochs));
  v.Value("train", "max_steps", D2_GET(train.max_steps));
  v.Value("train", "batch_size", D2_GET(train.batch_size));
  v.Value("train", "micro_batch_size", D2_GET(train.micro_batch_size));
  v.Value("train", "lr", D2_GET(train.lr));
  v.Named("train", "schedule", D2_GET(train.schedule), LrScheduleName, ParseLrSchedule);
  v.Value("train", "warmup_steps", D2_GET(train.warmup_steps));
  v.Value("train", "weight_decay", D2_GET(train.weight_decay));
  v.Value("train", "grad_clip", D2_GET(train.grad_clip));
  v.Value("train", "seed", D2_GET(train.seed));
  v.Value("train", "checkpoint_every", D2_GET(train.checkpoint_every));
  v.Value("train", "keep_checkpoints", D2_GET(train.keep_checkpoints));
  v.Value("train", "max_nonfinite_steps", D2_GET(train.max_nonfinite_steps));
  v.Value("train", "activation_checkpointing", D2_GET(train.activation_checkpointing));
  v.Named("train", "dtype", D2_GET(train.dtype), ComputeDtypeName, ParseComputeDtype);

  v.Value("eval", "every", D2_GET(eval.every));
  v.Named("eval", "scoring", D2_GET(eval.scoring), ChoiceScoringName, ParseChoiceScoring);
  v.Value("eval", "max_examples", D2_GET(eval.max_examples));
  v.Value("eval", "generate_max_new_tokens", D2_GET(eval.generate_max_new_tokens));

  v.Value("metrics", "volatility_window", D2_GET(metrics.volatility_window));
  v.Value("metrics", "log_every", D2_GET(metrics.log_every));

  v.Value("guard", "spike_factor", D2_GET(guard.spike_factor));
  v.Value("guard", "max_rollbacks", D2_GET(guard.max_rollbacks));
  v.Value("guard", "lr_backoff", D2_GET(guard.lr_backoff));
  v.Value("guard", "skip_batches", D2_GET(guard.skip_batches));

  v.Value("output", "dir", D2_GET(output.dir));
  v.Value("output", "merge", D2_GET(output.merge));
  v.Named("output", "merge_dtype", D2_GET(output.merge_dtype), MergeDtypeName, ParseMergeDtype);
  v.Value("output", "merge_check", D2_GET(output.merge_check));
  v.Value("output", "merge_max_row_norm_deviation", D2_GET(output.merge_thresholds.max_row_norm_deviation));
  v.Value("output", "merge_max_cast_error", D2_GET(output.merge_thresholds.max_cast_error));
  v.Value("output", "merge_max_logit_diff", D2_GET(output.merge_thresholds.max_logit_diff));
  v.Value("output", "merge_max_kl", D2_GET(output.merge_thresholds.max_kl));
  v.Value("output", "merge_max_accuracy_gap_pp", D2_GET(output.merge_thresholds.max_accuracy_gap_pp));

  v.Value("resources", "world_size", D2_GET(resources.world_size));
  v.Named("resources", "device", D2_GET(resources.device), DeviceKindName, ParseDeviceKind);
  v.Value("resources", "threads", D2_GET(resources.threads));
  v.Value("resources", "min_world_size", D2_GET(resources.min_world_size));
  v.Value("resources", "elastic_wait_seconds", D2_GET(resources.elastic_wait_seconds));
#undef D2_GET
}

}  // namespace d2lora::spec::internal
