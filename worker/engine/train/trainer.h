// The training loop every job runs, for world sizes 1..N (data parallel).
//
// Each optimizer step consumes exactly train.batch_size examples, all ranks
// together (DataLoader): every rank runs its micro-batches forward and
// backward with the loss summed over target tokens and divided by the global
// batch's target count; the gradients of all trainable parameters, the loss
// sum, the token count and a stop flag then travel in one flat fp32 bucket
// through one AllReduceSum. Summing the per-rank gradients thus gives the
// gradient of the global batch's token-mean loss, the same as one rank on the
// whole batch. Then: global-norm clipping, the learning-rate schedule, AdamW.
//
// With the training guard on (spec guard:, guard.h), a spike or a run of
// non-finite steps rolls every rank back to an in-memory copy of the last
// checkpoint (taken at the start and every train.checkpoint_every steps,
// written to disk or not) instead of applying the step.
//
// Before training, rank 0 broadcasts the trainable parameters. Randomness
// (adapter dropout) is reseeded every step from (train.seed, rank, step).
// Non-finite loss or gradients skip the update; more than
// train.max_nonfinite_steps such steps in a row fail the run.
//
// Every train.checkpoint_every steps and at the end, rank 0 writes a
// checkpoint (training_checkpoint.h); every eval.every steps and at the end,
// all ranks validate together (validation.h). Callbacks run on rank 0.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/data/data_loader.h"
#include "worker/engine/distributed/process_group.h"
#include "worker/engine/metrics/callbacks.h"
#include "worker/engine/metrics/volatility.h"
#include "worker/engine/model/llama.h"
#include "worker/engine/spec_types.h"
#include "worker/engine/train/adamw.h"
#include "worker/engine/train/guard.h"
#include "worker/engine/train/training_checkpoint.h"
#include "worker/engine/train/validation.h"

namespace d2lora::engine {

class D2LoraLinearImpl;

struct TrainerOptions {
  int64_t pad_id = 0;
  ValidationOptions validation;  // batch size, eos ids, decoder for ROUGE-L
  std::string checkpoints_dir;   // "" = write no checkpoints
  // Adds files (e.g. the PEFT adapter) to each checkpoint while it is staged.
  std::function<absl::Status(const std::string& staged_dir)> write_checkpoint_extra;
  // Recorded in checkpoints; Resume refuses a checkpoint whose fingerprint differs.
  nlohmann::json fingerprint;
  std::vector<TrainingCallback*> callbacks;  // rank 0 only
  // When set (on any rank), the run stops after the current step, writes a
  // checkpoint and returns with TrainResult::stopped.
  const std::atomic<bool>* stop = nullptr;
  RunInfo run_info;  // name, method, output_dir, parameter counts; the trainer fills the step counts
};

struct TrainResult {
  int64_t steps = 0;  // optimizer steps done, all sessions
  int64_t total_steps = 0;
  int64_t skipped_steps = 0;
  int64_t rollbacks = 0;  // the training guard's, all sessions
  bool stopped = false;
  double train_seconds = 0;  // all sessions
  std::optional<StepMetrics> last_step;
  RunVolatility run_volatility;
  std::optional<ValidationResult> final_eval;
  std::string last_checkpoint;  // "" if none was written
};

class Trainer {
 public:
  // `model` holds its trainable parameters (adapters injected, or everything
  // for full fine-tuning) on the training device. The trainer reads the spec's
  // train, eval, metrics, guard and resources. `group` outlives the trainer;
  // its world size must equal spec.resources.world_size.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(CausalLM model,
                                                         std::shared_ptr<const std::vector<Example>> train,
                                                         ValidationSet validation, const ValidJobSpec& spec,
                                                         TrainerOptions options, ProcessGroup* group);

  // Continues from a checkpoint directory (every rank reads it).
  absl::Status Resume(const std::string& checkpoint_dir);

  // Trains to the end (or until stopped), then validates. A failure carries
  // the step it happened at (trainer::StepOf, common/trainer/error_file.h):
  // the step being taken, or the last one for the final checkpoint and
  // validation.
  absl::StatusOr<TrainResult> Run();

  int64_t total_steps() const { return total_steps_; }
  int64_t steps_per_epoch() const { return loader_.steps_per_epoch(); }
  int64_t step() const { return step_; }
  const std::vector<TrainableParameter>& parameters() const { return optimizer_.parameters(); }
  const ValidationSet& validation() const { return validation_; }
  const ValidationOptions& validation_options() const { return options_.validation; }

 private:
  Trainer(CausalLM model, DataLoader loader, ValidationSet validation, const JobSpec& spec, TrainerOptions options,
          ProcessGroup* group, std::vector<TrainableParameter> params);

  absl::Status BroadcastParameters();
  // Run without the step on its failure; keeps *at_step current.
  absl::StatusOr<TrainResult> RunSteps(int64_t* at_step);
  // One optimizer step; sets *stop_requested when any rank asked to stop. When
  // the guard rejects the step, sets *rollback to why and applies nothing.
  absl::StatusOr<StepMetrics> TrainStep(bool* stop_requested, std::optional<std::string>* rollback);
  // The trainable state now (`clone`: copies the tensors, for the in-memory checkpoint).
  TrainingState CaptureState(bool clone) const;
  // Puts a checked state back (parameters, optimizer, cursor, counters). From
  // a checkpoint directory (named in errors) the guard's state too; from the
  // in-memory checkpoint (from_dir "") the guard keeps its own.
  absl::Status RestoreState(const TrainingState& state, const std::string& from_dir);
  // The guard rejected the step just run: record it (or fail), go back to the snapshot.
  absl::Status RollBack(const StepMetrics& m, const std::string& reason);
  absl::Status WriteCheckpoint();
  absl::StatusOr<ValidationResult> RunValidation(bool final);
  std::optional<TauStats> CollectTau();
  template <typename Fn>
  void Notify(Fn&& fn);

  CausalLM model_;
  DataLoader loader_;
  ValidationSet validation_;
  JobSpec spec_;  // valid
  TrainerOptions options_;
  ProcessGroup* group_;
  AdamW optimizer_;
  std::vector<std::shared_ptr<D2LoraLinearImpl>> d2lora_layers_;  // for tau statistics
  VolatilityTracker volatility_;
  TrainingGuard guard_;
  std::optional<TrainingState> snapshot_;  // the guard's in-memory checkpoint
  // What the next checkpoint records of the run (TrainingState::metrics).
  std::optional<StepMetrics> last_metrics_;
  std::optional<EvalMetrics> last_eval_;
  int64_t last_batch_ = 0;                 // global batch index of the latest step's batch
  torch::Device device_;
  int64_t total_steps_ = 0;
  int64_t step_ = 0;
  int64_t nonfinite_streak_ = 0;
  int64_t skipped_steps_ = 0;
  double prior_seconds_ = 0;    // training time of earlier sessions (from the checkpoint)
  double session_seconds_ = 0;  // step time in this session
  int64_t session_steps_ = 0;
  int64_t start_step_ = 0;
  std::string last_checkpoint_;
};

}  // namespace d2lora::engine
