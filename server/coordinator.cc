#include "server/coordinator.h"
#include "server/coordinator_metrics.h"

#include <algorithm>
#include <cstdio>
#include <random>

#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/util/time_util.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log_line.h"
#include "common/rpc/job_state.h"
#include "server/job_ids.h"
#include "server/submit_check.h"
#include "server/submit_memory.h"

namespace d2lora::server {
namespace {

using rpc::IsTerminal;

using google::protobuf::util::TimeUtil;

constexpr absl::Duration kStoreFailureLogPeriod = absl::Seconds(10);

// To the nanosecond: protobuf's TimeUtil::GetCurrentTime() has whole seconds only.
google::protobuf::Timestamp Now() { return TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(absl::Now())); }

// The part of a job that a repeated submit with the same idempotency key must match.
v1::Job RequestPart(const v1::Job& job) {
  v1::Job part;
  *part.mutable_spec() = job.spec();
  // The copy of init.from_job's adapter is the coordinator's, not the request's.
  if (!part.spec().init().from_job().empty()) part.mutable_spec()->mutable_init()->clear_adapter();
  part.set_world_size(job.world_size());
  part.set_priority(job.priority());
  part.set_max_retries(job.max_retries());
  *part.mutable_labels() = job.labels();
  return part;
}

}  // namespace

Coordinator::Coordinator(const CoordinatorOptions& options, JobStore* jobs, ArtifactStore* artifacts,
                         CoordinatorMetrics* metrics)
    : options_(options), store_(jobs), artifacts_(artifacts), metrics_(metrics) {}

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(const CoordinatorOptions& options, JobStore* jobs,
                                                                 ArtifactStore* artifacts,
                                                                 CoordinatorMetrics* metrics) {
  std::unique_ptr<Coordinator> c(new Coordinator(options, jobs, artifacts, metrics));
  CommitQueueOptions commit;
  commit.max_batch = options.max_commit_batch;
  commit.on_failure = [p = c.get()](const absl::Status& error) { p->StoreWriteFailed(error); };
  auto commits = CommitQueue::Create(jobs, std::move(commit));
  if (!commits.ok()) return commits.status();
  c->commits_ = *std::move(commits);
  if (absl::Status s = c->LoadState(); !s.ok()) return s;
  if (options.scheduler_thread) c->thread_ = std::thread([p = c.get()] { p->Loop(); });
  return c;
}

Coordinator::~Coordinator() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  events_cv_.notify_all();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, waiters] : lease_waiters_) waiters->cv.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  commits_.reset();  // what is queued is written (and Recover may still run)
}

absl::Status Coordinator::LoadState() {
  auto state = store_->Load();
  if (!state.ok()) return state.status();
  std::lock_guard<std::mutex> lock(mu_);
  AdoptLocked(*state);
  return absl::OkStatus();
}

void Coordinator::AdoptLocked(const StoredState& state) {
  jobs_.clear();
  runtime_.clear();
  job_order_.clear();
  idempotency_.clear();
  workers_.clear();
  assignments_.clear();
  queued_.clear();
  state_counts_.clear();
  const absl::Time now = absl::Now();
  for (size_t i = 0; i < state.jobs.size(); ++i) {
    const v1::Job& job = state.jobs[i];
    jobs_[job.id()] = job;
    const int64_t order = static_cast<int64_t>(job_order_.size());
    job_order_.push_back(job.id());
    if (!job.idempotency_key().empty()) idempotency_[job.idempotency_key()] = job.id();
    runtime_[job.id()] = JobRuntime{state.last_event_seq[i], now, order};
    state_counts_[job.state()]++;
    if (job.state() == v1::QUEUED) queued_.emplace(-job.priority(), order, job.id());
    if (!IsTerminal(job.state())) metrics_->training().Set(job.id(), job.metrics());
  }
  for (const StoredWorker& w : state.workers) workers_[w.id] = Worker{w, now, false};
  for (const StoredAssignment& a : state.assignments) assignments_[a.assignment.id()] = a;
  UpdateGauges();
}

