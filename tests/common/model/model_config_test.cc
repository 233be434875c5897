#include "common/model/model_config.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "tests/worker/engine/model/tiny_model.h"

namespace d2lora::model {
namespace {

using json = nlohmann::json;

absl::Status ParseError(const json& j) {
  auto config = ParseModelConfig(j.dump(), "ckpt/config.json");
  EXPECT_FALSE(config.ok()) << j.dump();
  return config.status();
}

void ExpectErrorMentions(const json& j, const std::vector<std::string>& words) {
  absl::Status st = ParseError(j);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find("ckpt/config.json"), absl::string_view::npos) << st;
  for (const std::string& w : words) EXPECT_NE(st.message().find(w), absl::string_view::npos) << st << " / " << w;
}

TEST(ModelConfigTest, ParsesLlama) {
  auto c = ParseModelConfig(engine::testing::TinyLlamaJson().dump(), "x");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->vocab_size, 61);
  EXPECT_EQ(c->head_dim, 8);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kNone);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_FALSE(c->qkv_bias());
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>{2});
  EXPECT_FALSE(c->pad_token_id.has_value());
  EXPECT_EQ(c->dtype, "float32");
}

TEST(ModelConfigTest, DefaultsAndVariants) {
  json j = engine::testing::TinyLlamaJson();
  for (const char* key : {"num_key_value_heads", "rms_norm_eps", "rope_theta", "tie_word_embeddings", "architectures",
                          "eos_token_id", "torch_dtype"}) {
    j.erase(key);
  }
  auto c = ParseModelConfig(j.dump(), "x");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_key_value_heads, 4);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_TRUE(c->eos_token_ids.empty());

  auto q = ParseModelConfig(engine::testing::TinyQwen2Json().dump(), "x");
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_TRUE(q->qkv_bias());
  EXPECT_FALSE(q->o_bias());
  EXPECT_TRUE(q->tie_word_embeddings);
  EXPECT_EQ(q->eos_token_ids, (std::vector<int64_t>{2, 3}));

  auto l3 = ParseModelConfig(engine::testing::TinyLlama3Json().dump(), "x");
  ASSERT_TRUE(l3.ok()) << l3.status();
  EXPECT_EQ(l3->rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_DOUBLE_EQ(l3->rope_scaling.factor, 8.0);
  EXPECT_EQ(l3->rope_scaling.original_max_position_embeddings, 64);
  EXPECT_TRUE(l3->qkv_bias());
  EXPECT_TRUE(l3->o_bias());
  EXPECT_TRUE(l3->mlp_bias);

  auto m = ParseModelConfig(engine::testing::TinyMistralJson().dump(), "x");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->head_dim, 12);
  EXPECT_EQ(m->rope_scaling.type, RopeScalingType::kLinear);
  EXPECT_EQ(m->sliding_window, 4);
  EXPECT_TRUE(m->layer_uses_sliding_window(0));

  json d = engine::testing::TinyLlamaJson();
  d["rope_scaling"] = {{"rope_type", "default"}};
  auto def = ParseModelConfig(d.dump(), "x");
  ASSERT_TRUE(def.ok()) << def.status();
  EXPECT_EQ(def->rope_scaling.type, RopeScalingType::kNone);

  json w = engine::testing::TinyQwen2Json();
  w["use_sliding_window"] = true;
  w["sliding_window"] = 16;
  w["max_window_layers"] = 1;
  auto qw = ParseModelConfig(w.dump(), "x");
  ASSERT_TRUE(qw.ok()) << qw.status();
  EXPECT_FALSE(qw->layer_uses_sliding_window(0));
  EXPECT_TRUE(qw->layer_uses_sliding_window(1));
  w["use_sliding_window"] = false;
  EXPECT_FALSE(ParseModelConfig(w.dump(), "x")->sliding_window.has_value());
}

