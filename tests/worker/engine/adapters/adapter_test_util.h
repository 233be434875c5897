// A tiny module tree with engine Linear layers named like a decoder, for the
// adapter tests.
#pragma once

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <string>

#include "worker/engine/adapters/adapted_linear.h"
#include "worker/engine/adapters/adapted_linear_d2lora.h"
#include "worker/engine/adapters/adapter_io.h"
#include "worker/engine/adapters/inject.h"
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

// D2-LoRA's adapted weight written out from the raw parameters alone (DESIGN
// §1), in fp64, independently of the module (no Update(), no stored m0):
//   dW = s (B+ A+ - tau B- A-),  W' = W0 + dW,  g = (||W0|| / ||W'||)^lambda,
//   W_hat = g ⊙ W' + dW  (residual)  or  g ⊙ W'.
inline torch::Tensor ReferenceD2LoraWeight(D2LoraLinearImpl& layer) {
  torch::NoGradGuard ng;
  auto p = layer.named_parameters();
  auto b = layer.named_buffers();
  const AdapterOptions& o = layer.options();
  const double s = o.use_rslora ? o.alpha / std::sqrt(static_cast<double>(o.r)) : o.alpha / o.r;
  torch::Tensor tau = o.tau_learnable ? torch::log1p(torch::exp(p["tau_raw"].to(torch::kFloat64)))
                                      : b["tau"].to(torch::kFloat64);
  auto d = [](const torch::Tensor& t) { return t.to(torch::kFloat64); };
  torch::Tensor w0 = d(layer.base_weight());
  torch::Tensor dw = s * (torch::matmul(d(p["lora_B"]), d(p["lora_A"])) -
                          tau * torch::matmul(d(p["lora_B_neg"]), d(p["lora_A_neg"])));
  torch::Tensor w = w0 + dw;
  torch::Tensor g = (w0.pow(2).sum(1).sqrt() / w.pow(2).sum(1).sqrt()).pow(o.projection_strength);
  torch::Tensor projected = w * g.unsqueeze(1);
  return o.residual ? projected + dw : projected;
}

// The adapter tests' options: rank 3, alpha 6, on q_proj and up_proj.
inline AdapterOptions SmallAdapterOptions(AdapterMethod method, int64_t r = 3, double alpha = 6) {
  AdapterOptions o;
  o.method = method;
  o.r = r;
  o.alpha = alpha;
  o.target_modules = {"q_proj", "up_proj"};
  return o;
}

// A TinyNet(6, 2) with a trained-looking adapter (RandomizeAdapter), saved to `dir`.
inline TinyNet SaveTrainedAdapter(const AdapterOptions& o, const std::string& dir) {
  TinyNet net(6, 2);
  EXPECT_TRUE(InjectAdapters(*net, o).ok());
  for (auto& [path, linear] : LinearLayers(*net)) {
    if (linear->adapter()) RandomizeAdapter(*linear->adapter());
  }
  const absl::Status saved = SaveAdapter(*net, o, dir, "models/tiny");
  EXPECT_TRUE(saved.ok()) << saved;
  return net;
}

}  // namespace d2lora::engine::testing
