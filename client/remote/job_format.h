// Text for people: job tables, a job's summary, artifact tables, and the lines
// `watch` prints for events.
#pragma once

#include <google/protobuf/timestamp.pb.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/text_format.h"
#include "d2lora/v1/job.pb.h"
#include "d2lora/v1/job_service.pb.h"

namespace d2lora::cli {

// Rows of cells as aligned columns (two spaces apart, the last column not
// padded); the first row is the header. Each line ends with '\n'.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows);

using ::d2lora::FormatBytes;  // common/text_format.h
using ::d2lora::FormatCount;
using ::d2lora::FormatDuration;
// A coarse age: "45s", "12m", "3h", "5d" ("-" when `then` is unset).
std::string FormatAge(absl::Time then, absl::Time now);
// %.4g; non-finite values as nan/inf.
std::string FormatNumber(double value);

// An unset (all-zero) timestamp is absl::InfinitePast().
absl::Time ToAbslTime(const google::protobuf::Timestamp& ts);

// ID NAME STATE ATTEMPT STEP/TOTAL LOSS AGE, newest first.
std::string FormatJobTable(std::vector<v1::Job> jobs, absl::Time now);

// Several lines about one job: state, attempts, timestamps, workers, the
// latest metrics, the error with its log tail.
std::string FormatJobSummary(const v1::Job& job, absl::Time now, absl::TimeZone tz = absl::LocalTimeZone());

// "step 120/400 (30%) loss 1.234 vol 0.0561 1,234 tok/s ETA 3m12s".
std::string FormatProgressLine(const v1::TrainingMetrics& metrics);
// "eval at step 50: loss 1.234, ppl 3.43, accuracy 0.75 (mean)".
std::string FormatEvalLine(const v1::EvalResult& eval);
// "RUNNING (attempt 1): message".
std::string FormatStateLine(const v1::StateChange& state);

// NAME SIZE SHA256.
std::string FormatArtifactTable(const std::vector<v1::Artifact>& artifacts);
// ListCheckpoints as a table (STEP, STATE, LOSS, VOLATILITY, EVAL, SIZE,
// ADAPTER) and a line naming the final adapter's step when there is one.
std::string FormatCheckpointTable(const v1::ListCheckpointsResponse& checkpoints);

// A failed or cancelled job's error, with its log tail indented; "" if none.
std::string FormatJobError(const v1::JobError& error);
// The merge gate's headline: "merge:      passed, bfloat16, max logit diff ..." and its layer figures.
std::string FormatMergeCheck(const v1::MergeCheck& check);

}  // namespace d2lora::cli
