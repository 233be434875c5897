#include <torch/torch.h>

#include "worker/engine/distributed/agree.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace d2lora::engine {

absl::Status AgreeAcrossRanks(ProcessGroup& group, absl::Status local, const std::string& phase) {
  if (group.world_size() == 1) return local;
  // Each rank's status code at its index (0 = OK): one all-reduce tells every
  // rank which ranks failed and how.
  torch::Tensor codes = torch::zeros({group.world_size()}, torch::kFloat32);
  codes[group.rank()] = static_cast<float>(static_cast<int>(local.code()));
  codes = codes.to(group.device());
  D2_RETURN_IF_ERROR(group.AllReduceSum(codes));
  if (!local.ok()) return local;
  const torch::Tensor all = codes.to(torch::kCPU);
  for (int64_t r = 0; r < group.world_size(); ++r) {
    const int code = static_cast<int>(all[r].item<float>());
    if (code == 0) continue;
    // The failed rank's code, so that whichever rank reports first, the
    // failure reads (and is retried, or not) the same.
    return absl::Status(static_cast<absl::StatusCode>(code),
                        absl::StrCat("rank ", r, " failed during ", phase, " with ",
                                     absl::StatusCodeToString(static_cast<absl::StatusCode>(code)), " (see its log)"));
  }
  return absl::OkStatus();
}

}  // namespace d2lora::engine
