// Group commit in front of a JobStore: callers enqueue their changes in the
// order they made them (under their own lock) and wait for durability after
// releasing it; one writer thread takes everything queued so far and writes it
// as one transaction (one fsync), so the disk's sync rate bounds the number of
// transactions, not the number of acknowledged changes.
//
// Order: mutations are written in ticket order; ticket t is durable only when
// every ticket before it is. A failed batch fails every mutation in it and
// poisons the queue: what is queued, or enqueued later, fails with the same
// error without being written, until the owner (told through on_failure, on
// the writer thread) has brought its state back to the store's and calls
// Resume(). Changes the owner staged on top of a lost one are thus never
// written.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/job_store.h"

namespace d2lora::server {

struct CommitQueueOptions {
  int max_batch = 512;  // mutations per transaction
  // Called on the writer thread after a batch failed (the queue is poisoned
  // until Resume()); it may lock what callers of Enqueue hold.
  std::function<void(const absl::Status&)> on_failure;
};

class CommitQueue {
 public:
  static absl::StatusOr<std::unique_ptr<CommitQueue>> Create(JobStore* store, CommitQueueOptions options);
  ~CommitQueue();  // writes what is queued, then stops

  // Queues `m`; its ticket (> 0), in the order of the calls. An empty
  // mutation is not queued: its ticket is that of the last one queued.
  uint64_t Enqueue(StoreMutation m);
  // What a reader of the owner's state must wait for: the ticket of the last
  // mutation queued, or 0 when nothing was queued since the last Resume()
  // (the owner's state is then the store's).
  uint64_t last_ticket() const;
  // Until `ticket` is durable (OK) or has failed (the store's error).
  absl::Status Wait(uint64_t ticket);
  // Ends the poisoned state after a failure.
  void Resume();

  struct Stats {
    int64_t batches = 0, mutations = 0, failed_batches = 0;
  };
  Stats stats() const;
  size_t queued() const;  // mutations not yet taken by the writer

 private:
  struct FailedRange {
    uint64_t first, last;
    absl::Status status;
  };
  CommitQueue(JobStore* store, CommitQueueOptions options) : store_(store), options_(std::move(options)) {}
  void Loop();
  void FailLocked(uint64_t first, uint64_t last, const absl::Status& status);

  JobStore* const store_;
  const CommitQueueOptions options_;

  mutable std::mutex mu_;
  std::condition_variable work_;  // the writer: something queued, or stopping
  std::condition_variable done_;  // waiters: `resolved_` moved
  std::deque<StoreMutation> queue_;
  uint64_t next_ticket_ = 1;  // of the next mutation enqueued
  uint64_t taken_ = 0;        // tickets up to this one were taken by the writer
  uint64_t resolved_ = 0;     // tickets up to this one are durable or failed
  std::vector<FailedRange> failed_;
  absl::Status poisoned_;     // not OK from a failure to Resume()
  uint64_t resumed_at_ = 0;   // the last ticket at the last Resume()
  bool stopping_ = false;
  Stats stats_;
  std::thread thread_;
};

}  // namespace d2lora::server
