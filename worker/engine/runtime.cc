#include "worker/engine/runtime.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/version.h>
#include <dlfcn.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/cgroup_limits.h"

namespace d2lora::engine {

namespace {

constexpr char kTcmalloc[] = "libtcmalloc_minimal.so.4";

}  // namespace

std::string TcmallocPath() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&std::free), &info) == 0 || info.dli_fname == nullptr) return "";
  std::string dir = info.dli_fname;
  dir = dir.substr(0, dir.rfind('/'));
  for (const std::string& d : {dir, absl::StrCat("/usr", dir)}) {
    const std::string path = absl::StrCat(d, "/", kTcmalloc);
    if (access(path.c_str(), R_OK) == 0) return path;
  }
  return "";
}

void ReexecWithThreadingDefaults(char** argv) {
  const char* opt_out = std::getenv(kThreadingDefaultsOptOut);
  if (opt_out != nullptr && std::strcmp(opt_out, "0") == 0) return;
  static const char* const kDefaults[][2] = {{"OMP_WAIT_POLICY", "PASSIVE"}, {"OPENBLAS_THREAD_TIMEOUT", "4"}};
  bool changed = false;
  for (const auto& [name, value] : kDefaults) {
    if (std::getenv(name) == nullptr) {
      setenv(name, value, 0);
      changed = true;
    }
  }
  const char* malloc_choice = std::getenv(kMallocOptOut);
  if (std::getenv("LD_PRELOAD") == nullptr && (malloc_choice == nullptr || std::strcmp(malloc_choice, "system") != 0)) {
    if (const std::string tcmalloc = TcmallocPath(); !tcmalloc.empty()) {
      setenv("LD_PRELOAD", tcmalloc.c_str(), 0);
      changed = true;
    }
  }
  if (!changed) return;
  execv("/proc/self/exe", argv);
  std::fprintf(stderr, "warning: could not re-execute with the threading defaults (%s); threads may spin\n",
               std::strerror(errno));
}

std::string AllocatorName() {
  void* handle = dlopen(kTcmalloc, RTLD_LAZY | RTLD_NOLOAD);
  if (handle == nullptr) return "system";
  dlclose(handle);
  return "tcmalloc";
}

void ReleaseFreeMemory() {
  using Release = void (*)();
  if (auto release = reinterpret_cast<Release>(dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory"))) {
    release();
    return;
  }
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

int AvailableCores() { return AvailableCpuCores(); }

namespace {

// OpenBLAS's thread-count functions, looked up at run time so the engine
// links against any BLAS (MKL's threads follow at::set_num_threads itself).
template <typename Fn>
Fn OpenBlasFunction(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
}

}  // namespace

int ConfigureThreads(int threads) {
  const int n = threads > 0 ? threads : AvailableCores();
  at::set_num_threads(n);
  if (auto set = OpenBlasFunction<void (*)(int)>("openblas_set_num_threads")) set(n);
  return at::get_num_threads();
}

int BlasThreads() {
  auto get = OpenBlasFunction<int (*)()>("openblas_get_num_threads");
  return get ? get() : 0;
}

std::string LoadedBlasLibrary() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    if (absl::StrContains(path, "libblas.so") || absl::StrContains(path, "libopenblas") ||
        absl::StrContains(path, "libmkl_rt")) {
      return path;
    }
  }
  return "";
}

absl::Status CheckOptimisedBlas() {
  const std::string blas = LoadedBlasLibrary();
  // Debian's reference BLAS lives in .../blas/libblas.so.3; OpenBLAS in
  // .../openblas-pthread/ (or libopenblas*), MKL in libmkl_rt.
  if (absl::StrContains(blas, "/blas/libblas.so")) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the reference BLAS is loaded (", blas,
        "): matrix products run ~60x slower. Install libopenblas0-pthread "
        "(apt-get install libopenblas0-pthread) or select it with update-alternatives."));
  }
  return absl::OkStatus();
}

int SetUpRuntime(int threads) {
  const int in_effect = ConfigureThreads(threads);
  if (absl::Status blas = CheckOptimisedBlas(); !blas.ok()) {
    std::fprintf(stderr, "d2lora: warning: %s\n", std::string(blas.message()).c_str());
  }
  return in_effect;
}

std::string LibTorchDescription() {
  std::string cuda = "CUDA: not built";
  if (at::hasCUDA()) cuda = absl::StrCat("CUDA: built, ", torch::cuda::device_count(), " device(s) visible");
  return absl::StrCat("LibTorch ", TORCH_VERSION, "; ", cuda);
}

}  // namespace d2lora::engine
