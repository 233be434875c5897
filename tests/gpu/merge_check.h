// Check (b): the merged model gives the unmerged (training-form) model's
// outputs, in the compute dtype the device trains in (bf16 on CUDA, fp32 on the
// CPU by default).
//
// Two copies of one tiny Llama with D2-LoRA on every linear layer and non-zero
// B+, B- and tau (values of a trained adapter's scale, so the projection is far
// from the identity): the model under test in `dtype`, and a reference in fp32
// holding exactly the same weights (they are bf16-representable). Logits of
// the model under test before merging ("unmerged") and after MergeAdapters
// ("merged") are compared with each other and with the fp32 reference; the
// thresholds and why are in merge_check.cc.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace d2lora::gpucheck {

struct MergeCheckOptions {
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
  uint64_t seed = 23;  // weights, adapter values and input tokens
};

// max_abs_diff (merged vs unmerged), argmax_agreement, the errors of both
// against the fp32 reference, the thresholds used, "passed" and "failures".
absl::StatusOr<nlohmann::json> RunMergeCheck(const MergeCheckOptions& options);

}  // namespace d2lora::gpucheck
