#include "worker/engine/model/checkpoint.h"

#include <torch/torch.h>

#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "tests/worker/engine/model/tiny_model.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/formats/safetensors.h"

namespace d2lora::engine {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using d2lora::testing::ReadFile;
using d2lora::testing::TempDir;
using d2lora::testing::WriteFile;
using testing::ConfigFrom;
using testing::RandomTinyModel;

void ExpectSameWeights(CausalLMImpl& a, CausalLMImpl& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.keys(), pb.keys());
  for (const auto& item : pa) {
    EXPECT_EQ(item.value().scalar_type(), pb[item.key()].scalar_type()) << item.key();
    EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
  }
}

// A checkpoint written by SaveModel, to be damaged by the error tests.
struct Checkpoint {
  TempDir tmp;
  std::string dir;
  model::ModelConfig config;
  explicit Checkpoint(const json& config_json, uint64_t max_shard_bytes = 5'000'000'000ull) {
    dir = tmp.file("ckpt");
    config = ConfigFrom(config_json);
    CausalLM model = RandomTinyModel(config, 1);
    SaveModelOptions options;
    options.dtype = torch::kFloat32;
    options.max_shard_bytes = max_shard_bytes;
    absl::Status st = SaveModel(*model, config, dir, options);
    EXPECT_TRUE(st.ok()) << st;
  }
  std::string file(const std::string& name) const { return dir + "/" + name; }
};

NamedTensors ReadAll(const std::string& path) {
  auto file = SafetensorsFile::Open(path);
  EXPECT_TRUE(file.ok()) << file.status();
  NamedTensors out;
  for (const auto& e : (*file)->entries()) out.emplace_back(e.name, (*file)->Get(e.name)->clone());
  return out;
}

void Rewrite(const std::string& path, const NamedTensors& tensors) {
  absl::Status st = WriteSafetensors(path, tensors, {{"format", "pt"}});
  ASSERT_TRUE(st.ok()) << st;
}

void ExpectLoadError(const std::string& dir, const std::vector<std::string>& words) {
  auto loaded = LoadModel(dir);
  ASSERT_FALSE(loaded.ok());
  for (const std::string& w : words) {
    EXPECT_NE(loaded.status().message().find(w), absl::string_view::npos) << loaded.status() << "\nmissing: " << w;
  }
}

TEST(CheckpointTest, SaveLoadSaveIsBitExact) {
  for (const json& j : {testing::TinyLlamaJson(), testing::TinyQwen2Json(), testing::TinyLlama3Json()}) {
    TempDir tmp;
    model::ModelConfig config = ConfigFrom(j);
    CausalLM model = RandomTinyModel(config, 2);
    SaveModelOptions options;
    options.dtype = torch::kFloat32;
    ASSERT_TRUE(SaveModel(*model, config, tmp.file("a"), options).ok());
    auto loaded = LoadModel(tmp.file("a"));
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ExpectSameWeights(*model, *loaded->model);
    ASSERT_TRUE(SaveModel(*loaded->model, loaded->config, tmp.file("b"), options).ok());
    EXPECT_EQ(ReadFile(tmp.file("a/model.safetensors")), ReadFile(tmp.file("b/model.safetensors")));
    EXPECT_EQ(ReadFile(tmp.file("a/config.json")), ReadFile(tmp.file("b/config.json")));
    EXPECT_FALSE(fs::exists(tmp.file("a/model.safetensors.index.json")));
    torch::NoGradGuard no_grad;
    torch::Tensor ids = torch::tensor({1, 2, 3}, torch::kInt64).view({1, 3});
    EXPECT_TRUE(torch::equal(model->forward(ids), loaded->model->forward(ids)));
  }
}

TEST(CheckpointTest, LowPrecisionSaveAndLoad) {
  TempDir tmp;
  model::ModelConfig config = ConfigFrom(testing::TinyLlamaJson());
  CausalLM model = RandomTinyModel(config, 3);
  SaveModelOptions options;  // bfloat16 by default
  ASSERT_TRUE(SaveModel(*model, config, tmp.file("bf16"), options).ok());
  json saved = json::parse(ReadFile(tmp.file("bf16/config.json")));
  EXPECT_EQ(saved["torch_dtype"], "bfloat16");
  EXPECT_EQ(saved["custom_unknown_key"]["nested"], 1);
  auto file = SafetensorsFile::Open(tmp.file("bf16/model.safetensors"));
  ASSERT_TRUE(file.ok());
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  for (const auto& e : (*file)->entries()) EXPECT_EQ(e.dtype, torch::kBFloat16) << e.name;

  auto loaded = LoadModel(tmp.file("bf16"), torch::kBFloat16);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  model->to(torch::kBFloat16);
  ExpectSameWeights(*model, *loaded->model);
  auto as_fp32 = LoadModel(tmp.file("bf16"), torch::kFloat32);
  ASSERT_TRUE(as_fp32.ok()) << as_fp32.status();
  EXPECT_EQ(as_fp32->model->output_weight().scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(as_fp32->model->output_weight(), model->output_weight().to(torch::kFloat32)));
  EXPECT_FALSE(LoadModel(tmp.file("bf16"), torch::kInt64).ok());
}

