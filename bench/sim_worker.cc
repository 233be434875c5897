#include "bench/sim_worker.h"

#include <algorithm>
#include <random>

#include <grpcpp/client_context.h>

#include "absl/strings/str_cat.h"
#include "bench/sim_client.h"
#include "common/rpc/status_convert.h"
#include "common/sha256.h"

namespace d2lora::bench {
namespace {

constexpr absl::Duration kCallTimeout = absl::Seconds(30);  // worker/daemon/coordinator_client.h
constexpr int kFinalCallAttempts = 5;

bool Unreachable(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable || s.code() == absl::StatusCode::kDeadlineExceeded;
}

// The daemon gives up at once on these (worker/daemon/worker_daemon.cc).
bool RefusedOutright(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kUnimplemented:
      return true;
    default:
      return false;
  }
}

std::string Digest(const std::string& data) {
  Sha256Hasher h;
  h.Update(data);
  return h.HexDigest();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SimWorker>> SimWorker::Create(SimWorkerOptions options) {
  if (options.coordinator.endpoint.empty()) return absl::InvalidArgumentError("coordinator.endpoint: required");
  if (options.slots < 1) return absl::InvalidArgumentError(absl::StrCat("slots = ", options.slots, ": must be >= 1"));
  if (options.report_interval < absl::Milliseconds(10)) options.report_interval = absl::Milliseconds(10);
  if (options.run_time < absl::ZeroDuration()) options.run_time = absl::ZeroDuration();
  return std::unique_ptr<SimWorker>(new SimWorker(std::move(options)));
}

SimWorker::SimWorker(SimWorkerOptions options)
    : options_(std::move(options)), stub_(v1::WorkerService::NewStub(NewConnection(options_.coordinator))) {}

SimWorker::~SimWorker() { Stop(); }

void SimWorker::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (loop_.joinable() || stopping_) return;
  loop_ = std::thread([this] { Loop(); });
}

void SimWorker::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (loop_.joinable()) loop_.join();
}

bool SimWorker::WaitRegistered(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [this] { return !worker_id_.empty() || stopping_; }) &&
         !worker_id_.empty();
}

std::string SimWorker::worker_id() const {
  std::lock_guard<std::mutex> lock(mu_);
  return worker_id_;
}

int SimWorker::active() const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const auto& [id, r] : runners_) n += r->done ? 0 : 1;
  return n;
}

SimWorker::Counters SimWorker::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

void SimWorker::Prepare(grpc::ClientContext& context, absl::Duration timeout) const {
  rpc::PrepareContext(context, options_.coordinator, timeout);
}

template <typename Call>
absl::Status SimWorker::Timed(const char* op, Call call) {
  const absl::Time start = absl::Now();
  const absl::Status status = rpc::FromGrpcStatus(call());
  if (options_.stats != nullptr) options_.stats->Record(op, absl::Now() - start, status);
  return status;
}

absl::Status SimWorker::Retry(const std::function<absl::Status()>& call, int attempts) {
  absl::Duration backoff = absl::Milliseconds(100);
  for (int i = 1;; ++i) {
    absl::Status s = call();
    if (s.ok() || !Unreachable(s) || i >= attempts) return s;
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

void SimWorker::Wake() {
  std::lock_guard<std::mutex> lock(mu_);
  wake_ = true;
  cv_.notify_all();
}

void SimWorker::WaitFor(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoMilliseconds(std::max(timeout, absl::Milliseconds(1))),
               [this] { return wake_ || stopping_; });
  wake_ = false;
}

// ---------------------------------------------------------------- the loop

void SimWorker::Loop() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.start_delay), [this] { return stopping_; });
  }
  absl::Duration backoff = absl::Milliseconds(500);
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) break;
    }
    if (worker_id().empty()) {
      absl::Status s = Register();
      if (!s.ok()) {
        if (RefusedOutright(s)) break;  // a bench misconfiguration: nothing will change
        WaitFor(backoff);
        backoff = std::min(backoff * 2, absl::Seconds(10));
        continue;
      }
      backoff = absl::Milliseconds(500);
    }
    Heartbeat(/*lease=*/true);
    ReapFinished();
    absl::Duration interval;
    {
      std::lock_guard<std::mutex> lock(mu_);
      interval = heartbeat_interval_;
    }
    WaitFor(interval);
  }
  // Stopping: every assignment in progress stops and reports; then they are joined.
  std::map<std::string, std::unique_ptr<Runner>> runners;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, r] : runners_) r->stop = true;
    runners.swap(runners_);
  }
  for (auto& [id, r] : runners) {
    if (r->thread.joinable()) r->thread.join();
  }
}

