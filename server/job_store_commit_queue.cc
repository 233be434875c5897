#include "server/job_store_commit_queue.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace d2lora::server {

absl::StatusOr<std::unique_ptr<CommitQueue>> CommitQueue::Create(JobStore* store, CommitQueueOptions options) {
  if (store == nullptr) return absl::InvalidArgumentError("commit queue: store is required");
  if (options.max_batch < 1) {
    return absl::InvalidArgumentError(absl::StrCat("commit queue: max_batch = ", options.max_batch, ": must be >= 1"));
  }
  std::unique_ptr<CommitQueue> q(new CommitQueue(store, std::move(options)));
  q->thread_ = std::thread([p = q.get()] { p->Loop(); });
  return q;
}

CommitQueue::~CommitQueue() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_.notify_all();
  if (thread_.joinable()) thread_.join();
}

uint64_t CommitQueue::Enqueue(StoreMutation m) {
  if (m.empty()) return last_ticket();
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t ticket = next_ticket_++;
  if (!poisoned_.ok()) {
    taken_ = resolved_ = ticket;  // nothing is queued while poisoned
    FailLocked(ticket, ticket, poisoned_);
    done_.notify_all();
    return ticket;
  }
  queue_.push_back(std::move(m));
  work_.notify_one();
  return ticket;
}

uint64_t CommitQueue::last_ticket() const {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t last = next_ticket_ - 1;
  return last > resumed_at_ ? last : 0;
}

absl::Status CommitQueue::Wait(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [&] { return resolved_ >= ticket; });
  for (const FailedRange& f : failed_) {
    if (ticket >= f.first && ticket <= f.last) return f.status;
  }
  return absl::OkStatus();
}

void CommitQueue::Resume() {
  std::lock_guard<std::mutex> lock(mu_);
  poisoned_ = absl::OkStatus();
  resumed_at_ = next_ticket_ - 1;
}

CommitQueue::Stats CommitQueue::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

size_t CommitQueue::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

void CommitQueue::FailLocked(uint64_t first, uint64_t last, const absl::Status& status) {
  if (!failed_.empty() && failed_.back().last + 1 == first && failed_.back().status == status) {
    failed_.back().last = last;
  } else {
    failed_.push_back({first, last, status});
  }
}

void CommitQueue::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) break;  // stopping, and everything written
    std::deque<StoreMutation> batch;
    const size_t n = std::min(queue_.size(), static_cast<size_t>(options_.max_batch));
    batch.insert(batch.end(), std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.begin() + n));
    queue_.erase(queue_.begin(), queue_.begin() + n);
    const uint64_t first = taken_ + 1, last = taken_ + n;
    taken_ = last;
    lock.unlock();
    std::vector<const StoreMutation*> pointers;
    pointers.reserve(batch.size());
    for (const StoreMutation& m : batch) pointers.push_back(&m);
    const absl::Status status = store_->ApplyBatch(pointers);
    lock.lock();
    ++stats_.batches;
    stats_.mutations += static_cast<int64_t>(n);
    if (status.ok()) {
      resolved_ = last;
    } else {
      ++stats_.failed_batches;
      poisoned_ = status;
      // Everything queued behind the failed batch was staged on top of it.
      const uint64_t end = taken_ + queue_.size();
      FailLocked(first, end, status);
      queue_.clear();
      taken_ = resolved_ = end;
    }
    done_.notify_all();
    if (!status.ok() && options_.on_failure) {
      lock.unlock();
      options_.on_failure(status);
      lock.lock();
    }
  }
}

}  // namespace d2lora::server