TEST(CheckpointTest, ShardedAndSingleFileAgree) {
  TempDir tmp;
  model::ModelConfig config = ConfigFrom(testing::TinyLlamaJson());
  CausalLM model = RandomTinyModel(config, 4);
  SaveModelOptions options;
  options.dtype = torch::kFloat32;
  ASSERT_TRUE(SaveModel(*model, config, tmp.file("single"), options).ok());
  options.max_shard_bytes = 10000;  // embed/lm_head (61*32*4 = 7808 bytes) each fit; layers split
  ASSERT_TRUE(SaveModel(*model, config, tmp.file("sharded"), options).ok());
  EXPECT_FALSE(fs::exists(tmp.file("sharded/model.safetensors")));

  json index = json::parse(ReadFile(tmp.file("sharded/model.safetensors.index.json")));
  const json& map = index["weight_map"];
  const auto expected = ExpectedTensorShapes(config);
  ASSERT_EQ(map.size(), expected.size());
  std::set<std::string> files;
  uint64_t total = 0;
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(map.contains(name)) << name;
    const std::string file_name = map[name];
    files.insert(file_name);
    auto shard = SafetensorsFile::Open(tmp.file("sharded/" + file_name));
    ASSERT_TRUE(shard.ok()) << shard.status();
    ASSERT_TRUE((*shard)->Contains(name)) << name << " not in " << file_name;
    EXPECT_EQ((*shard)->metadata().at("format"), "pt");
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    total += static_cast<uint64_t>(numel) * 4;
  }
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
  ASSERT_GT(files.size(), 2u);
  const int n = static_cast<int>(files.size());
  for (int i = 1; i <= n; ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05d-of-%05d.safetensors", i, n);
    EXPECT_TRUE(files.count(name)) << name;
    EXPECT_LE(fs::file_size(tmp.file(std::string("sharded/") + name)), 10000u + 4096u);
  }

  auto single = LoadModel(tmp.file("single"));
  auto sharded = LoadModel(tmp.file("sharded"));
  ASSERT_TRUE(single.ok()) << single.status();
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  ExpectSameWeights(*single->model, *sharded->model);
  ExpectSameWeights(*model, *sharded->model);
}

TEST(CheckpointTest, CopiesTokenizerFilesAndRefusesToClobber) {
  TempDir tmp;
  model::ModelConfig config = ConfigFrom(testing::TinyQwen2Json());
  CausalLM model = RandomTinyModel(config, 5);
  fs::create_directories(tmp.file("src"));
  WriteFile(tmp.file("src/tokenizer.json"), "{\"model\": {}}");
  WriteFile(tmp.file("src/tokenizer_config.json"), "{}");
  WriteFile(tmp.file("src/generation_config.json"), "{\"do_sample\": false}");
  WriteFile(tmp.file("src/unrelated.txt"), "x");
  // transformers >= 4.47: the chat templates as files, which win over tokenizer_config.json's.
  WriteFile(tmp.file("src/chat_template.jinja"), "{{ messages }}");
  fs::create_directories(tmp.file("src/additional_chat_templates"));
  WriteFile(tmp.file("src/additional_chat_templates/tool_use.jinja"), "{{ tools }}");
  WriteFile(tmp.file("src/additional_chat_templates/notes.txt"), "not a template");
  SaveModelOptions options;
  options.tokenizer_source_dir = tmp.file("src");
  ASSERT_TRUE(SaveModel(*model, config, tmp.file("out"), options).ok());
  EXPECT_EQ(ReadFile(tmp.file("out/tokenizer.json")), "{\"model\": {}}");
  EXPECT_EQ(ReadFile(tmp.file("out/generation_config.json")), "{\"do_sample\": false}");
  EXPECT_TRUE(fs::exists(tmp.file("out/tokenizer_config.json")));
  EXPECT_FALSE(fs::exists(tmp.file("out/unrelated.txt")));
  EXPECT_FALSE(fs::exists(tmp.file("out/tokenizer.model")));
  EXPECT_EQ(ReadFile(tmp.file("out/chat_template.jinja")), "{{ messages }}");
  EXPECT_EQ(ReadFile(tmp.file("out/additional_chat_templates/tool_use.jinja")), "{{ tools }}");
  EXPECT_FALSE(fs::exists(tmp.file("out/additional_chat_templates/notes.txt")));

  absl::Status again = SaveModel(*model, config, tmp.file("out"), options);
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists) << again;
  options.overwrite = true;
  options.tokenizer_source_dir.clear();
  ASSERT_TRUE(SaveModel(*model, config, tmp.file("out"), options).ok());
  EXPECT_FALSE(fs::exists(tmp.file("out/tokenizer.json")));
  // No temporary directories are left next to the output.
  int entries = 0;
  for (const auto& e : fs::directory_iterator(tmp.path())) entries += e.path().filename() != "src";
  EXPECT_EQ(entries, 1);

  options.tokenizer_source_dir = tmp.file("missing");
  EXPECT_FALSE(SaveModel(*model, config, tmp.file("out2"), options).ok());
  EXPECT_FALSE(fs::exists(tmp.file("out2")));
}

