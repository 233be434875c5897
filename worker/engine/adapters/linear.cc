#include "worker/engine/adapters/linear.h"

#include <torch/nn/functional/linear.h>
#include <torch/nn/init.h>

#include <cmath>

#include "worker/engine/adapters/adapted_linear.h"

namespace d2lora::engine {

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool with_bias,
                       const torch::TensorOptions& options)
    : in_features_(in_features), out_features_(out_features) {
  weight_ = register_parameter("weight", torch::empty({out_features, in_features}, options));
  // torch.nn.Linear's default initialisation.
  torch::nn::init::kaiming_uniform_(weight_, std::sqrt(5.0));
  if (with_bias) {
    double bound = in_features > 0 ? 1.0 / std::sqrt(static_cast<double>(in_features)) : 0.0;
    bias_ = register_parameter("bias", torch::empty({out_features}, options).uniform_(-bound, bound));
  }
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  if (adapter_) return adapter_->forward(x);
  return torch::nn::functional::linear(x, weight_, bias_);
}

void LinearImpl::set_adapter(std::shared_ptr<AdaptedLinearImpl> adapter) {
  if (adapter_) unregister_module("adapter");
  adapter_ = std::move(adapter);
  if (adapter_) {
    register_module("adapter", adapter_);
    weight_.requires_grad_(false);
    if (bias_.defined()) bias_.requires_grad_(false);
  }
}

MergedWeight LinearImpl::merge_adapter() {
  if (!adapter_) return {};
  MergedWeight merged = adapter_->MergeWeight();
  {
    torch::NoGradGuard no_grad;
    weight_.copy_(merged.weight);
  }
  unregister_module("adapter");
  adapter_.reset();
  return merged;
}

}  // namespace d2lora::engine
