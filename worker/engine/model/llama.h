// The LLaMA-family decoder (Llama 2/3, Mistral, Qwen2, SmolLM, TinyLlama) with
// Hugging Face's parameter names, so a checkpoint's tensors map one to one:
//
//   model.embed_tokens.weight
//   model.layers.N.self_attn.{q,k,v,o}_proj.{weight,bias}
//   model.layers.N.mlp.{gate,up,down}_proj.{weight,bias}
//   model.layers.N.{input,post_attention}_layernorm.weight
//   model.norm.weight
//   lm_head.weight                      (untied models only)
//
// Tied embeddings: a tied model has no lm_head module at all and computes its
// logits with model.embed_tokens.weight, so every tensor appears exactly once
// in named_parameters() (an optimizer or a checkpoint writer never sees it
// twice) and no adapter can be injected into the output head by accident.
//
// Every projection is an engine Linear, so adapters are injected by module
// path (DecoderLinearLayers).
//
// The arithmetic follows transformers' eager implementation: RMSNorm in fp32
// then cast back and scaled, rotary cos/sin computed in fp32 and cast to the
// compute dtype, attention softmax in fp32, positions from the attention mask
// (cumsum - 1) so that left-padded batches match unpadded sequences.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "worker/engine/adapters/linear.h"
#include "common/model/model_config.h"

namespace d2lora::engine {

// Keys and values of every layer for incremental decoding. Start with an empty
// cache; each forward appends its tokens. Keys are stored after the rotary
// embedding, with num_key_value_heads heads (not repeated).
struct KvCache {
  std::vector<torch::Tensor> keys;    // per layer [B, kv_heads, S, head_dim]
  std::vector<torch::Tensor> values;  // per layer [B, kv_heads, S, head_dim]
  torch::Tensor attention_mask;       // [B, S] bool: real token (true) or padding
  torch::Tensor next_positions;       // [B] int64: rotary position of the next real token

  int64_t length() const { return attention_mask.defined() ? attention_mask.size(1) : 0; }
  bool empty() const { return length() == 0; }
  void clear();
};

// The rotary inverse frequencies [head_dim / 2] (fp32) with rope_scaling applied.
torch::Tensor RopeInverseFrequencies(const model::ModelConfig& config);

class RmsNormImpl : public torch::nn::Module {
 public:
  RmsNormImpl(int64_t size, double eps, const torch::TensorOptions& options = {});
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor& weight() { return weight_; }

 private:
  torch::Tensor weight_;
  double eps_;
};
TORCH_MODULE(RmsNorm);

class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t num, int64_t dim, const torch::TensorOptions& options = {});
  torch::Tensor forward(const torch::Tensor& ids);
  torch::Tensor& weight() { return weight_; }

 private:
  torch::Tensor weight_;
};
TORCH_MODULE(Embedding);

// What one forward pass shares between the layers: rotary tables and masks.
struct AttentionInputs {
  torch::Tensor cos, sin;      // [B, T, head_dim], compute dtype
  torch::Tensor allowed;       // [B, 1, T, S] bool: query may attend to key
  torch::Tensor allowed_sliding;  // same with the sliding window (if any layer uses it)
};

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const model::ModelConfig& config, const torch::TensorOptions& options);
  // x [B, T, hidden]; cos/sin [B, T, head_dim]; allowed [B, 1, T, S] where
  // S = cached + T. Appends this step's keys/values to *k_cache/*v_cache when given.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& allowed, torch::Tensor* k_cache = nullptr,
                        torch::Tensor* v_cache = nullptr);

  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t heads_, kv_heads_, head_dim_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(const model::ModelConfig& config, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x);  // down(silu(gate(x)) * up(x))

  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Mlp);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const model::ModelConfig& config, int64_t index, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& allowed, torch::Tensor* k_cache = nullptr,
                        torch::Tensor* v_cache = nullptr);
  bool uses_sliding_window() const { return sliding_; }

  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
  RmsNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};

 private:
  bool sliding_;
};
TORCH_MODULE(DecoderLayer);

// "model" in Hugging Face's naming: embeddings, decoder layers, final norm.
class DecoderImpl : public torch::nn::Module {
 public:
  DecoderImpl(const model::ModelConfig& config, const torch::TensorOptions& options);

  Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RmsNorm norm{nullptr};
};
TORCH_MODULE(Decoder);

class CausalLMImpl : public torch::nn::Module {
 public:
  // Parameters are allocated with `options` (dtype, device) and hold
  // placeholder values: load a checkpoint or call InitRandomModel.
  explicit CausalLMImpl(model::ModelConfig config, const torch::TensorOptions& options = {});

  // input_ids [B, T] int64; attention_mask [B, T] (1 = token, 0 = padding; right
  // or left padding; undefined = all tokens); cache: see KvCache, where the
  // mask covers only the new tokens. Returns logits [B, T, vocab] in the
  // parameter dtype.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                        KvCache* cache = nullptr);
  // The same pass up to the final norm: [B, T, hidden]. Logits(hidden) is forward().
  torch::Tensor hidden_states(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                              KvCache* cache = nullptr);
  // The output head on final hidden states [..., hidden] -> [..., vocab]
  // (embed_tokens.weight when the embeddings are tied).
  torch::Tensor logits(const torch::Tensor& hidden);

  // Recompute each decoder layer in backward instead of keeping its
  // activations (training with gradients only; ignored with a KvCache).
  void set_gradient_checkpointing(bool enabled) { gradient_checkpointing_ = enabled; }
  bool gradient_checkpointing() const { return gradient_checkpointing_; }

  const model::ModelConfig& config() const { return config_; }
  // The tensor the head multiplies with: lm_head.weight, or the embeddings when tied.
  torch::Tensor& output_weight();

  Decoder model{nullptr};
  Linear lm_head{nullptr};  // null when tie_word_embeddings

 private:
  AttentionInputs PrepareAttention(const torch::Tensor& attention_mask, int64_t batch, int64_t steps,
                                   KvCache* cache, const torch::TensorOptions& compute);

  model::ModelConfig config_;
  torch::Tensor inv_freq_;  // fp32 [head_dim / 2], not a parameter or buffer
  bool gradient_checkpointing_ = false;
};
TORCH_MODULE(CausalLM);

// The decoder's Linear layers by module path ("model.layers.0.self_attn.q_proj",
// ...), in tree order; lm_head is included only when asked for.
std::vector<std::pair<std::string, std::shared_ptr<LinearImpl>>> DecoderLinearLayers(CausalLMImpl& model,
                                                                                     bool include_lm_head = false);

// Hugging Face tensor names and shapes of a model with this config, in
// checkpoint order (lm_head.weight only when untied).
std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensorShapes(const model::ModelConfig& config);

}  // namespace d2lora::engine
