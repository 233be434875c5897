#include "worker/daemon/rank_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace d2lora::worker {
namespace {

using d2lora::testing::ReadFile;
using d2lora::testing::TempDir;
using d2lora::testing::WriteFile;

std::unique_ptr<RankProcess> StartShell(const std::string& script, const std::string& log) {
  RankProcessOptions options;
  options.argv = {"/bin/sh", "-c", script};
  options.log_path = log;
  auto process = RankProcess::Start(options);
  EXPECT_TRUE(process.ok()) << process.status();
  return process.ok() ? std::move(*process) : nullptr;
}

// Waits until the log holds `text`.
bool WaitForLog(const std::string& log, const std::string& text, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (access(log.c_str(), R_OK) == 0 && absl::StrContains(ReadFile(log), text)) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

TEST(RankProcessTest, ExitCodeAndLogCapture) {
  TempDir dir;
  const std::string log = dir.file("rank.log");
  WriteFile(log, "earlier line\n");
  auto process = StartShell("echo to stdout; echo to stderr >&2; exit 3", log);
  ASSERT_NE(process, nullptr);
  auto exit = process->Wait(absl::Seconds(30));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->exit_code, 3);
  EXPECT_EQ(exit->signal, 0);
  EXPECT_FALSE(exit->success());
  EXPECT_EQ(exit->code(), 3);
  EXPECT_EQ(exit->Describe(), "rank process exited with code 3");
  // Appended, both streams.
  EXPECT_EQ(ReadFile(log), "earlier line\nto stdout\nto stderr\n");
  // Polling again gives the same answer.
  ASSERT_TRUE(process->Poll().has_value());
  EXPECT_EQ(process->Poll()->exit_code, 3);
}

TEST(RankProcessTest, SuccessAndEnvironmentAndWorkingDirectory) {
  TempDir dir;
  RankProcessOptions options;
  options.argv = {"/bin/sh", "-c", "echo \"$D2_TEST_VAR\"; pwd"};
  options.log_path = dir.file("rank.log");
  options.working_dir = dir.path();
  options.env = {"D2_TEST_VAR=hello"};
  auto process = RankProcess::Start(options);
  ASSERT_TRUE(process.ok()) << process.status();
  auto exit = (*process)->Wait(absl::Seconds(30));
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->success());
  char real[4096];
  ASSERT_NE(realpath(dir.path().c_str(), real), nullptr);
  EXPECT_EQ(ReadFile(options.log_path), absl::StrCat("hello\n", real, "\n"));
}

TEST(RankProcessTest, MissingProgramIsAnError) {
  TempDir dir;
  RankProcessOptions options;
  options.argv = {dir.file("no-such-trainer"), "train"};
  options.log_path = dir.file("rank.log");
  auto process = RankProcess::Start(options);
  ASSERT_FALSE(process.ok());
  EXPECT_TRUE(absl::StrContains(process.status().message(), "cannot run")) << process.status();
  EXPECT_TRUE(absl::StrContains(process.status().message(), "no-such-trainer")) << process.status();
}

TEST(RankProcessTest, OtherDescriptorsAreClosed) {
  TempDir dir;
  const std::string log = dir.file("rank.log");
  // A descriptor the worker leaves inheritable.
  const int fd = open(dir.file("leak").c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 3);
  auto process = StartShell(absl::StrCat("if [ -e /proc/$$/fd/", fd, " ]; then echo open; else echo closed; fi"), log);
  ASSERT_NE(process, nullptr);
  ASSERT_TRUE(process->Wait(absl::Seconds(30)).has_value());
  close(fd);
  EXPECT_EQ(ReadFile(log), "closed\n");
}

TEST(RankProcessTest, OwnProcessGroup) {
  TempDir dir;
  const std::string log = dir.file("rank.log");
  auto process = StartShell("sleep 30", log);
  ASSERT_NE(process, nullptr);
  EXPECT_EQ(getpgid(process->pid()), process->pid());
  EXPECT_FALSE(process->Poll().has_value());
  process->Stop(absl::Seconds(5));
}

TEST(RankProcessTest, StopEndsAProcessThatHandlesSigterm) {
  TempDir dir;
  const std::string log = dir.file("rank.log");
  auto process = StartShell("trap 'echo got TERM; exit 4' TERM; echo ready; while :; do sleep 0.05; done", log);
  ASSERT_NE(process, nullptr);
  ASSERT_TRUE(WaitForLog(log, "ready"));
  const absl::Time start = absl::Now();
  const ExitStatus exit = process->Stop(absl::Seconds(20));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(exit.signal, 0);
  EXPECT_EQ(exit.exit_code, 4);
  EXPECT_TRUE(absl::StrContains(ReadFile(log), "got TERM"));
}

TEST(RankProcessTest, StopKillsAProcessIgnoringSigtermAfterTheGrace) {
  TempDir dir;
  const std::string log = dir.file("rank.log");
  auto process = StartShell("trap '' TERM; echo ready; while :; do sleep 0.05; done", log);
  ASSERT_NE(process, nullptr);
  ASSERT_TRUE(WaitForLog(log, "ready"));
  const absl::Time start = absl::Now();
  const ExitStatus exit = process->Stop(absl::Milliseconds(500));
  const absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(500));
  EXPECT_LT(took, absl::Seconds(10));
  EXPECT_EQ(exit.signal, SIGKILL);
  EXPECT_EQ(exit.code(), 128 + SIGKILL);
  EXPECT_TRUE(absl::StrContains(exit.Describe(), "killed by signal 9")) << exit.Describe();
}

TEST(RankProcessTest, DestructorKillsARunningProcess) {
  TempDir dir;
  pid_t pid;
  {
    auto process = StartShell("sleep 30", dir.file("rank.log"));
    ASSERT_NE(process, nullptr);
    pid = process->pid();
  }
  EXPECT_EQ(kill(pid, 0), -1);  // reaped
}

// A rank dies with the worker that started it: a helper process starts a rank
// and is SIGKILLed; the rank (re-parented to this test, a subreaper) must die
// of SIGKILL too.
TEST(RankProcessTest, RankDiesWithItsParent) {
  TempDir dir;
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t helper = fork();
  ASSERT_GE(helper, 0);
  if (helper == 0) {
    close(pipe_fds[0]);
    RankProcessOptions options;
    options.argv = {"/bin/sleep", "60"};
    options.log_path = dir.file("rank.log");
    auto process = RankProcess::Start(options);
    if (!process.ok()) _exit(1);
    const pid_t rank = (*process)->pid();
    if (write(pipe_fds[1], &rank, sizeof(rank)) != sizeof(rank)) _exit(1);
    while (true) pause();
  }
  close(pipe_fds[1]);
  pid_t rank = 0;
  ASSERT_EQ(read(pipe_fds[0], &rank, sizeof(rank)), static_cast<ssize_t>(sizeof(rank)));
  close(pipe_fds[0]);
  ASSERT_GT(rank, 0);
  ASSERT_EQ(kill(helper, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(helper, &status, 0), helper);
  // The orphaned rank is now our child; it must end by SIGKILL soon.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  pid_t reaped = 0;
  while (absl::Now() < deadline) {
    reaped = waitpid(rank, &status, WNOHANG);
    if (reaped != 0) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  prctl(PR_SET_CHILD_SUBREAPER, 0);
  if (reaped == 0) {
    kill(rank, SIGKILL);
    waitpid(rank, &status, 0);
    FAIL() << "the rank outlived its parent";
  }
  ASSERT_EQ(reaped, rank);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
}

}  // namespace
}  // namespace d2lora::worker
