#include "worker/engine/model/llama.h"

#include <torch/torch.h>

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/worker/engine/model/tiny_model.h"
#include "worker/engine/adapters/inject.h"

namespace d2lora::engine {
namespace {

using testing::ConfigFrom;
using testing::RandomTinyModel;

// ---------------------------------------------------------------------------
// A per-operation reference in double precision: explicit loops for rotary
// embeddings and attention, written from the Hugging Face formulas.

std::vector<double> ReferenceInvFreq(const model::ModelConfig& c) {
  const int64_t d = c.head_dim;
  std::vector<double> inv(d / 2);
  for (int64_t i = 0; i < d / 2; ++i) {
    double f = 1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / static_cast<double>(d));
    const model::RopeScaling& rs = c.rope_scaling;
    if (rs.type == model::RopeScalingType::kLinear) {
      f /= rs.factor;
    } else if (rs.type == model::RopeScalingType::kLlama3) {
      const double old_len = static_cast<double>(rs.original_max_position_embeddings);
      const double wavelen = 2 * M_PI / f;
      if (wavelen < old_len / rs.high_freq_factor) {
        // high frequency: unchanged
      } else if (wavelen > old_len / rs.low_freq_factor) {
        f /= rs.factor;
      } else {
        const double smooth = (old_len / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
        f = (1 - smooth) * f / rs.factor + smooth * f;
      }
    }
    inv[i] = f;
  }
  return inv;
}

struct RefWeights {
  std::map<std::string, torch::Tensor> w;
  const torch::Tensor& operator()(const std::string& name) const { return w.at(name); }
  bool has(const std::string& name) const { return w.count(name) > 0; }
};

torch::Tensor RefLinear(const RefWeights& w, const std::string& name, const torch::Tensor& x) {
  torch::Tensor y = torch::matmul(x, w(name + ".weight").t());
  if (w.has(name + ".bias")) y = y + w(name + ".bias");
  return y;
}

torch::Tensor RefRmsNorm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  return x / torch::sqrt(x.pow(2).mean(-1, true) + eps) * weight;
}

// One unpadded sequence -> logits [T, V] (double).
torch::Tensor ReferenceLogits(const model::ModelConfig& c, CausalLMImpl& model, const std::vector<int64_t>& ids) {
  RefWeights w;
  for (const auto& item : model.named_parameters()) w.w[item.key()] = item.value().detach().to(torch::kFloat64);
  const int64_t T = static_cast<int64_t>(ids.size());
  const int64_t H = c.num_attention_heads, KV = c.num_key_value_heads, D = c.head_dim, half = D / 2;
  const std::vector<double> inv = ReferenceInvFreq(c);

  torch::Tensor x = torch::stack([&] {
    std::vector<torch::Tensor> rows;
    for (int64_t id : ids) rows.push_back(w("model.embed_tokens.weight")[id]);
    return rows;
  }());
  auto rotate = [&](torch::Tensor t /* [T, heads*D] */, int64_t heads) {
    torch::Tensor out = t.clone();
    auto a = t.accessor<double, 2>();
    auto o = out.accessor<double, 2>();
    for (int64_t p = 0; p < T; ++p) {
      for (int64_t h = 0; h < heads; ++h) {
        for (int64_t i = 0; i < half; ++i) {
          const double angle = static_cast<double>(p) * inv[i];
          const double x1 = a[p][h * D + i], x2 = a[p][h * D + i + half];
          o[p][h * D + i] = x1 * std::cos(angle) - x2 * std::sin(angle);
          o[p][h * D + i + half] = x2 * std::cos(angle) + x1 * std::sin(angle);
        }
      }
    }
    return out;
  };
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    torch::Tensor h = RefRmsNorm(x, w(p + "input_layernorm.weight"), c.rms_norm_eps);
    torch::Tensor q = rotate(RefLinear(w, p + "self_attn.q_proj", h), H);
    torch::Tensor k = rotate(RefLinear(w, p + "self_attn.k_proj", h), KV);
    torch::Tensor v = RefLinear(w, p + "self_attn.v_proj", h);
    torch::Tensor attn = torch::zeros({T, H * D}, torch::kFloat64);
    for (int64_t head = 0; head < H; ++head) {
      const int64_t kvh = head / (H / KV);
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> scores;
        std::vector<int64_t> keys;
        for (int64_t j = 0; j <= t; ++j) {
          if (c.layer_uses_sliding_window(l) && t - j >= *c.sliding_window) continue;
          double s = torch::dot(q[t].slice(0, head * D, (head + 1) * D), k[j].slice(0, kvh * D, (kvh + 1) * D))
                         .item<double>() /
                     std::sqrt(static_cast<double>(D));
          scores.push_back(s);
          keys.push_back(j);
        }
        double mx = *std::max_element(scores.begin(), scores.end()), sum = 0;
        for (double& s : scores) sum += (s = std::exp(s - mx));
        torch::Tensor out = torch::zeros({D}, torch::kFloat64);
        for (size_t n = 0; n < keys.size(); ++n) {
          out += (scores[n] / sum) * v[keys[n]].slice(0, kvh * D, (kvh + 1) * D);
        }
        attn[t].slice(0, head * D, (head + 1) * D).copy_(out);
      }
    }
    x = x + RefLinear(w, p + "self_attn.o_proj", attn);
    torch::Tensor h2 = RefRmsNorm(x, w(p + "post_attention_layernorm.weight"), c.rms_norm_eps);
    torch::Tensor gate = RefLinear(w, p + "mlp.gate_proj", h2);
    torch::Tensor act = gate / (1 + torch::exp(-gate));
    x = x + RefLinear(w, p + "mlp.down_proj", act * RefLinear(w, p + "mlp.up_proj", h2));
  }
  x = RefRmsNorm(x, w("model.norm.weight"), c.rms_norm_eps);
  const torch::Tensor& head = c.tie_word_embeddings ? w("model.embed_tokens.weight") : w("lm_head.weight");
  return torch::matmul(x, head.t());
}

