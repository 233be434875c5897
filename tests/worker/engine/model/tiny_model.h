// Tiny LLaMA-family configs and weights shared by the model tests.
#pragma once

#include <torch/torch.h>

#include <string>

#include <nlohmann/json.hpp>

#include "gtest/gtest.h"
#include "tests/worker/engine/model/random_weights.h"
#include "worker/engine/model/llama.h"
#include "common/model/model_config.h"

namespace d2lora::engine::testing {

// Llama, GQA (4 query heads, 2 KV heads), untied, no biases.
inline nlohmann::json TinyLlamaJson() {
  return {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"vocab_size", 61},
      {"hidden_size", 32},
      {"intermediate_size", 48},
      {"num_hidden_layers", 2},
      {"num_attention_heads", 4},
      {"num_key_value_heads", 2},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", 10000.0},
      {"max_position_embeddings", 128},
      {"tie_word_embeddings", false},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
      {"torch_dtype", "float32"},
      {"hidden_act", "silu"},
      {"initializer_range", 0.02},
      {"transformers_version", "4.44.0"},
      {"custom_unknown_key", {{"nested", 1}}},
  };
}

// Qwen2: tied embeddings, q/k/v bias, one KV head.
inline nlohmann::json TinyQwen2Json() {
  nlohmann::json j = TinyLlamaJson();
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["model_type"] = "qwen2";
  j["num_key_value_heads"] = 1;
  j["tie_word_embeddings"] = true;
  j["rope_theta"] = 1000000.0;
  j["eos_token_id"] = {2, 3};
  return j;
}

// Llama 3 style: llama3 rope scaling, attention and MLP biases.
inline nlohmann::json TinyLlama3Json() {
  nlohmann::json j = TinyLlamaJson();
  j["hidden_size"] = 64;
  j["num_attention_heads"] = 4;  // head_dim 16: high, medium and low frequency bands
  j["num_key_value_heads"] = 2;
  j["attention_bias"] = true;
  j["mlp_bias"] = true;
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 64}};
  return j;
}

// Mistral: explicit head_dim (not hidden/heads), linear rope scaling, sliding window.
inline nlohmann::json TinyMistralJson() {
  nlohmann::json j = TinyLlamaJson();
  j["architectures"] = {"MistralForCausalLM"};
  j["model_type"] = "mistral";
  j["head_dim"] = 12;
  j["num_attention_heads"] = 2;
  j["num_key_value_heads"] = 2;
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  j["sliding_window"] = 4;
  return j;
}

inline model::ModelConfig ConfigFrom(const nlohmann::json& j) {
  auto config = model::ParseModelConfig(j.dump(), "test/config.json");
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

// A tiny model with every parameter random (RandomizeWeights).
inline CausalLM RandomTinyModel(const model::ModelConfig& config, uint64_t seed,
                                torch::ScalarType dtype = torch::kFloat32) {
  CausalLM model(config, torch::TensorOptions().dtype(dtype));
  RandomizeWeights(model, seed);
  return model;
}

}  // namespace d2lora::engine::testing