void Coordinator::Log(absl::string_view message) const {
  if (options_.log) {
    options_.log(message);
    return;
  }
  const std::string line = LogLine("d2lora-coordinator", message, absl::Now());
  std::fwrite(line.data(), 1, line.size(), stderr);
}

void Coordinator::StoreWriteFailed(const absl::Status& error) {
  metrics_->StoreWriteFailed();
  {
    // While the cause lasts (a full disk) every write fails: one line per
    // period, not one per write.
    std::lock_guard<std::mutex> lock(mu_);
    const absl::Time now = absl::Now();
    if (now < next_store_failure_log_) {
      ++store_failures_unlogged_;
    } else {
      const std::string more = store_failures_unlogged_ == 0
                                   ? ""
                                   : absl::StrCat(" (", store_failures_unlogged_, " more since the last report)");
      Log(absl::StrCat("a job store write failed (", error.ToString(), ")", more, "; the calls waiting on it ",
                       "failed, and the coordinator reloads its state from the store"));
      store_failures_unlogged_ = 0;
      next_store_failure_log_ = now + kStoreFailureLogPeriod;
      log_next_reload_ = true;
    }
  }
  Recover();
}

// After a failed write: every call whose changes were lost has been failed;
// the memory goes back to what the store has.
void Coordinator::Recover() {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return;  // the queue is draining in the destructor; nothing answers any more
  auto state = store_->Load();
  if (!state.ok()) {
    if (!recovery_pending_) {
      Log(absl::StrCat("reloading the job store failed (", state.status().ToString(),
                       "); calls that write fail until a reload succeeds (retried every scheduling round)"));
    }
    recovery_pending_ = true;  // writes keep failing; the scheduler round tries again
    return;
  }
  AdoptLocked(*state);
  if (log_next_reload_) Log(absl::StrCat("reloaded ", state->jobs.size(), " job(s) from the job store; writes resume"));
  log_next_reload_ = false;
  recovery_pending_ = false;
  commits_->Resume();
  events_cv_.notify_all();
  wake_pending_ = true;
  wake_.notify_all();
}

void Coordinator::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, absl::ToChronoMilliseconds(options_.schedule_period),
                   [this] { return stopping_ || wake_pending_; });
    if (stopping_) break;
    wake_pending_ = false;
    lock.unlock();
    ScheduleNow();
    lock.lock();
  }
}

// ---------------------------------------------------------------- staging

v1::JobEvent& Coordinator::AddEvent(StoreMutation& m, const std::string& job_id) {
  int64_t seq = runtime_[job_id].last_seq;
  for (const v1::JobEvent& e : m.events) {
    if (e.job_id() == job_id) seq = std::max(seq, e.seq());
  }
  v1::JobEvent& e = m.events.emplace_back();
  e.set_job_id(job_id);
  e.set_seq(seq + 1);
  *e.mutable_time() = Now();
  return e;
}

void Coordinator::SetState(StoreMutation& m, v1::Job& job, v1::JobState state, const std::string& message) {
  job.set_state(state);
  if (IsTerminal(state)) *job.mutable_end_time() = Now();
  v1::StateChange* change = AddEvent(m, job.id()).mutable_state();
  change->set_state(state);
  change->set_attempt(job.attempt());
  change->set_message(message);
}

uint64_t Coordinator::Stage(StoreMutation& m) {
  if (m.empty()) return Visible();
  ApplyStaged(m);
  const uint64_t ticket = commits_->Enqueue(std::move(m));
  m = StoreMutation();
  return ticket;
}