torch::Tensor Ids(const std::vector<int64_t>& ids) { return torch::tensor(ids, torch::kInt64).view({1, -1}); }

void ExpectClose(const torch::Tensor& a, const torch::Tensor& b, double tol, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const double diff = (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
  EXPECT_LT(diff, tol) << what;
}

// ---------------------------------------------------------------------------

struct Variant {
  const char* name;
  nlohmann::json (*json)();
};
const Variant kVariants[] = {
    {"LlamaGqa", testing::TinyLlamaJson},
    {"Qwen2TiedBias", testing::TinyQwen2Json},
    {"Llama3RopeBiases", testing::TinyLlama3Json},
    {"MistralHeadDimLinearRopeWindow", testing::TinyMistralJson},
};

class LlamaVariantTest : public ::testing::TestWithParam<Variant> {};

TEST_P(LlamaVariantTest, ForwardMatchesPerOperationReference) {
  model::ModelConfig config = ConfigFrom(GetParam().json());
  CausalLM model = RandomTinyModel(config, 7);
  model->eval();
  const std::vector<int64_t> ids = {1, 5, 17, 33, 60, 0, 9, 42, 42, 3};
  torch::NoGradGuard no_grad;
  torch::Tensor logits = model->forward(Ids(ids));
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{1, 10, config.vocab_size}));
  torch::Tensor ref = ReferenceLogits(config, *model, ids);
  EXPECT_GT(ref.abs().max().item<double>(), 1.0);  // the check is not vacuous
  ExpectClose(logits[0], ref, 2e-4, GetParam().name);
}

TEST_P(LlamaVariantTest, PaddedBatchesMatchOneByOne) {
  model::ModelConfig config = ConfigFrom(GetParam().json());
  CausalLM model = RandomTinyModel(config, 11);
  torch::NoGradGuard no_grad;
  const std::vector<std::vector<int64_t>> seqs = {{4, 8, 15, 16, 23, 42}, {7, 3}, {9, 9, 1, 30}};
  const int64_t T = 6;
  for (bool left : {false, true}) {
    torch::Tensor ids = torch::zeros({3, T}, torch::kInt64);
    torch::Tensor mask = torch::zeros({3, T}, torch::kInt64);
    for (int64_t b = 0; b < 3; ++b) {
      const int64_t n = static_cast<int64_t>(seqs[b].size());
      const int64_t start = left ? T - n : 0;
      for (int64_t i = 0; i < n; ++i) {
        ids[b][start + i] = seqs[b][i];
        mask[b][start + i] = 1;
      }
    }
    torch::Tensor batched = model->forward(ids, mask);
    EXPECT_FALSE(batched.isnan().any().item<bool>()) << "NaN with padding (left=" << left << ")";
    for (int64_t b = 0; b < 3; ++b) {
      const int64_t n = static_cast<int64_t>(seqs[b].size());
      const int64_t start = left ? T - n : 0;
      torch::Tensor single = model->forward(Ids(seqs[b]))[0];
      ExpectClose(batched[b].slice(0, start, start + n), single, 1e-4,
                  std::string(GetParam().name) + (left ? " left" : " right") + " row " + std::to_string(b));
    }
  }
}

