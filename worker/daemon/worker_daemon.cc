#include "worker/daemon/worker_daemon.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <thread>
#include <utility>

#include <grpcpp/client_context.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/cgroup_limits.h"
#include "common/rpc/status_convert.h"
#include "worker/daemon/daemon_log.h"
#include "common/version.h"
#include "worker/daemon/host_info.h"
#include "worker/daemon/rank_launcher_process.h"

namespace d2lora::worker {
namespace fs = std::filesystem;

namespace {

// After the ranks were told to stop: time for their last uploads and reports.
constexpr absl::Duration kShutdownReportTime = absl::Seconds(30);

bool RefusedOutright(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kUnimplemented:
      return true;
    default:
      return false;
  }
}

// What each slot advertises (Options::slot_memory_bytes).
absl::StatusOr<std::vector<int64_t>> SlotMemory(const WorkerDaemon::Options& options) {
  if (options.slot_memory_bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--slot-memory ", options.slot_memory_bytes, ": must be > 0"));
  }
  if (options.slot_memory_bytes > 0) return std::vector<int64_t>(options.slots, options.slot_memory_bytes);
  if (options.device == "cpu") return std::vector<int64_t>(options.slots, TotalMemoryBytes() / options.slots);
  absl::StatusOr<std::vector<int64_t>> gpus = GpuMemoryBytes(options.nvidia_smi);
  if (!gpus.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("--device cuda: cannot read the GPUs' memory (",
                                                      gpus.status().message(),
                                                      "); pass --slot-memory with each slot's GPU memory"));
  }
  if (static_cast<int>(gpus->size()) < options.slots) {
    return absl::InvalidArgumentError(absl::StrCat("--slots ", options.slots, " on --device cuda: ", options.nvidia_smi,
                                                   " lists ", gpus->size(), " GPU(s)"));
  }
  gpus->resize(options.slots);
  return gpus;
}

}  // namespace

absl::StatusOr<std::unique_ptr<WorkerDaemon>> WorkerDaemon::Create(Options options, prometheus::Registry& registry) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = rpc::MakeChannel(options.coordinator);
  if (!channel.ok()) return channel.status();
  return Create(std::move(options), registry, v1::WorkerService::NewStub(*channel));
}

absl::StatusOr<std::unique_ptr<WorkerDaemon>> WorkerDaemon::Create(
    Options options, prometheus::Registry& registry, std::shared_ptr<v1::WorkerService::StubInterface> stub) {
  if (options.slots < 1) return absl::InvalidArgumentError(absl::StrCat("--slots ", options.slots, ": must be >= 1"));
  if (options.device != "cpu" && options.device != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat("--device ", options.device, ": must be cpu or cuda"));
  }
  if (options.rendezvous_port_first < 1 || options.rendezvous_port_last > 65535 ||
      options.rendezvous_port_first > options.rendezvous_port_last) {
    return absl::InvalidArgumentError(absl::StrCat("--rendezvous-ports ", options.rendezvous_port_first, "-",
                                                   options.rendezvous_port_last, ": not a port range"));
  }
  if (options.trainer.empty()) return absl::InvalidArgumentError("no trainer binary");
  if (options.launcher == nullptr) options.launcher = std::make_shared<ProcessRankLauncher>();
  if (options.work_dir.empty()) return absl::InvalidArgumentError("--work-dir is required");
  if (options.stop_grace < absl::ZeroDuration()) options.stop_grace = absl::ZeroDuration();
  if (options.report_interval < absl::Milliseconds(10)) options.report_interval = absl::Milliseconds(10);
  std::error_code ec;
  options.work_dir = fs::absolute(options.work_dir, ec).lexically_normal().string();
  if (!options.work_dir.empty() && options.work_dir.size() > 1 && options.work_dir.back() == '/') {
    options.work_dir.pop_back();
  }
  fs::create_directories(options.work_dir + "/jobs", ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("--work-dir ", options.work_dir, ": ", ec.message()));
  if (access(options.work_dir.c_str(), W_OK) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("--work-dir ", options.work_dir, ": not writable"));
  }
  absl::StatusOr<std::vector<int64_t>> slot_memory = SlotMemory(options);
  if (!slot_memory.ok()) return slot_memory.status();
  return std::unique_ptr<WorkerDaemon>(
      new WorkerDaemon(std::move(options), registry, std::move(stub), std::move(*slot_memory)));
}

