// Identifiers the coordinator hands out: a prefix and 12 random hex digits
// ("job-3f9c0a7b12de"), unguessable enough that one client cannot enumerate
// another's jobs or uploads by counting.
#pragma once

#include <string>

namespace d2lora::server {

std::string NewJobId();
std::string NewWorkerId();
std::string NewAssignmentId();
std::string NewUploadId();

// [A-Za-z0-9-]{1,64}: what a client-supplied id may look like before it is
// used in a storage key.
bool LooksLikeId(const std::string& id);

}  // namespace d2lora::server
