#include "server/job_checkpoints.h"

#include <algorithm>
#include <utility>

#include <google/protobuf/util/time_util.h>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/rpc/metrics_convert.h"
#include "common/trainer/metrics_events.h"
#include "common/trainer/output_names.h"
#include "server/artifact_streaming.h"

namespace d2lora::server {
namespace {

constexpr int64_t kMaxTrainerStateBytes = 16 << 20;
constexpr int64_t kCopyChunkBytes = 1 << 20;

std::string AdapterFile(const char* name) { return absl::StrCat(trainer::kAdapterDir, "/", name); }

// Whether `keys` (relative to a folder) hold an adapter: its config and weights.
bool HoldsAdapter(const std::vector<std::string>& keys) {
  const std::string config = AdapterFile("adapter_config.json");
  const std::string weights = AdapterFile("adapter_model.safetensors");
  return std::find(keys.begin(), keys.end(), config) != keys.end() &&
         std::find(keys.begin(), keys.end(), weights) != keys.end();
}

// The metrics trainer_state.json recorded at `key`; unset parts when it has none.
trainer::CheckpointMetrics ReadCheckpointMetrics(ArtifactStore& artifacts, const ArtifactInfo& state) {
  if (state.size > kMaxTrainerStateBytes) return {};
  auto text = artifacts.Read(state.key, 0, state.size);
  if (!text.ok()) return {};
  const nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("metrics")) return {};
  return trainer::CheckpointMetricsFromJson(j["metrics"]);
}

std::string StepList(const std::map<int64_t, StoredCheckpoint>& checkpoints) {
  std::vector<std::string> steps;
  for (const auto& [step, c] : checkpoints) {
    if (c.complete && c.damaged.empty() && c.has_adapter) steps.push_back(absl::StrCat(step));
  }
  return steps.empty() ? "none" : absl::StrJoin(steps, ", ");
}

// The step of the job's final adapter (adapter/) when it is stored whole and
// undamaged, else 0. The trainer writes its last checkpoint at the last step,
// before the adapter.
absl::StatusOr<int64_t> FinalAdapterStep(ArtifactStore& artifacts, const v1::Job& job,
                                         const std::map<int64_t, StoredCheckpoint>& checkpoints) {
  const std::string job_dir = absl::StrCat("jobs/", job.id(), "/");
  auto files = artifacts.List(absl::StrCat(job_dir, trainer::kAdapterDir, "/"));
  if (!files.ok()) return files.status();
  std::vector<std::string> keys;
  for (const ArtifactInfo& f : *files) {
    if (!f.damaged.empty()) return 0;
    keys.push_back(f.key.substr(job_dir.size()));
  }
  if (!HoldsAdapter(keys)) return 0;
  int64_t step = job.metrics().step();
  for (const auto& [s, c] : checkpoints) {
    if (c.complete) step = std::max(step, s);
  }
  return std::max<int64_t>(step, 1);
}

}  // namespace

std::optional<int64_t> CheckpointStepOf(absl::string_view relative) {
  const std::string prefix = absl::StrCat(trainer::kCheckpointsDir, "/", trainer::kCheckpointPrefix);
  if (!absl::ConsumePrefix(&relative, prefix)) return std::nullopt;
  int64_t step = 0;
  const size_t slash = relative.find('/');
  if (slash == absl::string_view::npos || !absl::SimpleAtoi(relative.substr(0, slash), &step) || step <= 0) {
    return std::nullopt;
  }
  return step;
}

std::map<int64_t, StoredCheckpoint> GroupCheckpoints(const std::vector<ArtifactInfo>& files,
                                                     const std::string& job_dir) {
  std::map<int64_t, StoredCheckpoint> out;
  std::map<int64_t, std::vector<std::string>> inside;  // step -> keys relative to its folder
  for (const ArtifactInfo& f : files) {
    if (!absl::StartsWith(f.key, job_dir)) continue;
    const std::string relative = f.key.substr(job_dir.size());
    const std::optional<int64_t> step = CheckpointStepOf(relative);
    if (!step.has_value()) continue;
    StoredCheckpoint& c = out[*step];
    c.step = *step;
    c.files.push_back(f);
    if (trainer::CompleteCheckpointStep(relative).has_value()) c.complete = true;
    if (!f.damaged.empty() && c.damaged.empty()) c.damaged = absl::StrCat(relative, ": ", f.damaged);
    inside[*step].push_back(relative.substr(trainer::CheckpointName(*step).size() + 1));
  }
  for (auto& [step, c] : out) c.has_adapter = HoldsAdapter(inside[step]);
  return out;
}

absl::StatusOr<std::map<int64_t, StoredCheckpoint>> StoredCheckpoints(ArtifactStore& artifacts,
                                                                      const std::string& job_id) {
  const std::string job_dir = absl::StrCat("jobs/", job_id, "/");
  auto all = artifacts.List(absl::StrCat(job_dir, trainer::kCheckpointsDir, "/"));
  if (!all.ok()) return all.status();
  return GroupCheckpoints(*all, job_dir);
}

