#include "worker/engine/adapters/row_scale.h"

#include <torch/torch.h>

namespace d2lora::engine {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class ScaleRowsAddBiasFunction : public torch::autograd::Function<ScaleRowsAddBiasFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& y, const torch::Tensor& scale,
                               const torch::Tensor& bias) {
    // `bias` is empty (numel 0) when the layer has none: autograd functions
    // take no undefined tensors.
    const bool has_bias = bias.numel() > 0;
    torch::Tensor out = y * scale;
    if (has_bias) out.add_(bias);
    // The output is kept only for the scale's gradient: a constant scale
    // (norm_grad: detached) keeps no activation, as LoRA's layer does.
    ctx->save_for_backward({scale.requires_grad() ? out : torch::Tensor(), scale, bias});
    ctx->saved_data["has_bias"] = has_bias;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const torch::Tensor& out = saved[0];
    const torch::Tensor& scale = saved[1];
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const torch::Tensor& g = grad_outputs[0];
    const int64_t features = g.size(-1);
    torch::Tensor grad_y, grad_scale, grad_bias;
    if (ctx->needs_input_grad(0)) grad_y = g * scale;
    if (ctx->needs_input_grad(1) && out.defined()) {
      // d out / d scale = y = (out - bias) / scale, reduced over all leading dims.
      const auto acc = scale.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
      torch::Tensor scaled = has_bias ? out - saved[2] : out;
      torch::Tensor dot = (g.to(acc) * scaled.to(acc)).reshape({-1, features}).sum(0);
      torch::Tensor s = scale.to(acc);
      // A zero scale (a zero row of W0) has a zero derivative downstream anyway.
      grad_scale = torch::where(s != 0, dot / s, torch::zeros_like(dot)).to(scale.scalar_type());
    }
    if (has_bias && ctx->needs_input_grad(2)) grad_bias = g.reshape({-1, features}).sum(0);
    return {grad_y, grad_scale, grad_bias};
  }
};

}  // namespace

at::Tensor ScaleRowsAddBias(const at::Tensor& y, const at::Tensor& scale, const at::Tensor& bias) {
  return ScaleRowsAddBiasFunction::apply(y, scale.to(y.scalar_type()),
                                         bias.defined() ? bias : torch::empty({0}, y.options()));
}

}  // namespace d2lora::engine
