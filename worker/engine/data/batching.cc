#include "worker/engine/data/batching.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "worker/engine/data/shuffle.h"

namespace d2lora::engine {

absl::Status ValidateBatching(const BatchingOptions& o) {
  auto at_least_one = [](const char* name, int64_t v) {
    return v >= 1 ? absl::OkStatus()
                  : absl::InvalidArgumentError(absl::StrCat(name, " = ", v, ": must be >= 1"));
  };
  if (auto s = at_least_one("batch_size", o.batch_size); !s.ok()) return s;
  if (auto s = at_least_one("micro_batch_size", o.micro_batch_size); !s.ok()) return s;
  if (auto s = at_least_one("world_size", o.world_size); !s.ok()) return s;
  if (o.batch_size % (o.micro_batch_size * o.world_size) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch_size = ", o.batch_size, ": must be divisible by micro_batch_size * world_size = ",
        o.micro_batch_size, " * ", o.world_size));
  }
  if (o.group_factor < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("group_factor = ", o.group_factor, ": must be >= 0"));
  }
  return absl::OkStatus();
}

int64_t StepsPerEpoch(int64_t num_examples, int64_t batch_size) {
  if (num_examples <= 0 || batch_size <= 0) return 0;
  return num_examples / batch_size;
}

std::vector<std::vector<int64_t>> EpochBatches(const std::vector<int64_t>& lengths,
                                               const BatchingOptions& options, int64_t epoch) {
  const int64_t n = static_cast<int64_t>(lengths.size());
  const int64_t b = options.batch_size;
  std::vector<int64_t> order(lengths.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::mt19937_64 rng(EpochSeed(options.seed, epoch));
  Shuffle(order, rng);

  if (options.group_factor > 0) {
    const int64_t chunk = options.group_factor * b;
    auto longer = [&](int64_t x, int64_t y) { return lengths[x] > lengths[y]; };
    for (int64_t start = 0; start < n; start += chunk) {
      const int64_t end = std::min(n, start + chunk);
      std::stable_sort(order.begin() + start, order.begin() + end, longer);
    }
  }

  const int64_t steps = StepsPerEpoch(n, b);
  std::vector<std::vector<int64_t>> batches(static_cast<size_t>(steps));
  for (int64_t s = 0; s < steps; ++s) {
    batches[s].assign(order.begin() + s * b, order.begin() + (s + 1) * b);
  }
  std::vector<int64_t> batch_order(batches.size());
  std::iota(batch_order.begin(), batch_order.end(), int64_t{0});
  Shuffle(batch_order, rng);
  std::vector<std::vector<int64_t>> out(batches.size());
  for (size_t i = 0; i < batches.size(); ++i) out[i] = std::move(batches[batch_order[i]]);
  return out;
}

std::vector<int64_t> RankSlice(const std::vector<int64_t>& global_batch, int64_t rank,
                               int64_t world_size) {
  const int64_t size = static_cast<int64_t>(global_batch.size());
  const int64_t begin = rank * size / world_size;
  const int64_t end = (rank + 1) * size / world_size;
  return std::vector<int64_t>(global_batch.begin() + begin, global_batch.begin() + end);
}

std::vector<std::vector<int64_t>> MicroBatches(const std::vector<int64_t>& rank_slice,
                                               int64_t micro_batch_size) {
  std::vector<std::vector<int64_t>> out;
  const int64_t size = static_cast<int64_t>(rank_slice.size());
  for (int64_t start = 0; start < size; start += micro_batch_size) {
    const int64_t end = std::min(size, start + micro_batch_size);
    out.emplace_back(rank_slice.begin() + start, rank_slice.begin() + end);
  }
  return out;
}

DataCursor NextCursor(const DataCursor& cursor, int64_t steps_per_epoch) {
  DataCursor next = cursor;
  if (++next.step >= steps_per_epoch) {
    next.step = 0;
    ++next.epoch;
  }
  return next;
}

int64_t CursorToGlobalStep(const DataCursor& cursor, int64_t steps_per_epoch) {
  return cursor.epoch * steps_per_epoch + cursor.step;
}

DataCursor CursorFromGlobalStep(int64_t global_step, int64_t steps_per_epoch) {
  if (steps_per_epoch <= 0) return DataCursor{};
  return DataCursor{global_step / steps_per_epoch, global_step % steps_per_epoch};
}

nlohmann::json CursorToJson(const DataCursor& cursor) {
  return nlohmann::json{{"epoch", cursor.epoch}, {"step", cursor.step}};
}

absl::StatusOr<DataCursor> CursorFromJson(const nlohmann::json& j) {
  DataCursor c;
  for (const char* key : {"epoch", "step"}) {
    if (!j.is_object() || !j.contains(key) || !j[key].is_number_integer() || j[key].get<int64_t>() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("data cursor: \"", key, "\" must be a non-negative integer"));
    }
  }
  c.epoch = j["epoch"].get<int64_t>();
  c.step = j["step"].get<int64_t>();
  return c;
}

}  // namespace d2lora::engine
