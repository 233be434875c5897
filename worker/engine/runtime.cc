#include "worker/engine/runtime.h"

#include <ATen/Parallel.h>
#include <sched.h>

#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace d2lora::engine {

int AvailableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return 1;
}

int ConfigureThreads(int threads) {
  const int n = threads > 0 ? threads : AvailableCores();
  at::set_num_threads(n);
  return at::get_num_threads();
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

}  // namespace d2lora::engine
