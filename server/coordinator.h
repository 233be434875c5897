// The coordinator's core: jobs, workers, assignments and the scheduler, with
// every change written through the JobStore before it is acknowledged. The
// gRPC services (job_service.h, worker_service.h) only translate and call it.
//
// Lifecycle of a job: Submit -> QUEUED; the scheduler places an attempt on
// world_size free slots -> SCHEDULED (one assignment per rank, rank 0's
// rendezvous host:port chosen here); every rank reports started -> RUNNING;
// every rank completes -> SUCCEEDED. A rank that fails, or whose worker stops
// heartbeating, fails the attempt: the other ranks are told to stop, and the
// job is QUEUED again (resuming from its last stored checkpoint) while retries
// remain and the error is retryable, else FAILED. Cancel ends the job
// (CANCELLED) at once; its ranks are stopped at their next heartbeat. Pause
// and Resume: coordinator_pause.cc.
//
// Durability without a lock across the disk: a call stages its changes and
// applies them to the in-memory state under mu_, queues them for the store
// (job_store_commit_queue.h: one transaction and one fsync for everything
// queued meanwhile) and, having released mu_, waits until they are durable
// before it answers. A call that only reads waits until everything it could
// have seen is durable, so no answer reveals a change the store could still
// lose. If a write fails, every call whose changes were in it or behind it
// fails, and the in-memory state is reloaded from the store. Scheduling
// rounds keep an index of the queued jobs rather than scanning every job.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "d2lora/v1/job_service.pb.h"
#include "d2lora/v1/worker_service.pb.h"
#include "server/artifact_store.h"
#include "server/job_store.h"
#include "server/job_store_commit_queue.h"
#include "server/scheduling_round.h"

namespace d2lora::server {

class CoordinatorMetrics;  // coordinator_metrics.h

struct CoordinatorOptions {
  absl::Duration heartbeat_interval = absl::Seconds(2);
  absl::Duration heartbeat_timeout = absl::Seconds(20);
  absl::Duration schedule_period = absl::Milliseconds(200);
  int default_max_retries = 2;
  int64_t max_upload_bytes = 16LL << 30;
  bool scheduler_thread = true;  // false: rounds run only on ScheduleNow() (tests)
  int max_commit_batch = 512;    // changes of many calls in one store transaction
  // Where the coordinator says what an operator must know (a job store write
  // that failed, and the reload after it); empty = a timestamped line on stderr.
  std::function<void(absl::string_view)> log;
};

struct EventBatch {
  std::vector<v1::JobEvent> events;
  bool job_ended = false;  // and `events` reaches its last event
};

class Coordinator {
 public:
  // Loads the stored state; workers known before a restart get one heartbeat
  // timeout from now to come back. Starts the scheduler thread. `metrics`
  // outlives the coordinator.
  static absl::StatusOr<std::unique_ptr<Coordinator>> Create(const CoordinatorOptions& options, JobStore* jobs,
                                                             ArtifactStore* artifacts, CoordinatorMetrics* metrics);
  ~Coordinator();

  // --- jobs
  absl::StatusOr<v1::Job> Submit(const v1::SubmitJobRequest& request);
  absl::StatusOr<v1::Job> GetJob(const std::string& id);
  absl::StatusOr<v1::ListJobsResponse> ListJobs(const v1::ListJobsRequest& request);
  absl::StatusOr<v1::Job> Cancel(const std::string& id, const std::string& reason);
  // coordinator_pause.cc: see JobState in job.proto.
  absl::StatusOr<v1::Job> Pause(const std::string& id, const std::string& reason);
  absl::StatusOr<v1::Job> Resume(const std::string& id);
  // Events after `after_seq`, waiting up to `wait` for the first one.
  absl::StatusOr<EventBatch> WaitEvents(const std::string& job_id, int64_t after_seq, absl::Duration wait);
  // coordinator_checkpoints.cc: the job's stored checkpoints with their metrics.
  absl::StatusOr<v1::ListCheckpointsResponse> ListCheckpoints(const std::string& id);
  // NOT_FOUND unless the job exists (artifact calls).
  absl::Status CheckJobExists(const std::string& id);

