// `d2lora train` and a worker's training process: one job spec in, an output
// directory out (every rank of the group calls RunTrainJob):
//
//   <output.dir>/spec.yaml            the spec in effect (canonical form)
//   <output.dir>/metrics.jsonl        one JSON line per event (metrics_jsonl.h)
//   <output.dir>/checkpoints/step-N/  training checkpoints (training_checkpoint.h)
//   <output.dir>/adapter/             the final adapter, PEFT layout (not for method full)
//   <output.dir>/merged/              the merged model, Hugging Face layout (output.merge;
//                                     always for method full: the fine-tuned model)
//   <output.dir>/summary.json         final metrics, evaluation, merge check, paths, wall time
//
// A fresh run refuses an output directory that already holds files; a resumed
// run (`resume`) continues in it. The merge check (output.merge, adapters
// only): the adapters are folded into the weights in place (in fp32, then the
// model's dtype), the validation set is scored again, and the summary reports
// the accuracy (or loss) gap and the largest logit difference between the
// adapted and the merged model on the first validation sequences.
#pragma once

#include "common/trainer/output_names.h"

#include <atomic>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "worker/engine/distributed/process_group.h"
#include "worker/engine/metrics/callbacks.h"
#include "worker/engine/spec_types.h"

namespace d2lora::engine {


struct TrainJobOptions {
  std::string resume;  // "" = fresh run; else a checkpoint or an output directory
  int64_t local_rank = 0;  // CUDA device index on this host
  std::vector<TrainingCallback*> callbacks;  // besides metrics.jsonl (rank 0 only)
  const std::atomic<bool>* stop = nullptr;   // see TrainerOptions::stop
};

// Runs the job on this rank; `spec`'s paths are resolved (ResolveSpecPaths).
// Returns summary.json's contents (rank 0; the other ranks return a summary
// without evaluation, merge check or paths).
absl::StatusOr<nlohmann::json> RunTrainJob(const ValidJobSpec& spec, const TrainJobOptions& options,
                                           ProcessGroup& group);

}  // namespace d2lora::engine
