#include "common/trainer/output_names.h"

#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace d2lora::trainer {

std::string CheckpointName(int64_t step) { return absl::StrCat(kCheckpointsDir, "/", kCheckpointPrefix, step); }

std::optional<int64_t> CompleteCheckpointStep(absl::string_view name) {
  const std::string prefix = absl::StrCat(kCheckpointsDir, "/", kCheckpointPrefix);
  const std::string suffix = absl::StrCat("/", kTrainerStateFile);
  if (!absl::ConsumePrefix(&name, prefix) || !absl::ConsumeSuffix(&name, suffix)) return std::nullopt;
  int64_t step = 0;
  if (!absl::SimpleAtoi(name, &step) || step <= 0) return std::nullopt;
  return step;
}

}  // namespace d2lora::trainer
