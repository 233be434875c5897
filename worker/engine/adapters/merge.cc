#include "worker/engine/adapters/merge.h"

#include <torch/torch.h>

#include <algorithm>

namespace d2lora::engine {

c10::ScalarType MergeComputeDtype(c10::ScalarType dtype) {
  return dtype == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

LowRankUpdate StackD2Lora(const at::Tensor& a_pos, const at::Tensor& b_pos, const at::Tensor& a_neg,
                          const at::Tensor& b_neg, const at::Tensor& tau, double scaling) {
  return {torch::cat({a_pos, a_neg}, 0), torch::cat({b_pos, -tau * b_neg}, 1), scaling};
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows of W0 widened per block: at most this many elements in flight.
constexpr int64_t kWidenBlockElements = int64_t{1} << 20;

// w [out, in] (any float dtype, constant) times a^T [in, k] (the compute
// dtype, differentiable), with w's rows widened to a's dtype one block at a
// time: the product and its gradient are as exact as in a's dtype, with no
// weight-sized temporary. Saves only a (w is the caller's frozen weight).
class WidenedMatmulTFunction : public torch::autograd::Function<WidenedMatmulTFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& w, const torch::Tensor& a) {
    ctx->saved_data["w"] = w;
    torch::Tensor out = torch::empty({w.size(0), a.size(0)}, a.options());
    const int64_t rows = std::max<int64_t>(1, kWidenBlockElements / std::max<int64_t>(1, w.size(1)));
    for (int64_t r0 = 0; r0 < w.size(0); r0 += rows) {
      const int64_t n = std::min(rows, w.size(0) - r0);
      torch::Tensor block = out.narrow(0, r0, n);
      torch::matmul_out(block, w.narrow(0, r0, n).to(a.scalar_type()), a.t());
    }
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const torch::Tensor w = ctx->saved_data["w"].toTensor();
    const torch::Tensor& g = grad_outputs[0];  // [out, k]
    torch::Tensor grad_a = torch::zeros({g.size(1), w.size(1)}, g.options());
    const int64_t rows = std::max<int64_t>(1, kWidenBlockElements / std::max<int64_t>(1, w.size(1)));
    for (int64_t r0 = 0; r0 < w.size(0); r0 += rows) {
      const int64_t n = std::min(rows, w.size(0) - r0);
      grad_a.addmm_(g.narrow(0, r0, n).t(), w.narrow(0, r0, n).to(g.scalar_type()));
    }
    return {torch::Tensor(), grad_a};
  }
};

}  // namespace

at::Tensor WidenedMatmulT(const at::Tensor& w, const at::Tensor& a) {
  if (w.scalar_type() == a.scalar_type()) return torch::matmul(w, a.t());
  if (c10::elementSize(w.scalar_type()) >= c10::elementSize(a.scalar_type())) {
    return torch::matmul(w, a.to(w.scalar_type()).t()).to(a.scalar_type());
  }
  return WidenedMatmulTFunction::apply(w, a);
}

at::Tensor RowNormsSquaredLowRank(const at::Tensor& w0, const at::Tensor& w0_sq_norms,
                                  const LowRankUpdate& u) {
  const auto dt = MergeComputeDtype(u.A.scalar_type());
  at::Tensor a = u.A.to(dt);
  at::Tensor b = u.B.to(dt);
  at::Tensor w0_at = WidenedMatmulT(w0, a);  // W0 A^T [out, k] in dt
  at::Tensor cross = (b * w0_at).sum(1);
  at::Tensor gram = torch::matmul(a, a.t());                  // [k, k]
  at::Tensor update_sq = (torch::matmul(b, gram) * b).sum(1);  // [out]
  const double s = u.scaling;
  return w0_sq_norms.to(dt) + (2.0 * s) * cross + (s * s) * update_sq;
}

namespace {
// dW = s B A, dense, in W0's compute dtype.
at::Tensor DenseUpdate(const at::Tensor& w0, const LowRankUpdate& u) {
  const auto dt = MergeComputeDtype(w0.scalar_type());
  return u.scaling * torch::matmul(u.B.to(dt), u.A.to(dt));
}
// W' = W0 + dW.
at::Tensor DenseUpdated(const at::Tensor& w0, const LowRankUpdate& u) {
  return w0.to(MergeComputeDtype(w0.scalar_type())) + DenseUpdate(w0, u);
}
}  // namespace

at::Tensor RowNormsSquaredDense(const at::Tensor& w0, const LowRankUpdate& u) {
  return DenseUpdated(w0, u).pow(2).sum(1);
}

at::Tensor RowNormsLowRank(const at::Tensor& w0, const at::Tensor& w0_sq_norms, const LowRankUpdate& update) {
  return RowNormsSquaredLowRank(w0, w0_sq_norms, update).clamp_min(kMinRowNorm * kMinRowNorm).sqrt();
}

at::Tensor RowNorms(const at::Tensor& w) { return w.pow(2).sum(1).clamp_min(kMinRowNorm * kMinRowNorm).sqrt(); }

namespace {
// The largest relative deviation of ||rows of w|| from `target`.
double RowNormDeviation(const at::Tensor& w, const at::Tensor& target) {
  return ((w.norm(2, {1}) - target).abs() / target.clamp_min(kMinRowNorm)).max().item<double>();
}
}  // namespace

MergedWeight MergeLora(const at::Tensor& w0, const LowRankUpdate& u) {
  torch::NoGradGuard no_grad;
  return {DenseUpdated(w0, u), -1.0};
}

MergedWeight MergeProjected(const at::Tensor& w0, const LowRankUpdate& u, double lambda, bool residual) {
  torch::NoGradGuard no_grad;
  at::Tensor dw = DenseUpdate(w0, u);
  at::Tensor w = w0.to(dw.scalar_type()) + dw;  // W'
  MergedWeight out;
  if (lambda != 0.0) {
    at::Tensor m0 = w0.to(dw.scalar_type()).norm(2, {1});
    at::Tensor norm = RowNorms(w);
    at::Tensor ratio = m0 / norm;
    at::Tensor target = m0;
    if (lambda != 1.0) {
      ratio = ratio.pow(lambda);
      target = m0.pow(lambda) * norm.pow(1.0 - lambda);
    }
    w = w * ratio.unsqueeze(1);  // W*
    out.row_norm_deviation = RowNormDeviation(w, target);
  }
  out.weight = residual ? w + dw : w;
  return out;
}

MergedWeight MergeDora(const at::Tensor& w0, const LowRankUpdate& u, const at::Tensor& magnitude) {
  torch::NoGradGuard no_grad;
  at::Tensor w = DenseUpdated(w0, u);
  at::Tensor m = magnitude.to(w.scalar_type());
  w = w * (m / RowNorms(w)).unsqueeze(1);
  // A learnt magnitude may cross zero: the row then points the other way, with norm |m|.
  return {w, RowNormDeviation(w, m.abs())};
}

}  // namespace d2lora::engine
