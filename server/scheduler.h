// Gang placement, a pure function: which queued jobs start now and on which
// worker slots. A job of world size N starts only when N slots are free at
// once; jobs start in queue order (priority, then submission), and a job that
// does not fit yet holds back the ones behind it, so a large job is never
// starved by a stream of small ones. A job larger than every slot the cluster
// has is passed over (it waits for more workers without blocking the queue).
// A job with a memory plan goes only on slots that advertise at least its
// predicted peak (or advertise nothing); slots it does not fit count for it
// neither as free nor as the cluster's.
// An elastic job (fallback_sizes set: a retry that has waited its
// resources.elastic_wait_seconds) that does not fit at world_size starts on
// the largest of its fallback sizes that fits instead.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace d2lora::server {

struct WorkerSlots {
  std::string worker_id;
  std::vector<int> free_slots;  // slot indices
  int total_slots = 0;
  // Memory each slot advertises (RegisterWorkerRequest's Slot.memory_bytes),
  // by slot index; a slot absent or at 0 advertises none and fits any job.
  std::map<int, int64_t> slot_memory;

  bool Fits(int slot, int64_t bytes) const;
};

struct QueuedJob {
  std::string job_id;
  int world_size = 1;
  std::vector<int> fallback_sizes;  // smaller world sizes it may start on now, largest first
  int64_t memory_bytes = 0;  // the memory plan's peak per rank; 0 = no plan
};

struct Placement {
  std::string job_id;
  int world_size = 1;  // ranks.size(): the job's, or one of its fallback sizes
  // (worker_id, slot) per rank; rank 0 first. Ranks are packed onto as few
  // workers as possible (fast intra-host collectives), fullest-free first;
  // among workers with as many free slots, in the order `workers` gives them.
  std::vector<std::pair<std::string, int>> ranks;
};

// The size `job` starts at with `free` slots: its world size when that fits,
// else the largest fallback size that fits; 0 when none does.
int FittingSize(const QueuedJob& job, int free);
// The fewest ranks `job` could ever start on (a job needing more than the
// cluster has is passed over).
int SmallestSize(const QueuedJob& job);

// The world sizes in [min_world_size, world_size) that split a global batch
// of batch_size examples evenly, largest first: where an elastic retry may run.
std::vector<int> ElasticFallbackSizes(int world_size, int min_world_size, int64_t batch_size);

// `queue` in start order; `workers` alive, in order of preference.
std::vector<Placement> PlaceJobs(const std::vector<QueuedJob>& queue, std::vector<WorkerSlots> workers);

}  // namespace d2lora::server
