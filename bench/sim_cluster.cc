#include "bench/sim_cluster.h"

#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/rpc_timing.h"
#include "worker/daemon/daemon_log.h"
#include "worker/daemon/rank_launcher_simulated.h"

namespace d2lora::bench {
namespace {

std::string RandomHex(int n) {
  std::random_device rd;
  std::string s;
  for (int i = 0; i < n; ++i) s += "0123456789abcdef"[rd() % 16];
  return s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SimCluster>> SimCluster::Start(const SimClusterOptions& options) {
  if (options.workers < 1) return absl::InvalidArgumentError(absl::StrCat("workers = ", options.workers, ": must be >= 1"));
  if (options.heartbeat_interval <= absl::ZeroDuration()) return absl::InvalidArgumentError("heartbeat_interval: must be > 0");
  std::unique_ptr<SimCluster> c(new SimCluster(options));
  const char* base = std::getenv("TMPDIR");
  std::string pattern = absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/coordinator-bench-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat("cannot make a temporary directory ", pattern));
  }
  c->data_dir_ = pattern;

  server::CoordinatorServerOptions server;
  server.listen = "127.0.0.1:0";
  server.data_dir = c->data_dir_ + "/data";
  server.token = RandomHex(32);
  server.coordinator.heartbeat_interval = options.heartbeat_interval;
  server.coordinator.heartbeat_timeout = std::max(absl::Seconds(20), 10 * options.heartbeat_interval);
  c->registry_ = std::make_shared<prometheus::Registry>();
  auto started = server::CoordinatorServer::Start(server, c->registry_);
  if (!started.ok()) return started.status();
  c->server_ = *std::move(started);
  c->client_ = rpc::ClientOptions{absl::StrCat("127.0.0.1:", c->server_->port()), server.token, "", ""};

  JobClient uploader(c->client_, nullptr);
  auto inputs = UploadBenchInputs(uploader);
  if (!inputs.ok()) return inputs.status();
  c->inputs_ = *inputs;

  if (absl::Status log = worker::SetLogFile(c->data_dir_ + "/workers.log"); !log.ok()) return log;
  worker::SimulatedRankOptions ranks;
  ranks.run_time = options.run_time;
  c->launcher_ = std::make_shared<worker::SimulatedRankLauncher>(ranks);
  for (int i = 0; i < options.workers; ++i) {
    if (absl::Status s = c->StartWorker(i); !s.ok()) return s;
  }
  std::unique_lock<std::mutex> lock(c->mu_);
  const bool all = c->registered_cv_.wait_for(
      lock, absl::ToChronoMilliseconds(absl::Seconds(60) + options.heartbeat_interval),
      [&] { return c->registered_ == options.workers; });
  if (!all) return absl::DeadlineExceededError("a simulated worker did not register within a minute");
  return c;
}

absl::Status SimCluster::StartWorker(int index) {
  auto w = std::make_unique<Worker>();
  w->registry = std::make_shared<prometheus::Registry>();
  worker::WorkerDaemon::Options o;
  o.coordinator = client_;
  o.slots = 1;
  o.name = absl::StrCat("sim-", index);
  o.work_dir = absl::StrCat(data_dir_, "/workers/", o.name);
  o.trainer = "d2lora";  // argv[0] for the simulated launcher
  o.launcher = launcher_;
  o.report_interval = options_.report_interval;
  o.lease_wait = options_.lease_wait;
  o.stop_grace = absl::Seconds(5);
  o.clean_work_dirs = true;
  Worker* raw = w.get();
  o.on_lease = [this, raw](const v1::Assignment& a) {
    leased_.fetch_add(1);
    if (options_.on_lease) options_.on_lease(LeaseEvent{raw->daemon->worker_id(), a, absl::Now()});
  };
  o.on_done = [this](const v1::Assignment& a, worker::AssignmentResult result) {
    if (result == worker::AssignmentResult::kSucceeded) completed_.fetch_add(1);
    done_.fetch_add(1);
    if (options_.on_done) options_.on_done(a);
  };
  auto daemon = worker::WorkerDaemon::Create(
      std::move(o), *w->registry, v1::WorkerService::NewStub(NewTimedConnection(client_, &worker_stats_)));
  if (!daemon.ok()) return daemon.status();
  w->daemon = *std::move(daemon);
  const absl::Duration delay = options_.heartbeat_interval * index / options_.workers;
  w->thread = std::thread([this, raw, delay] {
    absl::SleepFor(delay);
    absl::Status run = raw->daemon->Run([this](const std::string&) {
      std::lock_guard<std::mutex> lock(mu_);
      ++registered_;
      registered_cv_.notify_all();
    });
    if (!run.ok()) std::fprintf(stderr, "simulated worker: %s\n", std::string(run.message()).c_str());
  });
  workers_.push_back(std::move(w));
  return absl::OkStatus();
}

SimCluster::~SimCluster() {
  Stop();
  (void)worker::SetLogFile("");
  if (!options_.keep_data && !data_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(data_dir_, ec);
  }
}

void SimCluster::Stop() {
  StopWorkers();
  StopServer();
}

void SimCluster::StopWorkers() {
  for (auto& w : workers_) w->daemon->Shutdown();
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
}

void SimCluster::StopServer() {
  if (server_) {
    server_->Shutdown(absl::Seconds(2));
    server_->Wait();
    server_.reset();  // the coordinator writes what it queued; the store closes
  }
}

double SimCluster::Metric(const std::string& name) const {
  if (!registry_) return 0;
  double value = 0;
  for (const prometheus::MetricFamily& family : registry_->Collect()) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& m : family.metric) value += m.counter.value + m.gauge.value;
  }
  return value;
}

absl::StatusOr<std::vector<v1::Job>> ListAllJobs(JobClient& client, const std::vector<v1::JobState>& states,
                                                 const std::map<std::string, std::string>& labels) {
  std::vector<v1::Job> jobs;
  v1::ListJobsRequest request;
  request.set_page_size(1000);
  for (v1::JobState s : states) request.add_states(s);
  for (const auto& [k, v] : labels) (*request.mutable_labels())[k] = v;
  while (true) {
    auto page = client.List(request);
    if (!page.ok()) return page.status();
    for (const v1::Job& j : page->jobs()) jobs.push_back(j);
    if (page->next_page_token().empty()) break;
    request.set_page_token(page->next_page_token());
  }
  return jobs;
}

}  // namespace d2lora::bench