WorkerDaemon::WorkerDaemon(Options options, prometheus::Registry& registry,
                           std::shared_ptr<v1::WorkerService::StubInterface> stub, std::vector<int64_t> slot_memory)
    : options_(std::move(options)),
      client_{std::move(stub), options_.coordinator},
      metrics_(registry, options_.slots),
      slot_cores_(std::max<int64_t>(1, d2lora::AvailableCpuCores() / options_.slots)),
      slot_memory_(std::move(slot_memory)) {
  metrics_.SetUp(false);
  metrics_.SetSlotsBusy(0);
}

WorkerDaemon::~WorkerDaemon() { AbandonAll(); }

std::string WorkerDaemon::worker_id() const {
  std::lock_guard<std::mutex> lock(mu_);
  return worker_id_;
}

void WorkerDaemon::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutdown_ = true;
  if (lease_context_ != nullptr) lease_context_->TryCancel();
  cv_.notify_all();
  lease_cv_.notify_all();
}

bool WorkerDaemon::shutting_down() const {
  std::lock_guard<std::mutex> lock(mu_);
  return shutdown_;
}

void WorkerDaemon::Wake() {
  std::lock_guard<std::mutex> lock(mu_);
  wake_ = true;
  lease_wake_ = true;  // a slot may have come free
  cv_.notify_all();
  lease_cv_.notify_all();
}

void WorkerDaemon::WaitLease(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  lease_cv_.wait_for(lock, absl::ToChronoMilliseconds(std::max(timeout, absl::Milliseconds(1))),
                     [this] { return lease_wake_ || shutdown_; });
  lease_wake_ = false;
}

absl::Duration JitteredInterval(absl::Duration interval, double jitter, std::mt19937_64& rng) {
  const double j = std::clamp(jitter, 0.0, 0.5);
  std::uniform_real_distribution<double> u(1.0 - j, 1.0 + j);
  return interval * u(rng);
}

void WorkerDaemon::WaitFor(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoMilliseconds(std::max(timeout, absl::Milliseconds(1))),
               [this] { return wake_ || shutdown_; });
  wake_ = false;
}

v1::RegisterWorkerRequest WorkerDaemon::RegistrationRequest() const {
  v1::RegisterWorkerRequest request;
  request.set_name(options_.name.empty() ? absl::StrCat(HostName(), "-", getpid()) : options_.name);
  std::string host = options_.advertise_host;
  if (host.empty()) host = IsLoopbackHost(EndpointHost(options_.coordinator.endpoint)) ? "127.0.0.1" : HostName();
  request.set_host(host);
  for (int i = 0; i < options_.slots; ++i) {
    v1::Slot* slot = request.add_slots();
    slot->set_index(i);
    slot->set_device(options_.device == "cuda" ? absl::StrCat("cuda:", i) : "cpu");
    slot->set_cores(static_cast<int32_t>(slot_cores_));
    slot->set_memory_bytes(slot_memory_[i]);
  }
  for (const auto& [key, value] : options_.labels) (*request.mutable_labels())[key] = value;
  request.set_rendezvous_port_first(options_.rendezvous_port_first);
  request.set_rendezvous_port_last(options_.rendezvous_port_last);
  request.set_version(ProjectVersion());
  return request;
}

absl::Status WorkerDaemon::Register() {
  const v1::RegisterWorkerRequest request = RegistrationRequest();
  grpc::ClientContext context;
  client_.Prepare(context, absl::Seconds(15));
  v1::RegisterWorkerResponse response;
  absl::Status status = rpc::FromGrpcStatus(client_.stub->RegisterWorker(&context, request, &response));
  if (!status.ok()) return status;
  if (response.worker_id().empty()) return absl::InternalError("the coordinator answered without a worker id");
  std::lock_guard<std::mutex> lock(mu_);
  worker_id_ = response.worker_id();
  heartbeat_interval_ =
      response.heartbeat_interval_ms() > 0 ? absl::Milliseconds(response.heartbeat_interval_ms()) : absl::Seconds(5);
  heartbeat_failing_ = false;
  Log(absl::StrCat("registered as ", worker_id_, " (", request.slots_size(), " slots, host ", request.host(),
                   ", heartbeat every ", absl::FormatDuration(heartbeat_interval_), ")"));
  return absl::OkStatus();
}

