#include "server/scheduling_round.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/spec/job_spec.h"
#include "common/trainer/output_names.h"
#include "server/job_checkpoints.h"
#include "server/submit_check.h"

namespace d2lora::server {
namespace {

void AddInput(v1::Assignment& a, const ArtifactInfo& f, const std::string& path) {
  v1::InputFile* in = a.add_inputs();
  in->set_name(f.key);
  in->set_path(path);
  in->set_size(f.size);
  in->set_sha256(f.sha256);
}

// An "upload:ID[/NAME]" path: its files become inputs under inputs/ID, the path points there.
absl::Status RewriteUpload(const std::string& field, std::string* path, ArtifactStore& artifacts, v1::Assignment& a) {
  auto ref = ParseUploadRef(field, *path);
  if (!ref.ok()) return ref.status();
  if (!ref->has_value()) return absl::OkStatus();
  const std::string prefix = absl::StrCat("uploads/", (*ref)->upload_id, "/");
  const std::string local = absl::StrCat("inputs/", (*ref)->upload_id);
  auto files = artifacts.List((*ref)->name.empty() ? prefix : prefix + (*ref)->name);
  if (!files.ok()) return files.status();
  bool found = false;
  for (const ArtifactInfo& f : *files) {
    if (!(*ref)->name.empty() && f.key != prefix + (*ref)->name) continue;
    if (!f.damaged.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(field, ": ", *path, ": ", f.key, " is damaged in the artifact store: ", f.damaged));
    }
    found = true;
    bool have = false;
    for (const v1::InputFile& in : a.inputs()) have |= in.name() == f.key;
    if (!have) AddInput(a, f, absl::StrCat(local, "/", f.key.substr(prefix.size())));
  }
  if (!found) return absl::FailedPreconditionError(absl::StrCat(field, ": ", *path, " no longer exists"));
  *path = (*ref)->name.empty() ? local : absl::StrCat(local, "/", (*ref)->name);
  return absl::OkStatus();
}

// The newest complete checkpoint up to the job's checkpoint_step that has no
// damaged file (a file the store finds changed since it was stored), and the
// complete undamaged one before it (the trainer's fallback when the newest
// fails its own checksums), under resume/. `*note` says where the attempt
// resumes, naming a damaged newer checkpoint it passed over.
absl::Status AddCheckpoint(const v1::Job& job, ArtifactStore& artifacts, v1::Assignment& a, std::string* note) {
  const std::string job_dir = absl::StrCat("jobs/", job.id(), "/");
  auto stored = StoredCheckpoints(artifacts, job.id());
  if (!stored.ok()) return stored.status();
  std::map<int64_t, StoredCheckpoint>& checkpoints = *stored;
  checkpoints.erase(checkpoints.upper_bound(job.checkpoint_step()), checkpoints.end());
  // The job's own checkpoint counts as complete (its trainer_state.json made it so).
  if (auto own = checkpoints.find(job.checkpoint_step()); own != checkpoints.end()) own->second.complete = true;
  std::vector<const StoredCheckpoint*> usable;  // newest first
  const StoredCheckpoint* newest_damaged = nullptr;
  for (auto it = checkpoints.rbegin(); it != checkpoints.rend(); ++it) {
    const StoredCheckpoint& c = it->second;
    if (!c.damaged.empty() && newest_damaged == nullptr) newest_damaged = &c;
    if (!c.complete || !c.damaged.empty() || usable.size() == 2) continue;
    usable.push_back(&c);
  }
  if (!usable.empty()) *note = absl::StrCat(", resuming from step ", usable.front()->step);
  if (newest_damaged != nullptr && (usable.empty() || newest_damaged->step > usable.front()->step)) {
    absl::StrAppend(note, usable.empty() ? ", starting over" : "", " (passed over a damaged checkpoint: ",
                    newest_damaged->damaged, ")");
  }
  for (size_t i = 0; i < usable.size(); ++i) {
    for (const ArtifactInfo& f : usable[i]->files) AddInput(a, f, absl::StrCat("resume/", f.key.substr(job_dir.size())));
    if (i == 0) a.set_resume_from(absl::StrCat("resume/", trainer::CheckpointName(usable[i]->step)));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> LostWorkers(const std::vector<WorkerView>& workers, absl::Time now, absl::Duration timeout) {
  std::vector<std::string> lost;
  for (const WorkerView& w : workers) {
    if (now - w.last_seen > timeout) lost.push_back(w.id);
  }
  return lost;
}

std::vector<WorkerSlots> FreeSlots(const std::vector<WorkerView>& workers,
                                   const std::map<std::string, std::set<int>>& busy, absl::Time now,
                                   absl::Duration heartbeat_interval) {
  auto late = [&](const WorkerView& w) { return now - w.last_seen > 2 * heartbeat_interval; };
  std::vector<const WorkerView*> order;
  for (const WorkerView& w : workers) {
    if (!w.draining) order.push_back(&w);
  }
  std::stable_sort(order.begin(), order.end(), [&](const WorkerView* a, const WorkerView* b) {
    if (late(*a) != late(*b)) return !late(*a);
    return a->last_seen < b->last_seen;
  });
  static const std::set<int> kNone;
  std::vector<WorkerSlots> slots;
  for (const WorkerView* w : order) {
    auto it = busy.find(w->id);
    const std::set<int>& taken = it == busy.end() ? kNone : it->second;
    WorkerSlots s{w->id, {}, w->registration->slots_size(), {}};
    for (const v1::Slot& slot : w->registration->slots()) {
      if (!taken.count(slot.index())) s.free_slots.push_back(slot.index());
      if (slot.memory_bytes() > 0) s.slot_memory[slot.index()] = slot.memory_bytes();
    }
    slots.push_back(std::move(s));
  }
  return slots;
}

bool PlacementQueue::Add(const v1::Job& job, absl::Time queued_at) {
  QueuedJob q{job.id(), job.world_size(), {}, job.memory_plan_bytes()};
  // Elastic: a retry (it has run before, so it has a checkpoint to resume
  // from) that has waited resources.elastic_wait_seconds for all its slots
  // may start on fewer, down to resources.min_world_size.
  const v1::ResourcesSpec& r = job.spec().resources();
  const absl::Duration wait = absl::Seconds(r.has_elastic_wait_seconds() ? r.elastic_wait_seconds() : 60);
  if (job.attempt() >= 1 && r.min_world_size() > 0 && now_ - queued_at >= wait) {
    q.fallback_sizes =
        ElasticFallbackSizes(q.world_size, static_cast<int>(r.min_world_size()), job.spec().train().batch_size());
  }
  const bool passed_over = SmallestSize(q) > total_slots_;
  const int size = FittingSize(q, free_slots_);
  jobs_.push_back(std::move(q));
  if (passed_over) return true;
  if (size == 0) return false;
  free_slots_ -= size;
  return true;
}

int PickPort(const v1::RegisterWorkerRequest& worker, const std::set<int>& taken, std::mt19937& rng) {
  const int first = worker.rendezvous_port_first(), span = worker.rendezvous_port_last() - first + 1;
  const int start = static_cast<int>(rng() % static_cast<unsigned>(std::max(1, span)));
  for (int i = 0; i < span; ++i) {
    const int port = first + (start + i) % span;
    if (!taken.count(port)) return port;
  }
  return first + start;
}

v1::Assignment AssignmentBase(const v1::Job& job, const Placement& placement, const std::string& host, int port,
                              std::string* elastic_note) {
  v1::Assignment base;
  base.set_job_id(job.id());
  base.set_attempt(job.attempt());
  base.set_world_size(placement.world_size);
  base.set_master_addr(host);
  base.set_master_port(port);
  *base.mutable_spec() = job.spec();
  elastic_note->clear();
  if (placement.world_size != job.world_size()) {
    // Fewer ranks share the same global batch (train.batch_size); each takes
    // a micro-batch that divides its larger share.
    v1::TrainSpec& train = *base.mutable_spec()->mutable_train();
    train.set_micro_batch_size(
        spec::FittingMicroBatchSize(train.batch_size(), train.micro_batch_size(), placement.world_size));
    base.mutable_spec()->mutable_resources()->set_world_size(placement.world_size);
    *elastic_note = absl::StrCat(" (elastic: ", placement.world_size, " of ", job.world_size(), " ranks, no ",
                                 job.world_size(), " free slots within resources.elastic_wait_seconds; ",
                                 "train.micro_batch_size ", train.micro_batch_size(), ")");
  }
  return base;
}

absl::Status AddAssignmentInputs(const v1::Job& job, ArtifactStore& artifacts, v1::Assignment& a, std::string* note) {
  note->clear();
  v1::JobSpec& spec = *a.mutable_spec();
  if (absl::Status s = RewriteUpload("spec.model", spec.mutable_model(), artifacts, a); !s.ok()) return s;
  if (spec.init().has_adapter()) {
    if (absl::Status s = RewriteUpload("spec.init.adapter", spec.mutable_init()->mutable_adapter(), artifacts, a);
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = RewriteUpload("spec.data.train", spec.mutable_data()->mutable_train(), artifacts, a); !s.ok()) {
    return s;
  }
  if (spec.data().has_validation()) {
    if (absl::Status s = RewriteUpload("spec.data.validation", spec.mutable_data()->mutable_validation(), artifacts, a);
        !s.ok()) {
      return s;
    }
  }
  if (job.checkpoint_step() > 0) return AddCheckpoint(job, artifacts, a, note);
  return absl::OkStatus();
}

}  // namespace d2lora::server
