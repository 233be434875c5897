#include "worker/engine/train/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace d2lora::engine {

double LearningRateAt(double base_lr, LrSchedule schedule, int64_t warmup_steps, int64_t total_steps,
                      int64_t step) {
  if (step < warmup_steps) return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  const double p = static_cast<double>(step - warmup_steps) /
                   static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  const double clamped = std::min(1.0, std::max(0.0, p));
  switch (schedule) {
    case LrSchedule::kCosine:
      return base_lr * 0.5 * (1.0 + std::cos(M_PI * clamped));
    case LrSchedule::kLinear:
      return base_lr * (1.0 - clamped);
    case LrSchedule::kConstant:
      return base_lr;
  }
  return base_lr;
}

}  // namespace d2lora::engine
