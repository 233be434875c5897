// How a failed rank process reads, from the trainer-process contract alone
// (common/trainer/error_file.h): the error.json the rank wrote before its
// non-zero exit gives the code, the message and whether a retry can help. A
// signal, or an exit without a readable error file, is a crash: INTERNAL,
// retried. stderr decides nothing; its last error line only goes into a
// crash's message, for people.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/trainer/error_file.h"
#include "worker/daemon/rank_launcher.h"

namespace d2lora::worker {

struct RankOutcome {
  std::string code;  // a google.rpc code name
  std::string message;
  bool retryable = true;
  // The merge gate refused the merged model: rank 0 kept the adapter,
  // merge_report.json and summary.json, which are the job's artifacts.
  bool merge_check_failed = false;
};

// `exit` is not a success; `error_file` is what ReadErrorFile made of the
// rank's error.json; `last_error_line` is stderr's last error line, or "".
RankOutcome ClassifyRankExit(const ExitStatus& exit, const absl::StatusOr<trainer::TrainerError>& error_file,
                             const std::string& last_error_line);

}  // namespace d2lora::worker