TEST_P(LlamaVariantTest, KvCacheIncrementalLogitsEqualFullForward) {
  model::ModelConfig config = ConfigFrom(GetParam().json());
  CausalLM model = RandomTinyModel(config, 13);
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> ids = {3, 14, 15, 9, 26, 53, 5, 8, 9, 7};
  torch::Tensor full = model->forward(Ids(ids))[0];
  KvCache cache;
  std::vector<torch::Tensor> parts;
  // A prompt chunk of 3, one chunk of 2, then token by token.
  std::vector<std::pair<int64_t, int64_t>> chunks = {{0, 3}, {3, 5}};
  for (int64_t i = 5; i < 10; ++i) chunks.push_back({i, i + 1});
  for (auto [from, to] : chunks) {
    std::vector<int64_t> chunk(ids.begin() + from, ids.begin() + to);
    parts.push_back(model->forward(Ids(chunk), {}, &cache)[0]);
  }
  EXPECT_EQ(cache.length(), 10);
  ExpectClose(torch::cat(parts, 0), full, 1e-4, GetParam().name);
}

INSTANTIATE_TEST_SUITE_P(Variants, LlamaVariantTest, ::testing::ValuesIn(kVariants),
                         [](const ::testing::TestParamInfo<Variant>& info) { return std::string(info.param.name); });

TEST(LlamaTest, LeftPaddedBatchWithKvCacheMatchesFullForward) {
  model::ModelConfig config = ConfigFrom(testing::TinyLlamaJson());
  CausalLM model = RandomTinyModel(config, 17);
  torch::NoGradGuard no_grad;
  // Row 0: 2 pads + 3 tokens; row 1: 5 tokens. Then two decoding steps.
  torch::Tensor prompt = torch::tensor({0, 0, 5, 6, 7, 1, 2, 3, 4, 5}, torch::kInt64).view({2, 5});
  torch::Tensor prompt_mask = torch::tensor({0, 0, 1, 1, 1, 1, 1, 1, 1, 1}, torch::kInt64).view({2, 5});
  torch::Tensor step1 = torch::tensor({11, 12}, torch::kInt64).view({2, 1});
  torch::Tensor step2 = torch::tensor({21, 22}, torch::kInt64).view({2, 1});
  KvCache cache;
  model->forward(prompt, prompt_mask, &cache);
  torch::Tensor l1 = model->forward(step1, {}, &cache);
  torch::Tensor l2 = model->forward(step2, torch::ones({2, 1}, torch::kInt64), &cache);
  torch::Tensor all = torch::cat({prompt, step1, step2}, 1);
  torch::Tensor all_mask = torch::cat({prompt_mask, torch::ones({2, 2}, torch::kInt64)}, 1);
  torch::Tensor full = model->forward(all, all_mask);
  ExpectClose(l1.select(1, 0), full.select(1, 5), 1e-4, "step 1");
  ExpectClose(l2.select(1, 0), full.select(1, 6), 1e-4, "step 2");
  // And row 0 equals its unpadded sequence.
  torch::Tensor row0 = model->forward(Ids({5, 6, 7, 11, 21}))[0];
  ExpectClose(full[0].slice(0, 2), row0, 1e-4, "row 0");
  EXPECT_EQ(cache.next_positions[0].item<int64_t>(), 5);
  EXPECT_EQ(cache.next_positions[1].item<int64_t>(), 7);
}

