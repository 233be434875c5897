#include <torch/torch.h>

#include "worker/engine/distributed/agree.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace d2lora::engine {

absl::Status AgreeAcrossRanks(ProcessGroup& group, absl::Status local, const std::string& phase) {
  if (group.world_size() == 1) return local;
  torch::Tensor failed = torch::tensor({local.ok() ? 0.0f : 1.0f}).to(group.device());
  D2_RETURN_IF_ERROR(group.AllReduceSum(failed));
  if (!local.ok()) return local;
  if (failed.item<float>() > 0) {
    return absl::AbortedError(absl::StrCat("another rank failed during ", phase, " (see its log)"));
  }
  return absl::OkStatus();
}

}  // namespace d2lora::engine
