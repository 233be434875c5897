#include "bench/coordinator_load.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/job_store_sqlite.h"

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

// Every operation's calls as one ("all"). LeaseAssignment's calls count but
// not their durations: a long poll lasts until work is placed or its wait is
// over, by design (its own row shows them).
RpcStats::Op Merged(const std::map<std::string, RpcStats::Op>& ops) {
  RpcStats::Op all;
  for (const auto& [name, op] : ops) {
    all.ok += op.ok;
    for (const auto& [code, n] : op.errors) all.errors[code] += n;
    if (absl::EndsWith(name, "LeaseAssignment")) continue;
    all.seconds.insert(all.seconds.end(), op.seconds.begin(), op.seconds.end());
  }
  return all;
}

void PrintOps(const std::string& who, std::map<std::string, RpcStats::Op> ops, double seconds,
              std::ostream& out) {
  if (ops.size() > 1) ops["(all)"] = Merged(ops);
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
  std::atomic<int64_t> behind{0}, watch_events{0};
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
          default: {
            auto events = client.Watch(id, 0);
            if (events.ok()) watch_events += *events;
            break;
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  // The calls the schedule had (a call is started late rather than dropped,
  // so a generator that falls behind makes fewer).
  r.offered = static_cast<int64_t>(std::llround(options.rps * absl::ToDoubleSeconds(options.duration)));
  r.behind = behind;
  r.watch_events = watch_events;
  r.client_ops = client_stats.Snapshot();
  r.worker_ops = cluster.worker_stats().Snapshot();
  r.ids = known;
  r.transactions = static_cast<int64_t>(cluster.Metric("d2lora_store_transactions_total"));
  r.changes = static_cast<int64_t>(cluster.Metric("d2lora_store_changes_total"));

  // Consistency: what the coordinator lists once the workers stopped ...
  Consistency& c = r.consistency;
  c.acknowledged = static_cast<int64_t>(r.ids.size());
  cluster.StopWorkers();
  JobClient client(cluster.client(), nullptr);
  auto listed = ListAllJobs(client, {}, {{"bench-phase", "load"}});
  if (!listed.ok()) return listed.status();
  const std::set<std::string> acknowledged(r.ids.begin(), r.ids.end());
  std::map<std::string, v1::JobState> state_of;
  for (const v1::Job& j : *listed) {
    if (!state_of.emplace(j.id(), j.state()).second) {
      ++c.listed_twice;
      continue;
    }
    if (!acknowledged.count(j.id())) {
      ++c.unacknowledged;
      continue;
    }
    ++c.listed;
    if (j.state() == v1::JOB_STATE_UNSPECIFIED || !v1::JobState_IsValid(j.state())) ++c.invalid_state;
  }
  // ... and what the store holds once it shut down, read from disk again.
  cluster.StopServer();
  auto store = server::SqliteJobStore::Create(cluster.store_path());
  if (!store.ok()) return store.status();
  auto stored = (*store)->Load();
  if (!stored.ok()) return stored.status();
  c.reopened = true;
  for (size_t i = 0; i < stored->jobs.size(); ++i) {
    const v1::Job& job = stored->jobs[i];
    if (!acknowledged.count(job.id())) continue;
    ++c.in_store;
    ++c.states[job.state()];
    auto it = state_of.find(job.id());
    if (it == state_of.end() || it->second != job.state()) ++c.state_mismatch;
    auto events = (*store)->ReadEvents(job.id(), 0, 1 << 20);
    if (!events.ok()) return events.status();
    bool gap = static_cast<int64_t>(events->size()) != stored->last_event_seq[i];
    v1::JobState last_state = v1::JOB_STATE_UNSPECIFIED;
    for (size_t k = 0; k < events->size(); ++k) {
      if ((*events)[k].seq() != static_cast<int64_t>(k) + 1) gap = true;
      if ((*events)[k].has_state()) last_state = (*events)[k].state().state();
    }
    if (gap || last_state != job.state()) ++c.event_gaps;
  }
  return r;
}

void PrintLoad(const SimCluster& cluster, const LoadOptions& options, const LoadResult& r, std::ostream& out) {
  out << absl::StrFormat(
      "coordinator_bench --mode load: %d worker daemons with simulated ranks (heartbeat every %s), %d clients, target %.0f calls/s, "
      "%.1f s\n   clients: offered %.1f RPC/s, achieved %.1f RPC/s (%d calls started behind schedule); "
      "workers %.1f RPC/s; in all %.1f RPC/s, errors %d\n",
      cluster.options().workers, absl::FormatDuration(cluster.options().heartbeat_interval), options.clients,
      options.rps, r.seconds, options.rps,
      static_cast<double>(r.client_calls()) / std::max(1e-9, r.seconds), r.behind,
      static_cast<double>(r.worker_calls()) / std::max(1e-9, r.seconds),
      static_cast<double>(r.client_calls() + r.worker_calls()) / std::max(1e-9, r.seconds), r.errors());
  PrintOps("client", r.client_ops, r.seconds, out);
  PrintOps("worker", r.worker_ops, r.seconds, out);
  std::map<std::string, RpcStats::Op> all;
  for (const auto& [who, ops] : {std::pair{"client", &r.client_ops}, std::pair{"worker", &r.worker_ops}}) {
    for (const auto& [name, op] : *ops) all[absl::StrCat(who, " ", name)] = op;
  }
  const RpcStats::Op merged = Merged(all);
  PrintOps("all", {{"(all)", merged}}, r.seconds, out);
  out << "   (all) rows: the latencies leave out LeaseAssignment, a long poll (its own row has them)\n";
  out << absl::StrFormat("   WatchJob counted per stream; the streams carried %d events (%.1f/s)\n", r.watch_events,
                         static_cast<double>(r.watch_events) / std::max(1e-9, r.seconds));
  out << absl::StrFormat("   job store: %d transactions for %d changes (%.1f changes per fsync)\n", r.transactions,
                         r.changes, static_cast<double>(r.changes) / std::max<double>(1, r.transactions));
  const Consistency& c = r.consistency;
  std::string states;
  for (const auto& [state, n] : c.states) {
    absl::StrAppend(&states, states.empty() ? "" : ", ", v1::JobState_Name(state), " ", n);
  }
  out << absl::StrFormat(
      "   consistency: %d acknowledged; listed %d (%d twice, %d in no valid state, %d never acknowledged); "
      "store reopened from disk: %d there (%s), %d in another state than listed, %d with events out of order: %s\n",
      c.acknowledged, c.listed, c.listed_twice, c.invalid_state, c.unacknowledged, c.in_store, states,
      c.state_mismatch, c.event_gaps, c.ok() ? "ok" : "MISMATCH");
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
                 {"workers_are", "worker daemons, simulated ranks"},
                 {"mix", {{"SubmitJob", 0.2}, {"GetJob", 0.4}, {"ListJobs", 0.2}, {"WatchJob", 0.2}}}};
  j["seconds"] = r.seconds;
  j["offered_client_rps"] = options.rps;
  j["offered_client_calls"] = r.offered;
  j["client_rps"] = static_cast<double>(r.client_calls()) / std::max(1e-9, r.seconds);
  j["worker_rps"] = static_cast<double>(r.worker_calls()) / std::max(1e-9, r.seconds);
  j["total_rps"] = static_cast<double>(r.client_calls() + r.worker_calls()) / std::max(1e-9, r.seconds);
  j["watch"] = {{"counted", "per stream"}, {"events", r.watch_events}};
  j["store"] = {{"transactions", r.transactions}, {"changes", r.changes}};
  j["behind_schedule"] = r.behind;
  j["errors"] = r.errors();
  j["client_rpcs"] = RpcStats::ToJson(r.client_ops);
  j["worker_rpcs"] = RpcStats::ToJson(r.worker_ops);
  std::map<std::string, RpcStats::Op> all;
  for (const auto& [name, op] : r.client_ops) all["client " + name] = op;
  for (const auto& [name, op] : r.worker_ops) all["worker " + name] = op;
  j["all_rpcs"] = RpcStats::ToJson({{"client", Merged(r.client_ops)}, {"worker", Merged(r.worker_ops)},
                                    {"all", Merged(all)}});
  const Consistency& c = r.consistency;
  nlohmann::json by_state = nlohmann::json::object();
  for (const auto& [state, n] : c.states) by_state[v1::JobState_Name(state)] = n;
  j["accounting"] = {{"acknowledged", c.acknowledged},
                     {"found", c.in_store},
                     {"listed", c.listed},
                     {"listed_twice", c.listed_twice},
                     {"invalid_state", c.invalid_state},
                     {"unacknowledged", c.unacknowledged},
                     {"reopened", c.reopened},
                     {"state_mismatch", c.state_mismatch},
                     {"event_gaps", c.event_gaps},
                     {"states", by_state},
                     {"ok", c.ok()}};
  return j;
}

}  // namespace d2lora::bench
