// The worker side of the coordinator: registration, heartbeats, leases,
// progress, completion and failure, and the scheduler round.
#include <algorithm>
#include <functional>
#include <random>

#include <google/protobuf/util/time_util.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/rpc/job_state.h"
#include "common/trainer/output_names.h"
#include "server/coordinator.h"
#include "server/coordinator_metrics.h"
#include "server/job_ids.h"
#include "server/job_summary.h"
#include "server/scheduler.h"
#include "server/submit_check.h"
#include "common/spec/job_spec.h"

namespace d2lora::server {
namespace {

using rpc::IsTerminal;

using google::protobuf::util::TimeUtil;

// To the nanosecond: protobuf's TimeUtil::GetCurrentTime() has whole seconds only.
google::protobuf::Timestamp Now() { return TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(absl::Now())); }

bool Contains(const std::deque<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

absl::StatusOr<v1::RegisterWorkerResponse> Coordinator::Register(const v1::RegisterWorkerRequest& request) {
  if (request.slots_size() < 1 || request.slots_size() > 256) {
    return absl::InvalidArgumentError(absl::StrCat("slots: ", request.slots_size(), " given, must be 1..256"));
  }
  std::set<int> indices;
  for (const v1::Slot& slot : request.slots()) {
    if (slot.index() < 0 || !indices.insert(slot.index()).second) {
      return absl::InvalidArgumentError(absl::StrCat("slots: index ", slot.index(), " is negative or repeated"));
    }
  }
  if (request.host().empty() || request.host().size() > 253) {
    return absl::InvalidArgumentError("host: required (the address other workers reach this one at)");
  }
  if (request.name().size() > 256) return absl::InvalidArgumentError("name: longer than 256 bytes");
  const int first = request.rendezvous_port_first(), last = request.rendezvous_port_last();
  if (first < 1 || last > 65535 || first > last) {
    return absl::InvalidArgumentError(
        absl::StrCat("rendezvous_port_first/last = ", first, "-", last, ": must be a range within 1..65535"));
  }
  StoredWorker worker{NewWorkerId(), request};
  StoreMutation m;
  m.workers.push_back(worker);
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ticket = Stage(m);
  }
  if (absl::Status s = Durable(ticket); !s.ok()) return s;
  v1::RegisterWorkerResponse response;
  response.set_worker_id(worker.id);
  response.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
  response.set_heartbeat_timeout_ms(absl::ToInt64Milliseconds(options_.heartbeat_timeout));
  return response;
}

namespace {
absl::Status UnknownWorker(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("worker ", id, " is not registered (declared lost?): register again"));
}
}  // namespace

// Nothing to write (the heartbeat clock is not stored); an answer with STOP
// commands waits until what they follow from is durable. work_available needs
// no wait: the lease it leads to does.
absl::StatusOr<v1::HeartbeatResponse> Coordinator::Heartbeat(const v1::HeartbeatRequest& request) {
  v1::HeartbeatResponse response;
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto w = TouchWorker(request.worker_id()); !w.ok()) return w.status();
    for (const auto& [id, a] : assignments_) {
      if (a.worker_id != request.worker_id()) continue;
      if (a.stop_requested) {
        v1::WorkerCommand* c = response.add_commands();
        c->set_type(v1::WorkerCommand::STOP);
        c->set_assignment_id(id);
        const auto job = jobs_.find(a.assignment.job_id());
        c->set_reason(job != jobs_.end() && job->second.state() == v1::CANCELLED ? "job cancelled"
                                                                                   : "the attempt failed");
      }
      if (a.state == AssignmentState::kPending) response.set_work_available(true);
    }
    for (const std::string& id : request.running_assignments()) {
      if (assignments_.count(id)) continue;
      v1::WorkerCommand* c = response.add_commands();
      c->set_type(v1::WorkerCommand::STOP);
      c->set_assignment_id(id);
      c->set_reason("the assignment is no longer active");
    }
    if (response.commands_size() > 0) ticket = Visible();
  }
  if (absl::Status s = Durable(ticket); !s.ok()) return s;
  return response;
}

absl::StatusOr<v1::LeaseAssignmentResponse> Coordinator::Lease(const v1::LeaseAssignmentRequest& request) {
  v1::LeaseAssignmentResponse response;
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto w = TouchWorker(request.worker_id()); !w.ok()) return w.status();
    for (const auto& [id, a] : assignments_) {
      if (a.worker_id != request.worker_id() || a.state != AssignmentState::kPending) continue;
      StoreMutation m;
      StoredAssignment& staged = m.assignments.emplace_back(a);
      staged.state = AssignmentState::kLeased;
      *response.mutable_assignment() = a.assignment;
      ticket = Stage(m);
      break;
    }
  }
  if (absl::Status s = Durable(ticket); !s.ok()) return s;
  return response;
}