absl::Status SimWorker::Register() {
  v1::RegisterWorkerRequest request;
  request.set_name(options_.name);
  request.set_host(options_.host);
  for (int i = 0; i < options_.slots; ++i) {
    v1::Slot* slot = request.add_slots();
    slot->set_index(i);
    slot->set_device("cpu");
    slot->set_cores(1);
    slot->set_memory_bytes(1LL << 30);
  }
  request.set_rendezvous_port_first(options_.rendezvous_port_first);
  request.set_rendezvous_port_last(options_.rendezvous_port_last);
  request.set_version("sim");
  v1::RegisterWorkerResponse response;
  grpc::ClientContext context;
  Prepare(context, absl::Seconds(15));
  absl::Status s = Timed("RegisterWorker", [&] { return stub_->RegisterWorker(&context, request, &response); });
  if (!s.ok()) return s;
  if (response.worker_id().empty()) return absl::InternalError("registered without a worker id");
  std::lock_guard<std::mutex> lock(mu_);
  worker_id_ = response.worker_id();
  heartbeat_interval_ =
      response.heartbeat_interval_ms() > 0 ? absl::Milliseconds(response.heartbeat_interval_ms()) : absl::Seconds(5);
  ++counters_.registrations;
  cv_.notify_all();
  return absl::OkStatus();
}

void SimWorker::Heartbeat(bool lease) {
  v1::HeartbeatRequest request;
  absl::Duration interval;
  {
    std::lock_guard<std::mutex> lock(mu_);
    request.set_worker_id(worker_id_);
    interval = heartbeat_interval_;
    for (const auto& [id, r] : runners_) {
      if (!r->done) request.add_running_assignments(id);
    }
    ++counters_.heartbeats;
  }
  v1::HeartbeatResponse response;
  grpc::ClientContext context;
  Prepare(context, std::clamp(interval, absl::Seconds(1), absl::Seconds(10)));
  absl::Status s = Timed("Heartbeat", [&] { return stub_->Heartbeat(&context, request, &response); });
  if (s.code() == absl::StatusCode::kNotFound) return Forget();
  if (!s.ok()) return;  // the assignments keep running; the next heartbeat tries again
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const v1::WorkerCommand& c : response.commands()) {
      if (c.type() != v1::WorkerCommand::STOP) continue;
      auto it = runners_.find(c.assignment_id());
      if (it != runners_.end()) it->second->stop = true;
    }
  }
  if (lease && response.work_available()) Lease();
}

void SimWorker::Lease() {
  while (active() < options_.slots) {
    v1::LeaseAssignmentRequest request;
    request.set_worker_id(worker_id());
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ || request.worker_id().empty()) return;
    }
    v1::LeaseAssignmentResponse response;
    grpc::ClientContext context;
    Prepare(context, kCallTimeout);
    absl::Status s = Timed("LeaseAssignment", [&] { return stub_->LeaseAssignment(&context, request, &response); });
    const absl::Time leased_at = absl::Now();
    if (s.code() == absl::StatusCode::kNotFound) return Forget();
    if (!s.ok() || !response.has_assignment() || response.assignment().id().empty()) return;
    if (options_.on_lease) options_.on_lease(LeaseEvent{request.worker_id(), response.assignment(), leased_at});
    StartRunner(response.assignment());
  }
}

void SimWorker::StartRunner(const v1::Assignment& assignment) {
  ReapFinished();
  std::lock_guard<std::mutex> lock(mu_);
  if (runners_.count(assignment.id())) return;  // leased again while it runs: ignored, as the daemon does
  ++counters_.leases;
  auto runner = std::make_unique<Runner>();
  runner->assignment = assignment;
  Runner* r = runner.get();
  runners_[assignment.id()] = std::move(runner);
  r->thread = std::thread([this, r] { Run(*r); });
}

