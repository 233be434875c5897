// The trainer-process contract, part 2: how a trainer process says why it
// failed. Before a non-zero exit, a rank writes error.json atomically to the
// path in $D2LORA_ERROR_FILE (output_names.h), like torchelastic's error file:
//
//   {"code": "FAILED_PRECONDITION", "message": "training diverged: ...",
//    "reason": "DIVERGED", "retryable": false, "step": 12}
//
// "reason" (absent when none) and "step" (absent when unknown) are optional.
// The worker daemon decides the failure's code, whether it is retried and
// what else it does (the merge gate's artifacts) from this file alone; a rank
// that exits without one crashed. stderr is only a log.
//
// Inside the trainer a reason and a step ride on the failing absl::Status as
// payloads (WithReason, WithStep), so they pass through D2_RETURN_IF_ERROR
// unchanged up to the process's entry point, which writes the file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace d2lora::trainer {

// Why a run failed, beyond its status code (google.rpc.ErrorInfo's reason).
enum class FailureReason {
  kNone,
  kDiverged,          // non-finite steps or the training guard's rollbacks ran out
  kMergeCheckFailed,  // the merge gate refused the merged model (rank 0; its artifacts are kept)
  kStopped,           // SIGTERM/SIGINT: stopped after a checkpoint (ABORTED)
  kUsage,             // the command line did not parse
};

// "" | "DIVERGED" | "MERGE_CHECK_FAILED" | "STOPPED" | "USAGE".
absl::string_view FailureReasonName(FailureReason reason);
std::optional<FailureReason> ParseFailureReason(absl::string_view name);

// `status` (not OK) tagged with a reason, or with the number of optimizer
// steps done when it failed (WithStep keeps a step already there). OK stays OK.
absl::Status WithReason(absl::Status status, FailureReason reason);
absl::Status WithStep(absl::Status status, int64_t step);
FailureReason ReasonOf(const absl::Status& status);
std::optional<int64_t> StepOf(const absl::Status& status);

struct TrainerError {
  absl::StatusCode code = absl::StatusCode::kUnknown;
  std::string message;
  FailureReason reason = FailureReason::kNone;
  bool retryable = true;
  std::optional<int64_t> step;
};

// The one retry rule: a failure that the same spec, data and seeds meet again
// (a bad argument or input, a missing file, a divergence, the merge gate, a
// command line that does not parse) is not retried; a crash, a lost peer, an
// I/O or out-of-memory error, a stop is.
bool IsRetryable(absl::StatusCode code, FailureReason reason);
// The error a failed status makes (its code, message, reason and step).
TrainerError ErrorFromStatus(const absl::Status& status);

std::string ErrorToJson(const TrainerError& error);
// Errors name the field: `field "code": "NOPE" is not a status code name`.
absl::StatusOr<TrainerError> ErrorFromJson(absl::string_view text);

// Atomic (a temporary file renamed over `path`).
absl::Status WriteErrorFile(const std::string& path, const TrainerError& error);
// NotFound when there is no file; other errors name the path.
absl::StatusOr<TrainerError> ReadErrorFile(const std::string& path);
// torchelastic's form of the same error, for a rank that torchrun launched with
// TORCHELASTIC_ERROR_FILE (torch/distributed/elastic/multiprocessing/errors/
// error_handler.py writes it so; the agent adds "errorCode" and reports it):
//   {"message": {"message": "INVALID_ARGUMENT: ...", "extraInfo":
//                {"py_callstack": "<how it failed>", "timestamp": "<unix seconds>"}}}
std::string TorchelasticErrorJson(const TrainerError& error, int64_t unix_seconds);

// Writes `error` to $D2LORA_ERROR_FILE, and in torchelastic's form to
// $TORCHELASTIC_ERROR_FILE, each when it is set (OK when neither is).
absl::Status WriteErrorFileFromEnvironment(const TrainerError& error);

}  // namespace d2lora::trainer
