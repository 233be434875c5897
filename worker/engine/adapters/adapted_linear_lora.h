// LoRA: y = x W0^T + b + s (x A^T) B^T.
#pragma once

#include "worker/engine/adapters/adapted_linear.h"
#include "worker/engine/adapters/merge.h"

namespace d2lora::engine {

class LoraLinearImpl : public AdaptedLinearImpl {
 public:
  LoraLinearImpl(torch::Tensor base_weight, torch::Tensor base_bias, AdapterOptions options, uint64_t seed);

  torch::Tensor forward(const torch::Tensor& x) override;
  torch::Tensor effective_weight() const override;
  MergedWeight MergeWeight() const override;
  NamedTensors ExportTensors() const override;
  absl::Status ImportTensors(const std::map<std::string, torch::Tensor>& tensors,
                             const std::string& where) override;

  LowRankUpdate Update() const { return {lora_a_, lora_b_, options_.scaling()}; }

 protected:
  // s (x A^T) B^T on the adapter input, in the adapter dtype.
  torch::Tensor LowRankPath(const torch::Tensor& adapter_input) const;

  torch::Tensor lora_a_;  // [r, in]
  torch::Tensor lora_b_;  // [out, r]
};

}  // namespace d2lora::engine
