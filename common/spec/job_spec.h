// The job spec: what to fine-tune, on what, how. Written by users as YAML (or
// JSON, which yaml-cpp reads too), e.g.
//
//   name: wordnet-d2lora            # required, [A-Za-z0-9._-]{1,64}
//   model: ./models/base            # required, Hugging Face model directory
//   model_id: ""                    # the model's hub id ("org/name"), if it has one: adapters
//                                   # name it as base_model_name_or_path instead of `model`
//   method: d2lora                  # d2lora | lora | dora | full
//   init: {adapter: "", from_job: "", step: 0}   # start the adapters from earlier work (InitSpec)
//   adapter: {r: 8, alpha: 16, target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj,
//             up_proj, down_proj], dropout: 0.0, use_rslora: false, tau_init: 0.5,
//             tau_learnable: false, projection_strength: 1.0, residual: true,
//             norm_grad: full (dora: detached), dtype: fp32}
//   data: {train: ./data/train.jsonl, validation: ./data/val.jsonl, format: multiple_choice,
//          max_seq_len: 256, skip_invalid: false}
//   train: {epochs: 2, max_steps: 0, batch_size: 16, micro_batch_size: 8, lr: 2.0e-4,
//           schedule: cosine, warmup_steps: 10, weight_decay: 0.0, grad_clip: 1.0, seed: 42,
//           checkpoint_every: 50, keep_checkpoints: 3, max_nonfinite_steps: 5,
//           activation_checkpointing: false, dtype: auto}
//   eval: {every: 50, scoring: mean, max_examples: 0, generate_max_new_tokens: 64}
//   metrics: {volatility_window: 50, log_every: 1}
//   guard: {spike_factor: 0, max_rollbacks: 3, lr_backoff: 1.0, skip_batches: 0}   # 0 = off
//   output: {dir: ./out, merge: true, merge_dtype: auto, merge_check: true,
//            merge_max_row_norm_deviation: 0, merge_max_cast_error: 0, merge_max_logit_diff: 0,
//            merge_max_kl: 0, merge_max_accuracy_gap_pp: 0}   # 0 = the merged dtype's default
//   resources: {world_size: 1, device: cpu, threads: 0, min_world_size: 0, elastic_wait_seconds: 60}
//
// Every key is optional with the default shown (the struct initialisers below)
// except name, model and data.train; data.validation defaults to none. A key
// given as null (`key:` or `key: ~`) keeps its default. Unknown keys, wrong
// types and out-of-range values are errors naming the key's path
// ("train.batch_size = 0: must be >= 1"). Numbers and booleans must be plain
// scalars (a quoted "8" is a string); booleans are true/false.
//
// Relative paths (model, data.*, output.dir) are kept as written; resolve them
// against the spec file's directory with ResolveSpecPaths.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/spec/adapter_options.h"

namespace d2lora::spec {

enum class TrainingMethod { kD2Lora, kLora, kDora, kFull };
enum class LrSchedule { kCosine, kLinear, kConstant };
enum class ComputeDtype { kAuto, kFp32, kBf16 };          // train.dtype
enum class MergeDtype { kAuto, kFp32, kBf16, kFp16 };     // output.merge_dtype; auto = the base model's
enum class ChoiceScoring { kSum, kMean, kByte, kLetter };  // eval.scoring
enum class DeviceKind { kCpu, kCuda };

// Names as written in the spec; Parse* errors list the allowed names.
std::string TrainingMethodName(TrainingMethod v);
absl::StatusOr<TrainingMethod> ParseTrainingMethod(const std::string& name);
std::string LrScheduleName(LrSchedule v);
absl::StatusOr<LrSchedule> ParseLrSchedule(const std::string& name);
std::string ComputeDtypeName(ComputeDtype v);
absl::StatusOr<ComputeDtype> ParseComputeDtype(const std::string& name);
std::string MergeDtypeName(MergeDtype v);
absl::StatusOr<MergeDtype> ParseMergeDtype(const std::string& name);
std::string ChoiceScoringName(ChoiceScoring v);
absl::StatusOr<ChoiceScoring> ParseChoiceScoring(const std::string& name);
std::string DeviceKindName(DeviceKind v);
absl::StatusOr<DeviceKind> ParseDeviceKind(const std::string& name);
// "fp32" | "fp64" | "bf16" | "fp16" (adapter.dtype).
std::string AdapterDtypeName(AdapterDtype dtype);
absl::StatusOr<AdapterDtype> ParseAdapterDtype(const std::string& name);

// The spec's adapter defaults: AdapterOptions with all seven LLaMA projections targeted.
AdapterOptions DefaultSpecAdapterOptions();

// Where an adapter run's adapters start (spec `init:`); by default fresh
// (A Kaiming-uniform, B = 0: the base model). A resumed run continues from its
// checkpoint and reads no init.
struct InitSpec {
  // An adapter directory (adapter_config.json + adapter_model.safetensors: a
  // PEFT LoRA or DoRA adapter, or this trainer's own), or a checkpoint or
  // output directory holding one under adapter/; through the service also
  // "upload:ID". Loaded into the run's adapters (adapters/adapter_init.h).
  std::string adapter;
  // Through the service only: the job whose adapter to start from; the
  // coordinator copies it at submission and sets `adapter` to that copy
  // (keeping from_job and step as the record of where it came from).
  std::string from_job;
  // With from_job: its checkpoint at this step; 0 = its final adapter when it
  // has one, else its newest complete checkpoint.
  int64_t step = 0;

