// Autoregressive generation with the KV cache (greedy or sampled).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/model/llama.h"

namespace d2lora::engine {

struct GenerationOptions {
  int64_t max_new_tokens = 64;
  double temperature = 0.0;      // 0: greedy (argmax); > 0: sample from softmax(logits / temperature)
  std::optional<int64_t> top_k;  // sample among the k most likely tokens only
  uint64_t seed = 0;             // sampling is deterministic in the seed
  std::vector<int64_t> eos_token_ids;  // stop after emitting one of these
};

// Continues `prompt` (non-empty, ids < vocab_size) and returns the new tokens
// only, ending with the end-of-sequence id when one was produced. Runs under
// NoGradGuard in eval mode (the module's training flag is restored).
absl::StatusOr<std::vector<int64_t>> Generate(CausalLMImpl& model, const std::vector<int64_t>& prompt,
                                              const GenerationOptions& options);

}  // namespace d2lora::engine
