#include "worker/engine/adapters/merge.h"

#include <torch/torch.h>

namespace d2lora::engine {

c10::ScalarType MergeComputeDtype(c10::ScalarType dtype) {
  return dtype == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

LowRankUpdate StackD2Lora(const at::Tensor& a_pos, const at::Tensor& b_pos, const at::Tensor& a_neg,
                          const at::Tensor& b_neg, const at::Tensor& tau, double scaling) {
  return {torch::cat({a_pos, a_neg}, 0), torch::cat({b_pos, -tau * b_neg}, 1), scaling};
}

at::Tensor RowNormsSquaredLowRank(const at::Tensor& w0, const at::Tensor& w0_sq_norms,
                                  const LowRankUpdate& u) {
  const auto dt = MergeComputeDtype(u.A.scalar_type());
  at::Tensor a = u.A.to(dt);
  at::Tensor b = u.B.to(dt);
  // W0 A^T [out, k] in W0's dtype (no fp32 copy of W0), then fp32.
  at::Tensor w0_at = torch::matmul(w0, u.A.to(w0.scalar_type()).t()).to(dt);
  at::Tensor cross = (b * w0_at).sum(1);
  at::Tensor gram = torch::matmul(a, a.t());                  // [k, k]
  at::Tensor update_sq = (torch::matmul(b, gram) * b).sum(1);  // [out]
  const double s = u.scaling;
  return w0_sq_norms.to(dt) + (2.0 * s) * cross + (s * s) * update_sq;
}

namespace {
at::Tensor DenseUpdated(const at::Tensor& w0, const LowRankUpdate& u) {
  const auto dt = MergeComputeDtype(w0.scalar_type());
  return w0.to(dt) + u.scaling * torch::matmul(u.B.to(dt), u.A.to(dt));
}
}  // namespace

at::Tensor RowNormsSquaredDense(const at::Tensor& w0, const LowRankUpdate& u) {
  return DenseUpdated(w0, u).pow(2).sum(1);
}

at::Tensor RowNormsLowRank(const at::Tensor& w0, const at::Tensor& w0_sq_norms, const LowRankUpdate& update) {
  return RowNormsSquaredLowRank(w0, w0_sq_norms, update).clamp_min(kMinRowNorm * kMinRowNorm).sqrt();
}

at::Tensor RowNorms(const at::Tensor& w) { return w.pow(2).sum(1).clamp_min(kMinRowNorm * kMinRowNorm).sqrt(); }

at::Tensor MergeLora(const at::Tensor& w0, const LowRankUpdate& u) {
  torch::NoGradGuard no_grad;
  return DenseUpdated(w0, u).to(w0.scalar_type());
}

at::Tensor MergeProjected(const at::Tensor& w0, const LowRankUpdate& u, double lambda) {
  torch::NoGradGuard no_grad;
  at::Tensor w = DenseUpdated(w0, u);
  if (lambda != 0.0) {
    at::Tensor m0 = w0.to(w.scalar_type()).norm(2, {1});
    at::Tensor ratio = m0 / RowNorms(w);
    if (lambda != 1.0) ratio = ratio.pow(lambda);
    w = w * ratio.unsqueeze(1);
  }
  return w.to(w0.scalar_type());
}

at::Tensor MergeDora(const at::Tensor& w0, const LowRankUpdate& u, const at::Tensor& magnitude) {
  torch::NoGradGuard no_grad;
  at::Tensor w = DenseUpdated(w0, u);
  at::Tensor scale = magnitude.to(w.scalar_type()) / RowNorms(w);
  return (w * scale.unsqueeze(1)).to(w0.scalar_type());
}

}  // namespace d2lora::engine
