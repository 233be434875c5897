#include <torch/torch.h>

#include "worker/engine/train/adamw.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace d2lora::engine {

std::vector<TrainableParameter> CollectTrainableParameters(torch::nn::Module& root) {
  std::vector<TrainableParameter> out;
  for (const auto& item : root.named_parameters(/*recurse=*/true)) {
    if (!item.value().requires_grad()) continue;
    out.push_back({item.key(), item.value(), item.value().dim() >= 2});
  }
  return out;
}

AdamW::AdamW(std::vector<TrainableParameter> params, AdamWOptions options)
    : params_(std::move(params)), options_(options) {
  for (const TrainableParameter& p : params_) {
    auto opts = p.param.options().dtype(torch::kFloat32);
    exp_avg_.push_back(torch::zeros(p.param.sizes(), opts));
    exp_avg_sq_.push_back(torch::zeros(p.param.sizes(), opts));
  }
}

void AdamW::ZeroGrad() {
  for (TrainableParameter& p : params_) {
    if (p.param.grad().defined()) p.param.mutable_grad().zero_();
  }
}

void AdamW::Step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bc1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bc2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i].param;
    torch::Tensor g = p.grad().defined() ? p.grad().to(torch::kFloat32) : torch::zeros_like(exp_avg_[i]);
    // Work in fp32 and write back in the parameter's dtype.
    torch::Tensor w = p.scalar_type() == torch::kFloat32 ? p : p.to(torch::kFloat32);
    if (params_[i].decay && options_.weight_decay != 0.0) w.mul_(1.0 - lr * options_.weight_decay);
    exp_avg_[i].mul_(options_.beta1).add_(g, 1.0 - options_.beta1);
    exp_avg_sq_[i].mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
    torch::Tensor denom = (exp_avg_sq_[i].sqrt() / std::sqrt(bc2)).add_(options_.eps);
    w.addcdiv_(exp_avg_[i], denom, -lr / bc1);
    if (!w.is_same(p)) p.copy_(w);
  }
}

std::vector<std::pair<std::string, torch::Tensor>> AdamW::StateTensors() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back(params_[i].name + ".exp_avg", exp_avg_[i]);
    out.emplace_back(params_[i].name + ".exp_avg_sq", exp_avg_sq_[i]);
  }
  return out;
}

absl::Status AdamW::LoadState(const std::map<std::string, torch::Tensor>& tensors, int64_t steps) {
  if (steps < 0) return absl::InvalidArgumentError(absl::StrCat("optimizer step count ", steps, " < 0"));
  std::vector<torch::Tensor> avg(params_.size()), avg_sq(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    for (auto [suffix, dest] : {std::pair<const char*, torch::Tensor*>{".exp_avg", &avg[i]},
                                {".exp_avg_sq", &avg_sq[i]}}) {
      const std::string key = params_[i].name + suffix;
      auto it = tensors.find(key);
      if (it == tensors.end()) return absl::InvalidArgumentError(absl::StrCat("optimizer state lacks ", key));
      if (it->second.sizes() != params_[i].param.sizes()) {
        return absl::InvalidArgumentError(
            absl::StrCat("optimizer state ", key, " has shape [", absl::StrJoin(it->second.sizes(), ", "),
                         "], the parameter has [", absl::StrJoin(params_[i].param.sizes(), ", "), "]"));
      }
      *dest = it->second.to(exp_avg_[i].options()).clone();
    }
  }
  if (tensors.size() != 2 * params_.size()) {
    for (const auto& [key, t] : tensors) {
      bool known = false;
      for (const TrainableParameter& p : params_) known = known || key == p.name + ".exp_avg" || key == p.name + ".exp_avg_sq";
      if (!known) return absl::InvalidArgumentError(absl::StrCat("optimizer state has unknown tensor ", key));
    }
  }
  exp_avg_ = std::move(avg);
  exp_avg_sq_ = std::move(avg_sq);
  steps_ = steps;
  return absl::OkStatus();
}

}  // namespace d2lora::engine