absl::StatusOr<Coordinator::Worker*> Coordinator::TouchWorker(const std::string& worker_id) {
  auto w = workers_.find(worker_id);
  if (w == workers_.end()) return UnknownWorker(worker_id);
  w->second.last_seen = absl::Now();
  return &w->second;
}

absl::StatusOr<StoredAssignment*> Coordinator::CheckAssignmentLocked(const std::string& worker_id,
                                                                     const std::string& assignment_id) {
  if (auto w = TouchWorker(worker_id); !w.ok()) return w.status();
  StoredAssignment* a = FindAssignment(assignment_id);
  if (a == nullptr) return absl::NotFoundError(absl::StrCat("assignment ", assignment_id, " is no longer active"));
  if (a->worker_id != worker_id) {
    return absl::PermissionDeniedError(absl::StrCat("assignment ", assignment_id, " belongs to another worker"));
  }
  return a;
}

absl::StatusOr<v1::Assignment> Coordinator::CheckAssignment(const std::string& worker_id,
                                                            const std::string& assignment_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto a = CheckAssignmentLocked(worker_id, assignment_id);
  if (!a.ok()) return a.status();
  return (*a)->assignment;
}

absl::StatusOr<v1::ReportProgressResponse> Coordinator::Report(const v1::ReportProgressRequest& request) {
  if (request.logs_size() > 10000) return absl::InvalidArgumentError("logs: more than 10000 lines in one report");
  v1::ReportProgressResponse response;
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto checked = CheckAssignmentLocked(request.worker_id(), request.assignment_id());
    if (!checked.ok()) return checked.status();
    StoredAssignment* a = *checked;
    response.set_stop(a->stop_requested);
    const v1::Assignment asg = a->assignment;
    auto job_it = jobs_.find(asg.job_id());
    if (job_it == jobs_.end()) return response;
    StoreMutation m;
    if (request.started() && a->state != AssignmentState::kStarted) {
      StoredAssignment& staged = m.assignments.emplace_back(*a);
      staged.state = AssignmentState::kStarted;
    }
    const bool current = !IsTerminal(job_it->second.state()) && job_it->second.attempt() == asg.attempt();
    v1::Job* job = nullptr;
    auto stage_job = [&]() -> v1::Job& {
      if (job == nullptr) job = &m.jobs.emplace_back(job_it->second);
      return *job;
    };
    if (current && job_it->second.state() == v1::SCHEDULED && !m.assignments.empty()) {
      bool all_started = true;
      for (const auto& [id, other] : assignments_) {
        if (other.assignment.job_id() == asg.job_id() && other.assignment.attempt() == asg.attempt() &&
            id != asg.id() && other.state != AssignmentState::kStarted) {
          all_started = false;
        }
      }
      if (all_started) {
        v1::Job& j = stage_job();
        if (!j.has_start_time()) *j.mutable_start_time() = Now();
        SetState(m, j, v1::RUNNING, absl::StrCat("all ", j.workers_size(), " ranks started"));
      }
    }
    if (current && asg.rank() == 0 && request.has_metrics()) {
      v1::Job& j = stage_job();
      *j.mutable_metrics() = request.metrics();
      *AddEvent(m, j.id()).mutable_progress() = request.metrics();
    }
    if (current) {
      for (const v1::EvalResult& e : request.evals()) *AddEvent(m, asg.job_id()).mutable_eval() = e;
      if (asg.rank() == 0) {
        for (const v1::Rollback& r : request.rollbacks()) *AddEvent(m, asg.job_id()).mutable_rollback() = r;
      }
    }
    for (const v1::LogLine& line : request.logs()) {
      v1::LogLine* l = AddEvent(m, asg.job_id()).mutable_log();
      *l = line;
      l->set_rank(asg.rank());
      l->set_attempt(asg.attempt());
    }
    ticket = Stage(m);  // nothing to write: what is visible (the stop flag)
    if (current && asg.rank() == 0 && request.has_metrics()) metrics_->training().Set(asg.job_id(), request.metrics());
  }
  if (absl::Status s = Durable(ticket); !s.ok()) return s;
  return response;
}

