// A measured GEMM rate: the denominator of model FLOP utilisation. Square
// matrix products in the check's dtype on its device, timed after warm-up with
// a device synchronise; the best size's rate is the reference. Informational:
// it fails only when the products cannot run.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace d2lora::gpucheck {

struct GemmCheckOptions {
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
};

// {"dtype", "sizes": [{"n", "tflops"}...], "best_tflops", "passed"}.
absl::StatusOr<nlohmann::json> RunGemmCheck(const GemmCheckOptions& options);

}  // namespace d2lora::gpucheck
