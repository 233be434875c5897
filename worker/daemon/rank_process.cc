#include "worker/daemon/rank_process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"

extern char** environ;

namespace d2lora::worker {
namespace {

// Closes every descriptor >= `first` except `keep` (async-signal-safe).
void CloseDescriptorsFrom(int first, int keep) {
#ifdef SYS_close_range
  auto close_range = [](unsigned lo, unsigned hi) { return syscall(SYS_close_range, lo, hi, 0); };
  bool ok = true;
  if (keep > first) ok = close_range(first, keep - 1) == 0;
  if (ok) ok = close_range(keep + 1, ~0U) == 0;
  if (ok) return;
#endif
  struct rlimit limit {};
  long max_fd = 65536;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < 65536) {
    max_fd = static_cast<long>(limit.rlim_cur);
  }
  for (long fd = first; fd < max_fd; ++fd) {
    if (fd != keep) close(static_cast<int>(fd));
  }
}

// The child's side of Start: never returns. Only async-signal-safe calls.
[[noreturn]] void ExecChild(pid_t parent, bool die_with_parent, int null_fd, int log_fd, int error_fd,
                            const char* working_dir, char* const* argv, char* const* envp) {
  auto fail = [error_fd]() {
    const int error = errno;
    (void)!write(error_fd, &error, sizeof(error));
    _exit(127);
  };
  if (setpgid(0, 0) != 0) fail();
  if (die_with_parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail();
    if (getppid() != parent) _exit(127);  // the worker died before prctl
  }
  // Signals as a fresh process has them: the worker blocks and ignores some.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int s = 1; s < NSIG; ++s) {
    if (s != SIGKILL && s != SIGSTOP) sigaction(s, &dfl, nullptr);
  }
  if (dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) fail();
  CloseDescriptorsFrom(3, error_fd);
  if (working_dir != nullptr && chdir(working_dir) != 0) fail();
  execve(argv[0], argv, envp);
  fail();
  _exit(127);  // not reached
}

std::string EnvName(const std::string& entry) { return entry.substr(0, entry.find('=')); }

}  // namespace

std::string RankProcess::Describe() const { return absl::StrCat("rank process ", pid_); }

absl::StatusOr<std::unique_ptr<RankProcess>> RankProcess::Start(const RankProcessOptions& options) {
  if (options.argv.empty() || options.argv[0].empty()) return absl::InvalidArgumentError("no program to run");

  // Everything the child needs, prepared before fork (no allocation after it).
  std::vector<std::string> env_strings = options.env;
  std::set<std::string> overridden;
  for (const std::string& entry : options.env) overridden.insert(EnvName(entry));
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (overridden.count(EnvName(*e)) == 0) env_strings.emplace_back(*e);
  }
  std::vector<char*> argv;
  for (const std::string& arg : options.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& entry : env_strings) envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);

  const int log_fd = open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return ErrnoError("cannot open", options.log_path);
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) {
    absl::Status error = ErrnoError("cannot open", "/dev/null");
    close(log_fd);
    return error;
  }
  int error_pipe[2];
  if (pipe2(error_pipe, O_CLOEXEC) != 0) {
    absl::Status error = ErrnoError("cannot create a pipe for", options.argv[0]);
    close(log_fd);
    close(null_fd);
    return error;
  }
  const pid_t parent = getpid();
  const char* working_dir = options.working_dir.empty() ? nullptr : options.working_dir.c_str();
  const pid_t pid = fork();
  if (pid == 0) {
    ExecChild(parent, options.die_with_parent, null_fd, log_fd, error_pipe[1], working_dir, argv.data(), envp.data());
  }
  const int fork_errno = errno;
  close(error_pipe[1]);
  close(log_fd);
  close(null_fd);
  if (pid < 0) {
    close(error_pipe[0]);
    errno = fork_errno;
    return ErrnoError("cannot fork to run", options.argv[0]);
  }
  setpgid(pid, pid);  // also in the child: whichever runs first

  // exec closes the pipe (O_CLOEXEC); an errno arriving instead means it failed.
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(error_pipe[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  close(error_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof(child_errno))) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    errno = child_errno;
    return ErrnoError("cannot run", options.argv[0]);
  }
  return std::unique_ptr<RankProcess>(new RankProcess(pid));
}

RankProcess::~RankProcess() {
  if (!Poll().has_value()) {
    Signal(SIGKILL);
    Wait();
  }
}

std::optional<ExitStatus> RankProcess::Poll() {
  std::lock_guard<std::mutex> lock(mu_);
  if (exit_.has_value()) return exit_;
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return std::nullopt;
  ExitStatus exit;
  if (r < 0) {
    exit.exit_code = 255;  // ECHILD: someone else reaped it; nothing more to learn
  } else if (WIFSIGNALED(status)) {
    exit.signal = WTERMSIG(status);
  } else {
    exit.exit_code = WEXITSTATUS(status);
  }
  // Whatever the rank left behind in its group goes with it.
  kill(-pid_, SIGKILL);
  exit_ = exit;
  return exit_;
}

std::optional<ExitStatus> RankProcess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (auto exit = Poll()) return exit;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return std::nullopt;
    absl::SleepFor(std::min(left, absl::Milliseconds(10)));
  }
}

void RankProcess::Signal(int signal) {
  std::lock_guard<std::mutex> lock(mu_);
  if (exit_.has_value()) return;
  // The group, and the leader by pid in case it has not joined it yet.
  kill(-pid_, signal);
  kill(pid_, signal);
}

ExitStatus RankProcess::Stop(absl::Duration grace) {
  if (auto exit = Poll()) return *exit;
  Signal(SIGTERM);
  if (auto exit = Wait(grace)) return *exit;
  Signal(SIGKILL);
  return *Wait();
}

}  // namespace d2lora::worker
