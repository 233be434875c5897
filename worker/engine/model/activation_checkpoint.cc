#include "worker/engine/model/activation_checkpoint.h"

#include <ATen/Context.h>
#include <torch/custom_class.h>
#include <torch/torch.h>

#include <mutex>

#include "worker/engine/model/llama.h"

namespace d2lora::engine {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Keeps the layer alive for as long as the graph that needs it.
struct LayerRef : torch::CustomClassHolder {
  explicit LayerRef(std::shared_ptr<DecoderLayerImpl> l) : layer(std::move(l)) {}
  std::shared_ptr<DecoderLayerImpl> layer;
};

torch::Tensor GetRngState(const torch::Device& device) {
  auto gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void SetRngState(const torch::Device& device, const torch::Tensor& state) {
  auto gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

class CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
 public:
  // Argument order defines the gradient order returned by backward.
  static torch::Tensor forward(AutogradContext* ctx, c10::intrusive_ptr<LayerRef> ref, torch::Tensor x,
                               torch::Tensor cos, torch::Tensor sin, torch::Tensor allowed,
                               torch::TensorList params) {
    ctx->saved_data["layer"] = c10::IValue::make_capsule(ref);
    ctx->saved_data["cos"] = cos;
    ctx->saved_data["sin"] = sin;
    ctx->saved_data["allowed"] = allowed;
    ctx->saved_data["x_requires_grad"] = x.requires_grad();
    ctx->saved_data["rng"] = GetRngState(x.device());
    variable_list to_save{x};
    to_save.insert(to_save.end(), params.begin(), params.end());
    ctx->save_for_backward(to_save);
    return ref->layer->forward(x, cos, sin, allowed);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto holder = ctx->saved_data["layer"].toCapsule();
    auto* ref = static_cast<LayerRef*>(holder.get());
    variable_list saved = ctx->get_saved_variables();
    const bool x_grad = ctx->saved_data["x_requires_grad"].toBool();
    torch::Tensor x = saved[0].detach().requires_grad_(x_grad);
    const torch::Device device = x.device();

    torch::Tensor out;
    {
      torch::Tensor current_rng = GetRngState(device);
      SetRngState(device, ctx->saved_data["rng"].toTensor());
      torch::AutoGradMode enable(true);
      try {
        out = ref->layer->forward(x, ctx->saved_data["cos"].toTensor(), ctx->saved_data["sin"].toTensor(),
                                  ctx->saved_data["allowed"].toTensor());
      } catch (...) {
        SetRngState(device, current_rng);
        throw;
      }
      SetRngState(device, current_rng);
    }

    variable_list inputs;
    if (x_grad) inputs.push_back(x);
    for (size_t i = 1; i < saved.size(); ++i) inputs.push_back(saved[i]);
    variable_list grads;
    if (!inputs.empty()) {
      grads = torch::autograd::grad({out}, inputs, {grad_outputs[0]}, /*retain_graph=*/false,
                                    /*create_graph=*/false, /*allow_unused=*/true);
    }
    // layer, x, cos, sin, allowed, params...
    variable_list result{torch::Tensor(), x_grad ? grads[0] : torch::Tensor(), torch::Tensor(), torch::Tensor(),
                         torch::Tensor()};
    for (size_t i = x_grad ? 1 : 0; i < grads.size(); ++i) result.push_back(grads[i]);
    return result;
  }
};

}  // namespace

at::Tensor CheckpointedDecoderLayer(const std::shared_ptr<DecoderLayerImpl>& layer, const at::Tensor& x,
                                    const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& allowed) {
  std::vector<torch::Tensor> params;
  for (const auto& p : layer->parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  if (params.empty() && !x.requires_grad()) return layer->forward(x, cos, sin, allowed);
  return CheckpointFunction::apply(c10::make_intrusive<LayerRef>(layer), x, cos, sin, allowed,
                                   torch::TensorList(params));
}

}  // namespace d2lora::engine