absl::Status Coordinator::ArtifactStored(const v1::Assignment& assignment, const std::string& name) {
  // checkpoints/step-N/trainer_state.json: the worker sends it last.
  const std::optional<int64_t> complete = trainer::CompleteCheckpointStep(name);
  if (!complete.has_value()) return absl::OkStatus();
  const int64_t step = *complete;
  int64_t keep = 3;
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(assignment.job_id());
    if (it == jobs_.end() || step <= it->second.checkpoint_step()) return absl::OkStatus();
    StoreMutation m;
    v1::Job& job = m.jobs.emplace_back(it->second);
    job.set_checkpoint_step(step);
    v1::CheckpointStored* c = AddEvent(m, job.id()).mutable_checkpoint();
    c->set_step(step);
    c->set_name(trainer::CheckpointName(step));
    if (job.spec().train().has_keep_checkpoints()) keep = std::max<int64_t>(1, job.spec().train().keep_checkpoints());
    ticket = Stage(m);
  }
  // The job names the new checkpoint durably before older ones go.
  if (absl::Status s = Durable(ticket); !s.ok()) return s;
  // Keep the newest `keep` stored checkpoints.
  const std::string root = absl::StrCat("jobs/", assignment.job_id(), "/", trainer::kCheckpointsDir, "/");
  auto files = artifacts_->List(root);
  if (!files.ok()) return files.status();
  std::set<int64_t> steps;
  for (const ArtifactInfo& f : *files) {
    // Any stored step, complete or not.
    constexpr size_t kPrefixSize = sizeof(trainer::kCheckpointPrefix) - 1;
    const std::string rest = f.key.substr(root.size());
    int64_t s = 0;
    if (absl::StartsWith(rest, trainer::kCheckpointPrefix) &&
        absl::SimpleAtoi(rest.substr(kPrefixSize, rest.find('/') - kPrefixSize), &s)) {
      steps.insert(s);
    }
  }
  while (static_cast<int64_t>(steps.size()) > keep && *steps.begin() < step) {
    if (absl::Status s = artifacts_->Delete(absl::StrCat(root, trainer::kCheckpointPrefix, *steps.begin())); !s.ok()) {
      return s;
    }
    steps.erase(steps.begin());
  }
  return absl::OkStatus();
}

// Both ends of an assignment: it is released (its slot is free), and while its
// attempt is still the job's current one, `update` decides what that means.
absl::Status Coordinator::EndAssignment(
    const std::string& worker_id, const std::string& assignment_id,
    const std::function<void(StoreMutation&, v1::Job&, const v1::Assignment&)>& update) {
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto checked = CheckAssignmentLocked(worker_id, assignment_id);
    if (!checked.ok()) return checked.status();
    const v1::Assignment asg = (*checked)->assignment;
    StoreMutation m;
    m.deleted_assignments.push_back(asg.id());
    auto job_it = jobs_.find(asg.job_id());
    // QUEUED: the attempt has already ended (another rank failed first); its
    // first error stays the job's, later reports (the others, stopped) do not count.
    if (job_it != jobs_.end() && !IsTerminal(job_it->second.state()) && job_it->second.state() != v1::QUEUED &&
        job_it->second.attempt() == asg.attempt()) {
      update(m, m.jobs.emplace_back(job_it->second), asg);
    }
    ticket = Stage(m);
  }
  return Durable(ticket);
}

absl::Status Coordinator::Complete(const v1::CompleteAssignmentRequest& request) {
  if (request.summary_json().size() > (4 << 20)) return absl::InvalidArgumentError("summary_json: larger than 4 MiB");
  return EndAssignment(request.worker_id(), request.assignment_id(),
                       [&](StoreMutation& m, v1::Job& job, const v1::Assignment& asg) {
                         if (asg.rank() == 0) SetJobSummary(job, request.summary_json());
                         for (const auto& [id, other] : assignments_) {
                           if (id != asg.id() && other.assignment.job_id() == asg.job_id() &&
                               other.assignment.attempt() == asg.attempt()) {
                             return;  // other ranks are still at work
                           }
                         }
                         SetState(m, job, v1::SUCCEEDED, absl::StrCat("all ", job.workers_size(), " ranks completed"));
                       });
}

