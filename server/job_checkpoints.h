// A job's stored checkpoints, read from the artifact store's files: what
// retries resume from (scheduling_round.h), what ListCheckpoints shows, and
// the adapter that a spec's init.from_job starts from.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "d2lora/v1/job.pb.h"
#include "d2lora/v1/job_service.pb.h"
#include "server/artifact_store.h"

namespace d2lora::server {

// N for a file of a stored checkpoint, "checkpoints/step-N/<file>" (relative to
// the job's folder; N > 0), complete or not; nullopt for any other name.
std::optional<int64_t> CheckpointStepOf(absl::string_view relative);

struct StoredCheckpoint {
  int64_t step = 0;
  bool complete = false;  // its trainer_state.json is stored (written last)
  // "checkpoints/step-N/FILE: what changed" for its first damaged file; "" = none.
  std::string damaged;
  std::vector<ArtifactInfo> files;  // keys as the store has them ("jobs/ID/checkpoints/...")
  bool has_adapter = false;         // adapter/adapter_config.json and adapter_model.safetensors
};

// Groups `files` (the store's List of "<job_dir>checkpoints/") by step.
std::map<int64_t, StoredCheckpoint> GroupCheckpoints(const std::vector<ArtifactInfo>& files,
                                                     const std::string& job_dir);
// The job's checkpoints in the store, by step.
absl::StatusOr<std::map<int64_t, StoredCheckpoint>> StoredCheckpoints(ArtifactStore& artifacts,
                                                                      const std::string& job_id);

// ListCheckpoints: every stored checkpoint with the metrics its
// trainer_state.json recorded (read when it is complete and undamaged).
absl::StatusOr<v1::ListCheckpointsResponse> ListJobCheckpoints(ArtifactStore& artifacts, const v1::Job& job);

// What init.from_job starts from: the folder (a key ending in "/") of
// `source`'s adapter: with `step` > 0 its checkpoint at that step; with 0 its
// final adapter when stored, else its newest complete undamaged checkpoint's.
// FAILED_PRECONDITION naming the job, the step and the steps there are.
struct InitSource {
  std::string folder;
  int64_t step = 0;    // the checkpoint's step (or the final adapter's)
  bool final = false;  // the job's final adapter/
};
absl::StatusOr<InitSource> FindInitSource(ArtifactStore& artifacts, const v1::Job& source, int64_t step);

// Copies every file under the folder `from` to the folder `to` (keys ending
// in "/"), each checked against its stored SHA-256 as it is committed.
absl::Status CopyArtifactFolder(ArtifactStore& artifacts, const std::string& from, const std::string& to);

}  // namespace d2lora::server