TEST(CheckpointTest, RefusesUnmergedAdapters) {
  TempDir tmp;
  model::ModelConfig config = ConfigFrom(testing::TinyLlamaJson());
  CausalLM model = RandomTinyModel(config, 6);
  AdapterOptions adapter;
  adapter.method = AdapterMethod::kLora;
  adapter.r = 2;
  auto report = InjectAdapters(*model, adapter);
  ASSERT_TRUE(report.ok()) << report.status();
  absl::Status st = SaveModel(*model, config, tmp.file("out"), {});
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(st.message().find("q_proj"), absl::string_view::npos) << st;
  EXPECT_FALSE(fs::exists(tmp.file("out")));
  MergeAdapters(*model);
  EXPECT_TRUE(SaveModel(*model, config, tmp.file("out"), {}).ok());
}

TEST(CheckpointTest, TiedModelsIgnoreAnLmHeadAndInvFreqBuffersAreIgnored) {
  Checkpoint ckpt(testing::TinyQwen2Json());
  NamedTensors tensors = ReadAll(ckpt.file("model.safetensors"));
  tensors.emplace_back("lm_head.weight", torch::zeros({61, 32}));
  tensors.emplace_back("model.layers.0.self_attn.rotary_emb.inv_freq", torch::ones({4}));
  Rewrite(ckpt.file("model.safetensors"), tensors);
  auto loaded = LoadModel(ckpt.dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->model->lm_head);
  EXPECT_GT(loaded->model->output_weight().abs().sum().item<double>(), 0.0);
}

TEST(CheckpointTest, MissingTensorIsNamed) {
  Checkpoint ckpt(testing::TinyLlamaJson());
  NamedTensors tensors = ReadAll(ckpt.file("model.safetensors"));
  NamedTensors kept;
  for (auto& t : tensors) {
    if (t.first != "model.layers.1.mlp.up_proj.weight") kept.push_back(t);
  }
  Rewrite(ckpt.file("model.safetensors"), kept);
  ExpectLoadError(ckpt.dir, {ckpt.file("model.safetensors"), "missing tensor", "model.layers.1.mlp.up_proj.weight"});

  // An untied model needs lm_head.weight.
  Checkpoint untied(testing::TinyLlamaJson());
  NamedTensors no_head;
  for (auto& t : ReadAll(untied.file("model.safetensors"))) {
    if (t.first != "lm_head.weight") no_head.push_back(t);
  }
  Rewrite(untied.file("model.safetensors"), no_head);
  ExpectLoadError(untied.dir, {"missing tensor", "lm_head.weight"});
}

TEST(CheckpointTest, WrongShapeIsNamed) {
  Checkpoint ckpt(testing::TinyLlamaJson());
  NamedTensors tensors = ReadAll(ckpt.file("model.safetensors"));
  for (auto& t : tensors) {
    if (t.first == "model.layers.0.self_attn.k_proj.weight") t.second = torch::zeros({32, 32});
  }
  Rewrite(ckpt.file("model.safetensors"), tensors);
  ExpectLoadError(ckpt.dir, {ckpt.file("model.safetensors"), "model.layers.0.self_attn.k_proj.weight", "[32, 32]",
                             "[16, 32]"});
}

TEST(CheckpointTest, UnexpectedTensorIsNamed) {
  Checkpoint ckpt(testing::TinyLlamaJson());
  NamedTensors tensors = ReadAll(ckpt.file("model.safetensors"));
  tensors.emplace_back("model.layers.0.self_attn.q_norm.weight", torch::ones({8}));
  Rewrite(ckpt.file("model.safetensors"), tensors);
  ExpectLoadError(ckpt.dir, {ckpt.file("model.safetensors"), "unexpected", "model.layers.0.self_attn.q_norm.weight"});

  // A checkpoint with biases loaded with a config that has none.
  Checkpoint biased(testing::TinyQwen2Json());
  json llama = testing::TinyQwen2Json();
  llama["model_type"] = "llama";
  llama["architectures"] = {"LlamaForCausalLM"};
  WriteFile(biased.file("config.json"), llama.dump());
  ExpectLoadError(biased.dir, {"unexpected", "self_attn.q_proj.bias"});
}

