// A load generator against a SimCluster (coordinator_bench --mode load): the
// workers heartbeat, lease and run jobs while `clients` threads, each on its
// own connection, make `rps` calls per second in all (open loop, evenly
// spaced) for `duration`: SubmitJob 20%, GetJob 40%, ListJobs 20%, WatchJob
// 20% (without follow; Get and Watch on jobs already acknowledged). Measures
// the RPCs/s reached, latency and errors per RPC (the clients' and the
// workers'), and finds every acknowledged job in the store afterwards.
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/latency_stats.h"
#include "bench/sim_cluster.h"

namespace d2lora::bench {

struct LoadOptions {
  double rps = 1000;
  int clients = 32;  // synchronous calls: concurrency enough for rps x latency
  absl::Duration duration = absl::Seconds(20);
};

struct LoadResult {
  double seconds = 0;
  int64_t behind = 0;              // calls started more than one period late
  std::vector<std::string> ids;    // acknowledged submissions
  std::map<std::string, RpcStats::Op> client_ops, worker_ops;
  std::map<v1::JobState, int64_t> states;  // of the acknowledged jobs found at the end
  int64_t found = 0;

  int64_t client_calls() const;
  int64_t worker_calls() const;
  int64_t errors() const;
  bool accounted() const { return found == static_cast<int64_t>(ids.size()); }
};

absl::StatusOr<LoadResult> RunLoad(SimCluster& cluster, const LoadOptions& options);

void PrintLoad(const SimCluster& cluster, const LoadOptions& options, const LoadResult& r, std::ostream& out);
nlohmann::json LoadJson(const SimCluster& cluster, const LoadOptions& options, const LoadResult& r);

}  // namespace d2lora::bench