absl::Status Coordinator::Fail(const v1::FailAssignmentRequest& request) {
  if (request.summary_json().size() > (4 << 20)) return absl::InvalidArgumentError("summary_json: larger than 4 MiB");
  return EndAssignment(request.worker_id(), request.assignment_id(),
                       [&](StoreMutation& m, v1::Job& job, const v1::Assignment& asg) {
                         v1::JobError error = request.error();
                         error.set_attempt(asg.attempt());
                         error.set_rank(asg.rank());
                         if (error.code().empty()) error.set_code("UNKNOWN");
                         // A merge the gate stopped: its summary (and headline) stay with the job.
                         if (asg.rank() == 0 && !request.summary_json().empty()) {
                           SetJobSummary(job, request.summary_json());
                         }
                         constexpr size_t kMaxTail = 64 * 1024;
                         if (error.log_tail().size() > kMaxTail) {
                           error.set_log_tail(error.log_tail().substr(error.log_tail().size() - kMaxTail));
                         }
                         EndAttempt(m, job, error, request.retryable());
                       });
}

// ---------------------------------------------------------------- scheduling

void Coordinator::ReapWorkers(StoreMutation& m) {
  const absl::Time now = absl::Now();
  for (const auto& [wid, w] : workers_) {
    if (now - w.last_seen <= options_.heartbeat_timeout) continue;
    metrics_->WorkerLost();
    m.deleted_workers.push_back(wid);
    for (const auto& [aid, a] : assignments_) {
      if (a.worker_id != wid || Contains(m.deleted_assignments, aid)) continue;
      m.deleted_assignments.push_back(aid);
      auto job_it = jobs_.find(a.assignment.job_id());
      if (job_it == jobs_.end() || IsTerminal(job_it->second.state()) ||
          job_it->second.attempt() != a.assignment.attempt()) {
        continue;
      }
      v1::Job* job = nullptr;
      for (v1::Job& j : m.jobs) {
        if (j.id() == job_it->first) job = &j;
      }
      if (job != nullptr && (IsTerminal(job->state()) || job->state() == v1::QUEUED)) continue;  // ended this round
      if (job == nullptr) job = &m.jobs.emplace_back(job_it->second);
      v1::JobError error;
      error.set_code("UNAVAILABLE");
      error.set_message(absl::StrCat("worker ", w.stored.registration.name(), " (", wid, ") was lost: no heartbeat for ",
                                     absl::FormatDuration(now - w.last_seen)));
      error.set_rank(a.assignment.rank());
      error.set_attempt(a.assignment.attempt());
      EndAttempt(m, *job, error, /*retryable=*/true);
    }
  }
}

int Coordinator::PickPort(const Worker& worker, const std::set<int>& taken) {
  const v1::RegisterWorkerRequest& r = worker.stored.registration;
  const int first = r.rendezvous_port_first(), span = r.rendezvous_port_last() - first + 1;
  static thread_local std::mt19937 rng{std::random_device{}()};
  const int start = static_cast<int>(rng() % static_cast<unsigned>(span));
  for (int i = 0; i < span; ++i) {
    const int port = first + (start + i) % span;
    if (!taken.count(port)) return port;
  }
  return first + start;  // every port taken: reuse one; a clash fails the attempt, which is retried
}