absl::StatusOr<v1::ListCheckpointsResponse> ListJobCheckpoints(ArtifactStore& artifacts, const v1::Job& job) {
  const std::string job_dir = absl::StrCat("jobs/", job.id(), "/");
  auto checkpoints = StoredCheckpoints(artifacts, job.id());
  if (!checkpoints.ok()) return checkpoints.status();
  v1::ListCheckpointsResponse response;
  for (const auto& [step, c] : *checkpoints) {
    v1::Checkpoint* out = response.add_checkpoints();
    out->set_step(step);
    out->set_complete(c.complete);
    out->set_damaged(c.damaged);
    out->set_has_adapter(c.has_adapter);
    int64_t bytes = 0;
    for (const ArtifactInfo& f : c.files) {
      *out->add_files() = ToProto(f, f.key.substr(job_dir.size()));
      bytes += f.size;
      if (!absl::EndsWith(f.key, absl::StrCat("/", trainer::kTrainerStateFile))) continue;
      *out->mutable_time() = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(f.mtime_ms);
      if (!c.complete || !c.damaged.empty()) continue;
      const trainer::CheckpointMetrics m = ReadCheckpointMetrics(artifacts, f);
      if (m.train) *out->mutable_metrics() = rpc::TrainingMetricsToProto(*m.train);
      if (m.eval) *out->mutable_eval() = rpc::EvalResultToProto(*m.eval);
    }
    out->set_bytes(bytes);
  }
  auto final_step = FinalAdapterStep(artifacts, job, *checkpoints);
  if (!final_step.ok()) return final_step.status();
  response.set_final_adapter_step(*final_step);
  return response;
}

absl::StatusOr<InitSource> FindInitSource(ArtifactStore& artifacts, const v1::Job& source, int64_t step) {
  auto checkpoints = StoredCheckpoints(artifacts, source.id());
  if (!checkpoints.ok()) return checkpoints.status();
  const std::string job_dir = absl::StrCat("jobs/", source.id(), "/");
  const std::string where = absl::StrCat("spec.init.from_job: job ", source.id());
  if (step > 0) {
    auto it = checkpoints->find(step);
    const std::string at = absl::StrCat(where, " has no usable checkpoint at step ", step);
    if (it == checkpoints->end()) {
      return absl::FailedPreconditionError(
          absl::StrCat(at, " (stored with an adapter: ", StepList(*checkpoints), ")"));
    }
    if (!it->second.complete) return absl::FailedPreconditionError(absl::StrCat(at, ": it is not complete"));
    if (!it->second.damaged.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(at, ": it is damaged (", it->second.damaged, ")"));
    }
    if (!it->second.has_adapter) {
      return absl::FailedPreconditionError(absl::StrCat(at, ": it holds no adapter (method full?)"));
    }
    return InitSource{absl::StrCat(job_dir, trainer::CheckpointName(step), "/", trainer::kAdapterDir, "/"), step, false};
  }
  auto final_step = FinalAdapterStep(artifacts, source, *checkpoints);
  if (!final_step.ok()) return final_step.status();
  if (*final_step > 0) return InitSource{absl::StrCat(job_dir, trainer::kAdapterDir, "/"), *final_step, true};
  for (auto it = checkpoints->rbegin(); it != checkpoints->rend(); ++it) {
    const StoredCheckpoint& c = it->second;
    if (c.complete && c.damaged.empty() && c.has_adapter) {
      return InitSource{absl::StrCat(job_dir, trainer::CheckpointName(c.step), "/", trainer::kAdapterDir, "/"), c.step,
                        false};
    }
  }
  return absl::FailedPreconditionError(absl::StrCat(where, " (", v1::JobState_Name(source.state()),
                                                    ") has no final adapter and no complete checkpoint with one yet"));
}

absl::Status CopyArtifactFolder(ArtifactStore& artifacts, const std::string& from, const std::string& to) {
  auto files = artifacts.List(from);
  if (!files.ok()) return files.status();
  if (files->empty()) return absl::NotFoundError(absl::StrCat(from, ": no files"));
  for (const ArtifactInfo& f : *files) {
    if (!f.damaged.empty()) return absl::DataLossError(absl::StrCat(f.key, ": ", f.damaged));
    auto writer = artifacts.OpenWriter(to + f.key.substr(from.size()));
    if (!writer.ok()) return writer.status();
    for (int64_t offset = 0; offset < f.size; offset += kCopyChunkBytes) {
      auto chunk = artifacts.Read(f.key, offset, kCopyChunkBytes);
      if (!chunk.ok()) return chunk.status();
      if (chunk->empty()) break;
      if (absl::Status s = (*writer)->Append(*chunk); !s.ok()) return s;
    }
    auto committed = (*writer)->Commit(f.sha256);
    if (!committed.ok()) return committed.status();
  }
  return absl::OkStatus();
}

}  // namespace d2lora::server
