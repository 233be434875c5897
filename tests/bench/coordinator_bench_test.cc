// coordinator_bench's parts: the percentile and latency summaries, RpcStats,
// the cluster of worker daemons and the job client against a real in-process coordinator
// (a 2-rank job run to SUCCEEDED), and tiny runs of the binary (both modes)
// that write the JSON they promise.
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "bench/coordinator_load.h"
#include "bench/latency_stats.h"
#include "bench/sim_client.h"
#include "bench/sim_cluster.h"
#include "server/coordinator_server.h"

namespace d2lora::bench {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/coordinator-bench-test-XXXXXX");
    EXPECT_NE(mkdtemp(pattern.data()), nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(PercentileTest, NearestRank) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);  // unsorted on purpose
  EXPECT_EQ(Percentile(v, 50), 50);
  EXPECT_EQ(Percentile(v, 90), 90);
  EXPECT_EQ(Percentile(v, 99), 99);
  EXPECT_EQ(Percentile(v, 100), 100);
  EXPECT_EQ(Percentile(v, 0), 1);
  EXPECT_EQ(Percentile(v, 99.5), 100);
  EXPECT_EQ(Percentile({1, 2, 3, 4}, 50), 2);
  EXPECT_EQ(Percentile({1, 2, 3, 4}, 51), 3);
  EXPECT_EQ(Percentile({7}, 99), 7);
  EXPECT_EQ(Percentile({}, 50), 0);
  EXPECT_EQ(Percentile({3, 1, 2}, 150), 3);  // clamped to [0, 100]
}

TEST(SummarizeTest, CountsMeanAndExtremes) {
  const LatencySummary s = Summarize({0.004, 0.001, 0.003, 0.002});
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(s.mean, 0.0025);
  EXPECT_EQ(s.min, 0.001);
  EXPECT_EQ(s.max, 0.004);
  EXPECT_EQ(s.p50, 0.002);
  EXPECT_EQ(s.p99, 0.004);
  EXPECT_EQ(Summarize({}).count, 0);

  const nlohmann::json j = ToJson(s);  // milliseconds
  for (const char* key : {"count", "mean", "min", "p50", "p90", "p99", "max"}) EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["count"], 4);
  EXPECT_DOUBLE_EQ(j["max"].get<double>(), 4.0);
  EXPECT_DOUBLE_EQ(ToJson(s, 1.0)["max"].get<double>(), 0.004);
}

TEST(RpcStatsTest, RecordsFromManyThreadsByOperationAndCode) {
  RpcStats stats;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        stats.Record("Heartbeat", absl::Milliseconds(i), absl::OkStatus());
        if (i % 10 == 0) stats.Record("Heartbeat", absl::Milliseconds(1), absl::UnavailableError("down"));
      }
      stats.Record("SubmitJob", absl::Milliseconds(3), absl::InvalidArgumentError("bad"));
    });
  }
  for (auto& t : threads) t.join();
  const auto ops = stats.Snapshot();
  ASSERT_EQ(ops.size(), 2u);
  EXPECT_EQ(ops.at("Heartbeat").ok, 400);
  EXPECT_EQ(ops.at("Heartbeat").seconds.size(), 400u);
  EXPECT_EQ(ops.at("Heartbeat").errors.at("UNAVAILABLE"), 40);
  EXPECT_EQ(ops.at("SubmitJob").ok, 0);
  EXPECT_EQ(ops.at("SubmitJob").errors.at("INVALID_ARGUMENT"), 4);

  const nlohmann::json j = RpcStats::ToJson(ops);
  EXPECT_EQ(j["Heartbeat"]["ok"], 400);
  EXPECT_EQ(j["Heartbeat"]["errors"]["UNAVAILABLE"], 40);
  EXPECT_EQ(j["Heartbeat"]["first_error"]["UNAVAILABLE"], "down");  // the bench says why calls failed
  EXPECT_EQ(j["SubmitJob"]["first_error"]["INVALID_ARGUMENT"], "bad");
  EXPECT_DOUBLE_EQ(j["Heartbeat"]["latency_ms"]["max"].get<double>(), 99.0);
  EXPECT_EQ(j["SubmitJob"]["latency_ms"]["count"], 0);

  stats.Reset();
  EXPECT_TRUE(stats.Snapshot().empty());
}