absl::Status Coordinator::BuildAssignmentInputs(const v1::Job& job, v1::Assignment& a) {
  v1::JobSpec& spec = *a.mutable_spec();
  auto rewrite = [&](const std::string& field, std::string* path) -> absl::Status {
    auto ref = ParseUploadRef(field, *path);
    if (!ref.ok()) return ref.status();
    if (!ref->has_value()) return absl::OkStatus();
    const std::string prefix = absl::StrCat("uploads/", (*ref)->upload_id, "/");
    const std::string local = absl::StrCat("inputs/", (*ref)->upload_id);
    auto files = artifacts_->List((*ref)->name.empty() ? prefix : prefix + (*ref)->name);
    if (!files.ok()) return files.status();
    bool found = false;
    for (const ArtifactInfo& f : *files) {
      if (!(*ref)->name.empty() && f.key != prefix + (*ref)->name) continue;
      found = true;
      bool have = false;
      for (const v1::InputFile& in : a.inputs()) have |= in.name() == f.key;
      if (have) continue;
      v1::InputFile* in = a.add_inputs();
      in->set_name(f.key);
      in->set_path(absl::StrCat(local, "/", f.key.substr(prefix.size())));
      in->set_size(f.size);
      in->set_sha256(f.sha256);
    }
    if (!found) return absl::FailedPreconditionError(absl::StrCat(field, ": ", *path, " no longer exists"));
    *path = (*ref)->name.empty() ? local : absl::StrCat(local, "/", (*ref)->name);
    return absl::OkStatus();
  };
  if (absl::Status s = rewrite("spec.model", spec.mutable_model()); !s.ok()) return s;
  if (absl::Status s = rewrite("spec.data.train", spec.mutable_data()->mutable_train()); !s.ok()) return s;
  if (spec.data().has_validation()) {
    if (absl::Status s = rewrite("spec.data.validation", spec.mutable_data()->mutable_validation()); !s.ok()) return s;
  }
  if (job.checkpoint_step() > 0) {
    const std::string dir = trainer::CheckpointName(job.checkpoint_step());
    const std::string prefix = absl::StrCat("jobs/", job.id(), "/", dir, "/");
    auto files = artifacts_->List(prefix);
    if (!files.ok()) return files.status();
    if (!files->empty()) {
      for (const ArtifactInfo& f : *files) {
        v1::InputFile* in = a.add_inputs();
        in->set_name(f.key);
        in->set_path(absl::StrCat("resume/", dir, "/", f.key.substr(prefix.size())));
        in->set_size(f.size);
        in->set_sha256(f.sha256);
      }
      a.set_resume_from(absl::StrCat("resume/", dir));
      // The previous complete checkpoint too: the trainer falls back to it
      // when the newest fails its checksums (corrupted in the store).
      const std::string job_dir = absl::StrCat("jobs/", job.id(), "/");
      auto all = artifacts_->List(absl::StrCat(job_dir, trainer::kCheckpointsDir, "/"));
      if (!all.ok()) return all.status();
      int64_t previous = 0;
      for (const ArtifactInfo& f : *all) {
        const std::optional<int64_t> s = trainer::CompleteCheckpointStep(f.key.substr(job_dir.size()));
        if (s.has_value() && *s < job.checkpoint_step()) previous = std::max(previous, *s);
      }
      const std::string older = absl::StrCat(trainer::CheckpointName(previous), "/");
      for (const ArtifactInfo& f : *all) {
        if (previous == 0 || !absl::StartsWith(f.key.substr(job_dir.size()), older)) continue;
        v1::InputFile* in = a.add_inputs();
        in->set_name(f.key);
        in->set_path(absl::StrCat("resume/", f.key.substr(job_dir.size())));
        in->set_size(f.size);
        in->set_sha256(f.sha256);
      }
    }
  }
  return absl::OkStatus();
}

