// gpu_checks: the engine's device checks, run by tests/gpu/run.sh on a GPU
// machine and as a ctest on the CPU.
//
//   gpu_checks [--device cpu|cuda] [--dtype fp32|bf16] [--json FILE]
//              [--only train|merge|gemm]... [--steps N] [--threads N] [--master-port P]
//              [--seed N]
//
//   train  (a) D2-LoRA training steps through the Trainer on a one-rank c10d
//              group (NCCL on CUDA, Gloo on the CPU), then the group's
//              collectives on a real gradient bucket (train_step_check.h)
//   merge  (b) merged vs unmerged logits in the compute dtype against an fp32
//              reference (merge_check.h)
//   gemm       a measured GEMM rate in the compute dtype, the MFU denominator
//              (gemm_check.h)
//
// The dtype defaults to bf16 on CUDA and fp32 on the CPU (bf16 runs on the CPU
// too, slowly); --device cuda is cuda:0 (pick the GPU with CUDA_VISIBLE_DEVICES).
// Exit status: 0 every check passed, 1 one failed, 2 bad usage,
// 77 (ctest's skip code) when --device cuda finds no CUDA device.
#include <torch/cuda.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "tests/gpu/gemm_check.h"
#include "tests/gpu/merge_check.h"
#include "tests/gpu/train_step_check.h"
#include "worker/engine/runtime.h"
#include "worker/engine/torch_guard.h"

#if __has_include(<torch/version.h>)
#include <torch/version.h>
#endif

namespace {

namespace gc = d2lora::gpucheck;

constexpr int kSkip = 77;

struct Args {
  std::string device = "cpu";
  std::string dtype;  // "" = by device
  std::string json;
  std::set<std::string> only;
  int64_t steps = 20;
  int threads = 0;
  int master_port = 0;
  uint64_t seed = 23;
};

[[noreturn]] void Usage(const std::string& error) {
  std::cerr << "gpu_checks: " << error << "\n"
            << "usage: gpu_checks [--device cpu|cuda] [--dtype fp32|bf16] [--json FILE]\n"
            << "                  [--only train|merge|gemm]... [--steps N] [--threads N] [--master-port P]\n"
            << "                  [--seed N]   (the merge check's weights, adapter and inputs)\n";
  std::exit(2);
}

int64_t ParsePositive(const std::string& flag, const std::string& value) {
  char* end = nullptr;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || v < 1) Usage(flag + " expects a positive integer, got '" + value + "'");
  return v;
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(flag + " needs a value");
      return argv[++i];
    };
    if (flag == "--device") a.device = value();
    else if (flag == "--dtype") a.dtype = value();
    else if (flag == "--json") a.json = value();
    else if (flag == "--only") a.only.insert(value());
    else if (flag == "--steps") a.steps = ParsePositive(flag, value());
    else if (flag == "--threads") a.threads = static_cast<int>(ParsePositive(flag, value()));
    else if (flag == "--master-port") a.master_port = static_cast<int>(ParsePositive(flag, value()));
    else if (flag == "--seed") a.seed = static_cast<uint64_t>(ParsePositive(flag, value()));
    else if (flag == "-h" || flag == "--help") Usage("help");
    else Usage("unknown flag " + flag);
  }
  // One process, one rank: the NCCL group's rank and local rank are 0, so the
  // GPU is cuda:0 (choose another with CUDA_VISIBLE_DEVICES).
  if (a.device == "cuda:0") a.device = "cuda";
  if (a.device != "cpu" && a.device != "cuda") Usage("--device must be cpu or cuda (cuda:0), got " + a.device);
  if (a.dtype.empty()) a.dtype = a.device == "cpu" ? "fp32" : "bf16";
  if (a.dtype != "fp32" && a.dtype != "bf16") Usage("--dtype must be fp32 or bf16, got " + a.dtype);
  for (const std::string& c : a.only) {
    if (c != "train" && c != "merge" && c != "gemm") Usage("--only takes train, merge or gemm, got " + c);
  }
  return a;
}