TEST(LlamaTest, ParameterNamesAreHuggingFaces) {
  for (auto json : {testing::TinyLlamaJson(), testing::TinyQwen2Json(), testing::TinyLlama3Json()}) {
    model::ModelConfig config = ConfigFrom(json);
    CausalLM model(config);
    std::vector<std::string> names;
    std::set<const void*> tensors;
    for (const auto& item : model->named_parameters()) {
      names.push_back(item.key());
      EXPECT_TRUE(tensors.insert(item.value().unsafeGetTensorImpl()).second) << item.key() << " appears twice";
    }
    std::vector<std::string> expected;
    for (const auto& [name, shape] : ExpectedTensorShapes(config)) {
      expected.push_back(name);
      EXPECT_EQ(model->named_parameters()[name].sizes().vec(), shape) << name;
    }
    EXPECT_EQ(names, expected);
    EXPECT_EQ(static_cast<bool>(model->lm_head), !config.tie_word_embeddings);
  }
  model::ModelConfig qwen = ConfigFrom(testing::TinyQwen2Json());
  CausalLM model(qwen);
  auto params = model->named_parameters();
  EXPECT_NE(params.find("model.layers.1.self_attn.k_proj.bias"), nullptr);
  EXPECT_EQ(params.find("model.layers.1.self_attn.o_proj.bias"), nullptr);
  EXPECT_EQ(params.find("lm_head.weight"), nullptr);
  EXPECT_TRUE(model->output_weight().is_same(params["model.embed_tokens.weight"]));
}

TEST(LlamaTest, DecoderLinearLayersByPath) {
  model::ModelConfig config = ConfigFrom(testing::TinyLlamaJson());
  CausalLM model(config);
  auto layers = DecoderLinearLayers(*model);
  ASSERT_EQ(layers.size(), 14u);
  EXPECT_EQ(layers[0].first, "model.layers.0.self_attn.q_proj");
  EXPECT_EQ(layers[6].first, "model.layers.0.mlp.down_proj");
  EXPECT_TRUE(layers[0].second.get() == model->model->layers->ptr<DecoderLayerImpl>(0)->self_attn->q_proj.get());
  auto with_head = DecoderLinearLayers(*model, /*include_lm_head=*/true);
  ASSERT_EQ(with_head.size(), 15u);
  EXPECT_EQ(with_head.back().first, "lm_head");
}

TEST(LlamaTest, HiddenStatesThenLogitsIsForward) {
  model::ModelConfig config = ConfigFrom(testing::TinyQwen2Json());
  CausalLM model = RandomTinyModel(config, 3);
  torch::NoGradGuard no_grad;
  torch::Tensor ids = Ids({1, 2, 3, 4});
  torch::Tensor hidden = model->hidden_states(ids);
  EXPECT_EQ(hidden.sizes(), (std::vector<int64_t>{1, 4, config.hidden_size}));
  EXPECT_TRUE(torch::equal(model->logits(hidden), model->forward(ids)));
}

TEST(LlamaTest, GradientCheckpointingGivesTheSameGradients) {
  model::ModelConfig config = ConfigFrom(testing::TinyLlamaJson());
  torch::Tensor ids = torch::tensor({1, 5, 9, 13, 2, 6, 10, 0}, torch::kInt64).view({2, 4});
  torch::Tensor mask = torch::tensor({1, 1, 1, 1, 0, 1, 1, 1}, torch::kInt64).view({2, 4});
  for (bool frozen_embeddings : {false, true}) {
    std::map<std::string, torch::Tensor> grads[2];
    torch::Tensor losses[2];
    for (int checkpointing = 0; checkpointing < 2; ++checkpointing) {
      CausalLM model = RandomTinyModel(config, 5);
      model->train();
      if (frozen_embeddings) {
        // Only some parameters train: the first layer's input needs no gradient.
        for (auto& item : model->named_parameters()) {
          item.value().requires_grad_(item.key().find("q_proj") != std::string::npos ||
                                      item.key().find("down_proj") != std::string::npos);
        }
      }
      model->set_gradient_checkpointing(checkpointing == 1);
      torch::Tensor loss = model->forward(ids, mask).pow(2).mean();
      loss.backward();
      losses[checkpointing] = loss.detach();
      for (const auto& item : model->named_parameters()) {
        if (item.value().grad().defined()) grads[checkpointing][item.key()] = item.value().grad().clone();
      }
    }
    EXPECT_TRUE(torch::allclose(losses[0], losses[1]));
    ASSERT_EQ(grads[0].size(), grads[1].size());
    EXPECT_EQ(grads[0].size(), frozen_embeddings ? 4u : ExpectedTensorShapes(config).size());
    for (const auto& [name, g] : grads[0]) {
      ASSERT_TRUE(grads[1].count(name)) << name;
      EXPECT_TRUE(torch::allclose(g, grads[1][name], 1e-5, 1e-6)) << name;
    }
  }
}