absl::Status WorkerDaemon::Run(const std::function<void(const std::string&)>& on_registered) {
  Backoff backoff(absl::Milliseconds(500), absl::Seconds(10));
  bool ever_registered = false;
  std::string last_error;
  const bool long_poll = options_.lease_wait > absl::ZeroDuration();
  std::thread lease_thread;
  if (long_poll) lease_thread = std::thread([this] { LeaseLoop(); });
  while (!shutting_down()) {
    if (worker_id().empty()) {
      absl::Status status = Register();
      if (!status.ok()) {
        if (!ever_registered && RefusedOutright(status)) {
          return absl::Status(status.code(), absl::StrCat("registration refused: ", status.message()));
        }
        const std::string error = absl::StrCat(rpc::StatusCodeName(status.code()), ": ", status.message());
        if (error != last_error) Log(absl::StrCat("cannot register with ", options_.coordinator.endpoint, ": ", error, " (retrying)"));
        last_error = error;
        WaitFor(backoff.Next());
        continue;
      }
      backoff.Reset();
      last_error.clear();
      ever_registered = true;
      metrics_.SetUp(true);
      if (on_registered) on_registered(worker_id());
    }
    Heartbeat(/*lease=*/true);
    ReapFinished();
    absl::Duration interval;
    {
      std::lock_guard<std::mutex> lock(mu_);
      interval = heartbeat_interval_;
    }
    if (!worker_id().empty()) WaitFor(JitteredInterval(interval, options_.heartbeat_jitter, jitter_rng_));
  }
  if (lease_thread.joinable()) lease_thread.join();  // Shutdown cancelled its long poll

  // Shutting down: say so at once (the coordinator stops placing work here),
  // stop every rank, keep heartbeating while they report, then leave.
  if (!worker_id().empty()) Heartbeat(/*lease=*/false);
  const absl::Time give_up = absl::Now() + options_.stop_grace + kShutdownReportTime;
  StopAll("the worker is shutting down", give_up);
  while (ActiveRunners() > 0 && absl::Now() < give_up + absl::Seconds(5)) {
    if (!worker_id().empty()) Heartbeat(/*lease=*/false);
    ReapFinished();
    if (ActiveRunners() == 0) break;
    absl::Duration interval;
    {
      std::lock_guard<std::mutex> lock(mu_);
      interval = std::min(heartbeat_interval_, absl::Seconds(1));
    }
    WaitFor(interval);
  }
  AbandonAll();
  Leave();
  metrics_.SetUp(false);
  Log("stopped");
  return absl::OkStatus();
}

void WorkerDaemon::Leave() {
  v1::LeaveWorkerRequest request;
  request.set_worker_id(worker_id());
  if (request.worker_id().empty()) return;
  request.set_reason("the worker is shutting down");
  grpc::ClientContext context;
  client_.Prepare(context, absl::Seconds(5));
  v1::LeaveWorkerResponse response;
  const absl::Status status = rpc::FromGrpcStatus(client_.stub->LeaveWorker(&context, request, &response));
  Log(status.ok() ? absl::StrCat("left the coordinator (", request.worker_id(), ")")
                  : absl::StrCat("could not leave the coordinator: ", rpc::StatusCodeName(status.code()), ": ",
                                 status.message(), " (it declares this worker lost after its heartbeat timeout)"));
}

