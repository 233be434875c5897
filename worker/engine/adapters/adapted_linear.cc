#include "worker/engine/adapters/adapted_linear.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/engine/adapters/adapted_linear_d2lora.h"
#include "worker/engine/adapters/adapted_linear_dora.h"
#include "worker/engine/adapters/adapted_linear_lora.h"
#include "worker/engine/adapters/linear.h"
#include "worker/engine/torch_guard.h"

namespace d2lora::engine {

AdaptedLinearImpl::AdaptedLinearImpl(torch::Tensor base_weight, torch::Tensor base_bias,
                                     AdapterOptions options)
    : base_weight_(std::move(base_weight)), base_bias_(std::move(base_bias)), options_(std::move(options)) {}

torch::Tensor AdaptedLinearImpl::AdapterInput(const torch::Tensor& x) {
  torch::Tensor in = x;
  if (is_training() && options_.dropout > 0.0) in = torch::dropout(in, options_.dropout, /*train=*/true);
  return in.to(ScalarTypeOf(options_.dtype));
}

torch::Tensor AdaptedLinearImpl::merge() const {
  return MergeWeight().weight.to(base_weight_.scalar_type());
}

torch::Tensor AdaptedLinearImpl::LowRankInput(const torch::Tensor& a, const torch::Tensor& A) {
  return torch::matmul(a.reshape({-1, a.size(-1)}), A.t());
}

torch::Tensor AdaptedLinearImpl::BasePlusLowRank(const torch::Tensor& x, const torch::Tensor& xa,
                                                 const torch::Tensor& B, double scaling,
                                                 const torch::Tensor& bias) const {
  // A fresh [tokens, out] tensor whose value no backward needs (linear saves
  // its input and weight, not its output), so it may be updated in place.
  torch::Tensor y = torch::nn::functional::linear(x.reshape({-1, x.size(-1)}), base_weight_, bias);
  if (y.scalar_type() == xa.scalar_type()) return y.addmm_(xa, B.t(), /*beta=*/1, /*alpha=*/scaling);
  return y + (torch::matmul(xa, B.t()) * scaling).to(y.scalar_type());
}

torch::Tensor AdaptedLinearImpl::UnflattenLike(const torch::Tensor& y, const torch::Tensor& x) const {
  std::vector<int64_t> sizes = x.sizes().vec();
  sizes.back() = y.size(-1);
  return y.view(sizes);
}

absl::Status AdaptedLinearImpl::CopyChecked(torch::Tensor& dst,
                                            const std::map<std::string, torch::Tensor>& tensors,
                                            const std::string& key, const std::string& where) {
  auto it = tensors.find(key);
  if (it == tensors.end()) return absl::NotFoundError(absl::StrCat(where, ".", key, " is missing"));
  if (it->second.sizes() != dst.sizes()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".", key, " has shape [",
                                                   absl::StrJoin(it->second.sizes(), ", "),
                                                   "] but the model needs [",
                                                   absl::StrJoin(dst.sizes(), ", "), "]"));
  }
  torch::NoGradGuard no_grad;
  dst.copy_(it->second);
  return absl::OkStatus();
}

namespace {
// FNV-1a: a stable per-module seed, whatever the order of injection.
uint64_t ModuleSeed(uint64_t seed, const std::string& path) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : path) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}
}  // namespace

torch::Tensor KaimingUniformLoraA(int64_t rows, int64_t in_features, c10::ScalarType dtype,
                                  uint64_t seed) {
  // LoRA's init: kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)).
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  return torch::empty({rows, in_features}, torch::kFloat64).uniform_(-bound, bound, gen).to(dtype);
}

absl::StatusOr<std::shared_ptr<AdaptedLinearImpl>> CreateAdaptedLinear(
    LinearImpl& host, const AdapterOptions& options, const std::string& module_path) {
  D2_RETURN_IF_ERROR(options.Validate());
  return GuardTorch(absl::StrCat("creating adapter for ", module_path),
                    [&]() -> absl::StatusOr<std::shared_ptr<AdaptedLinearImpl>> {
    const uint64_t seed = ModuleSeed(options.seed, module_path);
    const auto device = host.weight().device();
    std::shared_ptr<AdaptedLinearImpl> layer;
    switch (options.method) {
      case AdapterMethod::kD2Lora:
        layer = std::make_shared<D2LoraLinearImpl>(host.weight(), host.bias(), options, seed);
        break;
      case AdapterMethod::kLora:
        layer = std::make_shared<LoraLinearImpl>(host.weight(), host.bias(), options, seed);
        break;
      case AdapterMethod::kDora:
        layer = std::make_shared<DoraLinearImpl>(host.weight(), host.bias(), options, seed);
        break;
    }
    layer->to(device);
    if (!host.is_training()) layer->eval();
    return layer;
  });
}

torch::Tensor DenseReferenceForward(const AdaptedLinearImpl& layer, const torch::Tensor& x) {
  torch::Tensor w = layer.effective_weight();
  torch::Tensor y = torch::matmul(x.to(w.scalar_type()), w.t());
  if (layer.base_bias().defined()) y = y + layer.base_bias().to(w.scalar_type());
  return y.to(x.scalar_type());
}

}  // namespace d2lora::engine
