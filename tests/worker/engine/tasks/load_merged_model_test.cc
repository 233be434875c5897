// LoadMergedModel is what `d2lora eval --adapter` and `d2lora generate
// --adapter` load: the adapter folded into plain linear layers at load time, so
// that evaluation never runs the adapters' training-form forward.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/support/test_support.h"
#include "worker/engine/adapters/adapted_linear.h"
#include "worker/engine/adapters/adapter_io.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/adapters/linear.h"
#include "worker/engine/tasks/init_model.h"
#include "worker/engine/tasks/merge_model.h"

namespace d2lora::engine {
namespace {

using d2lora::testing::TempDir;

class LoadMergedModelTest : public ::testing::TestWithParam<AdapterMethod> {};

TEST_P(LoadMergedModelTest, HoldsPlainLinearLayersThatGiveTheUnmergedLogits) {
  TempDir tmp;
  InitModelOptions init;
  init.preset = "tiny";
  init.out_dir = tmp.file("base");
  init.seed = 2;
  ASSERT_TRUE(InitModel(init).ok());
  const std::string adapter_dir = tmp.file("adapter");
  AdapterOptions o;
  o.method = GetParam();
  o.r = 4;
  o.target_modules = {"all-linear"};
  {
    auto loaded = LoadModel(init.out_dir);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ASSERT_TRUE(InjectAdapters(*loaded->model, o).ok());
    torch::manual_seed(4);
    torch::NoGradGuard ng;
    for (auto& [path, linear] : LinearLayers(*loaded->model)) {
      if (!linear->adapter()) continue;  // lm_head
      for (auto& p : linear->adapter()->named_parameters()) {
        if (p.key() == "magnitude") p.value().mul_(1 + 0.05 * torch::randn_like(p.value()));
        else if (p.key() != "tau_raw") p.value().copy_(0.05 * torch::randn_like(p.value()));
      }
    }
    D2_ASSERT_OK(SaveAdapter(*loaded->model, o, adapter_dir, init.out_dir));
  }

  MergeResult info;
  auto merged = LoadMergedModel(init.out_dir, adapter_dir, &info);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(info.adapter.method, GetParam());
  EXPECT_EQ(info.merged_layers, 4 * 7);
  EXPECT_FALSE(merged->model->is_training());
  // No layer hosts an adapter (LinearImpl::forward is then x W^T + b), and no
  // adapter tensor is left anywhere in the model.
  for (auto& [path, linear] : LinearLayers(*merged->model)) EXPECT_FALSE(linear->adapter()) << path;
  auto base = LoadModel(init.out_dir);
  ASSERT_TRUE(base.ok());
  EXPECT_EQ(merged->model->named_parameters().size(), base->model->named_parameters().size());
  EXPECT_TRUE(merged->model->named_buffers().is_empty());

  // Its logits are the unmerged (training-form) model's, and not the base model's.
  auto unmerged = LoadModel(init.out_dir);
  ASSERT_TRUE(unmerged.ok());
  ASSERT_TRUE(LoadAdapter(*unmerged->model, adapter_dir).ok());
  unmerged->model->eval();
  torch::manual_seed(9);
  torch::Tensor ids = torch::randint(merged->config.vocab_size, {2, 12}, torch::kInt64);
  torch::NoGradGuard ng;
  torch::Tensor want = unmerged->model->forward(ids);
  torch::Tensor got = merged->model->forward(ids);
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-4);
  EXPECT_GT((base->model->forward(ids) - want).abs().max().item<double>(), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(AllMethods, LoadMergedModelTest,
                         ::testing::Values(AdapterMethod::kD2Lora, AdapterMethod::kLora, AdapterMethod::kDora));

TEST(LoadMergedModel, WithoutAnAdapterIsThePlainModel) {
  TempDir tmp;
  InitModelOptions init;
  init.out_dir = tmp.file("base");
  ASSERT_TRUE(InitModel(init).ok());
  MergeResult info;
  auto loaded = LoadMergedModel(init.out_dir, "", &info);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(info.merged_layers, 0);
  for (auto& [path, linear] : LinearLayers(*loaded->model)) EXPECT_FALSE(linear->adapter()) << path;
  EXPECT_FALSE(LoadMergedModel(init.out_dir, tmp.file("no-adapter")).ok());
}

}  // namespace
}  // namespace d2lora::engine
