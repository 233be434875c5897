// Forward + backward of one adapted linear layer, tokens x in -> out
// (default 4096 x 2048 -> 2048), for D2-LoRA (memory-efficient training form),
// D2-LoRA through the dense reference path, and LoRA, at r = 8 and 16.
//
// Each benchmark iteration runs all three, interleaved, so the reported ratios
// (d2lora/lora, dense/efficient) come from one run on the same machine state.
// Peak memory of one step of each is measured in a child process (VmHWM after
// resetting it through /proc/self/clear_refs).
//
//   ./build/bench/adapter_bench [--tokens N --in N --out N --threads N] [benchmark flags]
#include <benchmark/benchmark.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "worker/engine/adapters/adapted_linear.h"
#include "worker/engine/adapters/linear.h"
#include "worker/engine/runtime.h"

namespace d2lora::engine {
namespace {

int64_t g_tokens = 4096, g_in = 2048, g_out = 2048;

enum class Variant { kLora, kD2Lora, kD2LoraDense };

struct Layer {
  Linear host{nullptr};
  std::shared_ptr<AdaptedLinearImpl> adapter;
};

Layer MakeLayer(AdapterMethod method, int64_t r) {
  torch::manual_seed(0);
  Layer l;
  l.host = Linear(g_in, g_out, true);
  AdapterOptions o;
  o.method = method;
  o.r = r;
  o.alpha = 2.0 * r;
  auto adapter = CreateAdaptedLinear(*l.host, o, "bench");
  if (!adapter.ok()) {
    std::cerr << adapter.status() << "\n";
    std::exit(1);
  }
  l.adapter = *adapter;
  l.host->set_adapter(l.adapter);
  torch::NoGradGuard ng;
  for (auto& p : l.adapter->parameters()) p.normal_(0, 0.02);  // a trained, non-zero B
  return l;
}

// One training step's compute: forward, a scalar loss, backward into the
// adapter parameters and the input (the next layer down needs dL/dx).
void Step(Layer& l, Variant v, const torch::Tensor& x) {
  torch::Tensor y = v == Variant::kD2LoraDense ? DenseReferenceForward(*l.adapter, x) : l.host->forward(x);
  y.pow(2).mean().backward();
  for (auto& p : l.adapter->parameters()) p.mutable_grad().reset();
  x.mutable_grad().reset();
}

long ReadStatusKb(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::string(field).size()));
  }
  return -1;
}

std::string g_self;  // this binary, for the memory-measuring child runs
int g_threads = 0;

// Child mode (--mem-child METHOD VARIANT R): prints the peak resident memory,
// in MiB, that one training step adds over the state before it.
int MemChild(int method, int variant, int64_t r) {
  Layer l = MakeLayer(static_cast<AdapterMethod>(method), r);
  torch::Tensor x = torch::randn({g_tokens, g_in}).requires_grad_(true);
  Step(l, static_cast<Variant>(variant), x);  // warm up kernels, then measure the next step
  std::ofstream("/proc/self/clear_refs") << "5";  // resets VmHWM to the current RSS
  const long before = ReadStatusKb("VmRSS:");
  Step(l, static_cast<Variant>(variant), x);
  std::printf("%.3f\n", (ReadStatusKb("VmHWM:") - before) / 1024.0);
  return 0;
}

// Runs this binary again in child mode, so that one variant's allocations never
// hide another's.
double PeakStepMiB(AdapterMethod method, Variant v, int64_t r) {
  std::string cmd = g_self + " --tokens " + std::to_string(g_tokens) + " --in " + std::to_string(g_in) +
                    " --out " + std::to_string(g_out) + " --threads " + std::to_string(g_threads) +
                    " --mem-child " + std::to_string(static_cast<int>(method)) + " " +
                    std::to_string(static_cast<int>(v)) + " " + std::to_string(r);
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return -1;
  double mib = -1;
  if (std::fscanf(pipe, "%lf", &mib) != 1) mib = -1;
  pclose(pipe);
  return mib;
}

void BM_AdaptedLayerStep(benchmark::State& state) {
  const int64_t r = state.range(0);
  Layer lora = MakeLayer(AdapterMethod::kLora, r);
  Layer d2 = MakeLayer(AdapterMethod::kD2Lora, r);
  torch::Tensor x = torch::randn({g_tokens, g_in}).requires_grad_(true);
  double t_lora = 0, t_d2 = 0, t_dense = 0;
  auto timed = [&](Layer& l, Variant v) {
    auto t0 = std::chrono::steady_clock::now();
    Step(l, v, x);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  Step(lora, Variant::kLora, x);  // warm-up
  Step(d2, Variant::kD2Lora, x);
  for (auto _ : state) {
    t_lora += timed(lora, Variant::kLora);
    t_d2 += timed(d2, Variant::kD2Lora);
    t_dense += timed(d2, Variant::kD2LoraDense);
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["lora_ms"] = 1e3 * t_lora / n;
  state.counters["d2lora_ms"] = 1e3 * t_d2 / n;
  state.counters["d2lora_dense_ms"] = 1e3 * t_dense / n;
  state.counters["d2lora_over_lora"] = t_d2 / t_lora;
  state.counters["dense_over_efficient"] = t_dense / t_d2;
  const double m_lora = PeakStepMiB(AdapterMethod::kLora, Variant::kLora, r);
  const double m_d2 = PeakStepMiB(AdapterMethod::kD2Lora, Variant::kD2Lora, r);
  const double m_dense = PeakStepMiB(AdapterMethod::kD2Lora, Variant::kD2LoraDense, r);
  state.counters["lora_peak_MiB"] = m_lora;
  state.counters["d2lora_peak_MiB"] = m_d2;
  state.counters["d2lora_dense_peak_MiB"] = m_dense;
  state.counters["mem_d2lora_over_lora"] = m_d2 / m_lora;
  state.SetLabel(std::to_string(g_tokens) + "x" + std::to_string(g_in) + "->" + std::to_string(g_out));
}
BENCHMARK(BM_AdaptedLayerStep)->Arg(8)->Arg(16)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);

}  // namespace
}  // namespace d2lora::engine

int main(int argc, char** argv) {
  using namespace d2lora::engine;
  int mem_child[3] = {-1, -1, -1};
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() { return i + 1 < argc ? std::stoll(argv[++i]) : 0; };
    if (a == "--tokens") g_tokens = next();
    else if (a == "--in") g_in = next();
    else if (a == "--out") g_out = next();
    else if (a == "--threads") g_threads = static_cast<int>(next());
    else if (a == "--mem-child") for (int& m : mem_child) m = static_cast<int>(next());
    else rest.push_back(argv[i]);
  }
  g_self = "/proc/" + std::to_string(getpid()) + "/exe";
  if (mem_child[0] >= 0) {
    ConfigureThreads(g_threads);
    return MemChild(mem_child[0], mem_child[1], mem_child[2]);
  }
  if (auto st = CheckOptimisedBlas(); !st.ok()) {
    std::cerr << st << "\n";
    return 1;
  }
  std::cerr << "threads " << ConfigureThreads(g_threads) << ", BLAS " << LoadedBlasLibrary() << "\n";
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
