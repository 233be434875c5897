// ListCheckpoints, and a new job's init.from_job: the coordinator's side of
// starting from earlier work. The adapter a job starts from is copied at
// submission into an upload of its own, so that the source's checkpoint
// rotation, a later run of it or its deletion cannot change what the new job
// trains from, and every attempt of the new job starts from the same bytes.
#include "absl/strings/str_cat.h"
#include "server/coordinator.h"
#include "server/job_checkpoints.h"
#include "server/job_ids.h"

namespace d2lora::server {

absl::StatusOr<v1::ListCheckpointsResponse> Coordinator::ListCheckpoints(const std::string& id) {
  auto job = GetJob(id);
  if (!job.ok()) return job.status();
  return ListJobCheckpoints(*artifacts_, *job);
}

absl::StatusOr<std::string> Coordinator::ResolveInitFromJob(v1::Job& job) {
  v1::InitSpec& init = *job.mutable_spec()->mutable_init();
  auto source = GetJob(init.from_job());
  if (absl::IsNotFound(source.status())) {
    return absl::InvalidArgumentError(absl::StrCat("spec.init.from_job: job ", init.from_job(), " not found"));
  }
  if (!source.ok()) return source.status();
  auto found = FindInitSource(*artifacts_, *source, init.step());
  if (!found.ok()) return found.status();
  const std::string upload_id = NewUploadId();
  const std::string folder = absl::StrCat("uploads/", upload_id, "/");
  if (absl::Status s = CopyArtifactFolder(*artifacts_, found->folder, folder); !s.ok()) {
    (void)artifacts_->Delete(absl::StrCat("uploads/", upload_id));
    return absl::Status(s.code(), absl::StrCat("spec.init.from_job: copying job ", init.from_job(), "'s adapter: ",
                                               s.message()));
  }
  init.set_adapter(absl::StrCat("upload:", upload_id));
  return absl::StrCat("; starts from job ", init.from_job(), "'s ",
                      found->final ? "final adapter" : "checkpoint", " at step ", found->step, " (copied as upload:",
                      upload_id, ")");
}

}  // namespace d2lora::server
