// Exact export of a trained adapter as a PEFT adapter directory that any
// DoRA/LoRA-capable stack loads unchanged (DESIGN §1).
//
// D2-LoRA -> PEFT DoRA of rank 2r: with g = (m0 / ||W'||)^lambda per row,
//   W_hat = W* + dW = diag(g) (W0 + diag(1 + 1/g) dW),
// which is DoRA's form with A' = [A+; A-], B' = diag(1 + 1/g) [B+, -tau B-]
// (B' = [B+, -tau B-] without the residual), PEFT's scaling equal to ours and
// the magnitude m = g ⊙ ||W0 + s B' A'||. No approximation.
// D2-LoRA -> PEFT LoRA of rank 2r only where the update is exactly low-rank
// (lambda = 0: W_hat = W0 + dW, or W0 + 2 dW with the residual).
// LoRA and DoRA adapters export as they are (LoRA -> DoRA adds m = ||W0 + dW||).
#pragma once

#include <torch/nn/module.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/spec_types.h"
#include "worker/engine/adapters/merge.h"

namespace d2lora::engine {

enum class PeftFormat { kDora, kLora };
std::string PeftFormatName(PeftFormat format);  // "peft-dora" | "peft-lora"
absl::StatusOr<PeftFormat> ParsePeftFormat(const std::string& name);

// One layer's factors in PEFT's form: W_hat = diag(m / ||W0 + s B A||) (W0 + s B A)
// (DoRA, `magnitude` defined) or W0 + s B A (LoRA). Computed in fp32 (fp64
// stays fp64); A [k, in], B [out, k].
struct PeftFactors {
  at::Tensor A, B, magnitude;
  double scaling = 1.0;
};

// D2-LoRA's update `u` (StackD2Lora) over `w0` as DoRA factors; fails (naming
// the row) where a row of W* is zero, which DoRA cannot express.
absl::StatusOr<PeftFactors> D2LoraAsDora(const at::Tensor& w0, const LowRankUpdate& u, double lambda, bool residual);
// LoRA's update as DoRA factors (m = ||W0 + dW||).
PeftFactors LoraAsDora(const at::Tensor& w0, const LowRankUpdate& u);

// Writes the adapters hosted under `root` (trained with `options`) to `dir`
// as a PEFT adapter, atomically: adapter_config.json with peft_type LORA,
// use_dora, r = the export's rank, lora_alpha chosen so that PEFT's scaling
// (lora_alpha / r, or / sqrt(r) with rsLoRA) equals ours, and target_modules
// the explicit list of adapted module paths. Errors name the reason and the layer.
absl::Status SavePeftAdapter(torch::nn::Module& root, const AdapterOptions& options, PeftFormat format,
                             const std::string& dir, const std::string& base_model_name_or_path = "");

}  // namespace d2lora::engine
