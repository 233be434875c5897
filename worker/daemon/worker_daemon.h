// The worker daemon: registers its slots with the coordinator, heartbeats,
// leases assignments while it has free slots and runs each one
// (assignment_runner.h), following the coordinator's commands.
//
//   - Registration is retried with backoff while the coordinator is
//     unreachable; a first registration refused outright (bad token, bad
//     request) ends Run with that error.
//   - Heartbeat every heartbeat_interval_ms (± heartbeat_jitter, so that a
//     fleet's heartbeats spread out) with the assignments in progress (from
//     lease to their final report). STOP stops one.
//   - Leases on a thread of its own while a slot is free: LeaseAssignment as a
//     long poll (lease_wait), so an assignment starts as soon as the
//     coordinator places it, not at the next heartbeat. A coordinator that
//     answers at once (no long poll) is asked again when a heartbeat says
//     work_available; with lease_wait 0 the heartbeat thread leases that way.
//   - NOT_FOUND from the coordinator (it declared this worker dead): every
//     rank is killed, its assignment dropped unreported, and the worker
//     registers again. UNAVAILABLE / DEADLINE_EXCEEDED: the ranks keep running
//     and the calls are retried under the same worker id.
//   - Shutdown(): every rank is stopped (SIGTERM, SIGKILL after the grace) and
//     reported failed with ABORTED, retryable; the worker leaves the
//     coordinator (LeaveWorker: nothing more is placed on it); then Run returns.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <grpcpp/client_context.h>
#include <prometheus/registry.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/rpc/channel.h"
#include "d2lora/v1/worker_service.grpc.pb.h"
#include "worker/daemon/assignment_runner.h"
#include "worker/daemon/coordinator_client.h"
#include "worker/daemon/rank_launcher.h"
#include "worker/daemon/worker_metrics.h"

namespace d2lora::worker {

// `interval` x a uniform factor in [1 - jitter, 1 + jitter] (jitter clamped to
// [0, 0.5]): heartbeats of workers started together drift apart.
absl::Duration JitteredInterval(absl::Duration interval, double jitter, std::mt19937_64& rng);

class WorkerDaemon {
 public:
  struct Options {
    rpc::ClientOptions coordinator;
    int slots = 1;
    std::string device = "cpu";  // "cpu" | "cuda" (slot i is cuda:i)
    // Memory each slot advertises (the coordinator places a rank only where its
    // memory plan fits). 0: the machine's (cgroup-capped) memory split over the
    // slots on cpu; GPU i's memory for slot i on cuda, read with `nvidia_smi`.
    int64_t slot_memory_bytes = 0;
    std::string nvidia_smi = "nvidia-smi";
    std::string work_dir;
    std::string advertise_host;  // "" = 127.0.0.1 for a loopback coordinator, else the host name
    std::string name;            // "" = HOSTNAME-PID
    int rendezvous_port_first = 29500;
    int rendezvous_port_last = 29999;
    std::string trainer;  // the d2lora binary (host_info.h FindTrainer)
    // How ranks run: nullptr = the trainer as a child process
    // (rank_launcher_process.h); the benchmarks pass a simulated launcher.
    std::shared_ptr<RankLauncher> launcher;
    absl::Duration stop_grace = absl::Seconds(30);
    absl::Duration report_interval = absl::Seconds(1);
    bool clean_work_dirs = false;  // remove an assignment's directory once reported
    std::map<std::string, std::string> labels;
    absl::Duration lease_wait = absl::Seconds(10);  // LeaseAssignment's long poll; 0 = lease on heartbeats
    double heartbeat_jitter = 0.1;                  // each wait is the interval x (1 ± this), uniform
    // Observers (benchmarks, tests), called on the daemon's threads; quick and
    // thread-safe: an assignment as its lease returns (not one leased again
    // while it runs, which is ignored), and once it is reported
    // (or dropped: kStopped).
    std::function<void(const v1::Assignment&)> on_lease;
    std::function<void(const v1::Assignment&, AssignmentResult)> on_done;
  };

  // Checks the options, creates the work directory and the channel.
  static absl::StatusOr<std::unique_ptr<WorkerDaemon>> Create(Options options, prometheus::Registry& registry);
  // The same over a stub of the caller's (tests).
  static absl::StatusOr<std::unique_ptr<WorkerDaemon>> Create(
      Options options, prometheus::Registry& registry, std::shared_ptr<v1::WorkerService::StubInterface> stub);

  WorkerDaemon(const WorkerDaemon&) = delete;
  WorkerDaemon& operator=(const WorkerDaemon&) = delete;
  ~WorkerDaemon();

  // Runs until Shutdown(). `on_registered` is called with the worker id after
  // each successful registration.
  absl::Status Run(const std::function<void(const std::string& worker_id)>& on_registered = {});
  // Thread-safe (not async-signal-safe: call it from a signal-waiting thread).
  void Shutdown();

  std::string worker_id() const;
  // What RegisterWorker sends.
  v1::RegisterWorkerRequest RegistrationRequest() const;

 private:
  WorkerDaemon(Options options, prometheus::Registry& registry, std::shared_ptr<v1::WorkerService::StubInterface> stub,
               std::vector<int64_t> slot_memory);

  absl::Status Register();
  void Heartbeat(bool lease);
  void Lease();
  // The lease thread (lease_wait > 0): long polls while a slot is free.
  enum class LeaseResult { kLeased, kNone, kFailed };
  void LeaseLoop();
  LeaseResult LeaseOnce(const std::string& worker_id);
  void WaitLease(absl::Duration timeout);  // until then, Wake() or Shutdown()
  void StartRunner(const v1::Assignment& assignment);
  void Forget(const std::string& why);  // NOT_FOUND: drop everything, register again
  void ReapFinished();
  void AbandonAll();
  void Leave();  // LeaveWorker, at the end of a shutdown
  void StopAll(const std::string& reason, absl::Time give_up);
  void UpdateBusy();
  int ActiveRunners() const;
  std::vector<std::string> RunningIds() const;
  void WaitFor(absl::Duration timeout);  // until then, Wake() or Shutdown()
  void Wake();
  bool shutting_down() const;

  const Options options_;
  CoordinatorClient client_;
  WorkerMetrics metrics_;
  const int64_t slot_cores_;
  const std::vector<int64_t> slot_memory_;  // bytes each slot advertises, by index

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool shutdown_ = false;
  bool wake_ = false;
  std::condition_variable lease_cv_;
  bool lease_wake_ = false;
  grpc::ClientContext* lease_context_ = nullptr;  // the long poll in flight (Shutdown cancels it)
  bool lease_failing_ = false;
  std::mt19937_64 jitter_rng_{std::random_device{}()};
  std::string worker_id_;
  absl::Duration heartbeat_interval_ = absl::Seconds(5);
  bool heartbeat_failing_ = false;
  std::map<std::string, std::unique_ptr<AssignmentRunner>> runners_;  // by assignment id
};

}  // namespace d2lora::worker
