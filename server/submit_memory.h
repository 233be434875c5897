// The memory plan at submission (common/model/memory_plan.h): the coordinator
// reads the model's config.json (from the upload, or from the path when this
// host can read it: a shared volume) and the sizes of the data files and the
// weights, predicts a rank's peak memory, and refuses a job that fits no
// registered worker's slot. Placement then puts ranks only on slots that fit
// (scheduler.h). A model this host cannot read gets no plan: the job is
// accepted, placed anywhere, and its event says so.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "d2lora/v1/job.pb.h"
#include "d2lora/v1/worker_service.pb.h"
#include "server/artifact_store.h"

namespace d2lora::server {

struct JobMemory {
  int64_t bytes = 0;  // predicted peak per rank; 0 = no plan
  std::string note;   // for the job's first event: the plan, or why there is none
};

// INVALID_ARGUMENT (naming spec.model's config.json or the spec field) when
// the config it can read does not parse or the spec does not fit the model.
absl::StatusOr<JobMemory> PlanJobMemory(const v1::JobSpec& spec, ArtifactStore& artifacts);

// FAILED_PRECONDITION naming the predicted and the largest available bytes
// when workers are registered and none has a slot of at least `bytes` (a
// slot advertising no memory fits anything); OK when no worker is known.
absl::Status CheckFitsAWorker(int64_t bytes, const std::vector<const v1::RegisterWorkerRequest*>& workers);

}  // namespace d2lora::server
