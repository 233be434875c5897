// Failing together: a rank that hits an error while the others carry on would
// leave them waiting in the next collective until the group's timeout.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "worker/engine/distributed/process_group.h"

namespace d2lora::engine {

// Collective. Every rank learns whether all ranks' `local` statuses were OK: a
// rank whose status failed gets it back; the others get the code of the
// lowest failed rank, with a message naming that rank and `phase`, so that a
// rank's INVALID_ARGUMENT is not retried because a peer reported first. With
// one rank, returns `local`.
absl::Status AgreeAcrossRanks(ProcessGroup& group, absl::Status local, const std::string& phase);

}  // namespace d2lora::engine