void Coordinator::ApplyStaged(const StoreMutation& m) {
  const absl::Time now = absl::Now();
  bool wake = false;
  for (const v1::Job& job : m.jobs) {
    auto it = jobs_.find(job.id());
    const bool is_new = it == jobs_.end();
    const v1::JobState before = is_new ? v1::JOB_STATE_UNSPECIFIED : it->second.state();
    JobRuntime& runtime = runtime_[job.id()];
    if (is_new) {
      runtime.order = static_cast<int64_t>(job_order_.size());
      job_order_.push_back(job.id());
      if (!job.idempotency_key().empty()) idempotency_[job.idempotency_key()] = job.id();
    } else {
      state_counts_[before]--;
    }
    state_counts_[job.state()]++;
    if (before == v1::QUEUED) queued_.erase(QueueKey(-it->second.priority(), runtime.order, job.id()));
    if (job.state() == v1::QUEUED) queued_.emplace(-job.priority(), runtime.order, job.id());
    if (job.state() == v1::QUEUED && before != v1::QUEUED) {
      runtime.queued_at = now;
      wake = true;
    }
    if (IsTerminal(job.state()) && !IsTerminal(before)) {
      metrics_->JobFinished(job.state());
      metrics_->training().Remove(job.id());
    }
    jobs_[job.id()] = job;
  }
  for (const v1::JobEvent& e : m.events) {
    JobRuntime& r = runtime_[e.job_id()];
    r.last_seq = std::max(r.last_seq, e.seq());
  }
  for (const StoredWorker& w : m.workers) {
    auto it = workers_.find(w.id);
    if (it == workers_.end()) {
      workers_[w.id] = Worker{w, now, false};
    } else {
      it->second.stored = w;
    }
    wake = true;
  }
  for (const std::string& id : m.deleted_workers) {
    workers_.erase(id);
    WakeLeases(id);  // its waiting leases answer NOT_FOUND
  }
  for (const StoredAssignment& a : m.assignments) {
    assignments_[a.assignment.id()] = a;
    if (a.state == AssignmentState::kPending) WakeLeases(a.worker_id);
  }
  for (const std::string& id : m.deleted_assignments) {
    if (assignments_.erase(id)) wake = true;  // a slot came free
  }
  if (!m.events.empty()) events_cv_.notify_all();
  if (wake) {
    wake_pending_ = true;
    wake_.notify_all();
  }
}

StoredAssignment* Coordinator::FindAssignment(const std::string& id) {
  auto it = assignments_.find(id);
  return it == assignments_.end() ? nullptr : &it->second;
}

// The attempt's ranks that a worker holds are told to stop; ranks not leased
// yet are withdrawn.
void Coordinator::StopAssignmentsOf(StoreMutation& m, const std::string& job_id, int attempt) {
  for (auto& [id, a] : assignments_) {
    if (a.assignment.job_id() != job_id || a.assignment.attempt() != attempt) continue;
    if (std::find(m.deleted_assignments.begin(), m.deleted_assignments.end(), id) != m.deleted_assignments.end()) continue;
    if (a.state == AssignmentState::kPending) {
      m.deleted_assignments.push_back(id);
      continue;
    }
    StoredAssignment* staged = nullptr;
    for (StoredAssignment& s : m.assignments) {
      if (s.assignment.id() == id) staged = &s;
    }
    if (staged == nullptr) staged = &m.assignments.emplace_back(a);
    staged->stop_requested = true;
  }
}

void Coordinator::EndAttempt(StoreMutation& m, v1::Job& job, const v1::JobError& error, bool retryable) {
  metrics_->AttemptFailed();
  StopAssignmentsOf(m, job.id(), job.attempt());
  *job.mutable_error() = error;
  const int failed_attempts = job.attempt() - job.pauses();  // a pause is not a failure
  const bool retry = retryable && failed_attempts <= job.max_retries();
  if (retry) {
    SetState(m, job, v1::QUEUED,
             absl::StrCat("attempt ", job.attempt(), " failed (", error.code(), ": ", error.message(),
                          "); retrying", job.checkpoint_step() > 0
                                             ? absl::StrCat(" from the checkpoint at step ", job.checkpoint_step())
                                             : std::string(" from the start"),
                          " (try ", failed_attempts + 1, " of ", job.max_retries() + 1, ")"));
  } else {
    SetState(m, job, v1::FAILED,
             absl::StrCat("attempt ", job.attempt(), " failed (", error.code(), ": ", error.message(), ")",
                          retryable ? "; no retries left" : "; not retryable"));
  }
}

