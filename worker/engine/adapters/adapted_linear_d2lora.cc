#include "worker/engine/adapters/adapted_linear_d2lora.h"

#include <torch/torch.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "worker/engine/adapters/d2lora_epilogue.h"
#include "worker/engine/adapters/row_scale.h"

namespace d2lora::engine {

namespace {
// softplus^-1(0) is -inf; a learnable tau starts at this floor instead of 0 so
// that it can still move.
constexpr double kMinLearnableTau = 1e-4;

double InverseSoftplus(double y) { return y > 20.0 ? y : std::log(std::expm1(y)); }

// The raw value, in `dtype`, whose softplus (as LibTorch computes it in that
// dtype) is closest to `tau`: the inverse in double, then the neighbouring
// representable values, so that a saved tau usually reloads bit-exactly.
torch::Tensor RawForTau(double tau, c10::ScalarType dtype) {
  torch::Tensor center = torch::full({1}, InverseSoftplus(std::max(tau, 1e-30)), torch::kFloat64).to(dtype);
  std::vector<torch::Tensor> candidates = {center};
  torch::Tensor up = center.clone(), down = center.clone();
  const torch::Tensor inf = torch::full({1}, INFINITY, center.options());
  for (int i = 0; i < 16; ++i) {
    up = torch::nextafter(up, inf);
    down = torch::nextafter(down, -inf);
    candidates.push_back(up);
    candidates.push_back(down);
  }
  torch::Tensor raw = torch::cat(candidates);
  torch::Tensor err = (torch::softplus(raw).to(torch::kFloat64) - tau).abs();
  return raw[err.argmin()].reshape({1});
}
}  // namespace

D2LoraLinearImpl::D2LoraLinearImpl(torch::Tensor base_weight, torch::Tensor base_bias,
                                   AdapterOptions options, uint64_t seed)
    : AdaptedLinearImpl(std::move(base_weight), std::move(base_bias), std::move(options)) {
  const int64_t out = base_weight_.size(0), in = base_weight_.size(1), r = options_.r;
  const auto opts = torch::TensorOptions().dtype(ScalarTypeOf(options_.dtype));
  a_pos_ = register_parameter("lora_A", KaimingUniformLoraA(r, in, ScalarTypeOf(options_.dtype), seed));
  b_pos_ = register_parameter("lora_B", torch::zeros({out, r}, opts));
  a_neg_ = register_parameter("lora_A_neg", KaimingUniformLoraA(r, in, ScalarTypeOf(options_.dtype), seed ^ 0x9e3779b97f4a7c15ull));
  b_neg_ = register_parameter("lora_B_neg", torch::zeros({out, r}, opts));
  if (options_.tau_learnable) {
    const double raw = InverseSoftplus(std::max(options_.tau_init, kMinLearnableTau));
    tau_raw_ = register_parameter("tau_raw", torch::full({1}, raw, opts));
  } else {
    tau_fixed_ = register_buffer("tau", torch::full({1}, options_.tau_init, opts));
  }
  torch::NoGradGuard no_grad;
  const auto dt = MergeComputeDtype(base_weight_.scalar_type());
  torch::Tensor sq = base_weight_.to(dt).pow(2).sum(1);
  w0_sq_norms_ = register_buffer("w0_sq_norms", sq);
  m0_ = register_buffer("m0", sq.sqrt());
}

torch::Tensor D2LoraLinearImpl::tau() const {
  return options_.tau_learnable ? torch::softplus(tau_raw_) : tau_fixed_;
}

LowRankUpdate D2LoraLinearImpl::Update() const {
  return StackD2Lora(a_pos_, b_pos_, a_neg_, b_neg_, tau(), options_.scaling());
}

torch::Tensor D2LoraLinearImpl::RowScale() const { return RowScale(Update()); }

torch::Tensor D2LoraLinearImpl::RowScale(const LowRankUpdate& u) const {
  torch::Tensor norm = RowNormsLowRank(base_weight_, w0_sq_norms_, u);
  if (options_.norm_grad == NormGrad::kDetached) norm = norm.detach();
  torch::Tensor ratio = m0_.to(norm.scalar_type()) / norm;
  const double lambda = options_.projection_strength;
  return lambda == 1.0 ? ratio : ratio.pow(lambda);
}

torch::Tensor D2LoraLinearImpl::forward(const torch::Tensor& x) {
  const LowRankUpdate u = Update();
  torch::Tensor xa = LowRankInput(AdapterInput(x), u.A);
  if (options_.projection_strength == 0.0) {
    // g = 1, W* = W': W_hat = W0 + dW, or W0 + 2 dW with the residual.
    const double s = options_.residual ? 2.0 * u.scaling : u.scaling;
    return UnflattenLike(BasePlusLowRank(x, xa, u.B, s, base_bias_), x);
  }
  torch::Tensor scale = RowScale(u);
  torch::Tensor out;
  if (xa.scalar_type() == base_weight_.scalar_type()) {
    // out = g ⊙ (x W0^T + u) + u + b: the base GEMM, then one autograd node
    // (d2lora_epilogue.h).
    torch::Tensor base = torch::nn::functional::linear(x.reshape({-1, x.size(-1)}), base_weight_);
    out = ProjectedLowRankOutput(base, xa, u.B, u.scaling, scale, base_bias_, options_.residual);
  } else {
    // A bf16/fp16 base under fp32 adapters: the epilogue runs in the wider
    // dtype and is rounded once, as the fp32 merge is.
    torch::Tensor base = torch::nn::functional::linear(x.reshape({-1, x.size(-1)}), base_weight_);
    const auto dt = c10::promoteTypes(base.scalar_type(), xa.scalar_type());
    torch::Tensor low = (torch::matmul(xa, u.B.t()) * u.scaling).to(dt);
    torch::Tensor bias = base_bias_.defined() ? base_bias_.to(dt) : base_bias_;
    out = ScaleRowsAddBias(base.to(dt) + low, scale, bias);
    if (options_.residual) out = out + low;
    out = out.to(base.scalar_type());
  }
  return UnflattenLike(out, x);
}

torch::Tensor D2LoraLinearImpl::effective_weight() const {
  const LowRankUpdate u = Update();
  const auto dt = MergeComputeDtype(base_weight_.scalar_type());
  torch::Tensor dw = u.scaling * torch::matmul(u.B.to(dt), u.A.to(dt));
  torch::Tensor w = base_weight_.to(dt) + dw;
  const double lambda = options_.projection_strength;
  if (lambda != 0.0) {
    torch::Tensor norm = RowNorms(w);
    if (options_.norm_grad == NormGrad::kDetached) norm = norm.detach();
    torch::Tensor ratio = m0_.to(dt) / norm;
    if (lambda != 1.0) ratio = ratio.pow(lambda);
    w = w * ratio.unsqueeze(1);
  }
  return options_.residual ? w + dw : w;
}

MergedWeight D2LoraLinearImpl::MergeWeight() const {
  torch::NoGradGuard no_grad;
  return MergeProjected(base_weight_, Update(), options_.projection_strength, options_.residual);
}

NamedTensors D2LoraLinearImpl::ExportTensors() const {
  torch::NoGradGuard no_grad;
  return {{"lora_A.weight", a_pos_.detach()},
          {"lora_B.weight", b_pos_.detach()},
          {"lora_A_neg.weight", a_neg_.detach()},
          {"lora_B_neg.weight", b_neg_.detach()},
          {"d2lora_tau", tau().detach().clone()}};
}

absl::Status D2LoraLinearImpl::ImportTensors(const std::map<std::string, torch::Tensor>& tensors,
                                             const std::string& where) {
  D2_RETURN_IF_ERROR(CopyChecked(a_pos_, tensors, "lora_A.weight", where));
  D2_RETURN_IF_ERROR(CopyChecked(b_pos_, tensors, "lora_B.weight", where));
  D2_RETURN_IF_ERROR(CopyChecked(a_neg_, tensors, "lora_A_neg.weight", where));
  D2_RETURN_IF_ERROR(CopyChecked(b_neg_, tensors, "lora_B_neg.weight", where));
  torch::Tensor tau_value = torch::zeros({1}, torch::kFloat64);
  D2_RETURN_IF_ERROR(CopyChecked(tau_value, tensors, "d2lora_tau", where));
  const double t = tau_value.item<double>();
  if (!std::isfinite(t) || t < 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".d2lora_tau = ", t, ": must be finite and >= 0"));
  }
  torch::NoGradGuard no_grad;
  if (options_.tau_learnable) {
    // The stored tau is the effective one; invert softplus to recover the raw parameter.
    tau_raw_.copy_(RawForTau(t, tau_raw_.scalar_type()));
  } else {
    tau_fixed_.fill_(t);
  }
  return absl::OkStatus();
}

}  // namespace d2lora::engine
