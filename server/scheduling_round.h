// The parts of the coordinator's scheduling round that read its state and
// change none of it; the coordinator takes their answers and records the
// outcome under its lock (coordinator_workers.cc). Placement itself is
// scheduler.h's pure PlaceJobs; this prepares its inputs and turns its
// placements into assignments:
//
//   LostWorkers      workers whose last heartbeat is older than the timeout
//   FreeSlots        every worker's free slots, in the order placement prefers
//   PlacementQueue   the queued jobs as PlaceJobs sees them (elastic fallbacks)
//   PickPort         a rendezvous port on rank 0's host
//   AssignmentBase   what every rank of a placed attempt starts from
//   AddAssignmentInputs  the files a rank downloads: uploads, the checkpoint
//                        (job_checkpoints.h reads the stored checkpoints)
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "d2lora/v1/job.pb.h"
#include "d2lora/v1/worker_service.pb.h"
#include "server/artifact_store.h"
#include "server/scheduler.h"

namespace d2lora::server {

// A registered worker as the round sees it.
struct WorkerView {
  std::string id;
  const v1::RegisterWorkerRequest* registration = nullptr;  // never null
  absl::Time last_seen;
  bool draining = false;  // shutting down: it gets nothing new
};

// The ids of the workers not heard from within `timeout` of `now`.
std::vector<std::string> LostWorkers(const std::vector<WorkerView>& workers, absl::Time now, absl::Duration timeout);

// Each worker's slots not in `busy` (slot indices by worker id). Workers
// heard from longest ago come first: a worker learns of its assignment at its
// next heartbeat, and theirs come soonest. Workers that have missed two
// heartbeats (perhaps gone) go last. PlaceJobs keeps this order among workers
// with as many free slots. A draining worker has none.
std::vector<WorkerSlots> FreeSlots(const std::vector<WorkerView>& workers,
                                   const std::map<std::string, std::set<int>>& busy, absl::Time now,
                                   absl::Duration heartbeat_interval);

// The queue as PlaceJobs takes it, built one job at a time in start order
// (the queue may be long; only its head is read): as far as the free slots
// can get, up to and including the first job that fits nowhere now (it holds
// back the rest); jobs larger than the cluster's `total_slots` are passed
// over. A retry (attempt >= 1) whose spec sets resources.min_world_size and
// that has waited resources.elastic_wait_seconds (default 60) gets its
// fallback sizes.
class PlacementQueue {
 public:
  PlacementQueue(int free_slots, int total_slots, absl::Time now)
      : free_slots_(free_slots), total_slots_(total_slots), now_(now) {}

  // Adds `job`, queued since `queued_at`; false once the queue is cut here:
  // add no more.
  bool Add(const v1::Job& job, absl::Time queued_at);
  const std::vector<QueuedJob>& jobs() const { return jobs_; }

 private:
  int free_slots_;
  const int total_slots_;
  const absl::Time now_;
  std::vector<QueuedJob> jobs_;
};

// A port in the worker's rendezvous range not in `taken`; when every port is
// taken, one of them (a clash fails the attempt, which is retried).
int PickPort(const v1::RegisterWorkerRequest& worker, const std::set<int>& taken, std::mt19937& rng);

// The assignment every rank of `job`'s placed attempt starts from (no id,
// rank or slot yet): job, attempt, world size, rendezvous, spec. A placement
// smaller than the job's world size (elastic) keeps the global batch and takes
// a micro-batch that divides each rank's larger share; `*elastic_note` then
// says so for the job's event, else it is left empty.
v1::Assignment AssignmentBase(const v1::Job& job, const Placement& placement, const std::string& host, int port,
                              std::string* elastic_note);

// Adds the files a rank downloads to `a` and points its spec at them: each
// "upload:ID[/NAME]" path (model, init.adapter, data) becomes inputs/ID[/NAME]; when the job has a
// checkpoint, its folder (and the previous complete one, the trainer's
// fallback) under resume/, with resume_from set; `*note` is what the placement
// message says of it (", resuming from step N"). A checkpoint with a file the
// store finds damaged is passed over for an older one, and the note says so.
// FAILED_PRECONDITION when an upload is gone.
absl::Status AddAssignmentInputs(const v1::Job& job, ArtifactStore& artifacts, v1::Assignment& a,
                                 std::string* note);

}  // namespace d2lora::server