// Two real worker daemons with simulated ranks (the bench's cluster) run a
// 2-rank job, submitted by a JobClient with uploaded inputs, to SUCCEEDED
// through a real coordinator: every rank leased once, inputs downloaded,
// outputs uploaded, no RPC failed, every call timed by the interceptor.
TEST(SimClusterTest, RunsAGangJobToSucceededThroughARealCoordinator) {
  std::mutex mu;
  std::vector<LeaseEvent> leases;
  std::vector<std::string> done;
  SimClusterOptions options;
  options.workers = 2;
  options.heartbeat_interval = absl::Milliseconds(100);
  options.run_time = absl::Milliseconds(100);
  options.report_interval = absl::Milliseconds(20);
  options.on_lease = [&](const LeaseEvent& e) {
    std::lock_guard<std::mutex> lock(mu);
    leases.push_back(e);
  };
  options.on_done = [&](const v1::Assignment& a) {
    std::lock_guard<std::mutex> lock(mu);
    done.push_back(a.id());
  };
  auto cluster = SimCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();

  RpcStats client_stats;
  JobClient client((*cluster)->client(), &client_stats);
  auto job = client.Submit(BenchJobRequest((*cluster)->inputs(), 2, {{"test", "sim"}}));
  ASSERT_TRUE(job.ok()) << job.status();
  v1::JobState state = v1::QUEUED;
  for (absl::Time give_up = absl::Now() + absl::Seconds(60); absl::Now() < give_up;) {
    auto got = client.Get(job->id());
    ASSERT_TRUE(got.ok()) << got.status();
    state = got->state();
    if (state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(state, v1::SUCCEEDED);
  auto got = client.Get(job->id());
  ASSERT_TRUE(got.ok());
  const nlohmann::json summary = nlohmann::json::parse(got->summary_json(), nullptr, false);
  EXPECT_EQ(summary.value("world_size", 0), 2) << got->summary_json();
  EXPECT_EQ(summary.value("simulated", false), true) << got->summary_json();
  EXPECT_EQ(got->workers_size(), 2);
  auto events = client.Watch(job->id(), 0);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_GE(*events, 5);  // queued, scheduled, running, progress, succeeded at least

  (*cluster)->StopWorkers();
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(leases.size(), 2u);
    std::set<int> ranks;
    std::set<std::string> by;
    for (const LeaseEvent& e : leases) {
      EXPECT_EQ(e.assignment.job_id(), job->id());
      ranks.insert(e.assignment.rank());
      by.insert(e.worker_id);
    }
    EXPECT_EQ(ranks, (std::set<int>{0, 1}));
    EXPECT_EQ(by.size(), 2u);  // one rank per 1-slot worker
    EXPECT_EQ(done.size(), 2u);
  }
  EXPECT_EQ((*cluster)->CompletedByWorkers(), 2);
  EXPECT_FALSE((*cluster)->AnyWorkerBusy());

  const auto ops = (*cluster)->worker_stats().Snapshot();
  for (const char* op : {"RegisterWorker", "Heartbeat", "LeaseAssignment", "DownloadInput", "ReportProgress",
                         "UploadArtifact", "CompleteAssignment"}) {
    ASSERT_TRUE(ops.count(op)) << op;
    EXPECT_GT(ops.at(op).ok, 0) << op;
    if (std::string(op) == "LeaseAssignment") {
      // Each worker's long poll still waiting when it stopped was cancelled by
      // the worker itself: that, at most once per worker, and nothing else.
      for (const auto& [code, n] : ops.at(op).errors) {
        EXPECT_EQ(code, "CANCELLED") << n;
        EXPECT_LE(n, 2) << code;
      }
    } else {
      EXPECT_TRUE(ops.at(op).errors.empty()) << op;
    }
  }
  EXPECT_EQ(ops.at("DownloadInput").ok, 4);  // config.json and train.jsonl, per rank
  EXPECT_EQ(ops.at("CompleteAssignment").ok, 2);
  EXPECT_EQ(client_stats.Snapshot().at("SubmitJob").ok, 1);
}

TEST(CoordinatorBenchTest, TinyRunWritesTheJson) {
  TempDir dir;
  const std::string json = dir.path() + "/out.json", log = dir.path() + "/log.txt";
  const std::string cmd = absl::StrCat(D2LORA_COORDINATOR_BENCH, " --workers 4 --seconds 1 --quick --json ", json,
                                       " >", log, " 2>&1");
  const int rc = std::system(cmd.c_str());
  std::ifstream log_in(log);
  const std::string output((std::istreambuf_iterator<char>(log_in)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << cmd << "\n" << output;
  EXPECT_NE(output.find("scheduling latency"), std::string::npos) << output;

  std::ifstream in(json);
  ASSERT_TRUE(in.good()) << json;
  const nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j["bench"], "coordinator");
  EXPECT_EQ(j["config"]["workers"], 4);
  EXPECT_EQ(j["config"]["quick"], true);
  EXPECT_GT(j["submit"]["accepted"].get<int64_t>(), 0);
  EXPECT_EQ(j["submit"]["errors"], 0) << j["submit"]["rpcs"].dump() << "\n" << j["submit"]["worker_rpcs"].dump() << "\n" << output;
  EXPECT_GT(j["submit"]["per_second"].get<double>(), 0);
  for (const char* key : {"p50", "p99", "max"}) EXPECT_TRUE(j["submit"]["latency_ms"].contains(key)) << key;
  ASSERT_EQ(j["scheduling"].size(), 3u);
  std::set<int> sizes;
  for (const auto& s : j["scheduling"]) {
    sizes.insert(s["world_size"].get<int>());
    EXPECT_GT(s["jobs"].get<int64_t>(), 0) << s.dump();
    EXPECT_EQ(s["unfinished"], 0);
    for (const char* part : {"to_lease_ms", "placed_ms", "lease_wait_ms"}) {
      for (const char* key : {"p50", "p99", "max"}) EXPECT_TRUE(s[part].contains(key)) << part << "." << key;
    }
  }
  EXPECT_EQ(sizes, (std::set<int>{1, 2, 4}));
  EXPECT_EQ(j["accounting"]["ok"], true) << j["accounting"].dump();
  EXPECT_EQ(j["accounting"]["found"], j["accounting"]["acknowledged"]);
}

TEST(CoordinatorBenchTest, TinyLoadRunAccountsForEveryJob) {
  TempDir dir;
  const std::string json = dir.path() + "/load.json", log = dir.path() + "/log.txt";
  const std::string cmd = absl::StrCat(D2LORA_COORDINATOR_BENCH, " --mode load --rps 50 --clients 4 --workers 4 ",
                                       "--seconds 1 --quick --json ", json, " >", log, " 2>&1");
  const int rc = std::system(cmd.c_str());
  std::ifstream log_in(log);
  const std::string output((std::istreambuf_iterator<char>(log_in)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << cmd << "\n" << output;

  std::ifstream in(json);
  ASSERT_TRUE(in.good()) << json;
  const nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j["bench"], "coordinator-load");
  EXPECT_EQ(j["errors"], 0) << j.dump(2);
  EXPECT_GT(j["client_rps"].get<double>(), 0);
  for (const char* op : {"SubmitJob", "GetJob", "ListJobs", "WatchJob"}) {
    ASSERT_TRUE(j["client_rpcs"].contains(op)) << op;
    EXPECT_GT(j["client_rpcs"][op]["ok"].get<int64_t>(), 0) << op;
    for (const char* key : {"p50", "p99"}) EXPECT_TRUE(j["client_rpcs"][op]["latency_ms"].contains(key));
  }
  EXPECT_TRUE(j["worker_rpcs"].contains("Heartbeat"));
  EXPECT_GT(j["accounting"]["acknowledged"].get<int64_t>(), 0);
  EXPECT_EQ(j["accounting"]["found"], j["accounting"]["acknowledged"]);
  EXPECT_EQ(j["accounting"]["reopened"], true);
  EXPECT_EQ(j["accounting"]["ok"], true);
  EXPECT_TRUE(j["all_rpcs"]["all"]["latency_ms"].contains("p99"));
  EXPECT_EQ(j["offered_client_rps"], 50.0);
}

// The load generator at a modest rate (performance is the bench's to report,
// not asserted here): no call fails, and the store accounts for every
// acknowledged job, listed once, the same after it is opened from disk again,
// with its events in order.
TEST(CoordinatorLoadTest, NoErrorsAndTheStoreAccountsForEveryJob) {
  SimClusterOptions options;
  options.workers = 20;
  options.heartbeat_interval = absl::Milliseconds(200);
  options.run_time = absl::Milliseconds(50);
  auto cluster = SimCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  LoadOptions load;
  load.rps = 200;
  load.clients = 8;
  load.duration = absl::Seconds(3);
  auto r = RunLoad(**cluster, load);
  ASSERT_TRUE(r.ok()) << r.status();
  std::ostringstream report;
  PrintLoad(**cluster, load, *r, report);
  EXPECT_EQ(r->errors(), 0) << report.str();
  for (const char* op : {"SubmitJob", "GetJob", "ListJobs", "WatchJob"}) {
    EXPECT_GT(r->client_ops[op].ok, 0) << op;
  }
  for (const char* op : {"Heartbeat", "LeaseAssignment", "ReportProgress", "CompleteAssignment"}) {
    EXPECT_GT(r->worker_ops[op].ok, 0) << op;
  }
  const Consistency& c = r->consistency;
  EXPECT_GT(c.acknowledged, 0);
  EXPECT_EQ(c.listed, c.acknowledged) << report.str();
  EXPECT_EQ(c.listed_twice, 0);
  EXPECT_EQ(c.invalid_state, 0);
  EXPECT_EQ(c.unacknowledged, 0);
  EXPECT_TRUE(c.reopened);
  EXPECT_EQ(c.in_store, c.acknowledged) << report.str();
  EXPECT_EQ(c.state_mismatch, 0) << report.str();
  EXPECT_EQ(c.event_gaps, 0) << report.str();
  EXPECT_GT(c.states.count(v1::SUCCEEDED), 0u) << report.str();  // the workers ran jobs
  EXPECT_TRUE(c.ok());
  EXPECT_GT(r->changes, 0);
}

}  // namespace
}  // namespace d2lora::bench
