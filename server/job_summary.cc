#include "server/job_summary.h"

#include <google/protobuf/util/json_util.h>

#include <nlohmann/json.hpp>

namespace d2lora::server {

void SetJobSummary(v1::Job& job, const std::string& summary_json) {
  job.set_summary_json(summary_json);
  job.clear_merge_check();
  const nlohmann::json summary = nlohmann::json::parse(summary_json, nullptr, /*allow_exceptions=*/false);
  if (summary.is_discarded() || !summary.is_object() || !summary.contains("merge_check") ||
      !summary["merge_check"].is_object()) {
    return;
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  v1::MergeCheck check;
  if (google::protobuf::util::JsonStringToMessage(summary["merge_check"].dump(), &check, options).ok()) {
    *job.mutable_merge_check() = std::move(check);
  }
}

}  // namespace d2lora::server
