// Process-wide LibTorch settings that every entry point (CLI, trainer, bench)
// makes explicitly: the intra-op thread count (LibTorch's default here is 1)
// and a check that an optimised BLAS, not the reference one, is loaded.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace d2lora::engine {

// The number of cores this process may run on (its CPU affinity mask).
int AvailableCores();

// Sets LibTorch's intra-op threads: `threads` > 0 as given, 0 = AvailableCores().
// Returns the count in effect.
int ConfigureThreads(int threads);

// The BLAS library the process has loaded (from /proc/self/maps), e.g.
// "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3", or "" if none.
std::string LoadedBlasLibrary();

// FailedPrecondition when the reference BLAS is loaded: it is ~60x slower than
// OpenBLAS here (install libopenblas0-pthread).
absl::Status CheckOptimisedBlas();

}  // namespace d2lora::engine
