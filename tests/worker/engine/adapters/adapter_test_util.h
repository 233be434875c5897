// A tiny module tree with engine Linear layers named like a decoder, for the
// adapter tests.
#pragma once

#include <torch/torch.h>

#include "worker/engine/adapters/adapted_linear.h"
#include "worker/engine/adapters/linear.h"

namespace d2lora::engine::testing {

struct BlockImpl : torch::nn::Module {
  BlockImpl(int64_t d, torch::Dtype dtype) {
    auto o = torch::TensorOptions().dtype(dtype);
    q_proj = register_module("q_proj", Linear(d, d, true, o));
    v_proj = register_module("v_proj", Linear(d, d, false, o));
    up_proj = register_module("up_proj", Linear(d, 2 * d, false, o));
  }
  torch::Tensor forward(torch::Tensor x) { return up_proj(q_proj(x) + v_proj(x)); }
  Linear q_proj{nullptr}, v_proj{nullptr}, up_proj{nullptr};
};
TORCH_MODULE(Block);

// "model.layers.N.{q_proj,v_proj,up_proj}" and "lm_head".
struct TinyNetImpl : torch::nn::Module {
  TinyNetImpl(int64_t d, int64_t layers, torch::Dtype dtype = torch::kFloat32, uint64_t seed = 1) {
    torch::manual_seed(seed);
    auto inner = std::make_shared<torch::nn::Module>();
    list = torch::nn::ModuleList();
    for (int64_t i = 0; i < layers; ++i) list->push_back(Block(d, dtype));
    inner->register_module("layers", list);
    register_module("model", inner);
    lm_head = register_module("lm_head", Linear(2 * d, d, false, torch::TensorOptions().dtype(dtype)));
  }
  torch::Tensor forward(torch::Tensor x) {
    for (const auto& m : *list) x = m->as<BlockImpl>()->forward(x).narrow(-1, 0, x.size(-1));
    return lm_head(torch::cat({x, x}, -1));
  }
  torch::nn::ModuleList list{nullptr};
  Linear lm_head{nullptr};
};
TORCH_MODULE(TinyNet);

// Fills every adapter parameter with values of a plausible trained scale.
inline void RandomizeAdapter(AdaptedLinearImpl& layer, double scale = 0.3) {
  torch::NoGradGuard no_grad;
  for (auto& p : layer.named_parameters()) {
    if (p.key() == "magnitude") {
      p.value().mul_(1.0 + 0.1 * torch::randn_like(p.value()));
    } else if (p.key() == "tau_raw") {
      p.value().fill_(0.3);
    } else {
      p.value().copy_(scale * torch::randn_like(p.value()));
    }
  }
}

}  // namespace d2lora::engine::testing
