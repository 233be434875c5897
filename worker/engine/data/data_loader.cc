#include "worker/engine/data/data_loader.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace d2lora::engine {

DataLoader::DataLoader(std::shared_ptr<const std::vector<Example>> examples,
                       BatchingOptions options, int64_t rank, int64_t pad_id)
    : examples_(std::move(examples)), options_(options), rank_(rank), pad_id_(pad_id) {
  lengths_.reserve(examples_->size());
  targets_.reserve(examples_->size());
  for (const Example& ex : *examples_) {
    lengths_.push_back(static_cast<int64_t>(ex.ids.size()));
    targets_.push_back(ex.num_targets());
  }
  steps_per_epoch_ = StepsPerEpoch(static_cast<int64_t>(lengths_.size()), options_.batch_size);
}

absl::StatusOr<DataLoader> DataLoader::Create(std::shared_ptr<const std::vector<Example>> examples,
                                              const BatchingOptions& options, int64_t rank,
                                              int64_t pad_id) {
  D2_RETURN_IF_ERROR(ValidateBatching(options));
  if (rank < 0 || rank >= options.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " outside [0, ", options.world_size, ")"));
  }
  if (examples == nullptr) return absl::InvalidArgumentError("no examples");
  const int64_t n = static_cast<int64_t>(examples->size());
  if (StepsPerEpoch(n, options.batch_size) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        n, " training examples are fewer than one batch of batch_size = ", options.batch_size));
  }
  return DataLoader(std::move(examples), options, rank, pad_id);
}

absl::Status DataLoader::Seek(const DataCursor& cursor) {
  if (cursor.epoch < 0 || cursor.step < 0 || cursor.step >= steps_per_epoch_) {
    return absl::OutOfRangeError(absl::StrCat("data cursor (epoch ", cursor.epoch, ", step ",
                                              cursor.step, ") outside an epoch of ",
                                              steps_per_epoch_, " steps"));
  }
  cursor_ = cursor;
  return absl::OkStatus();
}

const std::vector<int64_t>& DataLoader::GlobalBatch(const DataCursor& cursor) {
  if (cursor.epoch != planned_epoch_) {
    plan_ = EpochBatches(lengths_, options_, cursor.epoch);
    planned_epoch_ = cursor.epoch;
  }
  return plan_[static_cast<size_t>(cursor.step)];
}

StepBatches DataLoader::Next() {
  StepBatches out;
  out.cursor = cursor_;
  const std::vector<int64_t>& global = GlobalBatch(cursor_);
  for (int64_t i : global) out.global_targets += targets_[static_cast<size_t>(i)];
  for (const std::vector<int64_t>& micro :
       MicroBatches(RankSlice(global, rank_, options_.world_size), options_.micro_batch_size)) {
    out.micro_batches.push_back(Collate(*examples_, micro, pad_id_));
  }
  cursor_ = NextCursor(cursor_, steps_per_epoch_);
  return out;
}

}  // namespace d2lora::engine
