// Options of an adapted linear layer (DESIGN §1). The job spec's `adapter:`
// section maps onto this struct one to one; the engine's adapters take it as
// it is (worker/engine/spec_types.h maps the dtype to LibTorch's).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace d2lora::spec {

enum class AdapterMethod { kD2Lora, kLora, kDora };
enum class NormGrad { kFull, kDetached };
enum class AdapterDtype { kFp32, kFp64, kBf16, kFp16 };  // adapter.dtype

std::string MethodName(AdapterMethod method);  // "d2lora" | "lora" | "dora"
absl::StatusOr<AdapterMethod> ParseMethod(const std::string& name);
std::string NormGradName(NormGrad mode);  // "full" | "detached"
absl::StatusOr<NormGrad> ParseNormGrad(const std::string& name);

struct AdapterOptions {
  AdapterMethod method = AdapterMethod::kD2Lora;
  int64_t r = 8;
  double alpha = 16.0;
  bool use_rslora = false;  // s = alpha / sqrt(r) instead of alpha / r
  double dropout = 0.0;     // on the adapter input, training only
  double tau_init = 0.5;    // D2-LoRA: tau >= 0 (fixed, as in the paper's main runs, or its start)
  bool tau_learnable = false;
  double projection_strength = 1.0;  // lambda in [0, 1]
  // D2-LoRA: W_hat = W* + dW (the paper's Eq. 3), or W* alone (the ablation).
  bool residual = true;
  // The job spec defaults DoRA to kDetached (PEFT) and D2-LoRA to kFull.
  NormGrad norm_grad = NormGrad::kFull;
  AdapterDtype dtype = AdapterDtype::kFp32;  // adapter parameter dtype
  // Module-name patterns: a plain name matches a module path equal to it or
  // ending in ".name"; an entry with regex characters must match the whole
  // path (RE2); "all-linear" matches every linear layer except the output head.
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};
  uint64_t seed = 0;  // initialisation of A+ / A-

  // s: alpha / r, or alpha / sqrt(r) with rsLoRA.
  double scaling() const;
  // Checks every field; the message names it.
  absl::Status Validate() const;
};

}  // namespace d2lora::spec
