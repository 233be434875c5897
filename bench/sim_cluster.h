// A whole service on one host for the coordinator benches: a real
// CoordinatorServer in-process (127.0.0.1, a random bearer token, the SQLite job
// store and the local artifact store in a temporary data directory on disk, as
// in production), the tiny bench inputs uploaded, and N simulated workers
// (sim_worker.h, 1 slot each) registered, their heartbeats spread over one
// interval as a fleet started at different times would have them.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/latency_stats.h"
#include "bench/sim_client.h"
#include "bench/sim_worker.h"
#include "server/coordinator_server.h"

namespace d2lora::bench {

struct SimClusterOptions {
  int workers = 100;
  absl::Duration heartbeat_interval = absl::Seconds(2);  // the coordinator's default
  absl::Duration run_time = absl::Milliseconds(200);     // of a simulated rank
  bool uploads = false;                                  // workers upload what the daemon does
  bool keep_data = false;                                // keep the data directory
  // Handed to every worker (sim_worker.h).
  std::function<void(const LeaseEvent&)> on_lease;
  std::function<void(const v1::Assignment&, const absl::Status&)> on_done;
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
  const std::vector<std::unique_ptr<SimWorker>>& workers() const { return workers_; }

  int64_t CompletedByWorkers() const;
  bool AnyWorkerBusy() const;

 private:
  explicit SimCluster(const SimClusterOptions& options) : options_(options) {}

  const SimClusterOptions options_;
  std::string data_dir_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<server::CoordinatorServer> server_;
  rpc::ClientOptions client_;
  BenchInputs inputs_;
  RpcStats worker_stats_;
  std::vector<std::unique_ptr<SimWorker>> workers_;
};

// Every job in one of `states` (all when empty) whose labels include `labels`,
// through ListJobs pages of 1000.
absl::StatusOr<std::vector<v1::Job>> ListAllJobs(JobClient& client, const std::vector<v1::JobState>& states,
                                                 const std::map<std::string, std::string>& labels);

}  // namespace d2lora::bench
