// Which examples make up each optimizer step, on which rank, in which
// micro-batch; and the cursor that pins a position in that plan exactly.
//
// One epoch's plan (EpochBatches), with rng = std::mt19937_64(EpochSeed(seed, epoch))
// (shuffle.h):
//   1. order = 0..n-1, Shuffle(order, rng).
//   2. Length grouping (group_factor K >= 1): cut order into consecutive chunks
//      of K * batch_size; stable-sort each chunk by length, longest first.
//      K = 0 skips this step (batches of random lengths).
//   3. Cut the result into global batches of batch_size; the last incomplete
//      one is dropped (so StepsPerEpoch = n / batch_size, rounded down).
//   4. Shuffle(batch order, rng) with the same generator, so that the loss
//      curve does not follow batch length.
// A global batch splits into world_size contiguous rank slices of
// batch_size / world_size examples (RankSlice); a rank slice into contiguous
// micro-batches of micro_batch_size (MicroBatches). Within a global batch the
// examples stay sorted longest first, so a micro-batch holds similar lengths.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace d2lora::engine {

struct BatchingOptions {
  int64_t batch_size = 16;       // examples per optimizer step, all ranks together
  int64_t micro_batch_size = 8;  // examples per forward pass on one rank
  int64_t world_size = 1;
  int64_t group_factor = 50;  // K: length-grouping window in global batches; 0 = off
  uint64_t seed = 42;
};

// batch_size, micro_batch_size, world_size >= 1; batch_size divisible by
// micro_batch_size * world_size; group_factor >= 0.
absl::Status ValidateBatching(const BatchingOptions& options);

// Complete global batches per epoch: num_examples / batch_size, rounded down.
int64_t StepsPerEpoch(int64_t num_examples, int64_t batch_size);

// The global batches of `epoch` in training order (see the steps above);
// `lengths[i]` is example i's token count. Options must be valid.
std::vector<std::vector<int64_t>> EpochBatches(const std::vector<int64_t>& lengths,
                                               const BatchingOptions& options, int64_t epoch);

// Rank `rank`'s contiguous share of a global batch: elements
// [rank * size / world_size, (rank + 1) * size / world_size).
std::vector<int64_t> RankSlice(const std::vector<int64_t>& global_batch, int64_t rank,
                               int64_t world_size);

// Consecutive pieces of `micro_batch_size` (the last may be shorter when the
// slice size is not a multiple).
std::vector<std::vector<int64_t>> MicroBatches(const std::vector<int64_t>& rank_slice,
                                               int64_t micro_batch_size);

// A position in the data: `step` is the index, within `epoch`, of the next
// global batch to train on (0 <= step < StepsPerEpoch). With the same examples
// and BatchingOptions, a cursor names the same batch in every process, so a
// checkpoint that stores it resumes mid-epoch exactly.
struct DataCursor {
  int64_t epoch = 0;
  int64_t step = 0;

  bool operator==(const DataCursor& o) const { return epoch == o.epoch && step == o.step; }
  bool operator!=(const DataCursor& o) const { return !(*this == o); }
};

// The cursor after `cursor` (the next epoch's step 0 after the last step).
DataCursor NextCursor(const DataCursor& cursor, int64_t steps_per_epoch);
// epoch * steps_per_epoch + step, and back.
int64_t CursorToGlobalStep(const DataCursor& cursor, int64_t steps_per_epoch);
DataCursor CursorFromGlobalStep(int64_t global_step, int64_t steps_per_epoch);

// {"epoch": E, "step": S}, for checkpoints.
nlohmann::json CursorToJson(const DataCursor& cursor);
absl::StatusOr<DataCursor> CursorFromJson(const nlohmann::json& j);

}  // namespace d2lora::engine
