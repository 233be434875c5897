// The spec file an assignment's rank runs: the wire spec parsed and checked,
// its relative paths (upload references the coordinator rewrote to paths in
// the assignment's directory) resolved under that directory, output.dir =
// DIR/out, resources.world_size and resources.threads filled in; and, before
// the launch, a check that what the spec reads is there.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "d2lora/v1/job_spec.pb.h"

namespace d2lora::worker {

inline constexpr char kAssignmentSpecFile[] = "spec.yaml";
inline constexpr char kAssignmentOutputDir[] = "out";

struct AssignmentSpecOptions {
  std::string dir;          // the assignment's directory (absolute)
  int64_t world_size = 1;   // the attempt's
  int64_t slot_cores = 1;   // resources.threads when the spec leaves it 0
};

// Writes DIR/spec.yaml; returns its path. Errors: INVALID_ARGUMENT when the
// spec does not parse ("spec: train.batch_size = 0: must be >= 1"),
// FAILED_PRECONDITION when an input is unreadable, naming the field and the
// path ("data.train: /x/y.jsonl: No such file or directory"); others (writing
// the file) keep their errno code.
absl::StatusOr<std::string> PrepareAssignmentSpec(const v1::JobSpec& spec, const AssignmentSpecOptions& options);

}  // namespace d2lora::worker
