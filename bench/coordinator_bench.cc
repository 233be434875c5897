// coordinator_bench: the coordinator's job throughput and scheduling latency
// against real worker daemons, everything real but the training: an in-process
// CoordinatorServer (gRPC on 127.0.0.1, bearer token, SQLite job store in WAL
// mode with synchronous=FULL and the local artifact store, both in a temporary
// data directory on disk; bench/sim_cluster.h), N real worker daemons with
// simulated ranks (worker/daemon/rank_launcher_simulated.h: the daemon
// registers, heartbeats at the interval the coordinator gives, leases,
// downloads the inputs, writes the rank's spec, reports, uploads the outputs
// and its log, completes; each on its own connection) and job clients
// (bench/sim_client.h), all over loopback.
//
//   1. submissions: --clients threads submit valid jobs (inputs uploaded once,
//      referenced as upload:ID) as fast as they can for --seconds, while the
//      workers run what gets scheduled: sustained submissions/s and the submit
//      latency. The jobs still queued at the end are cancelled (cancels/s).
//   2. scheduling latency, world size 1, 2, 4 (gang placement across 1-slot
//      workers): one job every --gap-ms x world_size (the same rank rate for
//      each) while at least world_size slots are free (at most half the fleet
//      busy), for --seconds each; per job the time from SubmitJob's answer to
//      the last rank's LeaseAssignment answer, split into "placed" (the job's
//      schedule_time, the coordinator's clock, the same host) and "lease wait"
//      (placed -> leased).
//   3. accounting: every acknowledged job is in the store (ListJobs), every
//      latency job SUCCEEDED, every submission-phase job SUCCEEDED or CANCELLED.
//
// --mode load, a load generator: the workers heartbeat, lease and run jobs
// while --clients threads make --rps calls per second in all (open loop, evenly
// spaced) for --seconds: SubmitJob 20%, GetJob 40%, ListJobs 20% and WatchJob
// 20% (without follow; Get and Watch on acknowledged jobs). Reports the RPCs/s
// reached, p50/p99 and errors per RPC (the clients' and the workers'), and
// checks that every acknowledged job is in the store.
//
// Prints a table; --json FILE writes the figures. --quick: shorter phases.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <google/protobuf/util/time_util.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/coordinator_load.h"
#include "bench/latency_stats.h"
#include "bench/sim_client.h"
#include "bench/sim_cluster.h"

namespace d2lora::bench {
namespace {

namespace fs = std::filesystem;
using google::protobuf::util::TimeUtil;

struct Config {
  int workers = 100;
  int clients = 4;
  double seconds = 0;  // 0 = 20, or 5 with --quick
  bool quick = false;
  std::string json;
  double heartbeat_interval = 2;  // the coordinator's default (d2lora-coordinator --heartbeat-interval)
  int lease_wait_ms = 10000;      // the worker's default long poll (d2lora-worker --lease-wait-seconds)
  int run_time_ms = 200;
  int gap_ms = 100;
  bool keep_data = false;
  std::string mode = "bench";  // "bench" | "load"
  double rps = 1000;           // --mode load
};

[[noreturn]] void Die(const std::string& what) {
  std::cerr << "coordinator_bench: error: " << what << std::endl;
  std::exit(1);
}

void Check(const absl::Status& s, const std::string& what) {
  if (!s.ok()) Die(absl::StrCat(what, ": ", s.ToString()));
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixNanos(TimeUtil::TimestampToNanoseconds(t));
}

void WriteJsonFile(const std::string& path, const nlohmann::json& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    if (!out.good()) Die(absl::StrCat("cannot write ", tmp));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) Die(absl::StrCat("cannot rename ", tmp, " to ", path, ": ", ec.message()));
}

// What the workers say about the latency phase's jobs.
class JobTracker {
 public:
  struct Job {
    std::vector<absl::Time> leases;  // one per rank
    int done = 0;
  };