TEST(LlamaTest, GradientCheckpointingReplaysAdapterDropout) {
  model::ModelConfig config = ConfigFrom(testing::TinyLlamaJson());
  torch::Tensor ids = torch::tensor({1, 5, 9, 13, 2, 6, 10, 0}, torch::kInt64).view({2, 4});
  std::map<std::string, torch::Tensor> grads[2];
  for (int checkpointing = 0; checkpointing < 2; ++checkpointing) {
    CausalLM model = RandomTinyModel(config, 5);
    AdapterOptions adapter;
    adapter.method = AdapterMethod::kD2Lora;
    adapter.r = 2;
    adapter.dropout = 0.5;
    adapter.target_modules = {"all-linear"};
    auto report = InjectAdapters(*model, adapter);
    ASSERT_TRUE(report.ok()) << report.status();
    model->train();
    model->set_gradient_checkpointing(checkpointing == 1);
    torch::manual_seed(99);
    model->forward(ids).pow(2).mean().backward();
    for (const auto& item : model->named_parameters()) {
      if (item.value().grad().defined()) grads[checkpointing][item.key()] = item.value().grad().clone();
    }
  }
  ASSERT_FALSE(grads[0].empty());
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (const auto& [name, g] : grads[0]) {
    ASSERT_TRUE(grads[1].count(name)) << name;
    EXPECT_TRUE(torch::allclose(g, grads[1][name], 1e-5, 1e-6)) << name;
  }
}

TEST(LlamaTest, LowPrecisionForwardIsCloseToFloat32) {
  model::ModelConfig config = ConfigFrom(testing::TinyLlamaJson());
  CausalLM fp32 = RandomTinyModel(config, 19);
  torch::NoGradGuard no_grad;
  torch::Tensor ids = torch::tensor({0, 0, 5, 6, 7, 1, 2, 3, 4, 5}, torch::kInt64).view({2, 5});
  torch::Tensor mask = ids.ne(0);
  mask[1][0] = true;
  torch::Tensor ref = fp32->forward(ids, mask);
  // LibTorch 1.13 has no fp16 matmul on the CPU; bf16 exercises the same code.
  for (auto dtype : {torch::kBFloat16}) {
    CausalLM low = RandomTinyModel(config, 19);
    low->to(dtype);
    torch::Tensor logits = low->forward(ids, mask);
    EXPECT_EQ(logits.scalar_type(), dtype);
    EXPECT_FALSE(logits.isnan().any().item<bool>());
    const double scale = ref.abs().max().item<double>();
    EXPECT_LT((logits.to(torch::kFloat32) - ref).slice(1, 2).abs().max().item<double>(), 0.1 * scale);
  }
}

TEST(LlamaTest, RejectsBadInputs) {
  model::ModelConfig config = ConfigFrom(testing::TinyLlamaJson());
  CausalLM model(config);
  torch::NoGradGuard no_grad;
  EXPECT_THROW(model->forward(torch::zeros({4}, torch::kInt64)), c10::Error);
  EXPECT_THROW(model->forward(torch::zeros({1, 4}, torch::kInt32)), c10::Error);
  EXPECT_THROW(model->forward(torch::zeros({1, 4}, torch::kInt64), torch::ones({1, 3})), c10::Error);
  KvCache cache;
  model->forward(torch::zeros({2, 3}, torch::kInt64), {}, &cache);
  EXPECT_THROW(model->forward(torch::zeros({1, 1}, torch::kInt64), {}, &cache), c10::Error);
  EXPECT_EQ(cache.length(), 3);
}

}  // namespace
}  // namespace d2lora::engine
