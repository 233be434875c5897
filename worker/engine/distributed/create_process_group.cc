#include <torch/torch.h>

#include "worker/engine/distributed/create_process_group.h"

#include "common/status_macros.h"
#include "worker/engine/distributed/process_group_gloo.h"
#include "worker/engine/distributed/process_group_nccl.h"
#include "worker/engine/distributed/process_group_threads.h"

namespace d2lora::engine {

absl::StatusOr<std::unique_ptr<ProcessGroup>> CreateProcessGroup(const DistributedOptions& options,
                                                                 ProcessGroupDevice device) {
  D2_RETURN_IF_ERROR(ValidateDistributedOptions(options));
  if (options.world_size == 1) return CreateSingleProcessGroup();
  if (device == ProcessGroupDevice::kCuda) return CreateNcclProcessGroup(options);
  D2_ASSIGN_OR_RETURN(std::unique_ptr<GlooProcessGroup> gloo, GlooProcessGroup::Create(options));
  return std::unique_ptr<ProcessGroup>(std::move(gloo));
}

}  // namespace d2lora::engine
