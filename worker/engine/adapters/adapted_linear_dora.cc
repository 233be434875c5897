#include "worker/engine/adapters/adapted_linear_dora.h"

#include <torch/torch.h>

#include "worker/engine/adapters/row_scale.h"

namespace d2lora::engine {

DoraLinearImpl::DoraLinearImpl(torch::Tensor base_weight, torch::Tensor base_bias, AdapterOptions options,
                               uint64_t seed)
    : LoraLinearImpl(std::move(base_weight), std::move(base_bias), std::move(options), seed) {
  torch::NoGradGuard no_grad;
  const auto dt = MergeComputeDtype(base_weight_.scalar_type());
  torch::Tensor sq = base_weight_.to(dt).pow(2).sum(1);
  w0_sq_norms_ = register_buffer("w0_sq_norms", sq);
  magnitude_ = register_parameter("magnitude", sq.sqrt().to(ScalarTypeOf(options_.dtype)));
}

torch::Tensor DoraLinearImpl::RowScale() const {
  torch::Tensor norm = RowNormsLowRank(base_weight_, w0_sq_norms_, Update());
  if (options_.norm_grad == NormGrad::kDetached) norm = norm.detach();
  return magnitude_.to(norm.scalar_type()) / norm;
}

torch::Tensor DoraLinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor scale = RowScale();
  if (!is_training() || options_.dropout == 0.0) {
    torch::Tensor xa = LowRankInput(x.to(ScalarTypeOf(options_.dtype)), lora_a_);
    torch::Tensor y = BasePlusLowRank(x, xa, lora_b_, options_.scaling(), torch::Tensor());
    return UnflattenLike(ScaleRowsAddBias(y, scale, base_bias_), x);
  }
  // PEFT's DoRA with dropout: the base term sees x, the update sees dropout(x).
  torch::Tensor base = torch::nn::functional::linear(x, base_weight_);
  const auto dt = base.scalar_type();
  torch::Tensor x_d = torch::dropout(x, options_.dropout, /*train=*/true);
  torch::Tensor base_d = torch::nn::functional::linear(x_d, base_weight_);
  torch::Tensor low = LowRankPath(x_d.to(ScalarTypeOf(options_.dtype)));
  torch::Tensor y = base + (scale - 1).to(dt) * base_d + (scale * low).to(dt);
  if (base_bias_.defined()) y = y + base_bias_;
  return y;
}

torch::Tensor DoraLinearImpl::effective_weight() const {
  torch::Tensor w = LoraLinearImpl::effective_weight();
  torch::Tensor norm = RowNorms(w);
  if (options_.norm_grad == NormGrad::kDetached) norm = norm.detach();
  return w * (magnitude_.to(w.scalar_type()) / norm).unsqueeze(1);
}

MergedWeight DoraLinearImpl::MergeWeight() const { return MergeDora(base_weight_, Update(), magnitude_); }

NamedTensors DoraLinearImpl::ExportTensors() const {
  NamedTensors out = LoraLinearImpl::ExportTensors();
  out.emplace_back("lora_magnitude_vector", magnitude_.detach());
  return out;
}

absl::Status DoraLinearImpl::ImportTensors(const std::map<std::string, torch::Tensor>& tensors,
                                           const std::string& where) {
  D2_RETURN_IF_ERROR(LoraLinearImpl::ImportTensors(tensors, where));
  return CopyChecked(magnitude_, tensors, "lora_magnitude_vector", where);
}

}  // namespace d2lora::engine