  bool empty() const { return adapter.empty() && from_job.empty(); }
};

struct DataSpec {
  std::string train;       // required
  std::string validation;  // "" = none
  // "lm" | "instruction" | "multiple_choice"; the data module's ParseDataFormat maps it.
  std::string format = "multiple_choice";
  int64_t max_seq_len = 256;  // [2, 1048576]
  bool skip_invalid = false;
};

struct TrainSpec {
  int64_t epochs = 2;     // >= 1, or 0 when max_steps > 0
  int64_t max_steps = 0;  // 0 = epochs decide; else stop after this many optimizer steps
  int64_t batch_size = 16;       // global, divisible by micro_batch_size * resources.world_size
  int64_t micro_batch_size = 8;  // per rank and forward pass
  double lr = 2.0e-4;
  LrSchedule schedule = LrSchedule::kCosine;
  int64_t warmup_steps = 10;
  double weight_decay = 0.0;
  double grad_clip = 1.0;  // max global grad norm; 0 = off
  uint64_t seed = 42;      // data order, adapter init, dropout
  int64_t checkpoint_every = 50;  // steps; 0 = only at the end
  int64_t keep_checkpoints = 3;   // >= 1
  int64_t max_nonfinite_steps = 5;  // consecutive non-finite losses before the job fails; 0 = fail at once
  bool activation_checkpointing = false;
  ComputeDtype dtype = ComputeDtype::kAuto;
};

struct EvalSpec {
  int64_t every = 50;  // steps; 0 = only at the end
  ChoiceScoring scoring = ChoiceScoring::kMean;
  int64_t max_examples = 0;  // 0 = all
  int64_t generate_max_new_tokens = 64;
};

struct MetricsSpec {
  int64_t volatility_window = 50;  // steps, >= 2
  int64_t log_every = 1;           // steps, >= 1
};

// The training guard (train/guard.h): off unless spike_factor > 0. A step
// whose global loss exceeds spike_factor x the loss EMA, or a non-finite
// streak past train.max_nonfinite_steps, rolls every rank back to the last
// checkpoint kept in memory; the LR is multiplied by lr_backoff, the bad
// global batch and the next skip_batches are skipped; more than max_rollbacks
// rollbacks fail the run.
struct GuardSpec {
  double spike_factor = 0;    // 0 = off, else > 1
  int64_t max_rollbacks = 3;  // >= 0
  double lr_backoff = 1.0;    // (0, 1]; 1 = keep the LR
  int64_t skip_batches = 0;   // >= 0, global batches after the bad one

  bool enabled() const { return spike_factor > 0; }
};

// The merge gate's thresholds (merge_report.json): 0 takes the default for
// the merged dtype (MergeThresholdsFor in tasks/merge_report.h).
struct MergeThresholds {
  double max_row_norm_deviation = 0;  // |‖W*_i‖ - target_i| / target_i, any layer
  double max_cast_error = 0;          // ‖cast(W_hat) - W_hat‖_F / ‖W_hat‖_F, any layer
  double max_logit_diff = 0;          // merged vs training form, max |Δ logit|
  double max_kl = 0;                  // mean KL(training form ‖ merged) per position
  double max_accuracy_gap_pp = 0;     // |accuracy gap|, percentage points (default: at least 2 questions' worth)
};

struct OutputSpec {
  std::string dir = "./out";
  bool merge = true;
  MergeDtype merge_dtype = MergeDtype::kAuto;
  bool merge_check = true;  // a merge over a threshold is not published and fails the job
  MergeThresholds merge_thresholds;
};

struct ResourcesSpec {
  int64_t world_size = 1;
  DeviceKind device = DeviceKind::kCpu;
  int64_t threads = 0;  // intra-op threads per rank; 0 = all cores of this process's share
  // Elastic retries (the coordinator): a retry that cannot get world_size
  // slots within elastic_wait_seconds runs on as many as it can get, not fewer
  // than min_world_size (0 = world_size: never fewer), from the last checkpoint.
  int64_t min_world_size = 0;
  int64_t elastic_wait_seconds = 60;
};

struct JobSpec {
  std::string name;   // required
  std::string model;  // required
  std::string model_id;  // "" = none; else what adapter configs name as base_model_name_or_path
  TrainingMethod method = TrainingMethod::kD2Lora;
  InitSpec init;
  // adapter.method follows `method` (kD2Lora when method is full, where the
  // adapter section is unused); adapter.seed is train.seed.
  AdapterOptions adapter = DefaultSpecAdapterOptions();
  DataSpec data;
  TrainSpec train;
  EvalSpec eval;
  MetricsSpec metrics;
  GuardSpec guard;
  OutputSpec output;
  ResourcesSpec resources;