void WorkerDaemon::Heartbeat(bool lease) {
  v1::HeartbeatRequest request;
  std::string id;
  absl::Duration interval;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = worker_id_;
    interval = heartbeat_interval_;
  }
  request.set_worker_id(id);
  request.set_draining(shutting_down());  // the coordinator places nothing more here
  for (const std::string& running : RunningIds()) request.add_running_assignments(running);
  grpc::ClientContext context;
  client_.Prepare(context, std::clamp(interval, absl::Seconds(1), absl::Seconds(10)));
  v1::HeartbeatResponse response;
  const absl::Status status = rpc::FromGrpcStatus(client_.stub->Heartbeat(&context, request, &response));
  if (status.code() == absl::StatusCode::kNotFound) {
    Forget(absl::StrCat("heartbeat: ", status.message()));
    return;
  }
  if (!status.ok()) {
    metrics_.HeartbeatFailed();
    std::lock_guard<std::mutex> lock(mu_);
    if (!heartbeat_failing_) {
      Log(absl::StrCat("heartbeat failed: ", rpc::StatusCodeName(status.code()), ": ", status.message(),
                       " (ranks keep running; retrying)"));
    }
    heartbeat_failing_ = true;
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (heartbeat_failing_) Log("heartbeat answered again");
    heartbeat_failing_ = false;
  }
  for (const v1::WorkerCommand& command : response.commands()) {
    if (command.type() != v1::WorkerCommand::STOP) continue;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runners_.find(command.assignment_id());
    if (it == runners_.end() || it->second->done() || it->second->stopping()) continue;
    Log(absl::StrCat("STOP ", command.assignment_id(), command.reason().empty() ? "" : ": ", command.reason()));
    it->second->Stop(command.reason().empty() ? "stopped by the coordinator" : command.reason());
  }
  if (lease && response.work_available()) {
    if (options_.lease_wait > absl::ZeroDuration()) {
      std::lock_guard<std::mutex> lock(mu_);
      lease_wake_ = true;  // the lease thread asks at once (a coordinator without the long poll)
      lease_cv_.notify_all();
    } else {
      Lease();
    }
  }
}

void WorkerDaemon::LeaseLoop() {
  while (!shutting_down()) {
    const std::string id = worker_id();
    if (id.empty() || ActiveRunners() >= options_.slots) {
      WaitLease(absl::Milliseconds(200));
      continue;
    }
    const absl::Time start = absl::Now();
    switch (LeaseOnce(id)) {
      case LeaseResult::kLeased:
        break;  // at once again: another slot may be free
      case LeaseResult::kNone:
        // An empty answer long before the wait: this coordinator does not long
        // poll; a heartbeat's work_available (or a freed slot) wakes us.
        if (absl::Now() - start < options_.lease_wait / 2) WaitLease(absl::Seconds(5));
        break;
      case LeaseResult::kFailed:
        WaitLease(absl::Seconds(1));
        break;
    }
  }
}

WorkerDaemon::LeaseResult WorkerDaemon::LeaseOnce(const std::string& id) {
  v1::LeaseAssignmentRequest request;
  request.set_worker_id(id);
  request.set_wait_ms(static_cast<int32_t>(absl::ToInt64Milliseconds(options_.lease_wait)));
  grpc::ClientContext context;
  client_.Prepare(context, options_.lease_wait + kCallTimeout);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutdown_) return LeaseResult::kFailed;
    lease_context_ = &context;
  }
  v1::LeaseAssignmentResponse response;
  const absl::Status status = rpc::FromGrpcStatus(client_.stub->LeaseAssignment(&context, request, &response));
  {
    std::lock_guard<std::mutex> lock(mu_);
    lease_context_ = nullptr;
    if (shutdown_) return LeaseResult::kFailed;
    const bool was_failing = lease_failing_;
    lease_failing_ = !status.ok();
    if (status.ok() && was_failing) Log("lease answered again");
    if (!status.ok() && !was_failing && status.code() != absl::StatusCode::kNotFound) {
      Log(absl::StrCat("lease failed: ", rpc::StatusCodeName(status.code()), ": ", status.message(), " (retrying)"));
    }
  }
  if (status.code() == absl::StatusCode::kNotFound) {
    Wake();  // the heartbeat finds out whether this worker is gone, and registers again
    return LeaseResult::kFailed;
  }
  if (!status.ok()) return LeaseResult::kFailed;
  if (!response.has_assignment() || response.assignment().id().empty()) return LeaseResult::kNone;
  if (worker_id() != id) return LeaseResult::kFailed;  // registered again meanwhile: not ours any more
  StartRunner(response.assignment());
  return LeaseResult::kLeased;
}

