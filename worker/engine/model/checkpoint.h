// Hugging Face checkpoints of LLaMA-family models (DESIGN §3): config.json plus
// model.safetensors, or shards model-0000N-of-0000M.safetensors listed in
// model.safetensors.index.json ({"metadata": {"total_size"}, "weight_map"}).
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/model/llama.h"
#include "common/model/model_config.h"

namespace d2lora::engine {

inline constexpr char kModelConfigFile[] = "config.json";
inline constexpr char kSingleWeightsFile[] = "model.safetensors";
inline constexpr char kWeightsIndexFile[] = "model.safetensors.index.json";

struct LoadedModel {
  model::ModelConfig config;
  CausalLM model{nullptr};
};

// "float32" / "bfloat16" / "float16" and back; other dtypes are errors.
absl::StatusOr<c10::ScalarType> ParseModelDtype(const std::string& name);
absl::StatusOr<std::string> ModelDtypeName(c10::ScalarType dtype);

// Reads config.json and the weights (single file preferred, as transformers
// does, else the index and its shards), converting them to `dtype` (float32,
// bfloat16 or float16) on `device`. Every expected tensor must be present with
// its shape; tensors the model does not have are refused, except rotary
// `inv_freq` buffers and, for tied models, an lm_head.weight (which is ignored).
// Errors name the file and the tensor.
absl::StatusOr<LoadedModel> LoadModel(const std::string& dir, c10::ScalarType dtype = c10::ScalarType::Float,
                                      const c10::Device& device = c10::Device(c10::DeviceType::CPU));

struct SaveModelOptions {
  c10::ScalarType dtype = c10::ScalarType::BFloat16;  // of the written tensors
  // Shard when the weights are larger (transformers' default, 5 GB); a tensor
  // larger than this gets a shard of its own.
  uint64_t max_shard_bytes = 5'000'000'000ull;
  // Copies tokenizer.json, tokenizer.model, tokenizer_config.json,
  // special_tokens_map.json, generation_config.json, chat_template.jinja,
  // additional_chat_templates/*.jinja (and vocab.json, merges.txt,
  // added_tokens.json) from here when present.
  std::string tokenizer_source_dir;
  bool overwrite = false;  // replace an existing out_dir
};

// Writes `model`'s weights with `config` (dtype and torch_dtype set to options.dtype) as a
// Hugging Face checkpoint. The directory appears complete or not at all. A
// model still hosting unmerged adapters is refused (merge them first).
absl::Status SaveModel(CausalLMImpl& model, const model::ModelConfig& config, const std::string& out_dir,
                       const SaveModelOptions& options = {});

// A model with transformers' initialisation: weights normal(0,
// initializer_range), biases 0, norms 1, the pad_token_id embedding row 0.
// Deterministic in `seed` (drawn in fp32 on the CPU, then cast and moved).
absl::StatusOr<CausalLM> InitRandomModel(const model::ModelConfig& config, uint64_t seed,
                                         c10::ScalarType dtype = c10::ScalarType::Float,
                                         const c10::Device& device = c10::Device(c10::DeviceType::CPU));

}  // namespace d2lora::engine
