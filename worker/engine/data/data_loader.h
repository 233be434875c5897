// One rank's view of the training data: the plan of batching.h over a fixed
// set of examples, positioned by a DataCursor, handing out collated
// micro-batches step by step.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/data/batching.h"
#include "worker/engine/data/collate.h"
#include "worker/engine/data/examples.h"

namespace d2lora::engine {

// What one rank trains on for one optimizer step.
struct StepBatches {
  DataCursor cursor;                 // the step these batches belong to
  std::vector<Batch> micro_batches;  // this rank's, in order
  // Targets in the whole global batch (every rank, every micro-batch): dividing
  // each micro-batch's summed token loss by it and summing gradients over
  // micro-batches and ranks gives the token-mean loss of the global batch.
  int64_t global_targets = 0;
};

class DataLoader {
 public:
  // Errors: invalid options, rank outside [0, world_size), fewer examples than
  // one global batch.
  static absl::StatusOr<DataLoader> Create(std::shared_ptr<const std::vector<Example>> examples,
                                           const BatchingOptions& options, int64_t rank,
                                           int64_t pad_id);

  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  const DataCursor& cursor() const { return cursor_; }
  // Moves to `cursor` (e.g. from a checkpoint); its step must be < steps_per_epoch.
  absl::Status Seek(const DataCursor& cursor);

  // The global batch (example indices, all ranks) at `cursor`.
  const std::vector<int64_t>& GlobalBatch(const DataCursor& cursor);
  // This rank's micro-batches for the step at cursor(), then advances the cursor.
  StepBatches Next();

 private:
  DataLoader(std::shared_ptr<const std::vector<Example>> examples, BatchingOptions options,
             int64_t rank, int64_t pad_id);

  std::shared_ptr<const std::vector<Example>> examples_;
  BatchingOptions options_;
  int64_t rank_ = 0;
  int64_t pad_id_ = 0;
  std::vector<int64_t> lengths_;  // tokens per example
  std::vector<int64_t> targets_;  // targets per example
  int64_t steps_per_epoch_ = 0;
  DataCursor cursor_;
  int64_t planned_epoch_ = -1;
  std::vector<std::vector<int64_t>> plan_;  // EpochBatches(planned_epoch_)
};

}  // namespace d2lora::engine
