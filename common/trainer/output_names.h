// The trainer-process contract, part 1: the layout of a training job's output
// directory. One list for the engine that writes it, the worker daemon that
// uploads it and the coordinator that accepts it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace d2lora::trainer {

inline constexpr char kSummaryFile[] = "summary.json";
inline constexpr char kMetricsFile[] = "metrics.jsonl";
inline constexpr char kSpecFile[] = "spec.yaml";
inline constexpr char kMergeReportFile[] = "merge_report.json";
// The final evaluation's answer to each multiple-choice question (train_job.cc).
inline constexpr char kPredictionsFile[] = "predictions.json";
inline constexpr char kAdapterDir[] = "adapter";
// A D2-LoRA job's exact rank-2r PEFT DoRA export, beside adapter/.
inline constexpr char kPeftAdapterDir[] = "adapter-peft";
inline constexpr char kMergedDir[] = "merged";
inline constexpr char kCheckpointsDir[] = "checkpoints";
// checkpoints/step-N/, complete once trainer_state.json is in it (written,
// and uploaded, last).
inline constexpr char kCheckpointPrefix[] = "step-";
inline constexpr char kTrainerStateFile[] = "trainer_state.json";

// "checkpoints/step-N".
std::string CheckpointName(int64_t step);
// N for "checkpoints/step-N/trainer_state.json" (N > 0); nullopt for any other name.
std::optional<int64_t> CompleteCheckpointStep(absl::string_view name);

// The folders and files of a finished job that are its artifacts
// (checkpoints/ travel separately, as they are written).
inline constexpr const char* kOutputFolders[] = {kAdapterDir, kPeftAdapterDir, kMergedDir};
inline constexpr const char* kOutputFiles[] = {kMetricsFile, kSummaryFile, kSpecFile, kMergeReportFile,
                                               kPredictionsFile};
// Those of kOutputFiles a job may lack: no merge asked for, no multiple-choice validation.
inline bool OptionalOutputFile(absl::string_view name) {
  return name == kMergeReportFile || name == kPredictionsFile;
}

// The environment variable that names the file a trainer process writes its
// error to before a non-zero exit (error_file.h), like torchelastic's
// TORCHELASTIC_ERROR_FILE. Unset: no file, stderr only.
inline constexpr char kErrorFileEnv[] = "D2LORA_ERROR_FILE";
// torchrun's own (error_file.h writes it too, in torchelastic's format).
inline constexpr char kTorchelasticErrorFileEnv[] = "TORCHELASTIC_ERROR_FILE";

}  // namespace d2lora::trainer
