#include "worker/engine/tasks/merge_model.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "tests/support/test_support.h"
#include "worker/engine/adapters/adapter_io.h"
#include "worker/engine/adapters/adapted_linear.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/eval/evaluate.h"
#include "worker/engine/tasks/init_model.h"

namespace d2lora::engine {
namespace {

using d2lora::testing::TempDir;

std::string MakeTinyModel(const TempDir& tmp) {
  InitModelOptions o;
  o.preset = "tiny";
  o.out_dir = tmp.file("base");
  o.seed = 3;
  o.corpus = {"the quick brown fox jumps over the lazy dog", "a stitch in time saves nine",
              "the early bird catches the worm"};
  auto r = InitModel(o);
  EXPECT_TRUE(r.ok()) << r.status();
  return o.out_dir;
}

std::vector<Example> RandomExamples(int64_t vocab, int n, int64_t len, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<Example> out;
  for (int i = 0; i < n; ++i) {
    Example e;
    const int64_t l = len - i % 3;
    torch::Tensor ids = torch::randint(vocab, {l}, torch::kInt64);
    e.ids.assign(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + l);
    e.loss_mask.assign(l, 1);
    e.loss_mask[0] = 0;
    out.push_back(std::move(e));
  }
  return out;
}

class MergeModelTest : public ::testing::TestWithParam<AdapterMethod> {};

// The merged model evaluates to the loss of the unmerged adapter (fp32, 1e-5).
TEST_P(MergeModelTest, MergedLossEqualsUnmergedLoss) {
  TempDir tmp;
  const std::string base = MakeTinyModel(tmp);
  const std::string adapter_dir = tmp.file("adapter");
  AdapterOptions o;
  o.method = GetParam();
  o.r = 4;
  o.alpha = 8;
  o.target_modules = {"all-linear"};
  {
    auto loaded = LoadModel(base);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ASSERT_TRUE(InjectAdapters(*loaded->model, o).ok());
    torch::manual_seed(1);
    torch::NoGradGuard ng;
    for (auto& [path, linear] : LinearLayers(*loaded->model)) {
      if (!linear->adapter()) continue;
      for (auto& p : linear->adapter()->named_parameters()) {
        if (p.key() == "magnitude") p.value().mul_(1 + 0.05 * torch::randn_like(p.value()));
        else if (p.key() != "tau_raw") p.value().copy_(0.05 * torch::randn_like(p.value()));
      }
    }
    D2_ASSERT_OK(SaveAdapter(*loaded->model, o, adapter_dir, base));
  }
  auto examples = RandomExamples(1024, 6, 24, 5);

  auto unmerged = LoadModel(base);
  ASSERT_TRUE(unmerged.ok());
  ASSERT_TRUE(LoadAdapter(*unmerged->model, adapter_dir).ok());
  auto loss_unmerged = EvaluateLm(*unmerged->model, examples, 4);
  ASSERT_TRUE(loss_unmerged.ok()) << loss_unmerged.status();

  MergeOptions m;
  m.model_dir = base;
  m.adapter_dir = adapter_dir;
  m.out_dir = tmp.file("merged");
  m.dtype = c10::ScalarType::Float;
  auto result = MergeModel(m);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->adapter.method, GetParam());
  EXPECT_EQ(result->merged_layers, 4 * 7);
  auto merged = LoadModel(m.out_dir);
  ASSERT_TRUE(merged.ok()) << merged.status();
  for (auto& [path, linear] : LinearLayers(*merged->model)) EXPECT_FALSE(linear->adapter());
  auto loss_merged = EvaluateLm(*merged->model, examples, 4);
  ASSERT_TRUE(loss_merged.ok());
  EXPECT_NEAR(loss_merged->loss, loss_unmerged->loss, 1e-5 * std::max(1.0, loss_unmerged->loss));
  // The adapter did change the model.
  auto plain = LoadModel(base);
  auto loss_base = EvaluateLm(*plain->model, examples, 4);
  EXPECT_GT(std::abs(loss_base->loss - loss_unmerged->loss), 1e-4);
  // Tokenizer files travel with the merged model.
  EXPECT_TRUE(std::filesystem::exists(m.out_dir + "/tokenizer.json"));
  EXPECT_TRUE(std::filesystem::exists(m.out_dir + "/tokenizer_config.json"));
}

INSTANTIATE_TEST_SUITE_P(AllMethods, MergeModelTest,
                         ::testing::Values(AdapterMethod::kD2Lora, AdapterMethod::kLora, AdapterMethod::kDora));

TEST(MergeModel, BadInputsNameTheProblem) {
  TempDir tmp;
  const std::string base = MakeTinyModel(tmp);
  MergeOptions m;
  m.model_dir = base;
  m.adapter_dir = tmp.file("missing-adapter");
  m.out_dir = tmp.file("merged");
  auto missing = MergeModel(m);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("missing-adapter/adapter_config.json"), std::string::npos)
      << missing.status();
  EXPECT_FALSE(std::filesystem::exists(m.out_dir));
  m.model_dir = tmp.file("no-model");
  auto no_model = MergeModel(m);
  ASSERT_FALSE(no_model.ok());
  EXPECT_NE(std::string(no_model.status().message()).find("no-model"), std::string::npos) << no_model.status();
}

TEST(InitModel, PresetsAndOutput) {
  auto tiny = ModelPreset("tiny");
  ASSERT_TRUE(tiny.ok());
  auto small = ModelPreset("small");
  ASSERT_TRUE(small.ok());
  auto unknown = ModelPreset("huge");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(std::string(unknown.status().message()).find("unknown preset 'huge'"), std::string::npos);

  TempDir tmp;
  InitModelOptions o;
  o.out_dir = tmp.file("m");
  o.corpus = {"hello world, hello there", "hello again world"};
  auto r = InitModel(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->parameters, 100'000);
  EXPECT_LT(r->parameters, 1'000'000);
  EXPECT_GT(r->tokenizer_vocab, 256);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}) {
    EXPECT_TRUE(std::filesystem::exists(o.out_dir + "/" + f)) << f;
  }
  // Nothing but the model directory is left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(tmp.path()), std::filesystem::directory_iterator()), 1);
  // Same seed, same weights.
  InitModelOptions again = o;
  again.out_dir = tmp.file("m2");
  ASSERT_TRUE(InitModel(again).ok());
  EXPECT_EQ(d2lora::testing::ReadFile(o.out_dir + "/model.safetensors"),
            d2lora::testing::ReadFile(again.out_dir + "/model.safetensors"));
  // An existing directory is not overwritten unless asked.
  auto exists = InitModel(o);
  ASSERT_FALSE(exists.ok());
  EXPECT_NE(std::string(exists.status().message()).find("already exists"), std::string::npos);
}

}  // namespace
}  // namespace d2lora::engine
