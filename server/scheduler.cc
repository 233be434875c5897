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

std::vector<Placement> PlaceJobs(const std::vector<QueuedJob>& queue, std::vector<WorkerSlots> workers) {
  std::map<std::string, size_t> given;  // the caller's order, for ties
  for (size_t i = 0; i < workers.size(); ++i) given.emplace(workers[i].worker_id, i);
  int total = 0;
  for (const WorkerSlots& w : workers) total += w.total_slots;
  std::vector<Placement> placements;
  for (const QueuedJob& job : queue) {
    int free = 0;
    for (const WorkerSlots& w : workers) free += static_cast<int>(w.free_slots.size());
    if (SmallestSize(job) > total) continue;  // cannot run on this cluster yet
    const int size = FittingSize(job, free);
    if (size == 0) break;  // the head waits; nothing behind it jumps ahead
    std::sort(workers.begin(), workers.end(), [&](const WorkerSlots& a, const WorkerSlots& b) {
      if (a.free_slots.size() != b.free_slots.size()) return a.free_slots.size() > b.free_slots.size();
      return given[a.worker_id] < given[b.worker_id];
    });
    Placement p{job.job_id, size, {}};
    for (WorkerSlots& w : workers) {
      std::sort(w.free_slots.begin(), w.free_slots.end());
      while (!w.free_slots.empty() && static_cast<int>(p.ranks.size()) < size) {
        p.ranks.emplace_back(w.worker_id, w.free_slots.front());
        w.free_slots.erase(w.free_slots.begin());
      }
    }
    placements.push_back(std::move(p));
  }
  return placements;
}

}  // namespace d2lora::server
