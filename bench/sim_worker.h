// A simulated worker: a `d2lora-worker` daemon's conversation with the
// coordinator, over real gRPC on a connection of its own, without the training.
// It mirrors worker/daemon/worker_daemon.cc and assignment_runner.cc:
//
//   - RegisterWorker (retried with backoff while refused for a transient
//     reason); heartbeats every heartbeat_interval_ms the coordinator answers,
//     naming the assignments in progress; STOP commands stop them;
//   - when a heartbeat says work_available: LeaseAssignment until a call comes
//     back empty or every slot is busy; a finished assignment wakes the loop at
//     once (heartbeat, then lease), as the daemon's on_done does;
//   - each assignment on a thread of its own: DownloadInput for every input
//     (size and sha256 checked), ReportProgress(started), progress reports with
//     metrics on rank 0 every report_interval for run_time, a final report,
//     optionally the uploads the daemon makes (rank 0: metrics.jsonl,
//     summary.json, spec.yaml; every rank: its log), then CompleteAssignment
//     (rank 0 with a summary). Stopped: FailAssignment(ABORTED, retryable).
//   - NOT_FOUND from a heartbeat or lease: every assignment is dropped
//     unreported and the worker registers again.
//
// Every call is timed into RpcStats under its RPC name.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/latency_stats.h"
#include "common/rpc/channel.h"
#include "d2lora/v1/worker_service.grpc.pb.h"

namespace d2lora::bench {

struct LeaseEvent {
  std::string worker_id;
  v1::Assignment assignment;
  absl::Time leased_at;  // when LeaseAssignment returned it
};

struct SimWorkerOptions {
  rpc::ClientOptions coordinator;  // endpoint and token (plaintext)
  std::string name = "sim-worker";
  int slots = 1;
  std::string host = "127.0.0.1";
  int rendezvous_port_first = 29500;
  int rendezvous_port_last = 29999;
  // Before the first registration: spreads a fleet's heartbeats over the
  // interval, as workers started at different times are.
  absl::Duration start_delay = absl::ZeroDuration();
  absl::Duration run_time = absl::Milliseconds(200);     // from started to the final report
  absl::Duration report_interval = absl::Seconds(1);     // the daemon's default
  bool download_inputs = true;
  bool upload_outputs = false;  // the daemon's uploads (tiny files here)
  RpcStats* stats = nullptr;    // may be null; must outlive the worker
  // Called from the worker's threads; must be thread-safe and quick.
  std::function<void(const LeaseEvent&)> on_lease;
  std::function<void(const v1::Assignment&, const absl::Status&)> on_done;  // OK: completed
};

class SimWorker {
 public:
  struct Counters {
    int64_t registrations = 0, heartbeats = 0, leases = 0, completed = 0, failed = 0, dropped = 0;
  };

  static absl::StatusOr<std::unique_ptr<SimWorker>> Create(SimWorkerOptions options);
  SimWorker(const SimWorker&) = delete;
  SimWorker& operator=(const SimWorker&) = delete;
  ~SimWorker();  // Stop()

  void Start();
  // Stops the loop; assignments in progress are reported failed (ABORTED).
  void Stop();
  // Until registered (true) or `timeout` (false).
  bool WaitRegistered(absl::Duration timeout);

  std::string worker_id() const;
  int active() const;  // assignments in progress
  Counters counters() const;

 private:
  struct Runner {
    v1::Assignment assignment;
    std::thread thread;
    std::atomic<bool> done{false};
    std::atomic<bool> stop{false};
    std::atomic<bool> abandon{false};
  };

  explicit SimWorker(SimWorkerOptions options);
  void Loop();
  absl::Status Register();
  void Heartbeat(bool lease);
  void Lease();
  void StartRunner(const v1::Assignment& assignment);
  void Run(Runner& runner);
  absl::Status RunAssignment(Runner& runner);
  absl::Status DownloadInputs(const v1::Assignment& a);
  absl::Status Report(Runner& runner, bool started, int64_t step, bool with_metrics);
  absl::Status Upload(const v1::Assignment& a, const std::string& name, const std::string& data);
  absl::Status End(Runner& runner, const absl::Status& outcome);
  void Forget();
  void ReapFinished();
  void WaitFor(absl::Duration timeout);  // until then, a wake or Stop()
  void Wake();
  void Prepare(grpc::ClientContext& context, absl::Duration timeout) const;
  template <typename Call>
  absl::Status Timed(const char* op, Call call);
  // Retries `call` while the coordinator is unreachable (UNAVAILABLE,
  // DEADLINE_EXCEEDED), up to `attempts` calls, as the daemon's final calls are.
  absl::Status Retry(const std::function<absl::Status()>& call, int attempts);

  const SimWorkerOptions options_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool wake_ = false;
  std::string worker_id_;
  absl::Duration heartbeat_interval_ = absl::Seconds(5);
  std::map<std::string, std::unique_ptr<Runner>> runners_;
  Counters counters_;
  std::thread loop_;
};

}  // namespace d2lora::bench
