// A rank 0 summary.json on a job: the text, and the merge gate's headline as
// a typed field (Job.merge_check) for clients and dashboards.
#pragma once

#include <string>

#include "d2lora/v1/job.pb.h"

namespace d2lora::server {

// Sets job.summary_json and, when the summary holds a "merge_check" object,
// job.merge_check from it (fields it does not know are ignored; a summary that
// is not JSON leaves merge_check unset).
void SetJobSummary(v1::Job& job, const std::string& summary_json);

}  // namespace d2lora::server
