#include "tests/gpu/gemm_check.h"

#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "tests/gpu/check_setup.h"
#include "worker/engine/torch_guard.h"

namespace d2lora::gpucheck {
namespace {

void Sync(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

}  // namespace

absl::StatusOr<nlohmann::json> RunGemmCheck(const GemmCheckOptions& o) {
  return engine::GuardTorch("GEMM rate", [&]() -> absl::StatusOr<nlohmann::json> {
    torch::NoGradGuard no_grad;
    // GPU: sizes where a bf16 GEMM reaches the tensor cores' sustained rate.
    // CPU: small, so the ctest run stays quick; the figure is only recorded.
    const std::vector<int64_t> sizes =
        o.device.is_cuda() ? std::vector<int64_t>{4096, 8192} : std::vector<int64_t>{256, 512};
    const int iters = o.device.is_cuda() ? 20 : 3;
    const auto options = torch::TensorOptions().dtype(o.dtype).device(o.device);
    nlohmann::json rows = nlohmann::json::array();
    double best = 0;
    for (int64_t n : sizes) {
      torch::manual_seed(0);
      torch::Tensor a = torch::randn({n, n}, options), b = torch::randn({n, n}, options), c;
      for (int i = 0; i < 3; ++i) c = torch::matmul(a, b);
      Sync(o.device);
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) c = torch::matmul(a, b);
      Sync(o.device);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double tflops = 2.0 * static_cast<double>(n) * n * n * iters / seconds / 1e12;
      rows.push_back({{"n", n}, {"iters", iters}, {"seconds", seconds}, {"tflops", tflops}});
      best = std::max(best, tflops);
    }
    return nlohmann::json{{"dtype", DtypeName(o.dtype)}, {"device", o.device.str()},
                          {"sizes", rows}, {"best_tflops", best}, {"passed", best > 0}};
  });
}

}  // namespace d2lora::gpucheck
