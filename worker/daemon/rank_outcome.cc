#include "worker/daemon/rank_outcome.h"

#include "absl/strings/str_cat.h"

namespace d2lora::worker {

RankOutcome ClassifyRankExit(const ExitStatus& exit, const absl::StatusOr<trainer::TrainerError>& error_file,
                             const std::string& last_error_line) {
  RankOutcome outcome;
  if (exit.signal == 0 && error_file.ok()) {
    outcome.code = std::string(absl::StatusCodeToString(error_file->code));
    outcome.message = error_file->message;
    outcome.retryable = error_file->retryable;
    outcome.merge_check_failed = error_file->reason == trainer::FailureReason::kMergeCheckFailed;
    return outcome;
  }
  // A crash: the rank could not say why.
  outcome.code = "INTERNAL";
  outcome.retryable = true;
  outcome.message = exit.Describe();
  if (exit.signal == 0) {
    absl::StrAppend(&outcome.message, error_file.status().code() == absl::StatusCode::kNotFound
                                          ? " without an error file"
                                          : absl::StrCat(" with an unreadable error file (",
                                                         error_file.status().message(), ")"));
  }
  if (!last_error_line.empty()) absl::StrAppend(&outcome.message, "; its last error line: ", last_error_line);
  return outcome;
}

}  // namespace d2lora::worker