void Coordinator::PlaceQueued(StoreMutation& m) {
  if (queued_.empty()) return;
  int total_slots = 0;
  for (const auto& [wid, w] : workers_) total_slots += w.stored.registration.slots_size();
  if (static_cast<int>(assignments_.size()) >= total_slots) return;  // no slot is free
  std::map<std::string, std::set<int>> busy;  // by worker
  std::map<std::string, std::set<int>> ports;  // by host
  for (const auto& [id, a] : assignments_) {
    busy[a.worker_id].insert(a.assignment.slot());
    if (a.assignment.rank() == 0) ports[a.assignment.master_addr()].insert(a.assignment.master_port());
  }
  // Workers heard from longest ago first: a worker learns of its assignment at
  // its next heartbeat, and theirs come soonest. Workers that have missed a
  // heartbeat (perhaps gone) go last. PlaceJobs keeps this order among workers
  // with as many free slots.
  const absl::Time now = absl::Now();
  auto late = [&](const Worker& w) { return now - w.last_seen > 2 * options_.heartbeat_interval; };
  std::vector<const std::pair<const std::string, Worker>*> by_last_seen;
  for (const auto& entry : workers_) by_last_seen.push_back(&entry);
  std::stable_sort(by_last_seen.begin(), by_last_seen.end(), [&](const auto* a, const auto* b) {
    if (late(a->second) != late(b->second)) return !late(a->second);
    return a->second.last_seen < b->second.last_seen;
  });
  std::vector<WorkerSlots> slots;
  for (const auto* entry : by_last_seen) {
    const auto& [wid, w] = *entry;
    WorkerSlots s{wid, {}, w.stored.registration.slots_size()};
    for (const v1::Slot& slot : w.stored.registration.slots()) {
      if (!busy[wid].count(slot.index())) s.free_slots.push_back(slot.index());
    }
    slots.push_back(std::move(s));
  }
  // The queue in start order, as far as PlaceJobs can get with the free
  // slots: up to the first job that does not fit (which holds back the rest).
  int free_slots = 0;
  for (const WorkerSlots& s : slots) free_slots += static_cast<int>(s.free_slots.size());
  std::vector<QueuedJob> queue;
  for (const auto& [neg_priority, order, id] : queued_) {
    const v1::Job& queued = jobs_.at(id);
    QueuedJob q{id, queued.world_size(), {}};
    // Elastic: a retry (it has run before, so it has a checkpoint to resume
    // from) that has waited resources.elastic_wait_seconds for all its slots
    // may start on fewer, down to resources.min_world_size.
    const v1::ResourcesSpec& r = queued.spec().resources();
    const absl::Duration wait = absl::Seconds(r.has_elastic_wait_seconds() ? r.elastic_wait_seconds() : 60);
    if (queued.attempt() >= 1 && r.min_world_size() > 0 && now - runtime_[id].queued_at >= wait) {
      q.fallback_sizes = ElasticFallbackSizes(q.world_size, static_cast<int>(r.min_world_size()),
                                              queued.spec().train().batch_size());
    }
    const bool passed_over = SmallestSize(q) > total_slots;
    const int size = FittingSize(q, free_slots);
    queue.push_back(std::move(q));
    if (passed_over) continue;
    if (size == 0) break;
    free_slots -= size;
  }
  for (const Placement& p : PlaceJobs(queue, slots)) {
    v1::Job& job = m.jobs.emplace_back(jobs_.at(p.job_id));
    job.set_attempt(job.attempt() + 1);
    *job.mutable_schedule_time() = Now();
    job.clear_workers();
    const Worker& rank0 = workers_.at(p.ranks[0].first);
    const std::string host = rank0.stored.registration.host();
    const int port = PickPort(rank0, ports[host]);
    ports[host].insert(port);
    v1::Assignment base;
    base.set_job_id(job.id());
    base.set_attempt(job.attempt());
    base.set_world_size(p.world_size);
    base.set_master_addr(host);
    base.set_master_port(port);
    *base.mutable_spec() = job.spec();
    std::string elastic;
    if (p.world_size != job.world_size()) {
      // Fewer ranks share the same global batch (train.batch_size); each
      // takes a micro-batch that divides its larger share.
      v1::TrainSpec& train = *base.mutable_spec()->mutable_train();
      train.set_micro_batch_size(
          spec::FittingMicroBatchSize(train.batch_size(), train.micro_batch_size(), p.world_size));
      base.mutable_spec()->mutable_resources()->set_world_size(p.world_size);
      elastic = absl::StrCat(" (elastic: ", p.world_size, " of ", job.world_size(), " ranks, no ", job.world_size(),
                             " free slots within resources.elastic_wait_seconds; train.micro_batch_size ",
                             train.micro_batch_size(), ")");
    }
    job.set_current_world_size(p.world_size);
    absl::Status inputs = BuildAssignmentInputs(job, base);
    if (!inputs.ok()) {
      v1::JobError error;
      error.set_code("FAILED_PRECONDITION");
      error.set_message(std::string(inputs.message()));
      error.set_attempt(job.attempt());
      error.set_rank(-1);
      *job.mutable_error() = error;
      SetState(m, job, v1::FAILED, absl::StrCat("cannot start: ", inputs.message()));
      continue;
    }
    for (size_t r = 0; r < p.ranks.size(); ++r) {
      StoredAssignment& a = m.assignments.emplace_back();
      a.worker_id = p.ranks[r].first;
      a.assignment = base;
      a.assignment.set_id(NewAssignmentId());
      a.assignment.set_rank(static_cast<int>(r));
      a.assignment.set_slot(p.ranks[r].second);
      a.assignment.set_local_rank(p.ranks[r].second);
      job.add_workers(p.ranks[r].first);
    }
    SetState(m, job, v1::SCHEDULED,
             absl::StrCat("attempt ", job.attempt(), " placed on ", p.ranks.size(), " slot(s)", elastic, "; rank 0 at ",
                          host, ":", port,
                          job.checkpoint_step() > 0 ? absl::StrCat(", resuming from step ", job.checkpoint_step())
                                                    : std::string()));
    metrics_->JobPlaced(now - runtime_[job.id()].queued_at);
  }
}

// Nothing here waits for the store: the calls that reveal the outcome do.
void Coordinator::ScheduleNow() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!recovery_pending_) {
      StoreMutation reap;
      ReapWorkers(reap);
      Stage(reap);
      StoreMutation place;
      PlaceQueued(place);
      Stage(place);
      UpdateGauges();
      return;
    }
  }
  Recover();  // an earlier reload after a failed write failed; try again
}

}  // namespace d2lora::server
