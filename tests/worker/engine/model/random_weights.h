// Random weights for test models, without GoogleTest, so the GPU check
// (tests/gpu, built without it) shares them with the model tests.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "worker/engine/model/llama.h"

namespace d2lora::engine::testing {

// Every parameter random, including norms and biases, large enough that
// mistakes show in the logits. With `bf16_exact` every value is rounded to
// bf16 first, so a bf16 copy of the model holds the same numbers.
inline void RandomizeWeights(CausalLM& model, uint64_t seed, bool bf16_exact = false) {
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& p = item.value();
    torch::Tensor v;
    if (name.find("norm") != std::string::npos) {
      v = 1.0 + 0.2 * torch::randn(p.sizes());
    } else if (name.find("embed_tokens") != std::string::npos) {
      v = torch::randn(p.sizes());
    } else {
      v = torch::randn(p.sizes()) * (1.0 / std::sqrt(static_cast<double>(p.size(-1)))) * 1.5;
    }
    if (bf16_exact) v = v.to(torch::kBFloat16).to(torch::kFloat32);
    p.copy_(v);
  }
}

}  // namespace d2lora::engine::testing
