// `d2lora merge`: base model + adapter directory -> merged Hugging Face model.
#pragma once

#include <c10/core/ScalarType.h>

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/spec_types.h"
#include "worker/engine/model/checkpoint.h"
#include "worker/engine/tasks/merge_report.h"

namespace d2lora::engine {

struct MergeOptions {
  std::string model_dir;
  std::string adapter_dir;
  std::string out_dir;
  // Dtype of the written weights; unset: the base model's dtype (fp32 if config.json has none).
  std::optional<c10::ScalarType> dtype;
  bool overwrite = false;
  // The merge gate: thresholds (0 = the dtype's default) and whether a merge
  // over one is still written (--force).
  MergeThresholds thresholds;
  bool force = false;
};

struct MergeResult {
  AdapterOptions adapter;
  int64_t merged_layers = 0;
  c10::ScalarType dtype = c10::ScalarType::Float;
  MergeReport report;
};

// Loads the model in fp32 and, when `adapter_dir` is set, hosts the adapter
// and folds it into the weights (merge at load: evaluation and generation never
// pay the training-form cost). The result holds plain linear layers only; what
// was merged goes to *info when given.
absl::StatusOr<LoadedModel> LoadMergedModel(const std::string& model_dir, const std::string& adapter_dir,
                                            MergeResult* info = nullptr);

// Merges in fp32 (DESIGN §1), casts to the output dtype, checks the result
// (merge gate: each layer's figures, and the logits of the merged model as
// written against the training form on kMergeProbeSequences random token
// sequences) and writes the model with the base model's tokenizer files,
// atomically, and out_dir/merge_report.json. A merge over a threshold writes
// only the report (unless `force`) and returns MERGE_CHECK_FAILED.
absl::StatusOr<MergeResult> MergeModel(const MergeOptions& options);
inline constexpr int64_t kMergeProbeSequences = 4;
inline constexpr int64_t kMergeProbeLength = 32;

// The dtype a merged model is written in by default: the base model's
// dtype (`dtype` or `torch_dtype`), or fp32 when config.json does not say.
absl::StatusOr<c10::ScalarType> DefaultMergedDtype(const model::ModelConfig& config);

// "bf16" | "fp16" | "fp32" (also "bfloat16", "float16", "float32").
absl::StatusOr<c10::ScalarType> ParseDtypeFlag(const std::string& name);

}  // namespace d2lora::engine
