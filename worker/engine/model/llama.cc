#include "worker/engine/model/llama.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/model/activation_checkpoint.h"

namespace d2lora::engine {
namespace {

torch::Tensor RotateHalf(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

// x [B, heads, T, D]; cos/sin [B, 1, T, D].
torch::Tensor ApplyRotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  return x * cos + RotateHalf(x) * sin;
}

// The most negative finite value of a floating dtype (torch.finfo(dtype).min).
double LowestValue(c10::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat64: return std::numeric_limits<double>::lowest();
    case torch::kFloat16: return static_cast<double>(std::numeric_limits<c10::Half>::lowest());
    case torch::kBFloat16: return static_cast<double>(std::numeric_limits<c10::BFloat16>::lowest());
    default: return static_cast<double>(std::numeric_limits<float>::lowest());
  }
}

}  // namespace

void KvCache::clear() {
  keys.clear();
  values.clear();
  attention_mask = torch::Tensor();
  next_positions = torch::Tensor();
}

torch::Tensor RopeInverseFrequencies(const model::ModelConfig& config) {
  const int64_t dim = config.head_dim;
  // transformers: 1 / base ** (arange(0, dim, 2).float() / dim), in fp32.
  torch::Tensor exponent = torch::arange(0, dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(dim);
  torch::Tensor inv_freq = 1.0 / torch::pow(torch::scalar_tensor(config.rope_theta, torch::kFloat32), exponent);
  const model::RopeScaling& rs = config.rope_scaling;
  if (rs.type == model::RopeScalingType::kLinear) {
    inv_freq = inv_freq / rs.factor;
  } else if (rs.type == model::RopeScalingType::kLlama3) {
    const double old_len = static_cast<double>(rs.original_max_position_embeddings);
    const double low_freq_wavelen = old_len / rs.low_freq_factor;
    const double high_freq_wavelen = old_len / rs.high_freq_factor;
    torch::Tensor wavelen = 2 * M_PI / inv_freq;
    torch::Tensor scaled = torch::where(wavelen > low_freq_wavelen, inv_freq / rs.factor, inv_freq);
    torch::Tensor smooth = (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
    torch::Tensor smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled;
    torch::Tensor medium = (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
    inv_freq = torch::where(medium, smoothed, scaled);
  }
  return inv_freq;
}

// ---------------------------------------------------------------------------

RmsNormImpl::RmsNormImpl(int64_t size, double eps, const torch::TensorOptions& options) : eps_(eps) {
  weight_ = register_parameter("weight", torch::ones({size}, options));
}

torch::Tensor RmsNormImpl::forward(const torch::Tensor& x) {
  const auto dtype = x.scalar_type();
  torch::Tensor h = x.to(torch::kFloat32);
  torch::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * torch::rsqrt(variance + eps_);
  return weight_ * h.to(dtype);
}

EmbeddingImpl::EmbeddingImpl(int64_t num, int64_t dim, const torch::TensorOptions& options) {
  weight_ = register_parameter("weight", torch::zeros({num, dim}, options));
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) { return torch::embedding(weight_, ids); }

// ---------------------------------------------------------------------------

AttentionImpl::AttentionImpl(const model::ModelConfig& c, const torch::TensorOptions& options)
    : heads_(c.num_attention_heads), kv_heads_(c.num_key_value_heads), head_dim_(c.head_dim) {
  q_proj = register_module("q_proj", Linear(c.hidden_size, c.q_size(), c.qkv_bias(), options));
  k_proj = register_module("k_proj", Linear(c.hidden_size, c.kv_size(), c.qkv_bias(), options));
  v_proj = register_module("v_proj", Linear(c.hidden_size, c.kv_size(), c.qkv_bias(), options));
  o_proj = register_module("o_proj", Linear(c.q_size(), c.hidden_size, c.o_bias(), options));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                     const torch::Tensor& allowed, torch::Tensor* k_cache,
                                     torch::Tensor* v_cache) {
  const int64_t B = x.size(0), T = x.size(1);
  torch::Tensor q = q_proj(x).view({B, T, heads_, head_dim_}).transpose(1, 2);
  torch::Tensor k = k_proj(x).view({B, T, kv_heads_, head_dim_}).transpose(1, 2);
  torch::Tensor v = v_proj(x).view({B, T, kv_heads_, head_dim_}).transpose(1, 2);
  torch::Tensor c = cos.unsqueeze(1), s = sin.unsqueeze(1);
  q = ApplyRotary(q, c, s);
  k = ApplyRotary(k, c, s);
  if (k_cache != nullptr) {
    if (k_cache->defined()) {
      k = torch::cat({*k_cache, k}, 2);
      v = torch::cat({*v_cache, v}, 2);
    }
    *k_cache = k;
    *v_cache = v;
  }
  const int64_t S = k.size(2);
  const int64_t rep = heads_ / kv_heads_;
  // Grouped-query attention without repeating K/V: the `rep` query heads of one
  // KV head are stacked along the query axis.
  torch::Tensor qg = q.reshape({B, kv_heads_, rep * T, head_dim_});
  torch::Tensor scores = torch::matmul(qg, k.transpose(2, 3)).view({B, heads_, T, S}) *
                         (1.0 / std::sqrt(static_cast<double>(head_dim_)));
  // A fill instead of an additive mask: a row with every key masked (a
  // padding query) becomes uniform, never -inf - -inf = NaN.
  const double lowest = LowestValue(scores.scalar_type());
  scores = scores.masked_fill(allowed.logical_not(), lowest);
  torch::Tensor probs = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());
  torch::Tensor out = torch::matmul(probs.view({B, kv_heads_, rep * T, S}), v)
                          .view({B, heads_, T, head_dim_})
                          .transpose(1, 2)
                          .reshape({B, T, heads_ * head_dim_});
  return o_proj(out);
}

MlpImpl::MlpImpl(const model::ModelConfig& c, const torch::TensorOptions& options) {
  gate_proj = register_module("gate_proj", Linear(c.hidden_size, c.intermediate_size, c.mlp_bias, options));
  up_proj = register_module("up_proj", Linear(c.hidden_size, c.intermediate_size, c.mlp_bias, options));
  down_proj = register_module("down_proj", Linear(c.intermediate_size, c.hidden_size, c.mlp_bias, options));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

DecoderLayerImpl::DecoderLayerImpl(const model::ModelConfig& c, int64_t index, const torch::TensorOptions& options)
    : sliding_(c.layer_uses_sliding_window(index)) {
  self_attn = register_module("self_attn", Attention(c, options));
  mlp = register_module("mlp", Mlp(c, options));
  input_layernorm = register_module("input_layernorm", RmsNorm(c.hidden_size, c.rms_norm_eps, options));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RmsNorm(c.hidden_size, c.rms_norm_eps, options));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                        const torch::Tensor& allowed, torch::Tensor* k_cache,
                                        torch::Tensor* v_cache) {
  torch::Tensor h = x + self_attn(input_layernorm(x), cos, sin, allowed, k_cache, v_cache);
  return h + mlp(post_attention_layernorm(h));
}

DecoderImpl::DecoderImpl(const model::ModelConfig& c, const torch::TensorOptions& options) {
  embed_tokens = register_module("embed_tokens", Embedding(c.vocab_size, c.hidden_size, options));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(DecoderLayer(c, i, options));
  norm = register_module("norm", RmsNorm(c.hidden_size, c.rms_norm_eps, options));
}

// ---------------------------------------------------------------------------

CausalLMImpl::CausalLMImpl(model::ModelConfig config, const torch::TensorOptions& options) : config_(std::move(config)) {
  model = register_module("model", Decoder(config_, options));
  if (!config_.tie_word_embeddings) {
    lm_head = register_module("lm_head", Linear(config_.hidden_size, config_.vocab_size, false, options));
  }
  inv_freq_ = RopeInverseFrequencies(config_);
}

torch::Tensor& CausalLMImpl::output_weight() {
  return lm_head ? lm_head->weight() : model->embed_tokens->weight();
}

AttentionInputs CausalLMImpl::PrepareAttention(const torch::Tensor& attention_mask, int64_t batch, int64_t steps,
                                               KvCache* cache, const torch::TensorOptions& compute) {
  const torch::Device device = compute.device();
  const auto long_opts = torch::TensorOptions().dtype(torch::kInt64).device(device);
  torch::Tensor new_mask;
  if (attention_mask.defined()) {
    TORCH_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == batch && attention_mask.size(1) == steps,
                "attention_mask must have the shape of input_ids [", batch, ", ", steps, "], got ",
                attention_mask.sizes());
    new_mask = attention_mask.to(device).ne(0);
  } else {
    new_mask = torch::ones({batch, steps}, long_opts.dtype(torch::kBool));
  }
  const bool has_past = cache != nullptr && !cache->empty();
  if (has_past) {
    TORCH_CHECK(cache->attention_mask.size(0) == batch, "the KV cache holds a batch of ",
                cache->attention_mask.size(0), ", the input has ", batch);
  }
  const int64_t past = has_past ? cache->length() : 0;
  torch::Tensor first = has_past ? cache->next_positions : torch::zeros({batch}, long_opts);
  torch::Tensor positions = first.unsqueeze(1) + new_mask.to(torch::kInt64).cumsum(1) - 1;
  positions = positions.masked_fill(new_mask.logical_not(), 1);

  AttentionInputs in;
  torch::Tensor freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq_.to(device).view({1, 1, -1});
  torch::Tensor emb = torch::cat({freqs, freqs}, -1);
  in.cos = emb.cos().to(compute.dtype());
  in.sin = emb.sin().to(compute.dtype());

  torch::Tensor key_mask = has_past ? torch::cat({cache->attention_mask, new_mask}, 1) : new_mask;
  const int64_t total = past + steps;
  torch::Tensor query_index = torch::arange(past, total, long_opts).unsqueeze(1);  // [T, 1]
  torch::Tensor key_index = torch::arange(0, total, long_opts).unsqueeze(0);       // [1, S]
  torch::Tensor causal = key_index.le(query_index);
  in.allowed = causal.view({1, 1, steps, total}).logical_and(key_mask.view({batch, 1, 1, total}));
  if (config_.sliding_window.has_value()) {
    torch::Tensor window = (query_index - key_index).lt(*config_.sliding_window);
    in.allowed_sliding = in.allowed.logical_and(window.view({1, 1, steps, total}));
  }
  if (cache != nullptr) {
    cache->attention_mask = key_mask;
    cache->next_positions = first + new_mask.to(torch::kInt64).sum(1);
  }
  return in;
}

torch::Tensor CausalLMImpl::hidden_states(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                          KvCache* cache) {
  TORCH_CHECK(input_ids.dim() == 2, "input_ids must be [batch, time], got ", input_ids.sizes());
  TORCH_CHECK(input_ids.scalar_type() == torch::kInt64, "input_ids must be int64, got ",
              input_ids.scalar_type());
  const int64_t batch = input_ids.size(0), steps = input_ids.size(1);
  const torch::Tensor& embed = model->embed_tokens->weight();
  const auto layers = model->layers->size();
  if (cache != nullptr && cache->empty()) {
    cache->keys.assign(layers, torch::Tensor());
    cache->values.assign(layers, torch::Tensor());
  }
  TORCH_CHECK(cache == nullptr || cache->keys.size() == layers, "the KV cache belongs to another model");
  // Masks and positions first: a failure leaves the cache untouched.
  KvCache before;
  if (cache != nullptr) before = *cache;
  AttentionInputs in = PrepareAttention(attention_mask, batch, steps, cache, embed.options());
  try {
    torch::Tensor h = model->embed_tokens(input_ids.to(embed.device()));
    const bool checkpoint = gradient_checkpointing_ && is_training() && torch::GradMode::is_enabled() &&
                            cache == nullptr;
    for (size_t i = 0; i < layers; ++i) {
      auto layer = model->layers->ptr<DecoderLayerImpl>(i);
      const torch::Tensor& allowed = layer->uses_sliding_window() ? in.allowed_sliding : in.allowed;
      if (checkpoint) {
        h = CheckpointedDecoderLayer(layer, h, in.cos, in.sin, allowed);
      } else if (cache != nullptr) {
        h = layer->forward(h, in.cos, in.sin, allowed, &cache->keys[i], &cache->values[i]);
      } else {
        h = layer->forward(h, in.cos, in.sin, allowed);
      }
    }
    return model->norm(h);
  } catch (...) {
    if (cache != nullptr) *cache = std::move(before);
    throw;
  }
}

torch::Tensor CausalLMImpl::logits(const torch::Tensor& hidden) {
  if (lm_head) return lm_head(hidden);
  return torch::nn::functional::linear(hidden, model->embed_tokens->weight());
}

torch::Tensor CausalLMImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                    KvCache* cache) {
  return logits(hidden_states(input_ids, attention_mask, cache));
}

