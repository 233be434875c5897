#include "common/spec/adapter_options.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace d2lora::spec {

std::string MethodName(AdapterMethod method) {
  switch (method) {
    case AdapterMethod::kD2Lora:
      return "d2lora";
    case AdapterMethod::kLora:
      return "lora";
    case AdapterMethod::kDora:
      return "dora";
  }
  return "unknown";
}

absl::StatusOr<AdapterMethod> ParseMethod(const std::string& name) {
  if (name == "d2lora") return AdapterMethod::kD2Lora;
  if (name == "lora") return AdapterMethod::kLora;
  if (name == "dora") return AdapterMethod::kDora;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown adapter method '", name, "' (expected d2lora, lora or dora)"));
}

std::string NormGradName(NormGrad mode) { return mode == NormGrad::kFull ? "full" : "detached"; }

absl::StatusOr<NormGrad> ParseNormGrad(const std::string& name) {
  if (name == "full") return NormGrad::kFull;
  if (name == "detached") return NormGrad::kDetached;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown norm_grad '", name, "' (expected full or detached)"));
}

double AdapterOptions::scaling() const {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

absl::Status AdapterOptions::Validate() const {
  auto bad = [](absl::string_view field, auto value, absl::string_view want) {
    return absl::InvalidArgumentError(absl::StrCat("adapter.", field, " = ", value, ": ", want));
  };
  if (r < 1 || r > 65536) return bad("r", r, "must be in [1, 65536]");
  if (!std::isfinite(alpha) || alpha <= 0) return bad("alpha", alpha, "must be a positive number");
  if (!(dropout >= 0.0 && dropout < 1.0)) return bad("dropout", dropout, "must be in [0, 1)");
  if (!std::isfinite(tau_init) || tau_init < 0 || tau_init > 100) {
    return bad("tau_init", tau_init, "must be in [0, 100]");
  }
  if (!(projection_strength >= 0.0 && projection_strength <= 1.0)) {
    return bad("projection_strength", projection_strength, "must be in [0, 1]");
  }
  if (target_modules.empty()) {
    return absl::InvalidArgumentError("adapter.target_modules must name at least one module");
  }
  for (size_t i = 0; i < target_modules.size(); ++i) {
    if (target_modules[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("adapter.target_modules[", i, "] is empty"));
    }
  }
  return absl::OkStatus();
}

}  // namespace d2lora::spec
