// The engine's linear layer: a plain `y = x W^T + b` that can host one adapter.
// Models build their projections from it, so adapters can be injected into
// any module tree by name without the parent knowing (LibTorch's
// replace_module would leave the parent's member pointing at the old layer).
//
// Parameter names are Hugging Face's: "weight" [out, in] and optional "bias"
// [out]. A hosted adapter is registered as the child module "adapter".
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>

#include "worker/engine/adapters/merge.h"

namespace d2lora::engine {

class AdaptedLinearImpl;

class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool with_bias,
             const torch::TensorOptions& options = {});

  torch::Tensor forward(const torch::Tensor& x);

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  torch::Tensor& weight() { return weight_; }
  const torch::Tensor& weight() const { return weight_; }
  // Undefined when the layer has no bias.
  torch::Tensor& bias() { return bias_; }
  const torch::Tensor& bias() const { return bias_; }

  // Hosting: the adapter computes the forward from then on; the base weight and
  // bias stop requiring gradients.
  void set_adapter(std::shared_ptr<AdaptedLinearImpl> adapter);
  const std::shared_ptr<AdaptedLinearImpl>& adapter() const { return adapter_; }
  // Folds the adapter into the weight (DESIGN §1 merge) and drops it; returns
  // the merged weight as computed (fp32) with its figures, before the cast to
  // the weight's dtype (undefined weight when no adapter was hosted).
  MergedWeight merge_adapter();

 private:
  int64_t in_features_;
  int64_t out_features_;
  torch::Tensor weight_;
  torch::Tensor bias_;
  std::shared_ptr<AdaptedLinearImpl> adapter_;
};
TORCH_MODULE(Linear);

}  // namespace d2lora::engine