  // --- workers
  absl::StatusOr<v1::RegisterWorkerResponse> Register(const v1::RegisterWorkerRequest& request);
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request);
  // One pending assignment of the worker's, or none; when none is pending,
  // waits up to `wait` for one to be placed (the long poll), ending early when
  // `cancelled` says so (checked at least every second). The call counts as
  // the worker's sign of life once, when it arrives: only heartbeats keep a
  // worker alive while its lease waits.
  absl::StatusOr<v1::LeaseAssignmentResponse> Lease(const v1::LeaseAssignmentRequest& request,
                                                    absl::Duration wait = absl::ZeroDuration(),
                                                    const std::function<bool()>& cancelled = {});
  absl::StatusOr<v1::ReportProgressResponse> Report(const v1::ReportProgressRequest& request);
  // The assignment, if it belongs to `worker_id` (uploads, downloads).
  absl::StatusOr<v1::Assignment> CheckAssignment(const std::string& worker_id, const std::string& assignment_id);
  // An artifact of the assignment's job was stored; a checkpoint's
  // trainer_state.json completes that checkpoint.
  absl::Status ArtifactStored(const v1::Assignment& assignment, const std::string& name);
  absl::Status Complete(const v1::CompleteAssignmentRequest& request);
  absl::Status Fail(const v1::FailAssignmentRequest& request);
  // The worker shuts down: it is forgotten now (NOT_FOUND if it was already),
  // and its assignments end as a lost worker's do, the reason saying it left.
  absl::Status Leave(const v1::LeaveWorkerRequest& request);

  // One scheduler round (reap lost workers, place queued jobs); the thread
  // runs it every schedule_period and after changes.
  void ScheduleNow();

  const CoordinatorOptions& options() const { return options_; }
  // Transactions and changes written so far (group commit).
  CommitQueue::Stats commit_stats() const { return commits_->stats(); }

 private:
  struct Worker {
    StoredWorker stored;
    absl::Time last_seen;
    bool draining = false;  // as its last heartbeat said: nothing is placed on it
  };
  struct JobRuntime {
    int64_t last_seq = 0;
    absl::Time queued_at;  // for the scheduling latency
    int64_t order = 0;     // index in job_order_
  };
  // Start order of the queued jobs: priority (highest first), then submission.
  using QueueKey = std::tuple<int, int64_t, std::string>;  // (-priority, order, id)

  Coordinator(const CoordinatorOptions& options, JobStore* jobs, ArtifactStore* artifacts,
              CoordinatorMetrics* metrics);
  absl::Status LoadState();
  void AdoptLocked(const StoredState& state);
  void Loop();
  // A store write failed (the commit queue's writer thread): count it, log
  // it, and Recover(): reload the state the store has.
  void StoreWriteFailed(const absl::Status& error);
  void Recover();
  void Log(absl::string_view message) const;
  // Until the changes with `ticket` are durable; mu_ NOT held.
  absl::Status Durable(uint64_t ticket) { return commits_->Wait(ticket); }

