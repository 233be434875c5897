#include "worker/engine/adapters/d2lora_epilogue.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <vector>

namespace d2lora::engine {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows below which another thread is not worth starting.
constexpr int64_t kRowsPerThread = 64;

// One pass over rows [rows, cols]: gb = g ⊙ s (row-broadcast s), and per-thread
// column sums of g ⊙ o (o may be null) and of g (sum may be null). The loops are
// kept simple so that the compiler vectorises them (CMakeLists.txt lets GCC
// vectorise loops with a remainder in this file).
template <typename T>
void FusedPass(const T* g, const T* o, const T* s, T* gb, T* dot, T* sum, int64_t rows, int64_t cols) {
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows / kRowsPerThread));
  std::vector<T> partial_dot(o ? threads * cols : 0, T(0)), partial_sum(sum ? threads * cols : 0, T(0));
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      T* __restrict d = o ? partial_dot.data() + t * cols : nullptr;
      T* __restrict su = sum ? partial_sum.data() + t * cols : nullptr;
      const T* __restrict sc = s;
      for (int64_t i = t * rows / threads, last = (t + 1) * rows / threads; i < last; ++i) {
        const T* __restrict gi = g + i * cols;
        T* __restrict gbi = gb + i * cols;
        for (int64_t j = 0; j < cols; ++j) gbi[j] = gi[j] * sc[j];
        if (d) {
          const T* __restrict oi = o + i * cols;
          for (int64_t j = 0; j < cols; ++j) d[j] += gi[j] * oi[j];
        }
        if (su) {
          for (int64_t j = 0; j < cols; ++j) su[j] += gi[j];
        }
      }
    }
  });
  for (int64_t t = 0; t < threads; ++t) {
    if (dot) {
      for (int64_t j = 0; j < cols; ++j) dot[j] = (t == 0 ? T(0) : dot[j]) + partial_dot[t * cols + j];
    }
    if (sum) {
      for (int64_t j = 0; j < cols; ++j) sum[j] = (t == 0 ? T(0) : sum[j]) + partial_sum[t * cols + j];
    }
  }
}

bool FusedApplies(const torch::Tensor& grad, const torch::Tensor& out, const torch::Tensor& scale) {
  const auto dt = grad.scalar_type();
  auto ok = [&](const torch::Tensor& t) {
    return !t.defined() || (t.device().is_cpu() && t.scalar_type() == dt && t.is_contiguous());
  };
  return grad.device().is_cpu() && (dt == torch::kFloat32 || dt == torch::kFloat64) && grad.dim() == 2 &&
         grad.is_contiguous() && ok(out) && ok(scale) && scale.dim() == 1 && scale.size(0) == grad.size(1);
}

