// What every plain bench binary under bench/ shares: its command-line flags,
// the runtime set-up (threads, BLAS check, device), timing with a device
// synchronise, peak resident memory, and the JSON it writes.
//
// Each bench prints a human table on stdout and, with --json FILE, writes its
// figures as one JSON object that bench/run.sh merges. Figures are ratios of
// variants measured interleaved in one run, never compared across runs.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace d2lora::bench {

struct BenchArgs {
  bool quick = false;         // --quick: fewer sizes and repetitions
  std::string json;           // --json FILE
  std::string device = "cpu";  // --device cpu|cuda
  std::string dtype = "fp32";  // --dtype fp32|bf16 (bf16: CUDA only)
  int threads = 0;            // --threads N (0 = the cores this process may use)
  int reps = 0;               // --reps N (0 = the bench's default)
  std::vector<std::string> rest;  // flags this parser does not know, for the bench
};

// Prints "error: MESSAGE" and exits 2.
[[noreturn]] void Die(const std::string& message);

// Walks a bench's own flags (BenchArgs::rest); every error names the flag and
// exits through Die:
//   for (BenchFlags f(args.rest); f.Next();)
//     if (f.flag() == "--seq") seq = f.Int(1); else f.Unknown();
class BenchFlags {
 public:
  explicit BenchFlags(const std::vector<std::string>& rest) : rest_(rest) {}
  bool Next();                           // advances to the next flag
  const std::string& flag() const { return rest_[i_]; }
  std::string Value();                   // the word after the flag
  int64_t Int(int64_t min);                 // Value() as one integer >= min
  std::vector<int64_t> Ints(int64_t min);   // Value() as "a,b,c", each >= min
  [[noreturn]] void Unknown(const std::string& hint = "") const;

 private:
  const std::vector<std::string>& rest_;
  size_t i_ = 0;
  bool started_ = false;
};

// Re-executes with the threading defaults the d2lora CLI uses (runtime.h),
// then parses the common flags; exits with a message naming the flag on bad input.
BenchArgs ParseBenchArgs(int argc, char** argv);

// Sets the intra-op threads, refuses the reference BLAS, checks that CUDA is
// there when asked for, and prints one line describing the set-up to stderr.
// Returns a JSON object of the set-up (threads, BLAS library, device, dtype).
nlohmann::json SetUpRuntime(const BenchArgs& args);

torch::Device BenchDevice(const BenchArgs& args);
torch::ScalarType BenchDtype(const BenchArgs& args);

// Waits for queued device work (CUDA); a no-op on CPU.
void Synchronize(const torch::Device& device);

// Seconds since `t0` after synchronising `device`.
double SecondsSince(std::chrono::steady_clock::time_point t0, const torch::Device& device);

// Peak memory since the last ResetPeakMemory(), in MiB, minus the memory in
// use at that reset: CPU: VmHWM - VmRSS through /proc/self/clear_refs (only
// meaningful in a process of its own); CUDA: the caching allocator's peak.
void ResetPeakMemory(const torch::Device& device);
double PeakMemoryMiBSinceReset(const torch::Device& device);

// CPU tensor bytes, exactly, whatever the allocator keeps: LibTorch's CPU
// allocator reports every allocation and free made on this thread (its
// profiler hook, c10::MemoryReportingInfoBase) once StartTensorAccounting()
// has run on it. Call it before the first tensor is made, on the thread that
// runs forward and backward (LibTorch's CPU backward runs on the caller's);
// tensors made on other threads (intra-op workers) are not counted.
void StartTensorAccounting();
// Peak tensor bytes since the last ResetTensorPeak(), minus those live then,
// in MiB; nullopt when StartTensorAccounting() has not run.
void ResetTensorPeak();
std::optional<double> TensorPeakMiBSinceReset();

// Writes `j` to `path` (atomically: a temporary file, then rename); exits on failure.
void WriteJson(const std::string& path, const nlohmann::json& j);

// Median of a non-empty sample.
double Median(std::vector<double> v);

}  // namespace d2lora::bench
