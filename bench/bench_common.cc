#include "bench/bench_common.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>

#ifdef D2LORA_BENCH_HAVE_CUDA_ALLOC
#include <c10/cuda/CUDACachingAllocator.h>
#endif
#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <torch/cuda.h>

#include "absl/strings/str_split.h"
#include "worker/engine/runtime.h"

namespace d2lora::bench {
namespace {

int ParseInt(const std::string& flag, const char* value) {
  char* end = nullptr;
  long v = std::strtol(value, &end, 10);
  if (end == value || *end != '\0' || v < 0) Die(flag + " expects a non-negative integer, got '" + value + "'");
  return static_cast<int>(v);
}

long ReadStatusKb(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  const std::string f(field);
  while (std::getline(status, line)) {
    if (line.rfind(f, 0) == 0) return std::stol(line.substr(f.size()));
  }
  return -1;
}

long g_rss_at_reset_kb = 0;

// The hook's byte-count parameters: int64_t in LibTorch 1.13, size_t in 2.x.
template <typename Method>
struct HookArgs;
template <typename C, typename R, typename Ptr, typename Size, typename Allocated, typename Reserved, typename Dev>
struct HookArgs<R (C::*)(Ptr, Size, Allocated, Reserved, Dev)> {
  using Total = Allocated;
  using Pool = Reserved;
};
using HookTotal = HookArgs<decltype(&c10::MemoryReportingInfoBase::reportMemoryUsage)>::Total;
using HookPool = HookArgs<decltype(&c10::MemoryReportingInfoBase::reportMemoryUsage)>::Pool;

// Live and peak CPU tensor bytes, as the allocator's profiler hook reports them.
class TensorBytes final : public c10::MemoryReportingInfoBase {
 public:
  void reportMemoryUsage(void*, int64_t, HookTotal total_allocated, HookPool, c10::Device device) override {
    if (!device.is_cpu()) return;
    live_ = static_cast<int64_t>(total_allocated);
    peak_ = std::max(peak_, live_);
  }
  bool memoryProfilingEnabled() const override { return true; }
  void ResetPeak() {
    peak_ = live_;
    at_reset_ = live_;
  }
  double PeakMiB() const { return static_cast<double>(peak_ - at_reset_) / (1024.0 * 1024.0); }

 private:
  int64_t live_ = 0, peak_ = 0, at_reset_ = 0;
};

std::shared_ptr<TensorBytes> g_tensor_bytes;

#ifdef D2LORA_BENCH_HAVE_CUDA_ALLOC
int64_t g_cuda_at_reset_bytes = 0;

c10::cuda::CUDACachingAllocator::Stat CudaAllocated(const torch::Device& device) {
  auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
  return stats.allocated_bytes[static_cast<size_t>(c10::cuda::CUDACachingAllocator::StatType::AGGREGATE)];
}
#endif

}  // namespace

[[noreturn]] void Die(const std::string& message) {
  std::cerr << "error: " << message << "\n";
  std::exit(2);
}

bool BenchFlags::Next() {
  if (started_) ++i_;
  started_ = true;
  return i_ < rest_.size();
}

std::string BenchFlags::Value() {
  if (i_ + 1 >= rest_.size()) Die(flag() + " needs a value");
  return rest_[++i_];
}

std::vector<int64_t> BenchFlags::Ints(int64_t min) {
  const std::string& name = flag();
  const std::string text = Value();
  std::vector<int64_t> out;
  for (absl::string_view piece : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    const std::string s(piece);
    char* end = nullptr;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    if (end == s.c_str() || *end != '\0' || v < min) {
      Die(name + " expects integers >= " + std::to_string(min) + ", got '" + text + "'");
    }
    out.push_back(v);
  }
  if (out.empty()) Die(name + " needs at least one value");
  return out;
}

int64_t BenchFlags::Int(int64_t min) {
  const std::string& name = flag();
  const std::vector<int64_t> v = Ints(min);
  if (v.size() != 1) Die(name + " expects one integer");
  return v[0];
}

void BenchFlags::Unknown(const std::string& hint) const { Die("unknown flag " + flag() + hint); }

BenchArgs ParseBenchArgs(int argc, char** argv) {
  engine::ReexecWithThreadingDefaults(argv);  // as the d2lora CLI runs: passive thread waits
  BenchArgs a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) Die(flag + " needs a value");
      return argv[++i];
    };
    if (flag == "--quick") a.quick = true;
    else if (flag == "--json") a.json = value();
    else if (flag == "--device") a.device = value();
    else if (flag == "--dtype") a.dtype = value();
    else if (flag == "--threads") a.threads = ParseInt(flag, value());
    else if (flag == "--reps") a.reps = ParseInt(flag, value());
    else a.rest.push_back(flag);
  }
  if (a.device != "cpu" && a.device != "cuda") Die("--device must be cpu or cuda, got '" + a.device + "'");
  if (a.dtype != "fp32" && a.dtype != "bf16") Die("--dtype must be fp32 or bf16, got '" + a.dtype + "'");
  if (a.dtype == "bf16" && a.device != "cuda") Die("--dtype bf16 is for --device cuda");
  return a;
}