  bool full_finetune() const { return method == TrainingMethod::kFull; }
  // What adapter configs name as their base model: model_id, else the model's path.
  const std::string& base_model_name() const { return model_id.empty() ? model : model_id; }
};

bool operator==(const JobSpec& a, const JobSpec& b);
inline bool operator!=(const JobSpec& a, const JobSpec& b) { return !(a == b); }

// The largest micro-batch size <= micro_batch_size that splits batch_size
// evenly over world_size ranks; 0 when world_size does not divide batch_size.
// (A resume or an elastic retry at another world size may change it.)
int64_t FittingMicroBatchSize(int64_t batch_size, int64_t micro_batch_size, int64_t world_size);

// Applies one `--set` override "key.path=value" to a parsed spec tree. The
// value is parsed as YAML (scalar or flow collection, e.g. "[q_proj, v_proj]");
// the path must name a key of the schema (a section replaces that section).
absl::Status ApplyOverride(YAML::Node& tree, const std::string& assignment);

// All checks that do not concern the text a spec came from (ranges, enums,
// cross-field rules). Errors name the field ("train.batch_size = 0: must be >= 1").
absl::Status ValidateJobSpec(const JobSpec& spec);

// A JobSpec that has passed ValidateJobSpec. Only Check and the parsers below
// make one, and it is read-only, so code that takes a ValidJobSpec (the
// trainer, RunTrainJob) need not check again: each process parses and checks a
// spec once, where it enters (the CLI's file, the coordinator's and the
// worker's wire message, the rank's spec.yaml). Reads as a `const JobSpec&`.
class ValidJobSpec {
 public:
  static absl::StatusOr<ValidJobSpec> Check(JobSpec spec);

  const JobSpec& get() const { return spec_; }
  const JobSpec& operator*() const { return spec_; }
  const JobSpec* operator->() const { return &spec_; }
  operator const JobSpec&() const { return spec_; }  // NOLINT: read-only view

 private:
  explicit ValidJobSpec(JobSpec spec) : spec_(std::move(spec)) {}
  friend ValidJobSpec ResolveSpecPaths(const ValidJobSpec& spec, const std::string& base_dir);

  JobSpec spec_;
};

// Parses YAML or JSON `text`, applies `overrides` in order, checks everything.
// Messages start with "SOURCE_NAME: ".
absl::StatusOr<ValidJobSpec> ParseJobSpec(const std::string& text, const std::string& source_name,
                                          const std::vector<std::string>& overrides = {});
// Reads the file at `path` and parses it (source name = path).
absl::StatusOr<ValidJobSpec> LoadJobSpec(const std::string& path,
                                         const std::vector<std::string>& overrides = {});

// The fields that follow others, which every reader (YAML, protobuf) sets
// after reading the keys: adapter.method from method, adapter.seed from
// train.seed, and adapter.norm_grad = detached for DoRA unless the spec gave
// norm_grad (PEFT's semantics).
void SetDerivedFields(JobSpec& spec, bool norm_grad_given);

// Every key, in the order above, with the values in effect: the canonical
// form. ParseJobSpec(JobSpecToYaml(s), ...) == s.
std::string JobSpecToYaml(const JobSpec& spec);
// The same tree as JSON (for summary.json); also parses back with ParseJobSpec.
nlohmann::json JobSpecToJson(const JobSpec& spec);

// `path` unchanged when absolute or empty, else `base_dir`/`path`.
std::string ResolveSpecPath(const std::string& base_dir, const std::string& path);
// The directory holding the spec file at `spec_path` ("." for a bare file name).
std::string SpecDirectory(const std::string& spec_path);
// `spec` with model, init.adapter, data.train, data.validation and output.dir resolved
// against `base_dir`. Resolving keeps a spec valid (no check looks inside a path).
JobSpec ResolveSpecPaths(const JobSpec& spec, const std::string& base_dir);
ValidJobSpec ResolveSpecPaths(const ValidJobSpec& spec, const std::string& base_dir);

}  // namespace d2lora::spec