void Coordinator::UpdateGauges() {
  int64_t slots = 0;
  for (const auto& [id, w] : workers_) slots += w.stored.registration.slots_size();
  metrics_->SetState(state_counts_, static_cast<int64_t>(queued_.size()), static_cast<int64_t>(workers_.size()),
                     slots, static_cast<int64_t>(assignments_.size()));
  if (commits_) {
    const CommitQueue::Stats now = commits_->stats();
    metrics_->StoreTotals(static_cast<int64_t>(now.batches), static_cast<int64_t>(now.mutations));
  }
}

// ---------------------------------------------------------------- jobs

absl::StatusOr<v1::Job> Coordinator::Submit(const v1::SubmitJobRequest& request) {
  auto checked = CheckSubmitRequest(request, *artifacts_, options_.default_max_retries);
  if (!checked.ok()) return checked.status();
  v1::Job job = *std::move(checked);
  auto memory = PlanJobMemory(job.spec(), *artifacts_);
  if (!memory.ok()) return memory.status();
  job.set_memory_plan_bytes(memory->bytes);
  // A retried request answers with its job: nothing is refused or copied again.
  bool known = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    known = !job.idempotency_key().empty() && idempotency_.count(job.idempotency_key()) > 0;
    if (!known) {
      std::vector<const v1::RegisterWorkerRequest*> workers;
      for (const auto& [wid, w] : workers_) workers.push_back(&w.stored.registration);
      if (absl::Status fits = CheckFitsAWorker(job.memory_plan_bytes(), workers); !fits.ok()) return fits;
    }
  }
  std::string init_note;
  if (!job.spec().init().from_job().empty()) {
    if (!known) {
      auto note = ResolveInitFromJob(job);
      if (!note.ok()) return note.status();
      init_note = *std::move(note);
    }
  }
  v1::Job answer;
  uint64_t ticket = 0;
  bool duplicate = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = job.idempotency_key().empty() ? idempotency_.end() : idempotency_.find(job.idempotency_key());
    if (it != idempotency_.end()) {
      const v1::Job& existing = jobs_.at(it->second);
      if (!google::protobuf::util::MessageDifferencer::Equals(RequestPart(existing), RequestPart(job))) {
        return absl::AlreadyExistsError(absl::StrCat("idempotency_key \"", job.idempotency_key(),
                                                     "\" was used by job ", existing.id(),
                                                     " with a different request"));
      }
      answer = existing;
      ticket = Visible();
      duplicate = true;
    } else {
      job.set_id(NewJobId());
      *job.mutable_create_time() = Now();
      StoreMutation m;
      v1::Job& staged = m.jobs.emplace_back(job);
      SetState(m, staged, v1::QUEUED, absl::StrCat("submitted", init_note, "; ", memory->note));
      answer = staged;
      ticket = Stage(m);
    }
  }
  if (duplicate && !init_note.empty()) {
    // The same request won the race while this one copied: drop the copy.
    (void)artifacts_->Delete(absl::StrCat("uploads/", job.spec().init().adapter().substr(sizeof(kUploadScheme) - 1)));
  }
  if (absl::Status s = Durable(ticket); !s.ok()) return s;
  return answer;
}

absl::StatusOr<v1::Job> Coordinator::GetJob(const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("id: required");
  v1::Job answer;
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
    answer = it->second;
    ticket = Visible();
  }
  if (absl::Status s = Durable(ticket); !s.ok()) return s;
  return answer;
}

absl::Status Coordinator::CheckJobExists(const std::string& id) { return GetJob(id).status(); }

