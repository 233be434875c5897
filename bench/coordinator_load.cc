#include "bench/coordinator_load.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace d2lora::bench {
namespace {

int64_t Calls(const std::map<std::string, RpcStats::Op>& ops) {
  int64_t n = 0;
  for (const auto& [name, op] : ops) {
    n += op.ok;
    for (const auto& [code, e] : op.errors) n += e;
  }
  return n;
}

int64_t Errors(const std::map<std::string, RpcStats::Op>& ops) {
  int64_t n = 0;
  for (const auto& [name, op] : ops) {
    for (const auto& [code, e] : op.errors) n += e;
  }
  return n;
}

void PrintOps(const std::string& who, const std::map<std::string, RpcStats::Op>& ops, double seconds,
              std::ostream& out) {
  for (const auto& [name, op] : ops) {
    int64_t errors = 0;
    std::string codes;
    for (const auto& [code, e] : op.errors) {
      errors += e;
      absl::StrAppend(&codes, codes.empty() ? " (" : ", ", code, " ", e);
    }
    if (!codes.empty()) codes += ")";
    const LatencySummary l = Summarize(op.seconds);
    out << absl::StrFormat("   %-7s %-18s %9.1f/s  p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms  errors %d%s\n", who, name,
                           static_cast<double>(op.ok + errors) / std::max(1e-9, seconds), l.p50 * 1000, l.p99 * 1000,
                           l.max * 1000, errors, codes);
  }
}

}  // namespace

int64_t LoadResult::client_calls() const { return Calls(client_ops); }
int64_t LoadResult::worker_calls() const { return Calls(worker_ops); }
int64_t LoadResult::errors() const { return Errors(client_ops) + Errors(worker_ops); }

absl::StatusOr<LoadResult> RunLoad(SimCluster& cluster, const LoadOptions& options) {
  if (options.rps <= 0 || options.clients < 1) return absl::InvalidArgumentError("rps and clients: must be > 0");
  LoadResult r;
  RpcStats client_stats;
  cluster.worker_stats().Reset();
  const v1::SubmitJobRequest submit = BenchJobRequest(cluster.inputs(), 1, {{"bench-phase", "load"}});
  std::mutex mu;
  std::vector<std::string> known;  // acknowledged, for Get and Watch
  std::atomic<int64_t> behind{0};
  const int k = options.clients;
  const absl::Duration period = absl::Seconds(k / options.rps);  // between one client's calls
  const absl::Time start = absl::Now(), end = start + options.duration;
  static constexpr char kMix[] = "SGGLWGSGLW";  // SubmitJob 2, GetJob 4, ListJobs 2, WatchJob 2 in 10
  std::vector<std::thread> threads;
  for (int i = 0; i < k; ++i) {
    threads.emplace_back([&, i] {
      JobClient client(cluster.client(), &client_stats);
      std::mt19937_64 rng(static_cast<uint64_t>(i) + 1);
      int64_t n = 0;
      for (absl::Time next = start + period * i / k; next < end; next += period, ++n) {
        const absl::Time now = absl::Now();
        if (now >= end) break;
        if (now < next) absl::SleepFor(next - now);
        if (now > next + period) ++behind;
        std::string id;
        {
          std::lock_guard<std::mutex> lock(mu);
          if (!known.empty()) id = known[rng() % known.size()];
        }
        char op = kMix[(n + i) % 10];
        if (id.empty() && (op == 'G' || op == 'W')) op = 'S';
        switch (op) {
          case 'S': {
            auto job = client.Submit(submit);
            if (job.ok()) {
              std::lock_guard<std::mutex> lock(mu);
              known.push_back(job->id());
            }
            break;
          }
          case 'G': client.Get(id).IgnoreError(); break;
          case 'L': client.List(v1::ListJobsRequest()).IgnoreError(); break;
          default: client.Watch(id, 0).IgnoreError(); break;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  r.behind = behind;
  r.client_ops = client_stats.Snapshot();
  r.worker_ops = cluster.worker_stats().Snapshot();
  r.ids = known;

  JobClient client(cluster.client(), nullptr);
  auto stored = ListAllJobs(client, {}, {{"bench-phase", "load"}});
  if (!stored.ok()) return stored.status();
  std::map<std::string, v1::JobState> state_of;
  for (const v1::Job& j : *stored) state_of[j.id()] = j.state();
  for (const std::string& id : r.ids) {
    auto it = state_of.find(id);
    if (it == state_of.end()) continue;
    ++r.found;
    ++r.states[it->second];
  }
  return r;
}

void PrintLoad(const SimCluster& cluster, const LoadOptions& options, const LoadResult& r, std::ostream& out) {
  out << absl::StrFormat(
      "coordinator_bench --mode load: %d simulated workers (heartbeat every %s), %d clients, target %.0f calls/s, "
      "%.1f s\n   clients %.1f RPC/s (%d calls started behind schedule), workers %.1f RPC/s, errors %d\n",
      cluster.options().workers, absl::FormatDuration(cluster.options().heartbeat_interval), options.clients,
      options.rps, r.seconds, static_cast<double>(r.client_calls()) / std::max(1e-9, r.seconds), r.behind,
      static_cast<double>(r.worker_calls()) / std::max(1e-9, r.seconds), r.errors());
  PrintOps("client", r.client_ops, r.seconds, out);
  PrintOps("worker", r.worker_ops, r.seconds, out);
  std::string states;
  for (const auto& [state, n] : r.states) {
    absl::StrAppend(&states, states.empty() ? "" : ", ", v1::JobState_Name(state), " ", n);
  }
  out << absl::StrFormat("   accounting: %d of %d acknowledged jobs in the store (%s): %s\n", r.found, r.ids.size(),
                         states, r.accounted() ? "ok" : "MISMATCH");
}

nlohmann::json LoadJson(const SimCluster& cluster, const LoadOptions& options, const LoadResult& r) {
  nlohmann::json j;
  j["bench"] = "coordinator-load";
  j["config"] = {{"workers", cluster.options().workers},
                 {"clients", options.clients},
                 {"seconds", absl::ToDoubleSeconds(options.duration)},
                 {"target_rps", options.rps},
                 {"heartbeat_interval_s", absl::ToDoubleSeconds(cluster.options().heartbeat_interval)},
                 {"run_time_ms", absl::ToDoubleMilliseconds(cluster.options().run_time)},
                 {"uploads", cluster.options().uploads},
                 {"mix", {{"SubmitJob", 0.2}, {"GetJob", 0.4}, {"ListJobs", 0.2}, {"WatchJob", 0.2}}}};
  j["seconds"] = r.seconds;
  j["client_rps"] = static_cast<double>(r.client_calls()) / std::max(1e-9, r.seconds);
  j["worker_rps"] = static_cast<double>(r.worker_calls()) / std::max(1e-9, r.seconds);
  j["behind_schedule"] = r.behind;
  j["errors"] = r.errors();
  j["client_rpcs"] = RpcStats::ToJson(r.client_ops);
  j["worker_rpcs"] = RpcStats::ToJson(r.worker_ops);
  nlohmann::json by_state = nlohmann::json::object();
  for (const auto& [state, n] : r.states) by_state[v1::JobState_Name(state)] = n;
  j["accounting"] = {{"acknowledged", r.ids.size()}, {"found", r.found}, {"states", by_state}, {"ok", r.accounted()}};
  return j;
}

}  // namespace d2lora::bench