nlohmann::json SetUpRuntime(const BenchArgs& args) {
  const int threads = engine::ConfigureThreads(args.threads);
  if (auto st = engine::CheckOptimisedBlas(); !st.ok()) Die(std::string(st.message()));
  if (args.device == "cuda" && !torch::cuda::is_available()) Die("--device cuda, but no CUDA device is available");
  const std::string blas = engine::LoadedBlasLibrary();
  std::cerr << "threads " << threads << ", BLAS " << (blas.empty() ? "(none loaded)" : blas) << ", device "
            << args.device << ", dtype " << args.dtype << (args.quick ? ", quick" : "") << "\n";
  return {{"threads", threads}, {"blas", blas}, {"device", args.device}, {"dtype", args.dtype},
          {"quick", args.quick}, {"cores", engine::AvailableCores()}};
}

torch::Device BenchDevice(const BenchArgs& args) {
  return args.device == "cuda" ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
}

torch::ScalarType BenchDtype(const BenchArgs& args) {
  return args.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32;
}

void Synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

double SecondsSince(std::chrono::steady_clock::time_point t0, const torch::Device& device) {
  Synchronize(device);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void ResetPeakMemory(const torch::Device& device) {
  Synchronize(device);
#ifdef D2LORA_BENCH_HAVE_CUDA_ALLOC
  if (device.is_cuda()) {
    c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
    g_cuda_at_reset_bytes = CudaAllocated(device).current;
    return;
  }
#endif
  std::ofstream("/proc/self/clear_refs") << "5";  // VmHWM := VmRSS
  g_rss_at_reset_kb = ReadStatusKb("VmRSS:");
}

double PeakMemoryMiBSinceReset(const torch::Device& device) {
  Synchronize(device);
#ifdef D2LORA_BENCH_HAVE_CUDA_ALLOC
  if (device.is_cuda()) {
    return static_cast<double>(CudaAllocated(device).peak - g_cuda_at_reset_bytes) / (1024.0 * 1024.0);
  }
#endif
  return static_cast<double>(ReadStatusKb("VmHWM:") - g_rss_at_reset_kb) / 1024.0;
}

void StartTensorAccounting() {
  if (g_tensor_bytes) return;
  g_tensor_bytes = std::make_shared<TensorBytes>();
  c10::ThreadLocalDebugInfo::_push(c10::DebugInfoKind::PROFILER_STATE, g_tensor_bytes);
}

void ResetTensorPeak() {
  if (g_tensor_bytes) g_tensor_bytes->ResetPeak();
}

std::optional<double> TensorPeakMiBSinceReset() {
  if (!g_tensor_bytes) return std::nullopt;
  return g_tensor_bytes->PeakMiB();
}

void WriteJson(const std::string& path, const nlohmann::json& j) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    if (!out) Die("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) Die("cannot rename " + tmp + " to " + path);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace d2lora::bench
