// A whole service on one host for the coordinator benches: a real
// CoordinatorServer in-process (127.0.0.1, a random bearer token, the SQLite job
// store and the local artifact store in a temporary data directory on disk, as
// in production), the tiny bench inputs uploaded, and N real worker daemons
// (worker/daemon/worker_daemon.h, 1 slot each, every call on a connection of
// its own, timed by an interceptor) whose ranks are simulated
// (rank_launcher_simulated.h: a step every 50 ms for run_time, then the
// outputs the trainer writes). Their registrations are spread over one
// heartbeat interval, as a fleet started at different times would have them.
// The daemons' own log goes to DATA_DIR/workers.log.
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

#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/latency_stats.h"
#include "bench/sim_client.h"
#include "server/coordinator_server.h"
#include "worker/daemon/worker_daemon.h"

namespace d2lora::bench {

struct LeaseEvent {
  std::string worker_id;
  v1::Assignment assignment;
  absl::Time leased_at;  // when LeaseAssignment returned it
};

struct SimClusterOptions {
  int workers = 100;
  absl::Duration heartbeat_interval = absl::Seconds(2);  // the coordinator's default
  absl::Duration run_time = absl::Milliseconds(200);     // of a simulated rank
  absl::Duration report_interval = absl::Seconds(1);     // the daemon's default
  absl::Duration lease_wait = absl::Seconds(10);         // the daemon's default long poll; 0 = lease at heartbeats
  bool keep_data = false;                                // keep the data directory
  // Called on the daemons' threads; thread-safe and quick.
  std::function<void(const LeaseEvent&)> on_lease;
  std::function<void(const v1::Assignment&)> on_done;  // reported (or dropped)
};

class SimCluster {
 public:
  // Starts everything and waits until every worker has registered.
  static absl::StatusOr<std::unique_ptr<SimCluster>> Start(const SimClusterOptions& options);
  ~SimCluster();  // Stop(), then the data directory goes (unless keep_data)

  // Stops the workers (assignments in progress report ABORTED), then the server.
  void Stop();
  void StopWorkers();
  void StopServer();  // waits for it to shut down (its job store is closed)

  // The coordinator's SQLite job store (open it only after StopServer()).
  std::string store_path() const { return data_dir_ + "/data/jobs.db"; }
  // A counter or gauge of the coordinator's metrics (0 if absent).
  double Metric(const std::string& name) const;

  const rpc::ClientOptions& client() const { return client_; }  // endpoint and token
  const BenchInputs& inputs() const { return inputs_; }
  const std::string& data_dir() const { return data_dir_; }
  const SimClusterOptions& options() const { return options_; }
  RpcStats& worker_stats() { return worker_stats_; }
  int workers() const { return static_cast<int>(workers_.size()); }

  int64_t CompletedByWorkers() const { return completed_.load(); }
  bool AnyWorkerBusy() const { return leased_.load() > done_.load(); }

 private:
  // One daemon, run on a thread of its own from `start_delay` on.
  struct Worker {
    std::shared_ptr<prometheus::Registry> registry;  // the daemon's metrics
    std::unique_ptr<worker::WorkerDaemon> daemon;
    std::thread thread;
  };

  explicit SimCluster(const SimClusterOptions& options) : options_(options) {}
  absl::Status StartWorker(int index);

  const SimClusterOptions options_;
  std::string data_dir_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<server::CoordinatorServer> server_;
  rpc::ClientOptions client_;
  BenchInputs inputs_;
  RpcStats worker_stats_;
  std::shared_ptr<worker::RankLauncher> launcher_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<int64_t> leased_{0}, done_{0}, completed_{0};
  std::mutex mu_;
  std::condition_variable registered_cv_;
  int registered_ = 0;  // guarded by mu_
};

// Every job in one of `states` (all when empty) whose labels include `labels`,
// through ListJobs pages of 1000.
absl::StatusOr<std::vector<v1::Job>> ListAllJobs(JobClient& client, const std::vector<v1::JobState>& states,
                                                 const std::map<std::string, std::string>& labels);

}  // namespace d2lora::bench
