#include "bench/sim_cluster.h"

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"

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

  for (int i = 0; i < options.workers; ++i) {
    SimWorkerOptions w;
    w.coordinator = c->client_;
    w.name = absl::StrCat("sim-", i);
    w.start_delay = options.heartbeat_interval * i / options.workers;
    w.run_time = options.run_time;
    w.upload_outputs = options.uploads;
    w.stats = &c->worker_stats_;
    w.on_lease = options.on_lease;
    w.on_done = options.on_done;
    auto worker = SimWorker::Create(std::move(w));
    if (!worker.ok()) return worker.status();
    (*worker)->Start();
    c->workers_.push_back(*std::move(worker));
  }
  for (const auto& w : c->workers_) {
    if (!w->WaitRegistered(absl::Seconds(60) + options.heartbeat_interval)) {
      return absl::DeadlineExceededError("a simulated worker did not register within a minute");
    }
  }
  return c;
}

SimCluster::~SimCluster() {
  Stop();
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
  for (auto& w : workers_) w->Stop();
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

int64_t SimCluster::CompletedByWorkers() const {
  int64_t n = 0;
  for (const auto& w : workers_) n += w->counters().completed;
  return n;
}

bool SimCluster::AnyWorkerBusy() const {
  for (const auto& w : workers_) {
    if (w->active() > 0) return true;
  }
  return false;
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
