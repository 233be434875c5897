// Learning rate per optimizer step: linear warmup, then cosine, linear or
// constant. `step` is the 0-based index of the update being applied, so the
// first update already uses a non-zero rate:
//   step < warmup:  lr * (step + 1) / warmup
//   after warmup:   p = (step - warmup) / max(1, total - warmup)   (in [0, 1))
//     cosine        lr * 0.5 * (1 + cos(pi * p))
//     linear        lr * (1 - p)
//     constant      lr
#pragma once

#include <cstdint>

#include "worker/engine/spec_types.h"

namespace d2lora::engine {

double LearningRateAt(double base_lr, LrSchedule schedule, int64_t warmup_steps, int64_t total_steps,
                      int64_t step);

}  // namespace d2lora::engine
