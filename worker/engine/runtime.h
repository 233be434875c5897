// Process-wide LibTorch settings that every entry point (CLI, trainer, bench)
// makes explicitly: the intra-op thread count (LibTorch's default here is 1)
// and a check that an optimised BLAS, not the reference one, is loaded.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace d2lora::engine {

// Environment defaults for the two thread pools a training process runs:
// LibTorch's OpenMP pool and OpenBLAS's own pthreads. By default both spin
// after each parallel region (libgomp ~300k iterations, OpenBLAS 2^28 cycles),
// so on a host with few cores each pool burns the cores the other needs, and
// two intra-op threads ran slower than one (DESIGN-level finding, issue 8).
// The defaults: OMP_WAIT_POLICY=PASSIVE, OPENBLAS_THREAD_TIMEOUT=4 (the
// shortest spin). Variables the user set are kept.
inline constexpr const char* kThreadingDefaultsOptOut = "D2LORA_THREADING_DEFAULTS";  // "0" = leave alone

// The allocator: LibTorch's CPU tensors come straight from malloc, and glibc's
// malloc raises its mmap threshold after the first large free, so freed
// activations stay in its heap: on the small preset at 512 tokens a LoRA run
// peaked at 1,154 MiB with glibc and 876 MiB with tcmalloc (whose own caches
// are bounded), and trained 1.31x as fast with tcmalloc
// (bench/allocator_bench.sh, bench/measured/allocator-*). The memory plan
// (common/model/memory_plan.h) models tcmalloc. So unless D2LORA_MALLOC=system or LD_PRELOAD is set, when
// Debian's libtcmalloc_minimal.so.4 sits beside the C library, it is preloaded.
inline constexpr const char* kMallocOptOut = "D2LORA_MALLOC";  // "system" = glibc's malloc

// The libraries read these variables when they are loaded, before main(), so
// they only take effect in a new process image: when one of them is missing
// this sets it and re-executes the program (same pid, same arguments) through
// /proc/self/exe. Returns when nothing needs to change, when
// D2LORA_THREADING_DEFAULTS=0, or when the exec fails (it then warns on stderr).
// Call first thing in main(), before any thread starts.
void ReexecWithThreadingDefaults(char** argv);

// The allocator this process runs with: "tcmalloc" when libtcmalloc_minimal is
// loaded, else "system".
std::string AllocatorName();
// Debian's libtcmalloc_minimal.so.4 beside the C library; "" when not installed.
std::string TcmallocPath();

// Gives the allocator's free memory back to the system: tcmalloc's
// MallocExtension_ReleaseFreeMemory (looked up at run time), else glibc's
// malloc_trim. Between the phases of a run, so that what one phase freed (the
// last step's activations) does not stay cached beside what the next one
// allocates in other sizes (the merge), where the resident peak counts both.
void ReleaseFreeMemory();

// The number of cores this process may use: its CPU affinity mask, capped by
// its cgroup's CPU limit (common/cgroup_limits.h).
int AvailableCores();

// Sets LibTorch's intra-op threads: `threads` > 0 as given, 0 = AvailableCores().
// Returns the count in effect. OpenBLAS runs its own pool for matrix products,
// sized when it loads from OPENBLAS_NUM_THREADS or OMP_NUM_THREADS (else every
// core), which at::set_num_threads does not reach; when the loaded BLAS is
// OpenBLAS this sets its pool to the same count, so `resources.threads` holds
// for both (with OMP_NUM_THREADS=1 in the environment a two-thread run
// otherwise multiplied its matrices on one thread, 1.6x slower).
int ConfigureThreads(int threads);

// OpenBLAS's thread count, or 0 when the loaded BLAS is not OpenBLAS.
int BlasThreads();

// The BLAS library the process has loaded (from /proc/self/maps), e.g.
// "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3", or "" if none.
std::string LoadedBlasLibrary();

// FailedPrecondition when the reference BLAS is loaded: it is ~60x slower than
// OpenBLAS here (install libopenblas0-pthread).
absl::Status CheckOptimisedBlas();

// "LibTorch 1.13.0; CUDA: not built" / "LibTorch 2.4.0; CUDA: built, 8
// device(s) visible": for --version.
std::string LibTorchDescription();

// What every command that runs the engine does first: ConfigureThreads, and
// CheckOptimisedBlas's warning on stderr ("d2lora: warning: ..."). Returns the
// thread count in effect.
int SetUpRuntime(int threads);

}  // namespace d2lora::engine
