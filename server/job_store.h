// Durable coordinator state: jobs, their events, registered workers and the
// assignments of running attempts. The coordinator keeps the live state in
// memory and writes every change through the store before it acknowledges it,
// so a coordinator killed at any moment restarts from Load() having lost
// nothing it answered for. Implementation: job_store_sqlite.h (SQLite, WAL).
// job_store_commit_queue.h writes the changes of many callers in one
// transaction (group commit).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "d2lora/v1/job.pb.h"
#include "d2lora/v1/worker_service.pb.h"

namespace d2lora::server {

struct StoredWorker {
  std::string id;
  v1::RegisterWorkerRequest registration;
};

enum class AssignmentState : int { kPending = 0, kLeased = 1, kStarted = 2 };

struct StoredAssignment {
  v1::Assignment assignment;
  std::string worker_id;
  AssignmentState state = AssignmentState::kPending;
  bool stop_requested = false;
};

// Changes that become durable together, or not at all. (Deques: the
// coordinator stages changes in place through references.)
struct StoreMutation {
  std::deque<v1::Job> jobs;           // inserted or replaced (by id)
  std::deque<v1::JobEvent> events;    // appended; (job_id, seq) is unique
  std::deque<StoredWorker> workers;   // inserted or replaced
  std::deque<std::string> deleted_workers;
  std::deque<StoredAssignment> assignments;  // inserted or replaced (by assignment id)
  std::deque<std::string> deleted_assignments;

  bool empty() const {
    return jobs.empty() && events.empty() && workers.empty() && deleted_workers.empty() &&
           assignments.empty() && deleted_assignments.empty();
  }
};

struct StoredState {
  std::vector<v1::Job> jobs;  // in submission order
  std::vector<StoredWorker> workers;
  std::vector<StoredAssignment> assignments;
  // The last event seq of each job, index-aligned with `jobs`.
  std::vector<int64_t> last_event_seq;
};

class JobStore {
 public:
  virtual ~JobStore() = default;
  virtual absl::StatusOr<StoredState> Load() = 0;
  // Every mutation of `batch`, in order, in one transaction: all of them are
  // durable when it returns OK, none of them otherwise.
  virtual absl::Status ApplyBatch(const std::vector<const StoreMutation*>& batch) = 0;
  absl::Status Apply(const StoreMutation& mutation) { return ApplyBatch({&mutation}); }
  // Up to `limit` events of `job_id` with seq > after_seq, in order.
  virtual absl::StatusOr<std::vector<v1::JobEvent>> ReadEvents(const std::string& job_id, int64_t after_seq,
                                                               int limit) = 0;
};

}  // namespace d2lora::server
