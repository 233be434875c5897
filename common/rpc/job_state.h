// Facts about job states that the coordinator and its clients share.
#pragma once

#include "d2lora/v1/job.pb.h"

namespace d2lora::rpc {

// SUCCEEDED, FAILED or CANCELLED: the job will not change state again.
inline bool IsTerminal(v1::JobState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED;
}

}  // namespace d2lora::rpc
