// AdamW with PyTorch's update rule (torch.optim.AdamW, amsgrad off), over the
// trainable parameters by name. Our own rather than torch::optim::AdamW so that
// its state is plain named tensors: checkpoints stay readable and identical
// across LibTorch versions (1.13 and 2.x key the built-in optimizer's state by
// tensor address), and the moments stay fp32 whatever the parameter dtype.
//
// Per parameter p with gradient g, at update t (1-based):
//   p -= lr * weight_decay * p                  (decoupled decay; decay params only)
//   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace d2lora::engine {

struct TrainableParameter {
  std::string name;  // the module path, e.g. "model.layers.0.self_attn.q_proj.adapter.lora_A"
  torch::Tensor param;
  bool decay = true;  // subject to weight decay
};

// Parameters of `root` that require gradients, in registration order. Weight
// decay applies to matrices only: norms, biases, tau and DoRA magnitudes
// (all 1-D) are exempt.
std::vector<TrainableParameter> CollectTrainableParameters(torch::nn::Module& root);

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(std::vector<TrainableParameter> params, AdamWOptions options);

  // One update with learning rate `lr` from each parameter's .grad() (an
  // undefined gradient counts as zero).
  void Step(double lr);
  void ZeroGrad();

  int64_t steps() const { return steps_; }
  const std::vector<TrainableParameter>& parameters() const { return params_; }

  // "<name>.exp_avg" and "<name>.exp_avg_sq" for every parameter (fp32).
  std::vector<std::pair<std::string, torch::Tensor>> StateTensors() const;
  // Restores state written by StateTensors() plus the update count; every key
  // must be present with the parameter's shape (the error names the key).
  absl::Status LoadState(const std::map<std::string, torch::Tensor>& tensors, int64_t steps);

 private:
  std::vector<TrainableParameter> params_;
  AdamWOptions options_;
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;
  int64_t steps_ = 0;
};

}  // namespace d2lora::engine