absl::StatusOr<v1::ListJobsResponse> Coordinator::ListJobs(const v1::ListJobsRequest& request) {
  if (request.page_size() < 0 || request.page_size() > 1000) {
    return absl::InvalidArgumentError(absl::StrCat("page_size = ", request.page_size(), ": must be in [0, 1000]"));
  }
  for (int s : request.states()) {
    if (!v1::JobState_IsValid(s) || s == v1::JOB_STATE_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat("states: unknown job state ", s));
    }
  }
  const int page_size = request.page_size() == 0 ? 100 : request.page_size();
  v1::ListJobsResponse response;
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ticket = Visible();
    int64_t start = static_cast<int64_t>(job_order_.size()) - 1;  // newest first
    if (!request.page_token().empty()) {
      if (!absl::SimpleAtoi(request.page_token(), &start) || start < 0 ||
          start >= static_cast<int64_t>(job_order_.size())) {
        return absl::InvalidArgumentError(absl::StrCat("page_token \"", request.page_token(), "\": not a token from ListJobs"));
      }
    }
    for (int64_t i = start; i >= 0; --i) {
      const v1::Job& job = jobs_.at(job_order_[static_cast<size_t>(i)]);
      if (request.states_size() > 0 &&
          std::find(request.states().begin(), request.states().end(), job.state()) == request.states().end()) {
        continue;
      }
      bool labels_match = true;
      for (const auto& [k, v] : request.labels()) {
        auto it = job.labels().find(k);
        if (it == job.labels().end() || it->second != v) labels_match = false;
      }
      if (!labels_match) continue;
      if (response.jobs_size() == page_size) {
        response.set_next_page_token(std::to_string(i));
        break;
      }
      *response.add_jobs() = job;
    }
  }
  if (absl::Status s = Durable(ticket); !s.ok()) return s;
  return response;
}

absl::StatusOr<v1::Job> Coordinator::ChangeJob(const std::string& id, const JobChange& change) {
  if (id.empty()) return absl::InvalidArgumentError("id: required");
  v1::Job answer;
  uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("job ", id, " not found"));
    StoreMutation m;
    absl::StatusOr<v1::Job> changed = change(it->second, m);
    if (!changed.ok()) return changed.status();
    answer = *std::move(changed);
    ticket = Stage(m);  // nothing staged: what is visible
  }
  if (absl::Status s = Durable(ticket); !s.ok()) return s;
  return answer;
}

absl::StatusOr<v1::Job> Coordinator::Cancel(const std::string& id, const std::string& reason) {
  if (reason.size() > 1024) return absl::InvalidArgumentError("reason: longer than 1024 bytes");
  return ChangeJob(id, [&](const v1::Job& current, StoreMutation& m) -> absl::StatusOr<v1::Job> {
    if (IsTerminal(current.state())) return current;  // nothing to do
    v1::Job& job = m.jobs.emplace_back(current);
    job.set_cancel_requested(true);
    StopAssignmentsOf(m, id, job.attempt());
    SetState(m, job, v1::CANCELLED, reason.empty() ? "cancelled" : absl::StrCat("cancelled: ", reason));
    return job;
  });
}

absl::StatusOr<EventBatch> Coordinator::WaitEvents(const std::string& job_id, int64_t after_seq, absl::Duration wait) {
  if (after_seq < 0) return absl::InvalidArgumentError("after_seq: must be >= 0");
  int64_t last = 0;
  bool ended = false;
  uint64_t ticket = 0;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
    events_cv_.wait_for(lock, absl::ToChronoMilliseconds(wait), [&] {
      return stopping_ || runtime_[job_id].last_seq > after_seq || IsTerminal(jobs_.at(job_id).state());
    });
    last = runtime_[job_id].last_seq;
    ended = IsTerminal(jobs_.at(job_id).state());
    ticket = Visible();
  }
  // The events up to `last` are in the store once what is visible is durable.
  if (absl::Status s = Durable(ticket); !s.ok()) return s;
  EventBatch batch;
  if (last > after_seq) {
    auto events = store_->ReadEvents(job_id, after_seq, 500);
    if (!events.ok()) return events.status();
    batch.events = *std::move(events);
  }
  const int64_t reached = batch.events.empty() ? after_seq : batch.events.back().seq();
  batch.job_ended = ended && reached >= last;
  return batch;
}

}  // namespace d2lora::server
