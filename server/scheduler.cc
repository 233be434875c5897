#include "server/scheduler.h"

#include <algorithm>
#include <map>

namespace d2lora::server {

int FittingSize(const QueuedJob& job, int free) {
  if (job.world_size <= free) return job.world_size;
  for (int fallback : job.fallback_sizes) {  // largest first
    if (fallback <= free) return fallback;
  }
  return 0;
}

int SmallestSize(const QueuedJob& job) {
  return job.fallback_sizes.empty() ? job.world_size : std::min(job.world_size, job.fallback_sizes.back());
}

std::vector<int> ElasticFallbackSizes(int world_size, int min_world_size, int64_t batch_size) {
  std::vector<int> sizes;
  for (int w = world_size - 1; w >= std::max(min_world_size, 1); --w) {
    if (batch_size % w == 0) sizes.push_back(w);
  }
  return sizes;
}

bool WorkerSlots::Fits(int slot, int64_t bytes) const {
  if (bytes <= 0) return true;
  auto it = slot_memory.find(slot);
  return it == slot_memory.end() || it->second <= 0 || it->second >= bytes;
}

std::vector<Placement> PlaceJobs(const std::vector<QueuedJob>& queue, std::vector<WorkerSlots> workers) {
  std::map<std::string, size_t> given;  // the caller's order, for ties
  for (size_t i = 0; i < workers.size(); ++i) given.emplace(workers[i].worker_id, i);
  std::vector<Placement> placements;
  for (const QueuedJob& job : queue) {
    // The slots this job fits: every slot but those advertising less memory than its plan.
    int total = 0, free = 0;
    std::map<std::string, std::vector<int>> eligible;  // free slots it fits, by worker
    for (const WorkerSlots& w : workers) {
      total += w.total_slots;
      for (const auto& [slot, bytes] : w.slot_memory) total -= w.Fits(slot, job.memory_bytes) ? 0 : 1;
      std::vector<int>& mine = eligible[w.worker_id];
      for (int slot : w.free_slots) {
        if (w.Fits(slot, job.memory_bytes)) mine.push_back(slot);
      }
      std::sort(mine.begin(), mine.end());
      free += static_cast<int>(mine.size());
    }
    if (SmallestSize(job) > total) continue;  // cannot run on this cluster yet
    const int size = FittingSize(job, free);
    if (size == 0) break;  // the head waits; nothing behind it jumps ahead
    std::sort(workers.begin(), workers.end(), [&](const WorkerSlots& a, const WorkerSlots& b) {
      const size_t fa = eligible[a.worker_id].size(), fb = eligible[b.worker_id].size();
      if (fa != fb) return fa > fb;
      return given[a.worker_id] < given[b.worker_id];
    });
    Placement p{job.job_id, size, {}};
    for (WorkerSlots& w : workers) {
      for (int slot : eligible[w.worker_id]) {
        if (static_cast<int>(p.ranks.size()) >= size) break;
        p.ranks.emplace_back(w.worker_id, slot);
        w.free_slots.erase(std::find(w.free_slots.begin(), w.free_slots.end(), slot));
      }
    }
    placements.push_back(std::move(p));
  }
  return placements;
}

}  // namespace d2lora::server