  // Takes mu_, looks the job up and lets `change` stage a change in `m` (and
  // return the changed job) or return the job as it is, or an error; answers
  // once what it returns is durable. NOT_FOUND for an unknown job.
  using JobChange = std::function<absl::StatusOr<v1::Job>(const v1::Job& current, StoreMutation& m)>;
  absl::StatusOr<v1::Job> ChangeJob(const std::string& id, const JobChange& change);
  // All below: mu_ held. They stage changes in `m`; Stage applies them and
  // queues them for the store, returning the ticket to wait for (Durable)
  // once mu_ is released.
  v1::JobEvent& AddEvent(StoreMutation& m, const std::string& job_id);
  void SetState(StoreMutation& m, v1::Job& job, v1::JobState state, const std::string& message);
  uint64_t Stage(StoreMutation& m);
  // What an answer that reveals the current state must wait for.
  uint64_t Visible() const { return commits_->last_ticket(); }
  void ApplyStaged(const StoreMutation& m);
  void EndAttempt(StoreMutation& m, v1::Job& job, const v1::JobError& error, bool retryable);
  void StopAssignmentsOf(StoreMutation& m, const std::string& job_id, int attempt);
  // Whether the attempt still has an assignment other than `except` that `m`
  // does not delete.
  bool AttemptHasAssignmentsLocked(const StoreMutation& m, const std::string& job_id, int attempt,
                                   const std::string& except) const;
  // A PAUSING job whose ranks have all ended: PAUSED.
  void FinishPause(StoreMutation& m, v1::Job& job);
  // A PAUSING job's assignment ended (reported, or its worker lost): the last
  // one makes the job PAUSED, or SUCCEEDED when rank 0 had completed the run.
  void PausingAssignmentEnded(StoreMutation& m, v1::Job& job, const std::string& assignment_id);
  absl::Status EndAssignment(const std::string& worker_id, const std::string& assignment_id,
                             const std::function<void(StoreMutation&, v1::Job&, const v1::Assignment&)>& update);
  // The scheduling round (its reading parts in scheduling_round.h).
  std::vector<WorkerView> WorkerViews() const;
  void ReapWorkers(StoreMutation& m);
  // Forgets worker `wid` and ends its assignments' attempts (retryable, error `why`).
  void DropWorker(StoreMutation& m, const std::string& wid, const std::string& why);
  void PlaceQueued(StoreMutation& m);
  absl::Status CheckSubmit(const v1::SubmitJobRequest& request, v1::Job& job);
  // A new job's spec.init.from_job: copies the source's adapter into a new
  // upload, points spec.init.adapter at it and returns what the job's first
  // event says of it. mu_ NOT held.
  absl::StatusOr<std::string> ResolveInitFromJob(v1::Job& job);
  void UpdateGauges();
  StoredAssignment* FindAssignment(const std::string& id);
  // The worker, its heartbeat clock reset; NOT_FOUND when it is not registered.
  absl::StatusOr<Worker*> TouchWorker(const std::string& worker_id);
  // The assignment if it belongs to `worker_id` (whose clock is reset).
  absl::StatusOr<StoredAssignment*> CheckAssignmentLocked(const std::string& worker_id,
                                                          const std::string& assignment_id);

  const CoordinatorOptions options_;
  JobStore* store_;
  ArtifactStore* artifacts_;

  std::mutex mu_;
  std::condition_variable events_cv_;  // a job got an event
  // Long-polling leases wait on their worker's own variable, so that placing
  // a rank wakes only that worker's calls, not every waiting call (each of
  // which would take mu_ and scan the assignments: measured, a herd under load).
  struct LeaseWaiters {
    std::condition_variable cv;
    int waiting = 0;
  };
  std::map<std::string, std::shared_ptr<LeaseWaiters>> lease_waiters_;  // by worker id
  void WakeLeases(const std::string& worker_id);                          // mu_ held
  std::condition_variable wake_;       // the scheduler has work
  bool stopping_ = false;
  bool wake_pending_ = false;
  bool recovery_pending_ = false;  // a reload after a failed write failed too
  // The log says a failed write at most every 10 s, with a
  // count of those it did not report, and the reload that follows a report.
  absl::Time next_store_failure_log_ = absl::InfinitePast();
  int64_t store_failures_unlogged_ = 0;
  bool log_next_reload_ = false;
  std::map<std::string, v1::Job> jobs_;
  std::map<std::string, JobRuntime> runtime_;
  std::vector<std::string> job_order_;  // submission order
  std::map<std::string, std::string> idempotency_;  // key -> job id
  std::map<std::string, Worker> workers_;
  std::map<std::string, StoredAssignment> assignments_;
  std::set<QueueKey> queued_;             // the QUEUED jobs
  std::map<v1::JobState, int> state_counts_;

  CoordinatorMetrics* const metrics_;  // recorded under mu_

  std::thread thread_;
  std::unique_ptr<CommitQueue> commits_;  // destroyed first: it drains into the store
};

}  // namespace d2lora::server