  void set_active(bool on) {
    std::lock_guard<std::mutex> lock(mu_);
    active_ = on;
  }
  void Leased(const LeaseEvent& e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (active_) jobs_[e.assignment.job_id()].leases.push_back(e.leased_at);
  }
  void Done(const v1::Assignment& a) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!active_) return;
    jobs_[a.job_id()].done++;
    in_flight_--;
    cv_.notify_all();
  }
  // Reserves `ranks` slots once at most `cap - ranks` are in flight.
  bool Reserve(int ranks, int cap, absl::Time deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_until(lock, absl::ToChronoTime(deadline), [&] { return in_flight_ + ranks <= cap; })) return false;
    in_flight_ += ranks;
    return true;
  }
  void Release(int ranks) {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_ -= ranks;
    cv_.notify_all();
  }
  bool WaitIdle(absl::Time deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_until(lock, absl::ToChronoTime(deadline), [&] { return in_flight_ <= 0; });
  }
  std::map<std::string, Job> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    std::map<std::string, Job> out;
    out.swap(jobs_);
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool active_ = false;
  int in_flight_ = 0;
  std::map<std::string, Job> jobs_;
};

// The bench's view of the cluster: the coordinator, its workers, the clients'
// statistics and what the workers say about the latency phase's jobs.
struct Bench {
  Config config;
  JobTracker tracker;  // outlives the cluster, whose workers call it
  RpcStats client_stats;
  std::unique_ptr<SimCluster> cluster;
};

std::vector<v1::Job> ListAll(JobClient& client, const std::vector<v1::JobState>& states,
                             const std::map<std::string, std::string>& labels) {
  auto jobs = ListAllJobs(client, states, labels);
  Check(jobs.status(), "ListJobs");
  return *std::move(jobs);
}

// ---------------------------------------------------------------- 1. submissions

struct SubmitResult {
  int64_t ok = 0, errors = 0;
  double seconds = 0;
  std::vector<std::string> ids;
  LatencySummary latency;
  int64_t completed_meanwhile = 0;
  int64_t cancelled = 0;
  double cancel_seconds = 0, drain_seconds = 0;
  nlohmann::json rpcs, worker_rpcs;
};