TEST(ModelConfigTest, ErrorsNameFileAndField) {
  json j = engine::testing::TinyLlamaJson();
  j["model_type"] = "gpt2";
  j.erase("architectures");
  ExpectErrorMentions(j, {"model_type", "gpt2"});

  j = engine::testing::TinyLlamaJson();
  j["architectures"] = {"GPT2LMHeadModel"};
  j.erase("model_type");
  ExpectErrorMentions(j, {"architectures", "GPT2LMHeadModel"});

  j = engine::testing::TinyLlamaJson();
  j["architectures"] = {"Qwen2ForCausalLM"};
  ExpectErrorMentions(j, {"architectures", "Qwen2ForCausalLM", "llama"});

  for (const char* field : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads"}) {
    j = engine::testing::TinyLlamaJson();
    j.erase(field);
    ExpectErrorMentions(j, {field, "missing"});
    j[field] = "32";
    ExpectErrorMentions(j, {field, "integer"});
    j[field] = 0;
    ExpectErrorMentions(j, {field, "positive"});
    j[field] = 3.5;
    ExpectErrorMentions(j, {field, "integer"});
  }
  j = engine::testing::TinyLlamaJson();
  j["num_key_value_heads"] = -2;
  ExpectErrorMentions(j, {"num_key_value_heads", "positive"});
  j["num_key_value_heads"] = 3;
  ExpectErrorMentions(j, {"num_key_value_heads", "divisible"});

  j = engine::testing::TinyLlamaJson();
  j["num_attention_heads"] = 5;
  j["num_key_value_heads"] = 5;
  ExpectErrorMentions(j, {"num_attention_heads", "hidden_size 32"});
  j["head_dim"] = 8;  // an explicit head_dim lifts the divisibility rule
  EXPECT_TRUE(ParseModelConfig(j.dump(), "x").ok());

  j = engine::testing::TinyLlamaJson();
  j["rms_norm_eps"] = "tiny";
  ExpectErrorMentions(j, {"rms_norm_eps", "number"});
  j = engine::testing::TinyLlamaJson();
  j["rope_theta"] = -1.0;
  ExpectErrorMentions(j, {"rope_theta", "positive"});
  j = engine::testing::TinyLlamaJson();
  j["tie_word_embeddings"] = 1;
  ExpectErrorMentions(j, {"tie_word_embeddings", "true or false"});
  j = engine::testing::TinyLlamaJson();
  j["eos_token_id"] = {2, "x"};
  ExpectErrorMentions(j, {"eos_token_id"});
  j = engine::testing::TinyLlamaJson();
  j["hidden_act"] = "gelu";
  ExpectErrorMentions(j, {"hidden_act", "gelu"});

  j = engine::testing::TinyLlamaJson();
  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  ExpectErrorMentions(j, {"rope_scaling", "dynamic"});
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 2.0}};
  ExpectErrorMentions(j, {"rope_scaling", "yarn"});
  j["rope_scaling"] = {{"rope_type", "linear"}};
  ExpectErrorMentions(j, {"rope_scaling", "factor", "missing"});
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}};
  ExpectErrorMentions(j, {"rope_scaling", "high_freq_factor"});
  j["rope_scaling"] = 3;
  ExpectErrorMentions(j, {"rope_scaling"});

  absl::Status st = ParseModelConfig("{not json", "ckpt/config.json").status();
  EXPECT_NE(st.message().find("ckpt/config.json"), absl::string_view::npos);
  st = ParseModelConfig("[1]", "ckpt/config.json").status();
  EXPECT_FALSE(st.ok());
}

TEST(ModelConfigTest, ToJsonKeepsUnknownKeysAndRoundTrips) {
  for (const json& j : {engine::testing::TinyLlamaJson(), engine::testing::TinyQwen2Json(), engine::testing::TinyLlama3Json(),
                        engine::testing::TinyMistralJson()}) {
    auto c = ParseModelConfig(j.dump(), "x");
    ASSERT_TRUE(c.ok()) << c.status();
    json out = c->ToJson();
    EXPECT_EQ(out["custom_unknown_key"], j["custom_unknown_key"]);
    EXPECT_EQ(out["transformers_version"], "4.44.0");
    auto again = ParseModelConfig(out.dump(), "y");
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->ToJson(), out);
    EXPECT_EQ(again->head_dim, c->head_dim);
    EXPECT_EQ(again->rope_scaling.type, c->rope_scaling.type);
    EXPECT_EQ(again->eos_token_ids, c->eos_token_ids);
    EXPECT_EQ(again->sliding_window, c->sliding_window);
  }
  auto c = ParseModelConfig(engine::testing::TinyLlamaJson().dump(), "x");
  c->dtype = "bfloat16";
  c->rope_scaling.type = RopeScalingType::kLinear;
  c->rope_scaling.factor = 4.0;
  json out = c->ToJson();
  EXPECT_EQ(out["torch_dtype"], "bfloat16");
  EXPECT_EQ(out["dtype"], "bfloat16");  // both spellings, never two dtypes
  EXPECT_EQ(out["rope_scaling"]["rope_type"], "linear");
  EXPECT_EQ(out["rope_scaling"]["factor"], 4.0);
}

