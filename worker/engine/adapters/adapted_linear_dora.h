// DoRA with PEFT's semantics: a trainable magnitude m [out] (initialised to
// ||W0|| per row) over the direction of W' = W0 + s B A:
//   y = (m / ||W'||) ⊙ (x W0^T + s (x A^T) B^T) + b
// With dropout in training, PEFT's form: x W0^T + (m/||W'|| - 1) ⊙ (x_d W0^T)
// + (m/||W'||) ⊙ s (x_d A^T) B^T + b, x_d = dropout(x).
// PEFT detaches ||W'||; options.norm_grad chooses (detached reproduces PEFT).
#pragma once

#include "worker/engine/adapters/adapted_linear_lora.h"

namespace d2lora::engine {

class DoraLinearImpl : public LoraLinearImpl {
 public:
  DoraLinearImpl(torch::Tensor base_weight, torch::Tensor base_bias, AdapterOptions options, uint64_t seed);

  torch::Tensor forward(const torch::Tensor& x) override;
  torch::Tensor effective_weight() const override;
  MergedWeight MergeWeight() const override;
  NamedTensors ExportTensors() const override;
  absl::Status ImportTensors(const std::map<std::string, torch::Tensor>& tensors,
                             const std::string& where) override;

 private:
  // m / ||W'|| per row, fp32.
  torch::Tensor RowScale() const;

  torch::Tensor magnitude_;    // [out]
  torch::Tensor w0_sq_norms_;  // [out] fp32 buffer, ||W0||^2
};

}  // namespace d2lora::engine
