#include <torch/torch.h>

#include "worker/engine/train/training_checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "worker/engine/formats/safetensors.h"
#include "worker/engine/torch_guard.h"

namespace d2lora::engine {
namespace {

namespace fs = std::filesystem;

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// "a.b.c" -> value for every leaf of `j`.
void Flatten(const nlohmann::json& j, const std::string& prefix, std::map<std::string, nlohmann::json>* out) {
  if (j.is_object() && !j.empty()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      Flatten(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), out);
    }
  } else {
    (*out)[prefix] = j;
  }
}

absl::StatusOr<std::vector<std::pair<std::string, torch::Tensor>>> ReadAll(const std::string& path) {
  D2_ASSIGN_OR_RETURN(std::shared_ptr<const SafetensorsFile> file, SafetensorsFile::Open(path));
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const SafetensorsEntry& e : file->entries()) {
    D2_ASSIGN_OR_RETURN(torch::Tensor t, file->Get(e.name));
    out.emplace_back(e.name, t.clone());  // detach from the mapping
  }
  return out;
}

template <typename T>
absl::Status Field(const nlohmann::json& j, const char* key, const std::string& file, T* out) {
  auto it = j.find(key);
  if (it == j.end()) return absl::DataLossError(absl::StrCat(file, ": missing field \"", key, "\""));
  try {
    *out = it->template get<T>();
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat(file, ": field \"", key, "\": ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace

std::string CheckpointPath(const std::string& checkpoints_dir, int64_t step) {
  return absl::StrCat(checkpoints_dir, "/", trainer::kCheckpointPrefix, step);
}

absl::Status WriteTrainingCheckpoint(const std::string& dir, const TrainingState& state,
                                     const std::function<absl::Status(const std::string&)>& write_extra) {
  std::error_code ec;
  fs::create_directories(fs::path(dir).parent_path(), ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", fs::path(dir).parent_path().string(), ": ", ec.message()));
  D2_ASSIGN_OR_RETURN(StagedDirectory staged, StagedDirectory::Create(dir));
  const std::string params_path = staged.path() + "/" + kParametersFile;
  const std::string optim_path = staged.path() + "/" + kOptimizerFile;
  D2_RETURN_IF_ERROR(WriteSafetensors(params_path, state.parameters));
  D2_RETURN_IF_ERROR(WriteSafetensors(optim_path, state.optimizer));
  if (write_extra) D2_RETURN_IF_ERROR(write_extra(staged.path()));

  nlohmann::json j;
  j["format_version"] = kCheckpointFormatVersion;
  j["step"] = state.step;
  j["cursor"] = CursorToJson(state.cursor);
  j["optimizer_steps"] = state.optimizer_steps;
  j["volatility"] = state.volatility;
  if (!state.guard.is_null()) j["guard"] = state.guard;
  j["nonfinite_streak"] = state.nonfinite_streak;
  j["skipped_steps"] = state.skipped_steps;
  j["elapsed_seconds"] = state.elapsed_seconds;
  j["fingerprint"] = state.fingerprint;
  if (!state.metrics.is_null()) j["metrics"] = state.metrics;
  D2_ASSIGN_OR_RETURN(std::string params_sha, Sha256File(params_path));
  D2_ASSIGN_OR_RETURN(std::string optim_sha, Sha256File(optim_path));
  j["sha256"] = {{kParametersFile, params_sha}, {kOptimizerFile, optim_sha}};
  D2_RETURN_IF_ERROR(WriteFileAtomically(staged.path() + "/" + kTrainerStateFile, j.dump(2) + "\n"));
  return staged.Commit(/*replace=*/true);
}

namespace {

// Both tensor files of checkpoint `dir` against the SHA-256s its trainer state
// `j` (read from `state_path`) records.
absl::Status CheckFileDigests(const std::string& dir, const std::string& state_path, nlohmann::json& j) {
  for (const char* name : {kParametersFile, kOptimizerFile}) {
    const std::string path = dir + "/" + name;
    std::string expected;
    D2_RETURN_IF_ERROR(Field(j["sha256"], name, state_path + " sha256", &expected));
    D2_ASSIGN_OR_RETURN(std::string actual, Sha256File(path));
    if (actual != expected) {
      return absl::DataLossError(absl::StrCat(path, ": checksum mismatch (SHA-256 ", actual, ", ", kTrainerStateFile,
                                              " records ", expected, "): the checkpoint is corrupt"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status VerifyTrainingCheckpoint(const std::string& dir) {
  const std::string state_path = dir + "/" + kTrainerStateFile;
  D2_ASSIGN_OR_RETURN(std::string text, ReadFileToString(state_path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("sha256")) {
    return absl::DataLossError(absl::StrCat(state_path, ": not a JSON object with sha256 (corrupt checkpoint)"));
  }
  return CheckFileDigests(dir, state_path, j);
}

absl::StatusOr<TrainingState> ReadTrainingCheckpoint(const std::string& dir) {
  const std::string state_path = dir + "/" + kTrainerStateFile;
  D2_ASSIGN_OR_RETURN(std::string text, ReadFileToString(state_path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError(absl::StrCat(state_path, ": not a JSON object (corrupt checkpoint)"));
  }
  int version = 0;
  D2_RETURN_IF_ERROR(Field(j, "format_version", state_path, &version));
  if (version != kCheckpointFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(state_path, ": checkpoint format version ", version,
                                                      ", this build reads version ", kCheckpointFormatVersion));
  }
  TrainingState s;
  D2_RETURN_IF_ERROR(Field(j, "step", state_path, &s.step));
  D2_RETURN_IF_ERROR(Field(j, "optimizer_steps", state_path, &s.optimizer_steps));
  D2_RETURN_IF_ERROR(Field(j, "nonfinite_streak", state_path, &s.nonfinite_streak));
  D2_RETURN_IF_ERROR(Field(j, "skipped_steps", state_path, &s.skipped_steps));
  D2_RETURN_IF_ERROR(Field(j, "elapsed_seconds", state_path, &s.elapsed_seconds));
  if (!j.contains("cursor") || !j.contains("volatility") || !j.contains("fingerprint") || !j.contains("sha256")) {
    return absl::DataLossError(absl::StrCat(state_path, ": missing cursor, volatility, fingerprint or sha256"));
  }
  auto cursor = CursorFromJson(j["cursor"]);
  if (!cursor.ok()) return absl::DataLossError(absl::StrCat(state_path, ": cursor: ", cursor.status().message()));
  s.cursor = *cursor;
  s.volatility = j["volatility"];
  if (j.contains("guard")) s.guard = j["guard"];
  s.fingerprint = j["fingerprint"];
  if (j.contains("metrics")) s.metrics = j["metrics"];
  if (s.step < 0 || s.optimizer_steps < 0) return absl::DataLossError(absl::StrCat(state_path, ": negative step"));

  D2_RETURN_IF_ERROR(CheckFileDigests(dir, state_path, j));
  D2_ASSIGN_OR_RETURN(s.parameters, ReadAll(dir + "/" + kParametersFile));
  D2_ASSIGN_OR_RETURN(s.optimizer, ReadAll(dir + "/" + kOptimizerFile));
  return s;
}

absl::Status CheckFingerprint(const nlohmann::json& checkpoint, const nlohmann::json& current) {
  std::map<std::string, nlohmann::json> a, b;
  Flatten(checkpoint, "", &a);
  Flatten(current, "", &b);
  for (const auto& [key, value] : b) {
    auto it = a.find(key);
    if (it == a.end()) {
      return absl::FailedPreconditionError(absl::StrCat("checkpoint does not record ", key, " (this run has ", key,
                                                        " = ", value.dump(), ")"));
    }
    if (it->second != value) {
      return absl::FailedPreconditionError(absl::StrCat("checkpoint was written with ", key, " = ",
                                                        it->second.dump(), ", this run has ", key, " = ",
                                                        value.dump()));
    }
  }
  // Keys that older checkpoints record but that no longer bind a resume
  // (train.micro_batch_size: free since a resume may change the world size).
  static const std::set<std::string> kFreedKeys = {"train.micro_batch_size"};
  for (const auto& [key, value] : a) {
    if (!b.count(key) && !kFreedKeys.count(key)) {
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint records ", key, " = ", value.dump(), ", which this run does not have"));
    }
  }
  return absl::OkStatus();
}

std::vector<std::pair<int64_t, std::string>> ListCheckpoints(const std::string& checkpoints_dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (fs::directory_iterator it(checkpoints_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    int64_t step = 0;
    if (!absl::StartsWith(name, trainer::kCheckpointPrefix) ||
        !absl::SimpleAtoi(name.substr(sizeof(trainer::kCheckpointPrefix) - 1), &step)) {
      continue;
    }
    if (!IsFile(it->path().string() + "/" + kTrainerStateFile)) continue;
    out.emplace_back(step, it->path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::Status PruneCheckpoints(const std::string& checkpoints_dir, int64_t keep) {
  auto all = ListCheckpoints(checkpoints_dir);
  for (size_t i = 0; i + static_cast<size_t>(std::max<int64_t>(keep, 0)) < all.size(); ++i) {
    std::error_code ec;
    fs::remove_all(all[i].second, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot delete old checkpoint ", all[i].second, ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ResolveResumePath(const std::string& path, std::vector<std::string>* skipped) {
  if (IsFile(path + "/" + kTrainerStateFile)) return path;
  for (const std::string& dir : {path + "/checkpoints", path}) {
    auto all = ListCheckpoints(dir);
    if (all.empty()) continue;
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      absl::Status verified = VerifyTrainingCheckpoint(it->second);
      if (verified.ok()) return it->second;
      if (skipped != nullptr) skipped->push_back(std::string(verified.message()));
    }
    return all.back().second;
  }
  return absl::NotFoundError(absl::StrCat("--resume ", path, ": no checkpoint there (expected ", kTrainerStateFile,
                                          ", or checkpoints/step-<N>/ under an output directory)"));
}

}  // namespace d2lora::engine