void WorkerDaemon::Lease() {
  while (!shutting_down() && ActiveRunners() < options_.slots) {
    v1::LeaseAssignmentRequest request;
    request.set_worker_id(worker_id());
    if (request.worker_id().empty()) return;
    grpc::ClientContext context;
    client_.Prepare(context);
    v1::LeaseAssignmentResponse response;
    const absl::Status status = rpc::FromGrpcStatus(client_.stub->LeaseAssignment(&context, request, &response));
    if (status.code() == absl::StatusCode::kNotFound) {
      Forget(absl::StrCat("lease: ", status.message()));
      return;
    }
    if (!status.ok()) {
      Log(absl::StrCat("lease failed: ", rpc::StatusCodeName(status.code()), ": ", status.message()));
      return;
    }
    if (!response.has_assignment() || response.assignment().id().empty()) return;
    StartRunner(response.assignment());
  }
}

void WorkerDaemon::StartRunner(const v1::Assignment& assignment) {
  RunnerOptions runner;
  runner.client = client_;
  runner.worker_id = worker_id();
  runner.work_dir = options_.work_dir;
  runner.trainer = options_.trainer;
  runner.launcher = options_.launcher.get();
  runner.slot_cores = slot_cores_;
  runner.stop_grace = options_.stop_grace;
  runner.report_interval = options_.report_interval;
  runner.clean_up = options_.clean_work_dirs;
  runner.metrics = &metrics_;
  runner.on_not_found = [this] { Wake(); };  // the next heartbeat tells whether this worker is gone
  runner.on_done = [this, assignment](AssignmentResult result) {
    if (options_.on_done) options_.on_done(assignment, result);
    Wake();
  };
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runners_.find(assignment.id());
    if (it != runners_.end() && !it->second->done()) {
      Log(absl::StrCat("assignment ", assignment.id(), " leased again while it runs; ignored"));
      return;
    }
  }
  if (options_.on_lease) options_.on_lease(assignment);
  ReapFinished();  // a finished runner of the same id goes first
  Log(absl::StrCat("leased assignment ", assignment.id(), ": job ", assignment.job_id(), " attempt ",
                   assignment.attempt(), " rank ", assignment.rank(), "/", assignment.world_size(), " on slot ",
                   assignment.slot()));
  auto created = std::make_unique<AssignmentRunner>(std::move(runner), assignment);
  AssignmentRunner* started = created.get();
  {
    std::lock_guard<std::mutex> lock(mu_);
    runners_[assignment.id()] = std::move(created);
  }
  started->Start();
  UpdateBusy();
}

void WorkerDaemon::Forget(const std::string& why) {
  Log(absl::StrCat("the coordinator no longer knows worker ", worker_id(), " (", why,
                   "): killing every rank, dropping their assignments, registering again"));
  AbandonAll();
  {
    std::lock_guard<std::mutex> lock(mu_);
    worker_id_.clear();
  }
  metrics_.SetUp(false);
}

void WorkerDaemon::ReapFinished() {
  std::vector<std::unique_ptr<AssignmentRunner>> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = runners_.begin(); it != runners_.end();) {
      if (it->second->done()) {
        finished.push_back(std::move(it->second));
        it = runners_.erase(it);
      } else {
        ++it;
      }
    }
  }
  finished.clear();  // joins, without the lock (a runner's last act takes it)
  UpdateBusy();
}

void WorkerDaemon::AbandonAll() {
  std::map<std::string, std::unique_ptr<AssignmentRunner>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.swap(runners_);
  }
  for (auto& [id, runner] : all) runner->Abandon();
  all.clear();
  UpdateBusy();
}

void WorkerDaemon::StopAll(const std::string& reason, absl::Time give_up) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, runner] : runners_) runner->Stop(reason, give_up);
}

int WorkerDaemon::ActiveRunners() const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const auto& [id, runner] : runners_) n += runner->done() ? 0 : 1;
  return n;
}

std::vector<std::string> WorkerDaemon::RunningIds() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> ids;
  for (const auto& [id, runner] : runners_) {
    if (!runner->done()) ids.push_back(id);
  }
  return ids;
}

void WorkerDaemon::UpdateBusy() { metrics_.SetSlotsBusy(std::min(ActiveRunners(), options_.slots)); }

}  // namespace d2lora::worker
