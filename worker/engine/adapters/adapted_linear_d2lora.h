// D2-LoRA (DESIGN §1): a signed two-branch update
//   dW = s (B+ A+ - tau B- A-),  tau >= 0 (softplus of a raw parameter when learnable)
// and, in training form, a projection that keeps every row at its original norm,
// with the update added once more after it (the paper's Eq. 3):
//   W* = diag(g) (W0 + dW),  g = (m0 / ||W0 + dW||)^lambda,  m0 = ||W0|| per row (frozen)
//   W_hat = W* + dW          (options.residual = false: W_hat = W*, the ablation)
// Forward: y = g ⊙ (x W0^T + u) + u + b with the low-rank path u = x dW^T
// computed once (x A^T once, then one GEMM into the base output and one for
// the residual); the row norms come from the low-rank identity in merge.h,
// never a dense dW.
#pragma once

#include "worker/engine/adapters/adapted_linear.h"
#include "worker/engine/adapters/merge.h"

namespace d2lora::engine {

class D2LoraLinearImpl : public AdaptedLinearImpl {
 public:
  D2LoraLinearImpl(torch::Tensor base_weight, torch::Tensor base_bias, AdapterOptions options, uint64_t seed);

  torch::Tensor forward(const torch::Tensor& x) override;
  torch::Tensor effective_weight() const override;
  MergedWeight MergeWeight() const override;
  NamedTensors ExportTensors() const override;
  absl::Status ImportTensors(const std::map<std::string, torch::Tensor>& tensors,
                             const std::string& where) override;

  // The effective tau, shape [1] (differentiable when learnable).
  torch::Tensor tau() const;
  // (m0 / ||W'||)^lambda per row, fp32, through the low-rank norm identity.
  torch::Tensor RowScale() const;
  // The stacked factors: dW = s [B+, -tau B-] [A+; A-].
  LowRankUpdate Update() const;

 private:
  torch::Tensor RowScale(const LowRankUpdate& u) const;

  torch::Tensor a_pos_, b_pos_, a_neg_, b_neg_;
  torch::Tensor tau_raw_;      // [1] parameter when tau is learnable
  torch::Tensor tau_fixed_;    // [1] buffer when it is not
  torch::Tensor w0_sq_norms_;  // [out] fp32 buffer, ||W0||^2
  torch::Tensor m0_;           // [out] fp32 buffer, ||W0||
};

}  // namespace d2lora::engine
