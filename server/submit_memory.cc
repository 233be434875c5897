#include "server/submit_memory.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/model/memory_plan.h"
#include "common/rpc/spec_convert.h"
#include "common/status_macros.h"
#include "common/text_format.h"
#include "server/submit_check.h"

namespace d2lora::server {
namespace {


constexpr int64_t kMaxConfigBytes = 1 << 20;

// A file or folder the spec names, as this host can see it: an upload's
// artifact keys, or a path on this host's file system.
class SpecPath {
 public:
  SpecPath(const std::string& field, const std::string& path, ArtifactStore& artifacts)
      : path_(path), artifacts_(artifacts) {
    auto ref = ParseUploadRef(field, path);
    if (ref.ok() && ref->has_value()) {
      upload_ = true;
      key_ = absl::StrCat("uploads/", (*ref)->upload_id, (*ref)->name.empty() ? "" : "/" + (*ref)->name);
    }
  }

  // Bytes of the file, or of every file in the folder whose name ends in `suffix`; 0 = unknown.
  int64_t Bytes(const std::string& suffix = "") const {
    int64_t total = 0;
    if (upload_) {
      auto files = artifacts_.List(key_);
      if (!files.ok()) return 0;
      for (const ArtifactInfo& f : *files) {
        if (f.key == key_ || (absl::StartsWith(f.key, key_ + "/") && absl::EndsWith(f.key, suffix))) total += f.size;
      }
      return total;
    }
    return model::LocalBytes(path_, suffix);
  }

  // The text of `name` inside the folder; NOT_FOUND when this host cannot read it.
  absl::StatusOr<std::string> ReadInside(const std::string& name) const {
    if (upload_) {
      D2_ASSIGN_OR_RETURN(std::string text, artifacts_.Read(key_ + "/" + name, 0, kMaxConfigBytes));
      return text;
    }
    std::ifstream in(path_ + "/" + name, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat(path_, "/", name, " cannot be read on the coordinator's host"));
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  }

  std::string Describe(const std::string& name) const { return absl::StrCat(path_, "/", name); }

 private:
  std::string path_;
  ArtifactStore& artifacts_;
  bool upload_ = false;
  std::string key_;
};

}  // namespace

absl::StatusOr<JobMemory> PlanJobMemory(const v1::JobSpec& wire, ArtifactStore& artifacts) {
  auto valid = rpc::SpecFromProto(wire);
  if (!valid.ok()) return absl::InvalidArgumentError(valid.status().message());
  const spec::JobSpec& spec = *valid;
  JobMemory out;
  const SpecPath model_dir("spec.model", spec.model, artifacts);
  absl::StatusOr<std::string> text = model_dir.ReadInside("config.json");
  if (!text.ok()) {
    out.note = absl::StrCat("no memory plan: ", text.status().message());
    return out;
  }
  auto config = model::ParseModelConfig(*text, model_dir.Describe("config.json"));
  if (!config.ok()) return absl::InvalidArgumentError(absl::StrCat("spec.model: ", config.status().message()));
  model::MemoryPlanInputs in;
  in.data_file_bytes = SpecPath("spec.data.train", spec.data.train, artifacts).Bytes();
  if (!spec.data.validation.empty()) {
    in.data_file_bytes += SpecPath("spec.data.validation", spec.data.validation, artifacts).Bytes();
  }
  in.checkpoint_bytes = model_dir.Bytes(".safetensors");
  auto plan = model::PlanMemory(*config, spec, in);
  if (!plan.ok()) return absl::InvalidArgumentError(plan.status().message());
  out.bytes = plan->peak;
  out.note = absl::StrCat("memory plan: ", FormatBytes(plan->peak), " per rank (peak at ", plan->peak_phase,
                          ")");
  return out;
}

absl::Status CheckFitsAWorker(int64_t bytes, const std::vector<const v1::RegisterWorkerRequest*>& workers) {
  if (bytes <= 0 || workers.empty()) return absl::OkStatus();
  int64_t largest = 0;
  for (const v1::RegisterWorkerRequest* w : workers) {
    for (const v1::Slot& slot : w->slots()) {
      if (slot.memory_bytes() <= 0 || slot.memory_bytes() >= bytes) return absl::OkStatus();
      largest = std::max(largest, slot.memory_bytes());
    }
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "the job's memory plan predicts ", bytes, " bytes (", FormatBytes(bytes), ") per rank; the largest ",
      "worker slot has ", largest, " bytes (", FormatBytes(largest), "): it fits no worker (`d2lora plan ",
      "--config SPEC` shows the terms; a smaller micro_batch_size, max_seq_len or activation_checkpointing lowers it)"));
}

}  // namespace d2lora::server