// Writes through a temporary name, so a reader never sees half a file.
bool WriteJson(const std::string& path, const nlohmann::json& j) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    if (!out.good()) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return !ec;
}

// A check's result, with any LibTorch exception it let through as an error.
template <typename Fn>
absl::StatusOr<nlohmann::json> Guarded(const std::string& name, Fn&& fn) {
  return d2lora::engine::GuardTorch(name, std::forward<Fn>(fn));
}

nlohmann::json Failed(const absl::Status& status) {
  return {{"passed", false}, {"error", std::string(status.message())}};
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = ParseArgs(argc, argv);
  nlohmann::json report;
  report["device_requested"] = args.device;
  report["dtype"] = args.dtype;
#ifdef TORCH_VERSION
  report["libtorch_version"] = TORCH_VERSION;
#endif
  report["cuda_available"] = torch::cuda::is_available();
  report["cuda_device_count"] = torch::cuda::device_count();

  absl::StatusOr<torch::Device> parsed = d2lora::engine::GuardTorch(
      "--device", [&]() -> absl::StatusOr<torch::Device> { return torch::Device(args.device); });
  if (!parsed.ok()) Usage(std::string(parsed.status().message()));
  const torch::Device device = parsed->is_cuda() ? torch::Device(torch::kCUDA, 0) : *parsed;
  if (device.is_cuda()) {
    if (!torch::cuda::is_available() || torch::cuda::device_count() == 0) {
      std::cout << "gpu_checks: no CUDA device (" << args.device << "): skipped\n";
      report["skipped"] = "no CUDA device";
      if (!args.json.empty()) WriteJson(args.json, report);
      return kSkip;
    }
  }
  const torch::ScalarType dtype = args.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32;
  report["device"] = device.str();
  report["threads"] = d2lora::engine::ConfigureThreads(args.threads);
  report["blas"] = d2lora::engine::LoadedBlasLibrary();
  // fp32 products stay fp32 on the GPU (no TF32), so the fp32 reference is one.
  at::globalContext().setFloat32MatmulPrecision("highest");

  auto wanted = [&](const std::string& name) { return args.only.empty() || args.only.count(name) > 0; };
  bool all_passed = true;
  auto record = [&](const std::string& name, const absl::StatusOr<nlohmann::json>& result) {
    nlohmann::json j = result.ok() ? *result : Failed(result.status());
    const bool passed = j.value("passed", false);
    all_passed = all_passed && passed;
    std::cout << "gpu_checks: " << name << " on " << device.str() << " (" << args.dtype << "): "
              << (passed ? "passed" : "FAILED") << "\n";
    if (!passed) {
      const nlohmann::json why = j.contains("error") ? j["error"] : j.value("failures", nlohmann::json());
      std::cout << "  " << why.dump() << "\n";
    }
    report["checks"][name] = std::move(j);
  };

  if (wanted("train")) {
    gc::TrainStepCheckOptions o;
    o.device = device;
    o.dtype = dtype;
    o.steps = args.steps;
    o.master_port = args.master_port;
    record("train_step", Guarded("train_step", [&] { return gc::RunTrainStepCheck(o); }));
  }
  if (wanted("merge")) {
    gc::MergeCheckOptions o;
    o.device = device;
    o.dtype = dtype;
    o.seed = args.seed;
    record("merge_equivalence", Guarded("merge_equivalence", [&] { return gc::RunMergeCheck(o); }));
  }
  if (wanted("gemm")) {
    gc::GemmCheckOptions o;
    o.device = device;
    o.dtype = dtype;
    record("gemm", Guarded("gemm", [&] { return gc::RunGemmCheck(o); }));
  }
  report["passed"] = all_passed;
  if (args.json.empty()) std::cout << report.dump(2) << "\n";
  if (!args.json.empty() && !WriteJson(args.json, report)) {
    std::cerr << "gpu_checks: cannot write " << args.json << "\n";
    return 1;
  }
  return all_passed ? 0 : 1;
}
