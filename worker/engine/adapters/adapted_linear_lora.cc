#include "worker/engine/adapters/adapted_linear_lora.h"

#include <torch/torch.h>

namespace d2lora::engine {

LoraLinearImpl::LoraLinearImpl(torch::Tensor base_weight, torch::Tensor base_bias, AdapterOptions options,
                               uint64_t seed)
    : AdaptedLinearImpl(std::move(base_weight), std::move(base_bias), std::move(options)) {
  const int64_t out = base_weight_.size(0), in = base_weight_.size(1), r = options_.r;
  lora_a_ = register_parameter("lora_A", KaimingUniformLoraA(r, in, ScalarTypeOf(options_.dtype), seed));
  lora_b_ = register_parameter("lora_B", torch::zeros({out, r}, torch::TensorOptions().dtype(ScalarTypeOf(options_.dtype))));
}

torch::Tensor LoraLinearImpl::LowRankPath(const torch::Tensor& adapter_input) const {
  return torch::matmul(torch::matmul(adapter_input, lora_a_.t()), lora_b_.t()) * options_.scaling();
}

torch::Tensor LoraLinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor xa = LowRankInput(AdapterInput(x), lora_a_);
  return UnflattenLike(BasePlusLowRank(x, xa, lora_b_, options_.scaling(), base_bias_), x);
}

torch::Tensor LoraLinearImpl::effective_weight() const {
  const auto dt = MergeComputeDtype(base_weight_.scalar_type());
  return base_weight_.to(dt) + options_.scaling() * torch::matmul(lora_b_.to(dt), lora_a_.to(dt));
}

MergedWeight LoraLinearImpl::MergeWeight() const { return MergeLora(base_weight_, Update()); }

NamedTensors LoraLinearImpl::ExportTensors() const {
  return {{"lora_A.weight", lora_a_.detach()}, {"lora_B.weight", lora_b_.detach()}};
}

absl::Status LoraLinearImpl::ImportTensors(const std::map<std::string, torch::Tensor>& tensors,
                                           const std::string& where) {
  D2_RETURN_IF_ERROR(CopyChecked(lora_a_, tensors, "lora_A.weight", where));
  return CopyChecked(lora_b_, tensors, "lora_B.weight", where);
}

}  // namespace d2lora::engine
