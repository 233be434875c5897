// The merge gate: every merge (`d2lora merge`, the trainer's output.merge, the
// service) measures what it made and writes merge_report.json; a merge over a
// threshold is not published.
//
// Per adapted layer: the largest relative deviation of the projected rows'
// norms from their target (D2-LoRA, DoRA), NaN/Inf in the merged weight after
// the cast to the checkpoint dtype, and the cast's relative error. On
// validation sequences: merged-vs-training-form logits (max |Δ|, mean KL) and
// the loss and accuracy gap. Thresholds of 0 take the merged dtype's default
// (ThresholdsFor).
#pragma once

#include <c10/core/ScalarType.h>
#include <torch/nn/module.h>

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "worker/engine/spec_types.h"
#include "common/trainer/output_names.h"

namespace d2lora::engine {


struct LayerMergeFigures {
  std::string layer;                // module path
  double row_norm_deviation = -1;   // < 0: the method has no projection
  int64_t nonfinite = 0;            // NaN/Inf in the weight as the checkpoint holds it
  double cast_error = 0;            // ‖cast(W_hat) − W_hat‖_F / ‖W_hat‖_F
};

struct LogitAgreement {
  double max_abs_diff = 0;  // over every unpadded position and vocabulary entry
  double mean_kl = 0;       // KL(training form ‖ merged) per unpadded position, nats
  int64_t positions = 0;
  int64_t sequences = 0;
};

struct MergeReport {
  std::string merged_dtype;  // "bf16" | "fp16" | "fp32"
  bool enforced = true;      // a breach fails the merge (output.merge_check, not --force)
  MergeThresholds thresholds;  // in effect (defaults resolved)
  std::vector<LayerMergeFigures> layers;
  std::optional<LogitAgreement> logits;
  // Validation of the training form and of the merged model, when measured.
  std::optional<double> accuracy_training_form, accuracy_merged;
  std::optional<double> loss_training_form, loss_merged;
  std::string scoring;
  std::vector<std::string> breaches;  // Judge(): "model.layers.0.q_proj: cast_error 0.1 > 0.0078"

  bool passed() const { return breaches.empty(); }
  // The worst layer figures and the logit/accuracy gaps: the job's headline.
  nlohmann::json Headline() const;
  nlohmann::json ToJson() const;
  // OK when passed or not enforced; else FAILED_PRECONDITION "MERGE_CHECK_FAILED: ...".
  absl::Status Verdict() const;
};

// `given` with every 0 replaced by the default for a checkpoint in `dtype`:
//   fp32: row norms 1e-4, cast 1e-6, logits 1e-3, KL 1e-6, accuracy 0.5 pp
//   fp16: row norms 1e-4, cast 2^-10, logits 0.1, KL 1e-3, accuracy 2 pp
//   bf16: row norms 1e-4, cast 2^-7, logits 0.5, KL 1e-2, accuracy 3 pp
// (the row norms are measured in fp32 before the cast whatever the dtype).
MergeThresholds ThresholdsFor(c10::ScalarType dtype, const MergeThresholds& given);

// Folds every hosted adapter under `root` into its weight (as MergeAdapters)
// and returns each layer's figures against a checkpoint in `checkpoint_dtype`.
std::vector<LayerMergeFigures> MergeAdaptersMeasured(torch::nn::Module& root, c10::ScalarType checkpoint_dtype);

// Logits [B, T, V] of the training form and of the merged model on the same
// batch; `mask` [B, T] is 1 at real tokens.
LogitAgreement CompareLogits(const at::Tensor& training_form, const at::Tensor& merged, const at::Tensor& mask);

// Rounds every parameter and buffer under `root` to `dtype` and back in place,
// so that the model computes what a checkpoint written in `dtype` holds.
void RoundTripToDtype(torch::nn::Module& root, c10::ScalarType dtype);

// Fills report->breaches from its figures and thresholds.
void Judge(MergeReport* report);

// Writes `dir`/merge_report.json atomically.
absl::Status WriteMergeReport(const MergeReport& report, const std::string& dir);

}  // namespace d2lora::engine