// transformers >= 4.56 writes `dtype` and prefers it; older files have
// `torch_dtype`. Either is read; two that disagree are refused.
TEST(ModelConfigTest, DtypeUnderEitherNameAndNeverTwo) {
  json j = engine::testing::TinyLlamaJson();
  j.erase("torch_dtype");
  j["dtype"] = "bfloat16";
  auto only_new = ParseModelConfig(j.dump(), "config.json");
  ASSERT_TRUE(only_new.ok()) << only_new.status();
  EXPECT_EQ(only_new->dtype, "bfloat16");
  json out = only_new->ToJson();
  EXPECT_EQ(out["dtype"], "bfloat16");
  EXPECT_EQ(out["torch_dtype"], "bfloat16");
  j["torch_dtype"] = "bfloat16";
  EXPECT_TRUE(ParseModelConfig(j.dump(), "config.json").ok());
  j["torch_dtype"] = "float32";
  auto both = ParseModelConfig(j.dump(), "config.json");
  ASSERT_FALSE(both.ok());
  EXPECT_EQ(both.status().message(),
            "config.json: field 'dtype': 'bfloat16' contradicts torch_dtype 'float32'");
}

// transformers 5 keeps rope_theta and the scaling in `rope_parameters`
// (modeling_rope_utils.py): read, written back consistently, and refused
// where the model cannot honour it rather than defaulting to theta 10000.
TEST(ModelConfigTest, RopeParametersOfTransformers5) {
  json j = engine::testing::TinyLlamaJson();
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 8.0},
                          {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 8192}};
  auto c = ParseModelConfig(j.dump(), "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_DOUBLE_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 8.0);
  json out = c->ToJson();
  EXPECT_EQ(out["rope_parameters"]["rope_theta"], 500000.0);
  EXPECT_EQ(out["rope_parameters"]["rope_type"], "llama3");
  EXPECT_EQ(out["rope_theta"], 500000.0);  // transformers 4 reads these
  EXPECT_EQ(out["rope_scaling"]["factor"], 8.0);
  auto again = ParseModelConfig(out.dump(), "again");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->ToJson(), out);

  // rope_parameters wins over a top-level rope_theta, as in transformers 5.
  j["rope_theta"] = 10000.0;
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1000000.0}};
  auto plain = ParseModelConfig(j.dump(), "config.json");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_DOUBLE_EQ(plain->rope_theta, 1000000.0);
  EXPECT_EQ(plain->rope_scaling.type, RopeScalingType::kNone);

  auto error = [&](const json& parameters) {
    json k = engine::testing::TinyLlamaJson();
    k["rope_parameters"] = parameters;
    auto r = ParseModelConfig(k.dump(), "config.json");
    return r.ok() ? std::string("ok") : std::string(r.status().message());
  };
  EXPECT_EQ(error({{"rope_type", "yarn"}, {"rope_theta", 10000.0}, {"factor", 4.0}}),
            "config.json: rope_parameters: field 'rope_type': unsupported rope scaling type 'yarn' "
            "(supported: default, linear, llama3)");
  EXPECT_EQ(error({{"rope_type", "default"}, {"rope_theta", 10000.0}, {"partial_rotary_factor", 0.5}}),
            "config.json: rope_parameters: field 'partial_rotary_factor': partial rotary embeddings (0.5) are not "
            "supported; the model rotates whole heads");
  EXPECT_EQ(error({{"full_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}}}),
            "config.json: rope_parameters: field 'full_attention': rope parameters per layer type are not supported "
            "(one set for every layer)");
  json k = engine::testing::TinyLlamaJson();
  k["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  k["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 4.0}, {"rope_theta", 10000.0}};
  auto disagree = ParseModelConfig(k.dump(), "config.json");
  ASSERT_FALSE(disagree.ok());
  EXPECT_NE(disagree.status().message().find("rope_scaling and rope_parameters disagree"), std::string::npos)
      << disagree.status();
  k["rope_parameters"]["factor"] = 2.0;
  EXPECT_TRUE(ParseModelConfig(k.dump(), "config.json").ok());
}

TEST(ModelConfigTest, LoadModelConfigReadsTheDirectory) {
  d2lora::testing::TempDir dir;
  EXPECT_EQ(LoadModelConfig(dir.path()).status().code(), absl::StatusCode::kNotFound);
  d2lora::testing::WriteFile(dir.file("config.json"), engine::testing::TinyQwen2Json().dump());
  auto c = LoadModelConfig(dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_type, "qwen2");
  json bad = engine::testing::TinyQwen2Json();
  bad["hidden_size"] = -1;
  d2lora::testing::WriteFile(dir.file("config.json"), bad.dump());
  absl::Status st = LoadModelConfig(dir.path()).status();
  EXPECT_NE(st.message().find(dir.file("config.json")), absl::string_view::npos) << st;
  EXPECT_NE(st.message().find("hidden_size"), absl::string_view::npos) << st;
}

}  // namespace
}  // namespace d2lora::model
