// Training checkpoints: everything a run needs to continue exactly where it
// stopped. A checkpoint is a directory `<output>/checkpoints/step-<N>/`:
//
//   trainer_state.json      format, step, data cursor, optimizer step count,
//                           the metrics at the step (informational: the
//                           step's figures and the newest evaluation),
//                           volatility tracker, counters, the training guard's
//                           state (rollbacks, LR scale, skipped batches), the fingerprint of
//                           what must not change on resume, and the SHA-256 of
//                           every other file
//   parameters.safetensors  the trainable parameters by module path (fp32 or
//                           their own dtype)
//   optimizer.safetensors   AdamW moments ("<name>.exp_avg[_sq]")
//   adapter/                the adapter in PEFT layout (for users; not read back)
//
// No random generator state is stored: the trainer reseeds LibTorch's
// generators at every step from (train.seed, rank, step), so the step number
// pins dropout masks on every rank, whatever the world size of the writer.
//
// The directory appears complete or not at all (staged under a temporary name,
// fsynced, renamed). Reading verifies every checksum before trusting a byte.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/trainer/output_names.h"
#include "worker/engine/data/batching.h"

namespace d2lora::engine {

using trainer::kTrainerStateFile;  // common/trainer/output_names.h
inline constexpr char kParametersFile[] = "parameters.safetensors";
inline constexpr char kOptimizerFile[] = "optimizer.safetensors";
inline constexpr int kCheckpointFormatVersion = 1;

struct TrainingState {
  int64_t step = 0;  // optimizer steps completed
  DataCursor cursor;  // the next batch to train on
  int64_t optimizer_steps = 0;
  std::vector<std::pair<std::string, torch::Tensor>> parameters;
  std::vector<std::pair<std::string, torch::Tensor>> optimizer;  // moments by "<name>.exp_avg[_sq]"
  nlohmann::json volatility;  // VolatilityTracker::ToJson()
  nlohmann::json guard;       // GuardStateToJson (guard.h); null in checkpoints written before the guard
  int64_t nonfinite_streak = 0;
  int64_t skipped_steps = 0;
  double elapsed_seconds = 0;  // training time before this checkpoint, all sessions
  // What a resumed run must agree on (method, adapter, data, batch, schedule,
  // ...): compared key by key, the first difference named in the error.
  nlohmann::json fingerprint;
  // trainer::ToJson(CheckpointMetrics) (metrics_events.h); null in checkpoints
  // written before it. Not part of what a resume must agree on.
  nlohmann::json metrics;
};

// The checkpoint directory for `step` under `checkpoints_dir`.
std::string CheckpointPath(const std::string& checkpoints_dir, int64_t step);

// Writes `state` to `dir` atomically (replacing an older directory of that
// name). `write_extra`, when set, may add files to the staged directory first.
absl::Status WriteTrainingCheckpoint(const std::string& dir, const TrainingState& state,
                                     const std::function<absl::Status(const std::string&)>& write_extra = {});

// Reads and verifies a checkpoint; errors name the file and what is wrong
// (missing file, checksum mismatch, bad field).
absl::StatusOr<TrainingState> ReadTrainingCheckpoint(const std::string& dir);

// FailedPrecondition naming the first key whose value differs, e.g.
// "checkpoint was written with train.lr = 0.0002, this run has train.lr = 0.001".
absl::Status CheckFingerprint(const nlohmann::json& checkpoint, const nlohmann::json& current);

// Complete checkpoints (directories named step-<N>) under `checkpoints_dir`,
// by ascending step; a missing directory is an empty list.
std::vector<std::pair<int64_t, std::string>> ListCheckpoints(const std::string& checkpoints_dir);

// Deletes all but the newest `keep` checkpoints.
absl::Status PruneCheckpoints(const std::string& checkpoints_dir, int64_t keep);

// Checks that trainer_state.json parses and that every file it lists matches
// its SHA-256, without loading the tensors; DataLoss naming the file otherwise.
absl::Status VerifyTrainingCheckpoint(const std::string& dir);

// `path` itself when it holds trainer_state.json; else, when it is an output
// directory or a checkpoints directory, its newest checkpoint that verifies
// (VerifyTrainingCheckpoint): each newer one that does not is skipped and, when
// `skipped` is set, named there with what is wrong. When none verifies, the
// newest (reading it reports the damage). NotFound when there is none.
absl::StatusOr<std::string> ResolveResumePath(const std::string& path, std::vector<std::string>* skipped = nullptr);

}  // namespace d2lora::engine
