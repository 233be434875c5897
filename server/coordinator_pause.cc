// PauseJob and ResumeJob (see job.proto's JobState): a paused job holds no
// slot, keeps its checkpoints and artifacts, and resumes from its last
// checkpoint. While PAUSING, the attempt's assignments stay active, so that
// the ranks' stop checkpoint is still accepted; the last of them to end makes
// the job PAUSED (or SUCCEEDED, when every rank had already finished).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/rpc/job_state.h"
#include "server/coordinator.h"

namespace d2lora::server {

using rpc::IsTerminal;

bool Coordinator::AttemptHasAssignmentsLocked(const StoreMutation& m, const std::string& job_id, int attempt,
                                              const std::string& except) const {
  for (const auto& [id, a] : assignments_) {
    if (id == except || a.assignment.job_id() != job_id || a.assignment.attempt() != attempt) continue;
    if (std::find(m.deleted_assignments.begin(), m.deleted_assignments.end(), id) != m.deleted_assignments.end()) {
      continue;
    }
    return true;
  }
  return false;
}

void Coordinator::FinishPause(StoreMutation& m, v1::Job& job) {
  job.set_pauses(job.pauses() + 1);
  job.clear_workers();
  SetState(m, job, v1::PAUSED,
           job.checkpoint_step() > 0
               ? absl::StrCat("paused at the checkpoint of step ", job.checkpoint_step(), "; ResumeJob continues it")
               : std::string("paused before its first checkpoint; ResumeJob starts it from the beginning"));
}

void Coordinator::PausingAssignmentEnded(StoreMutation& m, v1::Job& job, const std::string& assignment_id) {
  if (AttemptHasAssignmentsLocked(m, job.id(), job.attempt(), assignment_id)) return;
  if (!job.summary_json().empty()) {  // rank 0 completed this attempt: the run is done
    SetState(m, job, v1::SUCCEEDED, "rank 0 had completed the run before the pause took effect");
  } else {
    FinishPause(m, job);
  }
}

absl::StatusOr<v1::Job> Coordinator::Pause(const std::string& id, const std::string& reason) {
  if (reason.size() > 1024) return absl::InvalidArgumentError("reason: longer than 1024 bytes");
  return ChangeJob(id, [&](const v1::Job& current, StoreMutation& m) -> absl::StatusOr<v1::Job> {
    const v1::JobState state = current.state();
    if (IsTerminal(state)) {
      return absl::FailedPreconditionError(absl::StrCat("job ", id, " is ", v1::JobState_Name(state),
                                                        ": only a queued, scheduled or running job can be paused"));
    }
    if (state == v1::PAUSING || state == v1::PAUSED) return current;  // nothing to do
    v1::Job& job = m.jobs.emplace_back(current);
    const std::string why = reason.empty() ? std::string() : absl::StrCat(": ", reason);
    if (state == v1::QUEUED) {
      SetState(m, job, v1::PAUSED, absl::StrCat("paused while queued", why));
      return job;
    }
    StopAssignmentsOf(m, id, job.attempt());  // unleased ranks are withdrawn at once
    SetState(m, job, v1::PAUSING,
             absl::StrCat("pausing", why, ": attempt ", job.attempt(), "'s ranks write a checkpoint and stop"));
    if (!AttemptHasAssignmentsLocked(m, id, job.attempt(), "")) FinishPause(m, job);
    return job;
  });
}

absl::StatusOr<v1::Job> Coordinator::Resume(const std::string& id) {
  return ChangeJob(id, [&](const v1::Job& current, StoreMutation& m) -> absl::StatusOr<v1::Job> {
    const v1::JobState state = current.state();
    if (IsTerminal(state)) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", id, " is ", v1::JobState_Name(state), ": an ended job cannot be resumed"));
    }
    if (state == v1::PAUSING) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", id, " is still PAUSING (its ranks are writing a checkpoint); resume it once it is PAUSED"));
    }
    if (state != v1::PAUSED) return current;  // queued, scheduled or running: nothing to do
    v1::Job& job = m.jobs.emplace_back(current);
    SetState(m, job, v1::QUEUED,
             job.checkpoint_step() > 0
                 ? absl::StrCat("resumed; continuing from the checkpoint at step ", job.checkpoint_step())
                 : std::string("resumed; starting from the beginning"));
    return job;
  });
}

}  // namespace d2lora::server