SubmitResult RunSubmissions(Bench& b, double seconds) {
  SubmitResult r;
  b.client_stats.Reset();
  b.cluster->worker_stats().Reset();
  const int64_t completed_before = b.cluster->CompletedByWorkers();
  std::vector<std::unique_ptr<JobClient>> clients;
  for (int i = 0; i < b.config.clients; ++i) {
    clients.push_back(std::make_unique<JobClient>(b.cluster->client(), &b.client_stats));
  }
  const v1::SubmitJobRequest request = BenchJobRequest(b.cluster->inputs(), 1, {{"bench-phase", "submit"}});
  std::vector<std::vector<std::string>> ids(clients.size());
  std::atomic<int64_t> errors{0};
  const absl::Time start = absl::Now(), deadline = start + absl::Seconds(seconds);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < clients.size(); ++i) {
    threads.emplace_back([&, i] {
      while (absl::Now() < deadline) {
        auto job = clients[i]->Submit(request);
        if (job.ok()) {
          ids[i].push_back(job->id());
        } else {
          ++errors;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  r.completed_meanwhile = b.cluster->CompletedByWorkers() - completed_before;
  for (auto& v : ids) r.ids.insert(r.ids.end(), v.begin(), v.end());
  r.ok = static_cast<int64_t>(r.ids.size());
  r.errors = errors;
  const auto snapshot = b.client_stats.Snapshot();
  if (auto it = snapshot.find("SubmitJob"); it != snapshot.end()) r.latency = Summarize(it->second.seconds);
  r.rpcs = RpcStats::ToJson(snapshot);
  r.worker_rpcs = RpcStats::ToJson(b.cluster->worker_stats().Snapshot());

  // Drain: the jobs still queued are cancelled (in parallel), the rest run out.
  const absl::Time drain_start = absl::Now();
  std::vector<v1::Job> queued = ListAll(*clients[0], {v1::QUEUED}, {{"bench-phase", "submit"}});
  std::atomic<size_t> next{0};
  std::atomic<int64_t> cancelled{0};
  threads.clear();
  for (size_t i = 0; i < clients.size(); ++i) {
    threads.emplace_back([&, i] {
      for (size_t k = next++; k < queued.size(); k = next++) {
        if (clients[i]->Cancel(queued[k].id(), "bench: drained").ok()) ++cancelled;
      }
    });
  }
  for (auto& t : threads) t.join();
  r.cancelled = cancelled;
  r.cancel_seconds = absl::ToDoubleSeconds(absl::Now() - drain_start);
  const absl::Time give_up = absl::Now() + absl::Seconds(60) + absl::Seconds(5 * b.config.heartbeat_interval);
  while (true) {
    if (!b.cluster->AnyWorkerBusy() && ListAll(*clients[0], {v1::QUEUED, v1::SCHEDULED, v1::RUNNING}, {}).empty()) {
      break;
    }
    if (absl::Now() > give_up) Die("the submission phase's jobs did not drain within a minute");
    absl::SleepFor(absl::Milliseconds(100));
  }
  r.drain_seconds = absl::ToDoubleSeconds(absl::Now() - drain_start);
  return r;
}

// ---------------------------------------------------------------- 2. scheduling latency

struct LatencyResult {
  int world_size = 0;
  int64_t jobs = 0, unfinished = 0, leased_before_ack = 0;
  LatencySummary to_lease, placed, lease_wait, first_rank;
  std::vector<std::string> ids;
  nlohmann::json rpcs, worker_rpcs;
};

LatencyResult RunLatency(Bench& b, int world_size, double seconds) {
  LatencyResult r;
  r.world_size = world_size;
  b.client_stats.Reset();
  b.cluster->worker_stats().Reset();
  b.tracker.Take();
  b.tracker.set_active(true);
  JobClient client(b.cluster->client(), &b.client_stats);
  const v1::SubmitJobRequest request =
      BenchJobRequest(b.cluster->inputs(), world_size, {{"bench-phase", absl::StrCat("latency-", world_size)}});
  // At most half the fleet busy, so that world_size slots are free at each submission.
  const int cap = std::max(world_size, b.config.workers / 2);
  std::map<std::string, absl::Time> acked;
  const absl::Time end = absl::Now() + absl::Seconds(seconds);
  const absl::Duration patience = absl::Seconds(30 + 5 * b.config.heartbeat_interval);
  // One rank every gap_ms whatever the world size: the same lease load for each.
  const absl::Duration gap = absl::Milliseconds(b.config.gap_ms) * world_size;
  for (absl::Time next = absl::Now(); next < end; next += gap) {
    absl::SleepFor(next - absl::Now());
    if (!b.tracker.Reserve(world_size, cap, end)) break;  // the phase ended while slots were busy
    auto job = client.Submit(request);
    const absl::Time ack = absl::Now();
    if (!job.ok()) {
      b.tracker.Release(world_size);
      continue;
    }
    acked[job->id()] = ack;
    r.ids.push_back(job->id());
  }
  if (!b.tracker.WaitIdle(absl::Now() + patience)) Die("the latency phase's jobs did not finish in time");
  b.tracker.set_active(false);
  r.rpcs = RpcStats::ToJson(b.client_stats.Snapshot());
  r.worker_rpcs = RpcStats::ToJson(b.cluster->worker_stats().Snapshot());

  std::map<std::string, JobTracker::Job> seen = b.tracker.Take();
  std::vector<double> to_lease, placed, lease_wait, first_rank;
  for (const auto& [id, ack] : acked) {
    auto it = seen.find(id);
    if (it == seen.end() || static_cast<int>(it->second.leases.size()) < world_size) {
      ++r.unfinished;
      continue;
    }
    const auto [first, last] = std::minmax_element(it->second.leases.begin(), it->second.leases.end());
    auto job = client.Get(id);
    Check(job.status(), "GetJob");
    const absl::Time scheduled = FromProto(job->schedule_time());
    if (*first < ack) ++r.leased_before_ack;
    to_lease.push_back(std::max(0.0, absl::ToDoubleSeconds(*last - ack)));
    first_rank.push_back(std::max(0.0, absl::ToDoubleSeconds(*first - ack)));
    placed.push_back(std::max(0.0, absl::ToDoubleSeconds(scheduled - ack)));
    lease_wait.push_back(std::max(0.0, absl::ToDoubleSeconds(*last - scheduled)));
  }
  r.jobs = static_cast<int64_t>(to_lease.size());
  r.to_lease = Summarize(to_lease);
  r.first_rank = Summarize(first_rank);
  r.placed = Summarize(placed);
  r.lease_wait = Summarize(lease_wait);
  return r;
}

// ---------------------------------------------------------------- 3. accounting

struct Accounting {
  int64_t acknowledged = 0, found = 0, latency_succeeded = 0, latency_jobs = 0, submit_ended_ok = 0, submit_jobs = 0;
  bool ok() const {
    return found == acknowledged && latency_succeeded == latency_jobs && submit_ended_ok == submit_jobs;
  }
};

Accounting Account(Bench& b, const SubmitResult& submit, const std::vector<LatencyResult>& latency) {
  JobClient client(b.cluster->client(), nullptr);
  std::map<std::string, v1::JobState> stored;
  for (const v1::Job& j : ListAll(client, {}, {})) stored[j.id()] = j.state();
  Accounting a;
  auto count = [&](const std::string& id, bool latency_job) {
    ++a.acknowledged;
    auto it = stored.find(id);
    if (it == stored.end()) return;
    ++a.found;
    if (latency_job) {
      ++a.latency_jobs;
      a.latency_succeeded += it->second == v1::SUCCEEDED;
    } else {
      ++a.submit_jobs;
      a.submit_ended_ok += it->second == v1::SUCCEEDED || it->second == v1::CANCELLED;
    }
  };
  for (const std::string& id : submit.ids) count(id, false);
  for (const LatencyResult& l : latency) {
    for (const std::string& id : l.ids) count(id, true);
  }
  return a;
}

// ---------------------------------------------------------------- output

std::string Ms(double seconds) { return absl::StrFormat("%8.1f", seconds * 1000); }

void PrintTable(const Bench& b, double seconds, const SubmitResult& s, const std::vector<LatencyResult>& lat,
                const Accounting& a) {
  std::cout << absl::StrFormat(
      "coordinator_bench: %d worker daemons with simulated ranks (1 slot each, heartbeat every %.1f s, %s), %d submit "
      "clients, gRPC over loopback, SQLite (WAL, synchronous=FULL) in %s%s\n\n",
      b.config.workers, b.config.heartbeat_interval,
      b.config.lease_wait_ms > 0 ? absl::StrFormat("leases long-polled up to %d ms", b.config.lease_wait_ms)
                                 : std::string("leases at heartbeats"),
      b.config.clients, b.cluster->data_dir(),
      b.config.keep_data ? "" : " (removed at the end)");
  std::cout << absl::StrFormat(
      "1. submissions (%.1f s, %d clients, workers running what gets scheduled)\n"
      "   %10.1f jobs/s sustained  (%d accepted, %d errors)\n"
      "   submit latency ms: p50 %s  p99 %s  max %s\n"
      "   meanwhile the workers completed %d jobs (%.1f/s); %d left queued, cancelled in %.1f s (%.0f/s)\n\n",
      s.seconds, b.config.clients, s.ok / std::max(1e-9, s.seconds), s.ok, s.errors, Ms(s.latency.p50),
      Ms(s.latency.p99), Ms(s.latency.max), s.completed_meanwhile, s.completed_meanwhile / std::max(1e-9, s.seconds),
      s.cancelled, s.cancel_seconds, s.cancelled / std::max(1e-9, s.cancel_seconds));
  std::cout << absl::StrFormat(
      "2. scheduling latency (%.1f s per world size, one job every %d ms x world_size, >= world_size slots free at "
      "submit)\n"
      "   from SubmitJob answered to the last rank's LeaseAssignment answered; placed = the job's schedule_time\n"
      "   world_size   jobs |  to lease ms: p50      p99      max |  placed ms: p50      p99 | lease wait ms: p50  p99\n",
      seconds, b.config.gap_ms);
  for (const LatencyResult& l : lat) {
    std::cout << absl::StrFormat("   %10d %6d |          %s %s %s |         %s %s |          %s %s\n", l.world_size,
                                 l.jobs, Ms(l.to_lease.p50), Ms(l.to_lease.p99), Ms(l.to_lease.max), Ms(l.placed.p50),
                                 Ms(l.placed.p99), Ms(l.lease_wait.p50), Ms(l.lease_wait.p99));
  }
  std::cout << absl::StrFormat(
      "\n3. accounting: %d of %d acknowledged jobs in the store; latency jobs SUCCEEDED %d/%d; "
      "submission jobs SUCCEEDED or CANCELLED %d/%d: %s\n",
      a.found, a.acknowledged, a.latency_succeeded, a.latency_jobs, a.submit_ended_ok, a.submit_jobs,
      a.ok() ? "ok" : "MISMATCH");
}

nlohmann::json ToJson(const Bench& b, double seconds, const SubmitResult& s, const std::vector<LatencyResult>& lat,
                      const Accounting& a) {
  nlohmann::json j;
  j["bench"] = "coordinator";
  j["config"] = {{"workers", b.config.workers},
                 {"slots_per_worker", 1},
                 {"clients", b.config.clients},
                 {"seconds", seconds},
                 {"quick", b.config.quick},
                 {"heartbeat_interval_s", b.config.heartbeat_interval},
                 {"worker_lease_poll_ms", b.config.lease_wait_ms},
                 {"run_time_ms", b.config.run_time_ms},
                 {"gap_ms", b.config.gap_ms},
                 {"workers_are", "worker daemons, simulated ranks"},
                 {"job_store", "sqlite wal synchronous=full"}};
  j["submit"] = {{"seconds", s.seconds},
                 {"accepted", s.ok},
                 {"errors", s.errors},
                 {"per_second", s.ok / std::max(1e-9, s.seconds)},
                 {"latency_ms", ToJson(s.latency)},
                 {"completed_by_workers", s.completed_meanwhile},
                 {"cancelled_after", s.cancelled},
                 {"cancel_seconds", s.cancel_seconds},
                 {"drain_seconds", s.drain_seconds},
                 {"rpcs", s.rpcs},
                 {"worker_rpcs", s.worker_rpcs}};
  nlohmann::json scheduling = nlohmann::json::array();
  for (const LatencyResult& l : lat) {
    scheduling.push_back({{"world_size", l.world_size},
                          {"jobs", l.jobs},
                          {"unfinished", l.unfinished},
                          {"leased_before_ack", l.leased_before_ack},
                          {"to_lease_ms", ToJson(l.to_lease)},
                          {"first_rank_ms", ToJson(l.first_rank)},
                          {"placed_ms", ToJson(l.placed)},
                          {"lease_wait_ms", ToJson(l.lease_wait)},
                          {"rpcs", l.rpcs},
                          {"worker_rpcs", l.worker_rpcs}});
  }
  j["scheduling"] = scheduling;
  j["accounting"] = {{"acknowledged", a.acknowledged},       {"found", a.found},
                     {"latency_jobs", a.latency_jobs},       {"latency_succeeded", a.latency_succeeded},
                     {"submit_jobs", a.submit_jobs},         {"submit_ended_ok", a.submit_ended_ok},
                     {"ok", a.ok()}};
  return j;
}

int Main(int argc, char** argv) {
  Bench b;
  Config& config = b.config;
  CLI::App app{"coordinator_bench: job submissions/s and scheduling latency with worker daemons whose ranks are simulated"};
  app.add_flag("--quick", config.quick, "short phases (5 s each; under a minute in all)");
  app.add_option("--json", config.json, "write the figures to this file");
  app.add_option("--workers", config.workers, "worker daemons (simulated ranks), 1 slot each")->capture_default_str()
      ->check(CLI::Range(1, 10000));
  app.add_option("--seconds", config.seconds, "length of the submission phase and of each latency phase "
                                              "(default 20, 5 with --quick)")->check(CLI::Range(0.1, 3600.0));
  app.add_option("--clients", config.clients, "client threads, each on its own connection (default 4; 32 in --mode load)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--heartbeat-interval", config.heartbeat_interval, "seconds; the coordinator's default is 2")
      ->capture_default_str()->check(CLI::Range(0.05, 60.0));
  app.add_option("--lease-wait-ms", config.lease_wait_ms,
                 "the workers' LeaseAssignment long poll (0: lease when a heartbeat says there is work)")
      ->capture_default_str()->check(CLI::Range(0, 30000));
  app.add_option("--run-time-ms", config.run_time_ms, "how long a simulated rank runs")->capture_default_str()
      ->check(CLI::Range(0, 600000));
  app.add_option("--gap-ms", config.gap_ms, "latency phase: between submissions, per rank")->capture_default_str()
      ->check(CLI::Range(1, 60000));
  app.add_flag("--keep-data", config.keep_data, "keep the temporary data directory");
  app.add_option("--mode", config.mode, "bench: submissions and scheduling latency; load: a load generator")
      ->capture_default_str()->check(CLI::IsMember({"bench", "load"}));
  app.add_option("--rps", config.rps, "--mode load: calls per second from all clients")->capture_default_str()
      ->check(CLI::Range(1.0, 1e6));
  CLI11_PARSE(app, argc, argv);
  if (config.mode == "load" && app.count("--clients") == 0) config.clients = 32;  // synchronous calls: concurrency
  const double seconds = config.seconds > 0 ? config.seconds : config.quick ? 5 : 20;

  SimClusterOptions options;
  options.workers = config.workers;
  options.heartbeat_interval = absl::Seconds(config.heartbeat_interval);
  options.lease_wait = absl::Milliseconds(config.lease_wait_ms);
  options.run_time = absl::Milliseconds(config.run_time_ms);
  options.keep_data = config.keep_data;
  options.on_lease = [t = &b.tracker](const LeaseEvent& e) { t->Leased(e); };
  options.on_done = [t = &b.tracker](const v1::Assignment& a) { t->Done(a); };
  auto cluster = SimCluster::Start(options);
  Check(cluster.status(), "starting the coordinator and the workers");
  b.cluster = *std::move(cluster);
  std::cerr << "coordinator_bench: coordinator on " << b.cluster->client().endpoint << ", " << config.workers
            << " workers registered" << std::endl;

  if (config.mode == "load") {
    LoadOptions load;
    load.rps = config.rps;
    load.clients = config.clients;
    load.duration = absl::Seconds(seconds);
    std::cerr << "coordinator_bench: load, " << load.rps << " calls/s from " << load.clients << " clients for "
              << seconds << " s" << std::endl;
    auto result = RunLoad(*b.cluster, load);
    Check(result.status(), "the load run");
    b.cluster->Stop();
    PrintLoad(*b.cluster, load, *result, std::cout);
    if (!config.json.empty()) WriteJsonFile(config.json, LoadJson(*b.cluster, load, *result));
    return result->accounted() ? 0 : 2;
  }

  std::cerr << "coordinator_bench: submissions for " << seconds << " s" << std::endl;
  SubmitResult submit = RunSubmissions(b, seconds);
  std::vector<LatencyResult> latency;
  for (int ws : {1, 2, 4}) {
    if (ws > config.workers) continue;
    std::cerr << "coordinator_bench: scheduling latency, world size " << ws << std::endl;
    latency.push_back(RunLatency(b, ws, seconds));
  }
  const Accounting accounting = Account(b, submit, latency);
  b.cluster->Stop();
  PrintTable(b, seconds, submit, latency, accounting);
  if (!config.json.empty()) WriteJsonFile(config.json, ToJson(b, seconds, submit, latency, accounting));
  return accounting.ok() ? 0 : 2;
}

}  // namespace
}  // namespace d2lora::bench

int main(int argc, char** argv) { return d2lora::bench::Main(argc, argv); }
