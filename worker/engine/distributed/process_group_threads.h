// Ranks as threads of one process: a real ProcessGroup (backend "threads")
// for tests and for world size 1, with no network.
//
// Collectives meet on a mutex and condition variable. AllReduceSum adds the
// ranks' tensors in rank order (0, 1, 2, ...) so the result is deterministic and
// bit-identical on every rank. A rank that does not arrive within the timeout
// makes the waiting ranks fail with DeadlineExceeded and breaks the group (every
// later call fails): a late rank must never pair its call with a later one.
// Mismatched collectives (operation, root, shape, dtype) fail with
// InvalidArgument on every rank.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "worker/engine/distributed/process_group.h"

namespace d2lora::engine {

class ThreadGroup : public std::enable_shared_from_this<ThreadGroup> {
 public:
  // nullptr when world_size < 1 or timeout <= 0.
  static std::shared_ptr<ThreadGroup> Create(int64_t world_size,
                                             std::chrono::milliseconds timeout = std::chrono::seconds(60));

  // The handle for `rank`, to be used by one thread. nullptr when `rank` is
  // outside [0, world_size) or its handle was already taken.
  std::unique_ptr<ProcessGroup> Member(int64_t rank);

  int64_t world_size() const { return world_size_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  enum class Op { kAllReduceSum, kBroadcast, kBarrier };
  // One rank's part of a collective (called by the members).
  absl::Status Collective(int64_t rank, Op op, torch::Tensor* tensor, int64_t root);

 private:
  ThreadGroup(int64_t world_size, std::chrono::milliseconds timeout);

  struct Slot {
    bool arrived = false;
    Op op = Op::kBarrier;
    torch::Tensor* tensor = nullptr;
    int64_t root = 0;
  };
  // With every slot filled: checks that the calls match and computes result_.
  absl::Status Combine();
  std::string MissingRanks() const;

  const int64_t world_size_;
  const std::chrono::milliseconds timeout_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<bool> claimed_;
  std::vector<Slot> slots_;
  int64_t arrived_ = 0;
  uint64_t generation_ = 0;   // bumped when a round completes
  int64_t leaving_ = 0;       // ranks of the completed round still copying out
  absl::Status round_status_;
  torch::Tensor result_;
  std::string broken_;        // why the group is unusable; empty while healthy
};

// World size 1, backend "threads": every collective returns at once.
std::unique_ptr<ProcessGroup> CreateSingleProcessGroup();

}  // namespace d2lora::engine
