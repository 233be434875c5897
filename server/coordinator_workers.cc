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
#include "server/job_checkpoints.h"
#include "server/job_ids.h"
#include "server/job_summary.h"
#include "server/scheduler.h"
#include "server/scheduling_round.h"
#include "server/submit_check.h"

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
    auto w = TouchWorker(request.worker_id());
    if (!w.ok()) return w.status();
    if (request.draining() && !(*w)->draining) {
      Log(absl::StrCat("worker ", (*w)->stored.registration.name(), " (", request.worker_id(),
                       ") is draining (shutting down): nothing more is placed on it"));
    }
    (*w)->draining = request.draining();
    for (const auto& [id, a] : assignments_) {
      if (a.worker_id != request.worker_id()) continue;
      if (a.stop_requested) {
        v1::WorkerCommand* c = response.add_commands();
        c->set_type(v1::WorkerCommand::STOP);
        c->set_assignment_id(id);
        const auto job = jobs_.find(a.assignment.job_id());
        const v1::JobState state = job != jobs_.end() ? job->second.state() : v1::JOB_STATE_UNSPECIFIED;
        c->set_reason(state == v1::CANCELLED ? "job cancelled"
                      : state == v1::PAUSING ? "job paused: checkpoint and stop"
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

absl::StatusOr<v1::LeaseAssignmentResponse> Coordinator::Lease(const v1::LeaseAssignmentRequest& request,
                                                               absl::Duration wait,
                                                               const std::function<bool()>& cancelled) {
  v1::LeaseAssignmentResponse response;
  uint64_t ticket = 0;
  {
    const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoMilliseconds(wait);
    std::unique_lock<std::mutex> lock(mu_);
    if (auto w = TouchWorker(request.worker_id()); !w.ok()) return w.status();
    std::shared_ptr<LeaseWaiters> waiters;  // registered on the first wait
    struct Leave {
      Coordinator* c;
      const std::string& worker;
      std::shared_ptr<LeaseWaiters>& waiters;
      ~Leave() {  // mu_ held: the lock below outlives this
        if (waiters && --waiters->waiting == 0) c->lease_waiters_.erase(worker);
      }
    } leave{this, request.worker_id(), waiters};
    while (true) {
      // Checked again after every wait: the worker may have been declared lost
      // meanwhile. A waiting call does not keep it alive: that is the heartbeats'.
      if (workers_.find(request.worker_id()) == workers_.end()) return UnknownWorker(request.worker_id());
      for (const auto& [id, a] : assignments_) {
        if (a.worker_id != request.worker_id() || a.state != AssignmentState::kPending) continue;
        StoreMutation m;
        StoredAssignment& staged = m.assignments.emplace_back(a);
        staged.state = AssignmentState::kLeased;
        *response.mutable_assignment() = a.assignment;
        ticket = Stage(m);
        break;
      }
      const auto now = std::chrono::steady_clock::now();
      if (response.has_assignment() || stopping_ || now >= deadline) break;
      if (!waiters) {
        std::shared_ptr<LeaseWaiters>& slot = lease_waiters_[request.worker_id()];
        if (!slot) slot = std::make_shared<LeaseWaiters>();
        waiters = slot;
        ++waiters->waiting;
      }
      // In slices of at most a second, so that a cancelled call ends soon;
      // whether it was cancelled is asked (of gRPC, which polls) only when a
      // slice ends, and without mu_.
      const auto slice_end = std::min(deadline, now + std::chrono::seconds(1));
      if (waiters->cv.wait_until(lock, slice_end) == std::cv_status::timeout && slice_end < deadline && cancelled) {
        lock.unlock();
        const bool gone = cancelled();
        lock.lock();
        if (gone) break;
      }
    }
  }
  if (absl::Status s = Durable(ticket); !s.ok()) return s;
  return response;
}

void Coordinator::WakeLeases(const std::string& worker_id) {
  auto it = lease_waiters_.find(worker_id);
  if (it != lease_waiters_.end()) it->second->cv.notify_all();
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
  // Keep the newest `keep` stored checkpoints (complete or not).
  auto stored = StoredCheckpoints(*artifacts_, assignment.job_id());
  if (!stored.ok()) return stored.status();
  std::map<int64_t, StoredCheckpoint>& steps = *stored;
  while (static_cast<int64_t>(steps.size()) > keep && steps.begin()->first < step) {
    const std::string folder =
        absl::StrCat("jobs/", assignment.job_id(), "/", trainer::CheckpointName(steps.begin()->first));
    if (absl::Status s = artifacts_->Delete(folder); !s.ok()) return s;
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
        job_it->second.state() != v1::PAUSED && job_it->second.attempt() == asg.attempt()) {
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
                         if (job.state() == v1::PAUSING) return PausingAssignmentEnded(m, job, asg.id());
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
                         // Stopped for a pause (or failed meanwhile): resuming retries it.
                         if (job.state() == v1::PAUSING) return PausingAssignmentEnded(m, job, asg.id());
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

std::vector<WorkerView> Coordinator::WorkerViews() const {
  std::vector<WorkerView> views;
  views.reserve(workers_.size());
  for (const auto& [id, w] : workers_) views.push_back(WorkerView{id, &w.stored.registration, w.last_seen, w.draining});
  return views;
}

void Coordinator::ReapWorkers(StoreMutation& m) {
  const absl::Time now = absl::Now();
  for (const std::string& wid : LostWorkers(WorkerViews(), now, options_.heartbeat_timeout)) {
    const Worker& w = workers_.at(wid);
    metrics_->WorkerLost();
    DropWorker(m, wid,
               absl::StrCat("worker ", w.stored.registration.name(), " (", wid, ") was lost: no heartbeat for ",
                            absl::FormatDuration(now - w.last_seen)));
  }
}

void Coordinator::DropWorker(StoreMutation& m, const std::string& wid, const std::string& why) {
  m.deleted_workers.push_back(wid);
  for (const auto& [aid, a] : assignments_) {
    if (a.worker_id != wid || Contains(m.deleted_assignments, aid)) continue;
    m.deleted_assignments.push_back(aid);
    auto job_it = jobs_.find(a.assignment.job_id());
    if (job_it == jobs_.end() || IsTerminal(job_it->second.state()) || job_it->second.state() == v1::PAUSED ||
        job_it->second.attempt() != a.assignment.attempt()) {
      continue;
    }
    v1::Job* job = nullptr;
    for (v1::Job& j : m.jobs) {
      if (j.id() == job_it->first) job = &j;
    }
    if (job != nullptr && (IsTerminal(job->state()) || job->state() == v1::QUEUED || job->state() == v1::PAUSED)) {
      continue;  // ended this round
    }
    if (job == nullptr) job = &m.jobs.emplace_back(job_it->second);
    if (job->state() == v1::PAUSING) {  // its checkpoint is lost with the worker; the last stored one stays
      PausingAssignmentEnded(m, *job, aid);
      continue;
    }
    v1::JobError error;
    error.set_code("UNAVAILABLE");
    error.set_message(why);
    error.set_rank(a.assignment.rank());
    error.set_attempt(a.assignment.attempt());
    EndAttempt(m, *job, error, /*retryable=*/true);
  }
}

absl::Status Coordinator::Leave(const v1::LeaveWorkerRequest& request) {
  if (request.reason().size() > 1024) return absl::InvalidArgumentError("reason: longer than 1 KiB");
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = workers_.find(request.worker_id());
    if (it == workers_.end()) return UnknownWorker(request.worker_id());
    metrics_->WorkerLeft();
    StoreMutation m;
    DropWorker(m, request.worker_id(),
               absl::StrCat("worker ", it->second.stored.registration.name(), " (", request.worker_id(), ") left",
                            request.reason().empty() ? "" : ": ", request.reason()));
    ticket = Stage(m);
  }
  return Durable(ticket);
}

void Coordinator::PlaceQueued(StoreMutation& m) {
  if (queued_.empty()) return;
  int total_slots = 0;
  for (const auto& [wid, w] : workers_) total_slots += w.stored.registration.slots_size();
  if (static_cast<int>(assignments_.size()) >= total_slots) return;  // no slot is free
  std::map<std::string, std::set<int>> busy;   // by worker
  std::map<std::string, std::set<int>> ports;  // by host
  for (const auto& [id, a] : assignments_) {
    busy[a.worker_id].insert(a.assignment.slot());
    if (a.assignment.rank() == 0) ports[a.assignment.master_addr()].insert(a.assignment.master_port());
  }
  const absl::Time now = absl::Now();
  const std::vector<WorkerSlots> slots = FreeSlots(WorkerViews(), busy, now, options_.heartbeat_interval);
  int free_slots = 0;
  for (const WorkerSlots& s : slots) free_slots += static_cast<int>(s.free_slots.size());
  PlacementQueue queue(free_slots, total_slots, now);
  for (const auto& [neg_priority, order, id] : queued_) {
    if (!queue.Add(jobs_.at(id), runtime_[id].queued_at)) break;
  }
  static thread_local std::mt19937 rng{std::random_device{}()};
  for (const Placement& p : PlaceJobs(queue.jobs(), slots)) {
    v1::Job& job = m.jobs.emplace_back(jobs_.at(p.job_id));
    job.set_attempt(job.attempt() + 1);
    *job.mutable_schedule_time() = Now();
    job.clear_workers();
    const v1::RegisterWorkerRequest& rank0 = workers_.at(p.ranks[0].first).stored.registration;
    const std::string host = rank0.host();
    const int port = PickPort(rank0, ports[host], rng);
    ports[host].insert(port);
    std::string elastic;
    v1::Assignment base = AssignmentBase(job, p, host, port, &elastic);
    job.set_current_world_size(p.world_size);
    std::string resume_note;
    if (absl::Status inputs = AddAssignmentInputs(job, *artifacts_, base, &resume_note); !inputs.ok()) {
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
                          host, ":", port, resume_note));
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
