#include "worker/engine/runtime.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "common/model/memory_plan.h"

namespace d2lora::engine {
namespace {

constexpr const char* kProbeOut = "D2LORA_TEST_REEXEC_PROBE_OUT";

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "(unset)" : v;
}

// Runs only inside the re-executed test binary (see RunReexec): records what
// the new process image sees.
TEST(ReexecProbe, WritesEnvironment) {
  const char* out = std::getenv(kProbeOut);
  if (out == nullptr) GTEST_SKIP() << "only run by the re-execution tests";
  std::ofstream(out) << getpid() << " " << Env("OMP_WAIT_POLICY") << " " << Env("OPENBLAS_THREAD_TIMEOUT") << "\n"
                     << Env("LD_PRELOAD") << " " << AllocatorName() << "\n";
}

// ReleaseFreeMemory: 128 MiB freed in 512 KiB blocks stays resident in the
// allocator (tcmalloc's page heap with its gradual release off; glibc's heap
// with mmap and automatic trimming raised out of the way) until the call
// gives it back. Runs in a new process image per allocator (ReleaseProbe).
constexpr const char* kReleaseProbeOut = "D2LORA_TEST_RELEASE_PROBE_OUT";

int64_t ResidentKiB() { return model::ResidentBytes() / 1024; }

TEST(ReleaseProbe, ResidentMemoryAroundARelease) {
  const char* out = std::getenv(kReleaseProbeOut);
  if (out == nullptr) GTEST_SKIP() << "only run by ReleaseFreeMemory's tests";
#ifdef __GLIBC__
  if (AllocatorName() == "system") {
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  }
#endif
  constexpr size_t kBlock = 512 << 10;
  std::vector<char*> blocks;
  volatile char sink = 0;
  for (int i = 0; i < 256; ++i) {
    char* p = static_cast<char*>(std::malloc(kBlock));
    std::memset(p, i + 1, kBlock);
    sink = sink + p[kBlock / 2];
    blocks.push_back(p);
  }
  const int64_t held = ResidentKiB();
  for (char* p : blocks) std::free(p);
  const int64_t freed = ResidentKiB();
  ReleaseFreeMemory();
  std::ofstream(out) << AllocatorName() << " " << held << " " << freed << " " << ResidentKiB() << "\n";
}

// "<allocator> <RSS KiB holding> <after free> <after release>" from the probe
// run with `preload` as LD_PRELOAD ("" = none).
std::string RunReleaseProbe(const std::string& preload) {
  const std::string out = ::testing::TempDir() + "/release_probe_" + std::to_string(getpid());
  std::remove(out.c_str());
  const std::string self = "/proc/" + std::to_string(getpid()) + "/exe";
  pid_t pid = fork();
  if (pid == 0) {
    setenv(kReleaseProbeOut, out.c_str(), 1);
    setenv("TCMALLOC_RELEASE_RATE", "0", 1);  // tcmalloc keeps freed spans until told
    if (preload.empty()) unsetenv("LD_PRELOAD");
    else setenv("LD_PRELOAD", preload.c_str(), 1);
    std::string filter = "--gtest_filter=ReleaseProbe.*";
    char* argv[] = {const_cast<char*>(self.c_str()), filter.data(), nullptr};
    execv(self.c_str(), argv);
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  std::ifstream in(out);
  std::string text;
  std::getline(in, text);
  std::remove(out.c_str());
  return text;
}

void ExpectReleased(const std::string& preload, const std::string& allocator) {
  const std::string text = RunReleaseProbe(preload);
  char name[32] = {0};
  long long held = 0, freed = 0, released = 0;
  ASSERT_EQ(std::sscanf(text.c_str(), "%31s %lld %lld %lld", name, &held, &freed, &released), 4) << "'" << text << "'";
  EXPECT_EQ(name, allocator);
  // Freed, the blocks stay resident; released, they leave (128 MiB = 131072 KiB).
  EXPECT_GT(freed, held - 32 * 1024) << text;
  EXPECT_LT(released, freed - 96 * 1024) << text;
}

TEST(ReleaseFreeMemory, GivesGlibcsFreedHeapBack) { ExpectReleased("", "system"); }

TEST(ReleaseFreeMemory, GivesTcmallocsFreedSpansBack) {
  if (TcmallocPath().empty()) GTEST_SKIP() << "libtcmalloc_minimal is not installed";
  ExpectReleased(TcmallocPath(), "tcmalloc");
}

struct ProbeResult {
  pid_t child = 0;
  std::string text;  // "<pid> <OMP_WAIT_POLICY> <OPENBLAS_THREAD_TIMEOUT>", or "" if the probe never ran
  std::string malloc;  // "<LD_PRELOAD> <AllocatorName()>" of the re-executed image
};

// Forks; the child sets `env` (value nullptr = unset), calls
// ReexecWithThreadingDefaults with this test binary's probe as argv, and, if
// that returns, writes what it sees itself.
ProbeResult RunReexec(const std::vector<std::pair<const char*, const char*>>& env) {
  const std::string out = ::testing::TempDir() + "/reexec_probe_" + std::to_string(getpid());
  std::remove(out.c_str());
  const std::string self = "/proc/" + std::to_string(getpid()) + "/exe";
  pid_t pid = fork();
  if (pid == 0) {
    setenv(kProbeOut, out.c_str(), 1);
    for (const auto& [name, value] : env) {
      if (value == nullptr) unsetenv(name);
      else setenv(name, value, 1);
    }
    std::string filter = "--gtest_filter=ReexecProbe.WritesEnvironment";
    char* argv[] = {const_cast<char*>(self.c_str()), filter.data(), nullptr};
    ReexecWithThreadingDefaults(argv);
    // Not re-executed: record this process's view.
    std::ofstream(out) << getpid() << " " << Env("OMP_WAIT_POLICY") << " " << Env("OPENBLAS_THREAD_TIMEOUT")
                       << " not-reexecuted\n"
                       << Env("LD_PRELOAD") << " " << AllocatorName() << "\n";
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ProbeResult r;
  r.child = pid;
  std::ifstream in(out);
  std::getline(in, r.text);
  std::getline(in, r.malloc);
  std::remove(out.c_str());
  return r;
}

TEST(ReexecWithThreadingDefaults, SetsMissingVariablesInTheSameProcess) {
  ProbeResult r = RunReexec({{"OMP_WAIT_POLICY", nullptr}, {"OPENBLAS_THREAD_TIMEOUT", nullptr},
                             {kThreadingDefaultsOptOut, nullptr},
                             {kMallocOptOut, "system"}, {"LD_PRELOAD", nullptr}});
  EXPECT_EQ(r.text, std::to_string(r.child) + " PASSIVE 4");
}

TEST(ReexecWithThreadingDefaults, KeepsWhatTheUserSet) {
  ProbeResult r = RunReexec({{"OMP_WAIT_POLICY", "ACTIVE"}, {"OPENBLAS_THREAD_TIMEOUT", nullptr},
                             {kThreadingDefaultsOptOut, nullptr},
                             {kMallocOptOut, "system"}, {"LD_PRELOAD", nullptr}});
  EXPECT_EQ(r.text, std::to_string(r.child) + " ACTIVE 4");
}

TEST(ReexecWithThreadingDefaults, DoesNothingWhenAllAreSet) {
  ProbeResult r = RunReexec({{"OMP_WAIT_POLICY", "ACTIVE"}, {"OPENBLAS_THREAD_TIMEOUT", "10"},
                             {kThreadingDefaultsOptOut, nullptr},
                             {kMallocOptOut, "system"}, {"LD_PRELOAD", nullptr}});
  EXPECT_EQ(r.text, std::to_string(r.child) + " ACTIVE 10 not-reexecuted");
}

TEST(ReexecWithThreadingDefaults, OptOutLeavesTheEnvironmentAlone) {
  ProbeResult r = RunReexec({{"OMP_WAIT_POLICY", nullptr}, {"OPENBLAS_THREAD_TIMEOUT", nullptr},
                             {kThreadingDefaultsOptOut, "0"}, {"LD_PRELOAD", nullptr}});
  EXPECT_EQ(r.text, std::to_string(r.child) + " (unset) (unset) not-reexecuted");
}

// The allocator: Debian's tcmalloc preloaded into the new image unless the user
// preloads something or asks for glibc's malloc.
TEST(ReexecWithThreadingDefaults, PreloadsTcmallocWhenInstalled) {
  if (TcmallocPath().empty()) GTEST_SKIP() << "libtcmalloc-minimal4 is not installed";
  ProbeResult r = RunReexec({{"OMP_WAIT_POLICY", "ACTIVE"}, {"OPENBLAS_THREAD_TIMEOUT", "10"},
                             {kThreadingDefaultsOptOut, nullptr}, {kMallocOptOut, nullptr}, {"LD_PRELOAD", nullptr}});
  EXPECT_EQ(r.text, std::to_string(r.child) + " ACTIVE 10");  // re-executed for the allocator alone
  EXPECT_EQ(r.malloc, TcmallocPath() + " tcmalloc");
}

TEST(ReexecWithThreadingDefaults, KeepsTheUsersPreloadAndGlibcWhenAsked) {
  ProbeResult system = RunReexec({{"OMP_WAIT_POLICY", "ACTIVE"}, {"OPENBLAS_THREAD_TIMEOUT", "10"},
                                  {kThreadingDefaultsOptOut, nullptr}, {kMallocOptOut, "system"},
                                  {"LD_PRELOAD", nullptr}});
  EXPECT_EQ(system.text, std::to_string(system.child) + " ACTIVE 10 not-reexecuted");
  EXPECT_EQ(system.malloc, "(unset) system");
  ProbeResult user = RunReexec({{"OMP_WAIT_POLICY", "ACTIVE"}, {"OPENBLAS_THREAD_TIMEOUT", "10"},
                                {kThreadingDefaultsOptOut, nullptr}, {kMallocOptOut, nullptr},
                                {"LD_PRELOAD", "libm.so.6"}});
  EXPECT_EQ(user.text, std::to_string(user.child) + " ACTIVE 10 not-reexecuted");
  EXPECT_EQ(user.malloc, "libm.so.6 system");
}

TEST(ConfigureThreads, ZeroMeansTheCoresThisProcessMayUse) {
  EXPECT_EQ(ConfigureThreads(0), AvailableCores());
  EXPECT_EQ(ConfigureThreads(1), 1);
}

TEST(ConfigureThreads, SetsOpenBlasPoolToo) {
  if (BlasThreads() == 0) GTEST_SKIP() << "the loaded BLAS is not OpenBLAS: " << LoadedBlasLibrary();
  ConfigureThreads(2);
  EXPECT_EQ(BlasThreads(), 2);
  ConfigureThreads(1);
  EXPECT_EQ(BlasThreads(), 1);
}

}  // namespace
}  // namespace d2lora::engine
