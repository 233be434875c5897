#include "server/scheduler.h"

#include <algorithm>
#include <map>

namespace d2lora::server {

std::vector<Placement> PlaceJobs(const std::vector<QueuedJob>& queue, std::vector<WorkerSlots> workers) {
  std::map<std::string, size_t> given;  // the caller's order, for ties
  for (size_t i = 0; i < workers.size(); ++i) given.emplace(workers[i].worker_id, i);
  int total = 0;
  for (const WorkerSlots& w : workers) total += w.total_slots;
  std::vector<Placement> placements;
  for (const QueuedJob& job : queue) {
    if (job.world_size > total) continue;  // cannot run on this cluster yet
    int free = 0;
    for (const WorkerSlots& w : workers) free += static_cast<int>(w.free_slots.size());
    if (job.world_size > free) break;  // the head waits; nothing behind it jumps ahead
    std::sort(workers.begin(), workers.end(), [&](const WorkerSlots& a, const WorkerSlots& b) {
      if (a.free_slots.size() != b.free_slots.size()) return a.free_slots.size() > b.free_slots.size();
      return given[a.worker_id] < given[b.worker_id];
    });
    Placement p{job.job_id, {}};
    for (WorkerSlots& w : workers) {
      std::sort(w.free_slots.begin(), w.free_slots.end());
      while (!w.free_slots.empty() && static_cast<int>(p.ranks.size()) < job.world_size) {
        p.ranks.emplace_back(w.worker_id, w.free_slots.front());
        w.free_slots.erase(w.free_slots.begin());
      }
    }
    placements.push_back(std::move(p));
  }
  return placements;
}

}  // namespace d2lora::server