// ---------------------------------------------------------------------------

std::vector<std::pair<std::string, std::shared_ptr<LinearImpl>>> DecoderLinearLayers(CausalLMImpl& model,
                                                                                     bool include_lm_head) {
  std::vector<std::pair<std::string, std::shared_ptr<LinearImpl>>> out;
  for (auto& [path, linear] : LinearLayers(model)) {
    if (path.find(".adapter") != std::string::npos) continue;  // inside a hosted adapter
    if (path == "lm_head" && !include_lm_head) continue;
    out.emplace_back(path, linear);
  }
  return out;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensorShapes(const model::ModelConfig& c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    auto add = [&](const std::string& name, int64_t out_f, int64_t in_f, bool bias) {
      out.push_back({p + name + ".weight", {out_f, in_f}});
      if (bias) out.push_back({p + name + ".bias", {out_f}});
    };
    add("self_attn.q_proj", c.q_size(), c.hidden_size, c.qkv_bias());
    add("self_attn.k_proj", c.kv_size(), c.hidden_size, c.qkv_bias());
    add("self_attn.v_proj", c.kv_size(), c.hidden_size, c.qkv_bias());
    add("self_attn.o_proj", c.hidden_size, c.q_size(), c.o_bias());
    add("mlp.gate_proj", c.intermediate_size, c.hidden_size, c.mlp_bias);
    add("mlp.up_proj", c.intermediate_size, c.hidden_size, c.mlp_bias);
    add("mlp.down_proj", c.hidden_size, c.intermediate_size, c.mlp_bias);
    out.push_back({p + "input_layernorm.weight", {c.hidden_size}});
    out.push_back({p + "post_attention_layernorm.weight", {c.hidden_size}});
  }
  out.push_back({"model.norm.weight", {c.hidden_size}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}});
  return out;
}

}  // namespace d2lora::engine
