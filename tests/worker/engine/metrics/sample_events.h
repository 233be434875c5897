// Events the metrics sinks' tests write, shared so that each sink is tested
// on the same values.
#pragma once

#include "worker/engine/metrics/callbacks.h"

namespace d2lora::engine {

// The training guard's first rollback of TrainerGuardTest's poisoned run.
inline RollbackInfo SampleRollback() {
  RollbackInfo r;
  r.step = 38;
  r.restored_step = 32;
  r.reason = "loss spike at step 38: loss 5.6 > guard.spike_factor 2 x EMA 1.42";
  r.rollbacks = 1;
  r.max_rollbacks = 3;
  r.lr_scale = 0.5;
  r.first_skipped_batch = 37;
  r.last_skipped_batch = 38;
  return r;
}

}  // namespace d2lora::engine