void SimWorker::Forget() {
  std::map<std::string, std::unique_ptr<Runner>> runners;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, r] : runners_) r->abandon = true;
    runners.swap(runners_);
    worker_id_.clear();
    counters_.dropped += static_cast<int64_t>(runners.size());
  }
  for (auto& [id, r] : runners) {
    if (r->thread.joinable()) r->thread.join();
  }
}

void SimWorker::ReapFinished() {
  std::vector<std::unique_ptr<Runner>> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = runners_.begin(); it != runners_.end();) {
      if (it->second->done) {
        finished.push_back(std::move(it->second));
        it = runners_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& r : finished) {
    if (r->thread.joinable()) r->thread.join();
  }
}

// ---------------------------------------------------------------- one assignment

void SimWorker::Run(Runner& runner) {
  const absl::Status outcome = RunAssignment(runner);
  if (!runner.abandon) {
    const absl::Status reported = End(runner, outcome);
    std::lock_guard<std::mutex> lock(mu_);
    if (outcome.ok() && reported.ok()) {
      ++counters_.completed;
    } else {
      ++counters_.failed;
    }
  }
  if (options_.on_done && !runner.abandon) options_.on_done(runner.assignment, outcome);
  runner.done = true;
  Wake();  // the daemon's on_done: heartbeat and lease again now
}

