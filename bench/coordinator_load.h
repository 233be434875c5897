// A load generator against a SimCluster (coordinator_bench --mode load): the
// workers heartbeat, lease, report progress and complete jobs as the daemon
// does, while `clients` threads, each on its own connection, make `rps` calls
// per second in all (offered on a fixed schedule, evenly spaced) for
// `duration`: SubmitJob 20%, GetJob 40%, ListJobs 20%, WatchJob 20% (without
// follow; Get and Watch on jobs already acknowledged). A WatchJob is counted
// once per stream (its latency: open to the end of the stream); the events
// streamed are counted apart. Measures the RPCs/s reached against those
// offered, p50/p99/max latency and errors by status code per RPC and overall
// (the clients' and the workers').
//
// Then the consistency check, which stops the cluster: the workers stop, the
// acknowledged jobs are listed through ListJobs (each must appear exactly
// once, in a valid state), the coordinator shuts down, and the SQLite store
// is opened again from disk: every acknowledged job must be there in the state
// the coordinator last listed, its events numbered 1..n without a gap, the
// last state change naming that state.
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

// What the store says after the run (all counts of jobs).
struct Consistency {
  int64_t acknowledged = 0;
  // ListJobs (label bench-phase=load) after the workers stopped.
  int64_t listed = 0;             // acknowledged jobs listed
  int64_t listed_twice = 0;       // ids listed more than once
  int64_t invalid_state = 0;      // acknowledged jobs listed in no valid state
  int64_t unacknowledged = 0;     // listed, never acknowledged (a submit that failed)
  // The store reopened from disk after the coordinator shut down.
  bool reopened = false;
  int64_t in_store = 0;           // acknowledged jobs in the store
  int64_t state_mismatch = 0;     // store state != the state last listed
  int64_t event_gaps = 0;         // events not 1..n, or the last state change disagrees
  std::map<v1::JobState, int64_t> states;  // of the acknowledged jobs, in the store

  bool ok() const {
    return listed == acknowledged && listed_twice == 0 && invalid_state == 0 && reopened &&
           in_store == acknowledged && state_mismatch == 0 && event_gaps == 0;
  }
};

struct LoadResult {
  double seconds = 0;
  int64_t offered = 0;             // client calls the schedule had in `seconds`
  int64_t behind = 0;              // calls started more than one period late
  int64_t watch_events = 0;        // events the WatchJob streams carried
  std::vector<std::string> ids;    // acknowledged submissions
  std::map<std::string, RpcStats::Op> client_ops, worker_ops;
  Consistency consistency;
  // Group commit: store transactions and the changes they carried.
  int64_t transactions = 0, changes = 0;

  int64_t client_calls() const;
  int64_t worker_calls() const;
  int64_t errors() const;
  bool accounted() const { return consistency.ok(); }
};

// Runs the load, then the consistency check, which stops `cluster`.
absl::StatusOr<LoadResult> RunLoad(SimCluster& cluster, const LoadOptions& options);

void PrintLoad(const SimCluster& cluster, const LoadOptions& options, const LoadResult& r, std::ostream& out);
nlohmann::json LoadJson(const SimCluster& cluster, const LoadOptions& options, const LoadResult& r);

}  // namespace d2lora::bench
