// Everything SubmitJob checks before a job is accepted, with errors that name
// the field: the spec (the engine's own parser, as `d2lora train` uses),
// world_size against the spec, priority, retries, labels, and every path the
// spec names (an "upload:" reference must exist; any other path must be
// absolute, since workers cannot know the client's working directory), and
// the request's sizes (every string and the spec as a whole), so that no
// oversized value reaches the spec parser, the job store or an error message.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/path_roots.h"
#include "d2lora/v1/job_service.pb.h"
#include "server/artifact_store.h"

namespace d2lora::server {

inline constexpr char kUploadScheme[] = "upload:";
// Every string of a spec (paths included) is at most kMaxPathBytes; the
// serialized spec at most kMaxSpecBytes.
inline constexpr size_t kMaxSpecBytes = 64 << 10;

struct UploadRef {
  std::string upload_id;
  std::string name;  // "" = every file of the upload (a folder, e.g. a model)
};

// nullopt when `path` is not an upload reference; INVALID_ARGUMENT (naming
// `field`) when it is a malformed one.
absl::StatusOr<std::optional<UploadRef>> ParseUploadRef(const std::string& field, const std::string& path);

// The job as it will be stored (id, state and times unset): spec in canonical
// form with resources.world_size = world_size, max_retries resolved.
absl::StatusOr<v1::Job> CheckSubmitRequest(const v1::SubmitJobRequest& request, ArtifactStore& artifacts,
                                           int default_max_retries);

// The paths of `request.spec` that are not upload references (model,
// init.adapter, data.train, data.validation), each checked against `roots` (absolute, no
// "..", inside a root when roots are configured, symlinks followed):
// INVALID_ARGUMENT naming the spec field. The service calls this before the
// coordinator's CheckSubmitRequest.
absl::Status CheckSpecPathRoots(const v1::SubmitJobRequest& request, const PathRoots& roots);

}  // namespace d2lora::server