absl::Status SimWorker::RunAssignment(Runner& runner) {
  const v1::Assignment& a = runner.assignment;
  if (options_.download_inputs) {
    if (absl::Status s = DownloadInputs(a); !s.ok()) return s;
  }
  if (runner.abandon) return absl::CancelledError("abandoned");
  if (runner.stop) return absl::AbortedError("stopped before the rank started");
  if (absl::Status s = Report(runner, /*started=*/true, 0, a.rank() == 0); !s.ok() && !Unreachable(s)) return s;
  const absl::Time start = absl::Now(), end = start + options_.run_time;
  absl::Time next_report = start + options_.report_interval;
  int64_t step = 0;
  while (true) {
    const absl::Time now = absl::Now();
    if (runner.abandon) return absl::CancelledError("abandoned");
    if (runner.stop) return absl::AbortedError("stopped by the coordinator");
    if (now >= end) break;
    if (now >= next_report) {
      ++step;
      if (absl::Status s = Report(runner, false, step, a.rank() == 0); !s.ok() && !Unreachable(s)) return s;
      next_report = absl::Now() + options_.report_interval;
    }
    absl::SleepFor(std::min({end, next_report, now + absl::Milliseconds(50)}) - now);
  }
  // The final report: whatever the rank wrote last (rank 0: its last metrics).
  if (absl::Status s = Report(runner, false, step + 1, a.rank() == 0); !s.ok() && !Unreachable(s)) return s;
  if (runner.stop) return absl::AbortedError("stopped by the coordinator");
  if (options_.upload_outputs) {
    std::vector<std::pair<std::string, std::string>> files;
    if (a.rank() == 0) {
      files.emplace_back("metrics.jsonl", "{\"event\": \"step\", \"step\": 1, \"loss\": 1.0}\n");
      files.emplace_back("summary.json", "{\"world_size\": " + std::to_string(a.world_size()) + "}\n");
      files.emplace_back("spec.yaml", "name: bench\n");
    }
    files.emplace_back(absl::StrCat("logs/attempt-", a.attempt(), "-rank-", a.rank(), ".log"), "simulated rank\n");
    for (const auto& [name, data] : files) {
      absl::Status s = Retry([&] { return Upload(a, name, data); }, kFinalCallAttempts);
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status SimWorker::DownloadInputs(const v1::Assignment& a) {
  for (const v1::InputFile& input : a.inputs()) {
    v1::DownloadInputRequest request;
    request.set_worker_id(worker_id());
    request.set_assignment_id(a.id());
    request.set_name(input.name());
    std::string data, announced_sha;
    grpc::ClientContext context;
    Prepare(context, kCallTimeout);
    absl::Status s = Timed("DownloadInput", [&] {
      auto reader = stub_->DownloadInput(&context, request);
      v1::FileChunk chunk;
      while (reader->Read(&chunk)) {
        if (!chunk.sha256().empty()) announced_sha = chunk.sha256();
        data += chunk.data();
      }
      return reader->Finish();
    });
    if (!s.ok()) return s;
    if (static_cast<int64_t>(data.size()) != input.size() || Digest(data) != input.sha256() ||
        (!announced_sha.empty() && announced_sha != input.sha256())) {
      return absl::DataLossError(absl::StrCat("input ", input.name(), ": size or sha256 differs from the assignment's"));
    }
  }
  return absl::OkStatus();
}

absl::Status SimWorker::Report(Runner& runner, bool started, int64_t step, bool with_metrics) {
  const v1::Assignment& a = runner.assignment;
  v1::ReportProgressRequest request;
  request.set_worker_id(worker_id());
  request.set_assignment_id(a.id());
  request.set_started(started);
  if (with_metrics) {
    v1::TrainingMetrics* m = request.mutable_metrics();
    m->set_step(step);
    m->set_total_steps(10);
    m->set_loss(2.0 / static_cast<double>(step + 1));
    m->set_lr(1e-3);
    m->set_tokens_per_second(1000);
    m->set_elapsed_seconds(static_cast<double>(step));
  }
  if (started) {
    v1::LogLine* line = request.add_logs();
    line->set_rank(a.rank());
    line->set_attempt(a.attempt());
    line->set_text("simulated rank started");
  }
  v1::ReportProgressResponse response;
  grpc::ClientContext context;
  Prepare(context, absl::Seconds(15));
  absl::Status s = Timed("ReportProgress", [&] { return stub_->ReportProgress(&context, request, &response); });
  if (s.code() == absl::StatusCode::kNotFound) {
    runner.abandon = true;  // the next heartbeat tells whether this worker is gone
    Wake();
  }
  if (s.ok() && response.stop()) runner.stop = true;
  return s;
}

absl::Status SimWorker::Upload(const v1::Assignment& a, const std::string& name, const std::string& data) {
  v1::Artifact response;
  grpc::ClientContext context;
  Prepare(context, kCallTimeout);
  return Timed("UploadArtifact", [&] {
    auto writer = stub_->UploadArtifact(&context, &response);
    v1::UploadArtifactRequest header;
    header.mutable_header()->set_worker_id(worker_id());
    header.mutable_header()->set_assignment_id(a.id());
    header.mutable_header()->set_name(name);
    header.mutable_header()->set_size(static_cast<int64_t>(data.size()));
    header.mutable_header()->set_sha256(Digest(data));
    v1::UploadArtifactRequest body;
    body.set_data(data);
    if (writer->Write(header) && !data.empty()) writer->Write(body);
    writer->WritesDone();
    return writer->Finish();
  });
}

absl::Status SimWorker::End(Runner& runner, const absl::Status& outcome) {
  const v1::Assignment& a = runner.assignment;
  if (outcome.ok()) {
    v1::CompleteAssignmentRequest request;
    request.set_worker_id(worker_id());
    request.set_assignment_id(a.id());
    if (a.rank() == 0) {
      request.set_summary_json(absl::StrCat("{\"world_size\": ", a.world_size(), ", \"steps\": 10, \"simulated\": true}"));
    }
    return Retry(
        [&] {
          v1::CompleteAssignmentResponse response;
          grpc::ClientContext context;
          Prepare(context, kCallTimeout);
          return Timed("CompleteAssignment", [&] { return stub_->CompleteAssignment(&context, request, &response); });
        },
        kFinalCallAttempts);
  }
  v1::FailAssignmentRequest request;
  request.set_worker_id(worker_id());
  request.set_assignment_id(a.id());
  request.mutable_error()->set_code(rpc::StatusCodeName(outcome.code()));
  request.mutable_error()->set_message(std::string(outcome.message()));
  request.mutable_error()->set_attempt(a.attempt());
  request.mutable_error()->set_rank(a.rank());
  request.set_retryable(outcome.code() == absl::StatusCode::kAborted || Unreachable(outcome));
  return Retry(
      [&] {
        v1::FailAssignmentResponse response;
        grpc::ClientContext context;
        Prepare(context, kCallTimeout);
        return Timed("FailAssignment", [&] { return stub_->FailAssignment(&context, request, &response); });
      },
      kFinalCallAttempts);
}

}  // namespace d2lora::bench
