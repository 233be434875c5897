// Which linear layers an adapter's target_modules select (AdapterOptions::
// target_modules): shared by the engine's injection and the memory plan.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace d2lora::spec {

// Does the module `path` ("model.layers.0.self_attn.q_proj") match one of
// `patterns`? A plain name matches a path equal to it or ending in ".name"; an
// entry with regex characters must match the whole path (RE2); "all-linear"
// matches every linear layer except the output head (lm_head). An invalid
// regex is an error naming it.
absl::StatusOr<bool> MatchesTargetModules(const std::string& path, const std::vector<std::string>& patterns);

}  // namespace d2lora::spec
