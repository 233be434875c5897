// Latency samples and their summaries for the coordinator benches: the
// nearest-rank percentile, a summary (count, mean, p50/p90/p99, min, max), and
// RpcStats, a thread-safe recorder of latencies and error codes per operation
// ("SubmitJob", "Heartbeat", ...) that simulated workers and clients share.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace d2lora::bench {

// The nearest-rank percentile: the smallest sample x such that at least p% of
// the samples are <= x (p in [0, 100]; p = 0 gives the minimum). 0 for an
// empty sample. `sample` need not be sorted.
double Percentile(std::vector<double> sample, double p);

struct LatencySummary {
  int64_t count = 0;
  double mean = 0, min = 0, p50 = 0, p90 = 0, p99 = 0, max = 0;
};

LatencySummary Summarize(std::vector<double> sample);

// {"count", "mean", "min", "p50", "p90", "p99", "max"}, each value times `scale`
// (1000 turns seconds into milliseconds); count unscaled.
nlohmann::json ToJson(const LatencySummary& s, double scale = 1000.0);

// Latencies (seconds) and outcomes per operation, from any thread.
class RpcStats {
 public:
  struct Op {
    std::vector<double> seconds;  // of the successful calls
    int64_t ok = 0;
    std::map<std::string, int64_t> errors;  // by status code name ("UNAVAILABLE")
    std::map<std::string, std::string> first_error;  // by code: the first message seen, to say why
  };

  void Record(const std::string& op, absl::Duration latency, const absl::Status& status);
  // A copy of everything recorded since the last Reset.
  std::map<std::string, Op> Snapshot() const;
  void Reset();

  // {"OP": {"ok", "errors": {CODE: n}, "first_error": {CODE: message}, "latency_ms": ToJson(...)}, ...}
  static nlohmann::json ToJson(const std::map<std::string, Op>& ops);

 private:
  mutable std::mutex mu_;
  std::map<std::string, Op> ops_;
};

}  // namespace d2lora::bench
