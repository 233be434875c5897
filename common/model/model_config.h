// The architecture of a LLaMA-family decoder, parsed from a Hugging Face
// `config.json` (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM).
//
// The parsed JSON object is kept in `raw`, so keys this engine does not model
// (initializer_range, use_cache, transformers_version, ...) survive a save.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace d2lora::model {

enum class RopeScalingType { kNone, kLinear, kLlama3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;
  // llama3 only.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string model_type;    // "llama" | "mistral" | "qwen2"
  std::string architecture;  // "LlamaForCausalLM" | "MistralForCausalLM" | "Qwen2ForCausalLM"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads
  int64_t head_dim = 0;             // defaults to hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  // From `rope_theta` and `rope_scaling` (transformers 4) or `rope_parameters`
  // (transformers 5, which wins where both are given, as transformers does).
  // Rope settings the model cannot honour are refused: another rope_type
  // (yarn, dynamic, longrope, ...), partial rotary, per-layer-type parameters,
  // or `rope_scaling` and `rope_parameters` that disagree.
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // llama/mistral: bias on q, k, v and o
  bool mlp_bias = false;
  // Sliding-window attention (Mistral's `sliding_window`; Qwen2's when
  // `use_sliding_window` is true, on layers >= max_window_layers).
  std::optional<int64_t> sliding_window;
  int64_t max_window_layers = 0;
  double initializer_range = 0.02;
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;  // `eos_token_id`: an int or a list
  std::optional<int64_t> pad_token_id;
  // The weights' dtype as written ("bfloat16", ...): `dtype` (transformers >=
  // 4.56) or `torch_dtype` (older); both must agree when both are given.
  // Empty when neither is. ToJson writes both spellings, the same.
  std::string dtype;

  nlohmann::json raw = nlohmann::json::object();  // the parsed file

  // Which projections carry a bias (Qwen2: q/k/v always, o never).
  bool qkv_bias() const { return model_type == "qwen2" || attention_bias; }
  bool o_bias() const { return model_type != "qwen2" && attention_bias; }
  int64_t q_size() const { return num_attention_heads * head_dim; }
  int64_t kv_size() const { return num_key_value_heads * head_dim; }
  // Whether decoder layer `layer` uses sliding-window attention.
  bool layer_uses_sliding_window(int64_t layer) const;

  // `raw` with every modelled field written from this struct.
  nlohmann::json ToJson() const;
};

// Parses and validates config.json text. `source` (a path) starts every error
// message, which also names the field.
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text, const std::string& source);

// Reads `dir`/config.json.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir);

}  // namespace d2lora::model
