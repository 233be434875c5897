#include "bench/latency_stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/rpc/status_convert.h"

namespace d2lora::bench {

double Percentile(std::vector<double> sample, double p) {
  if (sample.empty()) return 0;
  std::sort(sample.begin(), sample.end());
  const double n = static_cast<double>(sample.size());
  const double rank = std::ceil(std::clamp(p, 0.0, 100.0) / 100.0 * n);  // 1-based
  const size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return sample[std::min(index, sample.size() - 1)];
}

LatencySummary Summarize(std::vector<double> sample) {
  LatencySummary s;
  if (sample.empty()) return s;
  std::sort(sample.begin(), sample.end());
  s.count = static_cast<int64_t>(sample.size());
  s.mean = std::accumulate(sample.begin(), sample.end(), 0.0) / static_cast<double>(sample.size());
  s.min = sample.front();
  s.max = sample.back();
  s.p50 = Percentile(sample, 50);
  s.p90 = Percentile(sample, 90);
  s.p99 = Percentile(sample, 99);
  return s;
}

nlohmann::json ToJson(const LatencySummary& s, double scale) {
  return {{"count", s.count},     {"mean", s.mean * scale}, {"min", s.min * scale}, {"p50", s.p50 * scale},
          {"p90", s.p90 * scale}, {"p99", s.p99 * scale},   {"max", s.max * scale}};
}

void RpcStats::Record(const std::string& op, absl::Duration latency, const absl::Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  Op& o = ops_[op];
  if (status.ok()) {
    ++o.ok;
    o.seconds.push_back(absl::ToDoubleSeconds(latency));
  } else {
    const std::string code = rpc::StatusCodeName(status.code());
    if (o.errors[code]++ == 0) o.first_error[code] = std::string(status.message().substr(0, 500));
  }
}

std::map<std::string, RpcStats::Op> RpcStats::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ops_;
}

void RpcStats::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  ops_.clear();
}

nlohmann::json RpcStats::ToJson(const std::map<std::string, Op>& ops) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, op] : ops) {
    nlohmann::json errors = nlohmann::json::object();
    nlohmann::json first = nlohmann::json::object();
    for (const auto& [code, n] : op.errors) errors[code] = n;
    for (const auto& [code, message] : op.first_error) first[code] = message;
    j[name] = {{"ok", op.ok},
               {"errors", errors},
               {"first_error", first},
               {"latency_ms", bench::ToJson(Summarize(op.seconds))}};
  }
  return j;
}

}  // namespace d2lora::bench
