// Files between an assignment's directory and the coordinator: inputs in with
// DownloadInput (checked against the size and sha256 the assignment names),
// artifacts out with UploadArtifact (the header announces size and sha256,
// computed before the first byte goes out).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <grpcpp/client_context.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "d2lora/v1/worker_service.pb.h"
#include "worker/daemon/coordinator_client.h"

namespace d2lora::worker {

// Told about the call in progress (to cancel it from another thread), and
// with nullptr before that call's context goes away.
using CallHook = std::function<void(grpc::ClientContext*)>;

struct TransferTarget {
  std::string worker_id;
  std::string assignment_id;
};

// Fetches `input` into `path` (parents created). A file already there with the
// announced size and sha256 is kept; an interrupted download continues.
// DATA_LOSS when what arrived differs from what the assignment announced.
absl::Status DownloadInput(const CoordinatorClient& client, const TransferTarget& target, const v1::InputFile& input,
                           const std::string& path, const CallHook& hook = {});

// Sends the file at `path` as artifact `name`. Trouble with the local file is
// FAILED_PRECONDITION (NOT_FOUND is left to the coordinator's answers).
absl::Status UploadArtifact(const CoordinatorClient& client, const TransferTarget& target, const std::string& path,
                            const std::string& name, const CallHook& hook = {});

// The regular files under `dir`, as paths relative to it, sorted, except that
// trainer_state.json files come last (a checkpoint is complete when it arrives).
absl::StatusOr<std::vector<std::string>> FilesToUpload(const std::string& dir);

// A path that stays inside the directory it is relative to: not empty, not
// absolute, no "." or ".." components.
bool IsSafeRelativePath(const std::string& path);

}  // namespace d2lora::worker
