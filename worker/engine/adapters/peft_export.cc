#include "worker/engine/adapters/peft_export.h"

#include <torch/torch.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/adapters/adapted_linear.h"
#include "worker/engine/adapters/adapted_linear_d2lora.h"
#include "worker/engine/adapters/adapted_linear_lora.h"
#include "worker/engine/adapters/adapter_io.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/adapters/linear.h"
#include "worker/engine/torch_guard.h"

namespace d2lora::engine {

std::string PeftFormatName(PeftFormat format) { return format == PeftFormat::kDora ? "peft-dora" : "peft-lora"; }

absl::StatusOr<PeftFormat> ParsePeftFormat(const std::string& name) {
  if (name == "peft-dora") return PeftFormat::kDora;
  if (name == "peft-lora") return PeftFormat::kLora;
  return absl::InvalidArgumentError(absl::StrCat("unknown export format '", name, "' (expected peft-dora or peft-lora)"));
}

absl::StatusOr<PeftFactors> D2LoraAsDora(const at::Tensor& w0, const LowRankUpdate& u, double lambda,
                                          bool residual) {
  torch::NoGradGuard no_grad;
  const auto dt = MergeComputeDtype(w0.scalar_type());
  at::Tensor a = u.A.to(dt), b = u.B.to(dt);
  at::Tensor w = w0.to(dt);
  at::Tensor updated = w + u.scaling * torch::matmul(b, a);  // W'
  at::Tensor g = torch::ones({w.size(0)}, w.options());
  if (lambda != 0.0) {
    g = w.norm(2, {1}) / RowNorms(updated);
    if (lambda != 1.0) g = g.pow(lambda);
  }
  PeftFactors f;
  f.A = a;
  f.scaling = u.scaling;
  if (residual) {
    at::Tensor zero = (g == 0).nonzero();
    if (zero.numel() > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "row ", zero[0].item<int64_t>(),
          " of the projected weight is zero (a zero row of W0): DoRA cannot express W* + dW there"));
    }
    f.B = b * (1.0 + 1.0 / g).unsqueeze(1);
  } else {
    f.B = b;
  }
  f.magnitude = g * RowNorms(w + u.scaling * torch::matmul(f.B, f.A));
  return f;
}

PeftFactors LoraAsDora(const at::Tensor& w0, const LowRankUpdate& u) {
  torch::NoGradGuard no_grad;
  const auto dt = MergeComputeDtype(w0.scalar_type());
  PeftFactors f{u.A.to(dt), u.B.to(dt), {}, u.scaling};
  f.magnitude = RowNorms(w0.to(dt) + u.scaling * torch::matmul(f.B, f.A));
  return f;
}

namespace {

// One layer's PEFT tensors (suffix -> tensor) in `format`.
absl::StatusOr<NamedTensors> LayerTensors(AdaptedLinearImpl& layer, PeftFormat format) {
  const AdapterOptions& o = layer.options();
  auto factors = [](const PeftFactors& f) {
    NamedTensors t = {{"lora_A.weight", f.A}, {"lora_B.weight", f.B}};
    if (f.magnitude.defined()) t.emplace_back("lora_magnitude_vector", f.magnitude);
    return t;
  };
  switch (o.method) {
    case AdapterMethod::kD2Lora: {
      auto& d2 = static_cast<D2LoraLinearImpl&>(layer);
      const LowRankUpdate u = d2.Update();
      if (format == PeftFormat::kDora) {
        D2_ASSIGN_OR_RETURN(PeftFactors f, D2LoraAsDora(layer.base_weight(), u, o.projection_strength, o.residual));
        return factors(f);
      }
      if (o.projection_strength != 0.0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "peft-lora cannot hold this D2-LoRA adapter exactly: its row projection (projection_strength = ",
            o.projection_strength, ") is not a low-rank update; export it as peft-dora"));
      }
      // lambda = 0: W_hat = W0 + dW, or W0 + 2 dW with the residual.
      torch::NoGradGuard no_grad;
      return factors({u.A.detach().clone(), (o.residual ? 2.0 : 1.0) * u.B.detach(), {}, u.scaling});
    }
    case AdapterMethod::kLora: {
      if (format == PeftFormat::kLora) return layer.ExportTensors();
      return factors(LoraAsDora(layer.base_weight(), static_cast<LoraLinearImpl&>(layer).Update()));
    }
    case AdapterMethod::kDora:
      if (format == PeftFormat::kDora) return layer.ExportTensors();
      return absl::FailedPreconditionError(
          "peft-lora cannot hold a DoRA adapter exactly: its magnitude rescales rows, which is not a low-rank "
          "update; export it as peft-dora");
  }
  return absl::InternalError("unknown adapter method");
}

}  // namespace

absl::Status SavePeftAdapter(torch::nn::Module& root, const AdapterOptions& options, PeftFormat format,
                             const std::string& dir, const std::string& base_model_name_or_path) {
  return GuardTorch(absl::StrCat("exporting the adapter to ", dir), [&]() -> absl::Status {
    NamedTensors tensors;
    std::vector<std::string> paths;
    for (auto& [path, linear] : LinearLayers(root)) {
      if (!linear->adapter()) continue;
      auto layer = LayerTensors(*linear->adapter(), format);
      if (!layer.ok()) {
        return absl::Status(layer.status().code(), absl::StrCat(path, ": ", layer.status().message()));
      }
      for (auto& [suffix, t] : *layer) {
        tensors.emplace_back(absl::StrCat(kPeftKeyPrefix, path, ".", suffix), t.detach().contiguous());
      }
      paths.push_back(path);
    }
    if (tensors.empty()) return absl::FailedPreconditionError("the model hosts no adapter to export");
    AdapterOptions peft = options;
    peft.method = format == PeftFormat::kDora ? AdapterMethod::kDora : AdapterMethod::kLora;
    if (options.method == AdapterMethod::kD2Lora) {
      // [A+; A-]: twice the rank, and lora_alpha scaled so that PEFT's scaling
      // (lora_alpha / r, or / sqrt(r)) equals ours.
      peft.r = 2 * options.r;
      peft.alpha = options.use_rslora ? options.alpha * std::sqrt(2.0) : 2.0 * options.alpha;
    }
    peft.target_modules = paths;
    return WriteAdapterDirectory(tensors, peft, dir, base_model_name_or_path);
  });
}

}  // namespace d2lora::engine