TEST(CheckpointTest, ShardErrorsAreNamed) {
  Checkpoint ckpt(testing::TinyLlamaJson(), /*max_shard_bytes=*/10000);
  json index = json::parse(ReadFile(ckpt.file("model.safetensors.index.json")));
  const std::string shard = index["weight_map"]["model.norm.weight"];

  // A missing shard file.
  fs::rename(ckpt.file(shard), ckpt.file("moved"));
  ExpectLoadError(ckpt.dir, {ckpt.file("model.safetensors.index.json"), shard});
  fs::rename(ckpt.file("moved"), ckpt.file(shard));
  ASSERT_TRUE(LoadModel(ckpt.dir).ok());

  // A tensor missing from the weight_map.
  json broken = index;
  broken["weight_map"].erase("model.norm.weight");
  WriteFile(ckpt.file("model.safetensors.index.json"), broken.dump());
  ExpectLoadError(ckpt.dir, {"model.norm.weight", shard});

  // A weight_map entry pointing at a shard that does not hold the tensor.
  broken = index;
  std::string other = index["weight_map"]["model.embed_tokens.weight"];
  ASSERT_NE(other, shard);
  broken["weight_map"]["model.norm.weight"] = other;
  WriteFile(ckpt.file("model.safetensors.index.json"), broken.dump());
  ExpectLoadError(ckpt.dir, {"model.norm.weight"});

  // A wrong shape inside a shard names the shard.
  WriteFile(ckpt.file("model.safetensors.index.json"), index.dump());
  NamedTensors tensors = ReadAll(ckpt.file(shard));
  for (auto& t : tensors) {
    if (t.first == "model.norm.weight") t.second = torch::ones({31});
  }
  Rewrite(ckpt.file(shard), tensors);
  ExpectLoadError(ckpt.dir, {ckpt.file(shard), "model.norm.weight", "[31]"});

  // Escaping the directory and malformed indexes.
  broken = index;
  broken["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors";
  WriteFile(ckpt.file("model.safetensors.index.json"), broken.dump());
  ExpectLoadError(ckpt.dir, {"../elsewhere.safetensors"});
  WriteFile(ckpt.file("model.safetensors.index.json"), "{\"metadata\": {}}");
  ExpectLoadError(ckpt.dir, {"model.safetensors.index.json", "weight_map"});
}

TEST(CheckpointTest, MissingFilesAndConfigErrors) {
  TempDir tmp;
  auto none = LoadModel(tmp.path());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(none.status().message().find("config.json"), absl::string_view::npos);

  WriteFile(tmp.file("config.json"), testing::TinyLlamaJson().dump());
  ExpectLoadError(tmp.path(), {tmp.path(), "model.safetensors"});

  Checkpoint ckpt(testing::TinyLlamaJson());
  json bad = testing::TinyLlamaJson();
  bad["num_key_value_heads"] = 3;
  WriteFile(ckpt.file("config.json"), bad.dump());
  ExpectLoadError(ckpt.dir, {ckpt.file("config.json"), "num_key_value_heads"});
  // A config that disagrees with the weights' shapes.
  bad = testing::TinyLlamaJson();
  bad["intermediate_size"] = 40;
  WriteFile(ckpt.file("config.json"), bad.dump());
  ExpectLoadError(ckpt.dir, {"model.layers.0.mlp.gate_proj.weight", "[48, 32]", "[40, 32]"});
}

TEST(CheckpointTest, InitRandomModelIsDeterministicAndHfLike) {
  model::ModelConfig config = ConfigFrom(testing::TinyQwen2Json());
  config.pad_token_id = 0;
  auto a = InitRandomModel(config, 42);
  auto b = InitRandomModel(config, 42);
  auto c = InitRandomModel(config, 43);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ExpectSameWeights(**a, **b);
  EXPECT_FALSE(torch::equal((*a)->output_weight(), (*c)->output_weight()));
  auto params = (*a)->named_parameters();
  EXPECT_TRUE(torch::equal(params["model.norm.weight"], torch::ones({32})));
  EXPECT_TRUE(torch::equal(params["model.layers.0.self_attn.q_proj.bias"], torch::zeros({32})));
  EXPECT_TRUE(torch::equal(params["model.embed_tokens.weight"][0], torch::zeros({32})));
  const double std = params["model.layers.0.mlp.up_proj.weight"].std().item<double>();
  EXPECT_NEAR(std, 0.02, 0.003);
  auto bf16 = InitRandomModel(config, 42, torch::kBFloat16);
  ASSERT_TRUE(bf16.ok());
  EXPECT_TRUE(torch::equal((*bf16)->output_weight(), (*a)->output_weight().to(torch::kBFloat16)));
}

}  // namespace
}  // namespace d2lora::engine
