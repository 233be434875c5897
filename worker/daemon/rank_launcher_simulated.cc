#include "worker/daemon/rank_launcher_simulated.h"

#include <csignal>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/spec/job_spec.h"
#include "common/trainer/metrics_events.h"
#include "common/trainer/output_names.h"

namespace d2lora::worker {
namespace {

double UnixSeconds() { return absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()); }

std::string FlagValue(const std::vector<std::string>& argv, const std::string& flag) {
  for (size_t i = 1; i + 1 < argv.size(); ++i) {
    if (argv[i] == flag) return argv[i + 1];
  }
  return "";
}

std::string EnvValue(const std::vector<std::string>& env, const std::string& name) {
  for (const std::string& entry : env) {
    absl::string_view rest = entry;
    if (absl::ConsumePrefix(&rest, name + "=")) return std::string(rest);
  }
  return "";
}

void Append(const std::string& path, const std::string& line) {
  std::ofstream out(path, std::ios::app);
  out << line << '\n';
}

class SimulatedRank : public RunningRank {
 public:
  SimulatedRank(const SimulatedRankOptions& options, const RankLaunch& launch)
      : options_(options), launch_(launch) {
    absl::SimpleAtoi(FlagValue(launch.argv, "--rank"), &rank_);
    thread_ = std::thread([this] { Run(); });
  }
  ~SimulatedRank() override {
    Signal(SIGKILL);
    thread_.join();
  }

  std::string Describe() const override { return absl::StrCat("simulated rank ", rank_); }

  std::optional<ExitStatus> Poll() override {
    std::lock_guard<std::mutex> lock(mu_);
    return exit_;
  }

  std::optional<ExitStatus> Wait(absl::Duration timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    const auto ended = [this] { return exit_.has_value(); };
    if (timeout == absl::InfiniteDuration()) {
      cv_.wait(lock, ended);
    } else {
      cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout), ended);
    }
    return exit_;
  }

  void Signal(int signal) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (exit_.has_value()) return;
    if (signal == SIGKILL) killed_ = true;
    if (signal == SIGTERM || signal == SIGINT) terminated_ = true;
    cv_.notify_all();
  }

 private:
  void Exit(ExitStatus status) {
    std::lock_guard<std::mutex> lock(mu_);
    exit_ = status;
    cv_.notify_all();
  }

  void Fail(const trainer::TrainerError& error, int exit_code) {
    const std::string path = EnvValue(launch_.env, trainer::kErrorFileEnv);
    if (!path.empty()) (void)trainer::WriteErrorFile(path, error);
    Append(launch_.log_path, absl::StrCat("d2lora: error: ", error.message));
    Exit(ExitStatus{exit_code, 0});
  }

  void Run() {
    const std::string config = FlagValue(launch_.argv, "--config");
    absl::StatusOr<spec::ValidJobSpec> spec = spec::LoadJobSpec(config);
    if (!spec.ok()) return Fail(trainer::ErrorFromStatus(spec.status()), 2);
    const std::string out = (*spec)->output.dir;
    const std::string metrics = absl::StrCat(out, "/", trainer::kMetricsFile);
    std::error_code ec;
    if (rank_ == 0) std::filesystem::create_directories(out, ec);
    Append(launch_.log_path, absl::StrCat("simulated rank ", rank_, ": ", config));
    const absl::Time start = absl::Now();
    const int64_t total = std::max<int64_t>(1, options_.run_time / options_.step_time);
    int64_t step = 0;
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        const absl::Time next = std::min(start + options_.step_time * (step + 1), start + options_.run_time);
        cv_.wait_until(lock, absl::ToChronoTime(next), [this] { return killed_ || terminated_; });
        if (killed_) {
          exit_ = ExitStatus{0, SIGKILL};
          cv_.notify_all();
          return;
        }
        if (terminated_) break;
      }
      if (absl::Now() - start >= options_.run_time) break;
      ++step;
      Append(launch_.log_path, absl::StrCat("step ", step, "/", total));
      if (rank_ == 0) {
        trainer::StepMetrics m;
        m.step = step;
        m.total_steps = total;
        m.loss = 2.0 / static_cast<double>(step);
        m.lr = (*spec)->train.lr;
        Append(metrics, trainer::EventLine(trainer::MetricsEvent{UnixSeconds(), m}));
      }
    }
    bool stopped = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopped = terminated_;
    }
    if (stopped) {
      trainer::TrainerError error;
      error.code = absl::StatusCode::kAborted;
      error.message = absl::StrCat("stopped at step ", step);
      error.reason = trainer::FailureReason::kStopped;
      error.retryable = trainer::IsRetryable(error.code, error.reason);
      error.step = step;
      return Fail(error, 1);
    }
    if (options_.fail_with.has_value()) return Fail(*options_.fail_with, 1);
    if (rank_ == 0) {
      const nlohmann::json summary = {{"status", "completed"},
                                      {"steps", step},
                                      {"world_size", (*spec)->resources.world_size},
                                      {"simulated", true}};
      absl::Status written = WriteFileAtomically(absl::StrCat(out, "/", trainer::kSpecFile), spec::JobSpecToYaml(*spec));
      if (written.ok()) written = WriteFileAtomically(absl::StrCat(out, "/", trainer::kSummaryFile), summary.dump(2));
      if (!written.ok()) return Fail(trainer::ErrorFromStatus(written), 1);
      Append(metrics, trainer::EventLine(trainer::MetricsEvent{UnixSeconds(), trainer::EndInfo{summary}}));
    }
    Exit(ExitStatus{0, 0});
  }

  const SimulatedRankOptions options_;
  const RankLaunch launch_;
  int rank_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool killed_ = false, terminated_ = false;
  std::optional<ExitStatus> exit_;
  std::thread thread_;  // last: starts once the rest is built
};

}  // namespace

absl::StatusOr<std::unique_ptr<RunningRank>> SimulatedRankLauncher::Launch(const RankLaunch& launch) {
  if (FlagValue(launch.argv, "--config").empty()) return absl::InvalidArgumentError("no --config to simulate");
  launched_.fetch_add(1);
  return std::unique_ptr<RunningRank>(std::make_unique<SimulatedRank>(options_, launch));
}

}  // namespace d2lora::worker