class ProjectedLowRankFunction : public torch::autograd::Function<ProjectedLowRankFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& base, const torch::Tensor& xa,
                               const torch::Tensor& B, const torch::Tensor& scale, const torch::Tensor& bias,
                               double scaling, bool residual) {
    // `bias` is empty (numel 0) when the layer has none: autograd functions
    // take no undefined tensors.
    const bool has_bias = bias.numel() > 0;
    torch::Tensor out = has_bias ? torch::addcmul(bias, base, scale) : base * scale;
    // u's coefficient in `out` is (g + c): folded into B's [out, r] rows.
    torch::Tensor factor = residual ? scale + 1 : scale;
    out.addmm_(xa, (B * factor.unsqueeze(1)).t(), /*beta=*/1, /*alpha=*/scaling);
    // The output is kept only for the scale's gradient: a constant scale
    // (norm_grad: detached) keeps no activation, as LoRA's layer does.
    ctx->save_for_backward({scale.requires_grad() ? out : torch::Tensor(), xa, B, scale, bias});
    ctx->saved_data["scaling"] = scaling;
    ctx->saved_data["residual"] = residual;
    ctx->saved_data["has_bias"] = has_bias;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const torch::Tensor &out = saved[0], &xa = saved[1], &B = saved[2], &scale = saved[3], &bias = saved[4];
    const double scaling = ctx->saved_data["scaling"].toDouble();
    const bool residual = ctx->saved_data["residual"].toBool();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const torch::Tensor g = grad_outputs[0].contiguous();
    const bool need_scale = ctx->needs_input_grad(3) && out.defined();
    const bool need_bias = has_bias && ctx->needs_input_grad(4);
    const bool need_b = ctx->needs_input_grad(2);

    EpilogueGradients pass =
        EpilogueBackwardPass(g, need_scale ? out : torch::Tensor(), scale, need_bias || (need_scale && has_bias));
    torch::Tensor factor = residual ? scale + 1 : scale;
    torch::Tensor gt_xa;  // gradᵀ xa [out, r]: B's gradient and u's share of the scale's
    if (need_b || (need_scale && residual)) gt_xa = torch::mm(g.t(), xa);

    torch::Tensor grad_xa, grad_b, grad_scale, grad_bias;
    if (ctx->needs_input_grad(1)) grad_xa = torch::mm(g, B * factor.unsqueeze(1)).mul_(scaling);
    if (need_b) grad_b = gt_xa * (factor * scaling).unsqueeze(1);
    if (need_scale) {
      // Σ_i grad·(base + u) = (Σ_i grad·(out − bias) − c·s·Σ_k B ⊙ gradᵀ xa) / g; a zero
      // scale (a zero row of W0) has a zero derivative upstream anyway.
      torch::Tensor num = pass.dot;
      if (has_bias) num = num - bias * pass.sum;
      if (residual) num = num - (B * gt_xa).sum(1) * scaling;
      grad_scale = torch::where(scale != 0, num / scale, torch::zeros_like(num));
    }
    if (need_bias) grad_bias = pass.sum;
    return {ctx->needs_input_grad(0) ? pass.grad_base : torch::Tensor(),
            grad_xa, grad_b, grad_scale, grad_bias, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

EpilogueGradients EpilogueBackwardPass(const at::Tensor& grad, const at::Tensor& out, const at::Tensor& scale,
                                       bool want_sum, bool fused) {
  EpilogueGradients r;
  if (fused && FusedApplies(grad, out, scale)) {
    const int64_t rows = grad.size(0), cols = grad.size(1);
    r.grad_base = torch::empty_like(grad);
    if (out.defined()) r.dot = torch::empty({cols}, grad.options());
    if (want_sum) r.sum = torch::empty({cols}, grad.options());
    AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "EpilogueBackwardPass", [&] {
      FusedPass<scalar_t>(grad.data_ptr<scalar_t>(), out.defined() ? out.data_ptr<scalar_t>() : nullptr,
                          scale.data_ptr<scalar_t>(), r.grad_base.data_ptr<scalar_t>(),
                          r.dot.defined() ? r.dot.data_ptr<scalar_t>() : nullptr,
                          r.sum.defined() ? r.sum.data_ptr<scalar_t>() : nullptr, rows, cols);
    });
    return r;
  }
  const int64_t cols = grad.size(-1);
  r.grad_base = grad * scale;
  // bf16/fp16 sums accumulate in fp32, as the fused loop's fp32 does.
  const auto acc = grad.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  if (out.defined()) r.dot = (grad.to(acc) * out.to(acc)).reshape({-1, cols}).sum(0).to(grad.scalar_type());
  if (want_sum) r.sum = grad.reshape({-1, cols}).sum(0, /*keepdim=*/false, acc).to(grad.scalar_type());
  return r;
}

at::Tensor ProjectedLowRankOutput(const at::Tensor& base, const at::Tensor& xa, const at::Tensor& B,
                                  double scaling, const at::Tensor& scale, const at::Tensor& bias,
                                  bool residual) {
  return ProjectedLowRankFunction::apply(base, xa, B, scale.to(base.scalar_type()),
                                         bias.defined() ? bias : torch::empty({0}, base.options()), scaling,
                                         residual);
}

}  // namespace d2lora::engine
