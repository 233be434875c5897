#include "worker/engine/adapters/inject.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/support/test_support.h"
#include "tests/worker/engine/adapters/adapter_test_util.h"
#include "worker/engine/adapters/adapted_linear.h"

namespace d2lora::engine {
namespace {

using testing::TinyNet;

std::vector<std::string> Adapted(const std::vector<std::string>& patterns) {
  TinyNet net(4, 2);
  AdapterOptions o;
  o.r = 2;
  o.target_modules = patterns;
  auto report = InjectAdapters(*net, o);
  EXPECT_TRUE(report.ok()) << report.status();
  return report.ok() ? report->adapted : std::vector<std::string>{};
}

TEST(Inject, PlainNamesMatchModuleSuffixes) {
  EXPECT_EQ(Adapted({"q_proj", "v_proj"}),
            (std::vector<std::string>{"model.layers.0.q_proj", "model.layers.0.v_proj", "model.layers.1.q_proj",
                                      "model.layers.1.v_proj"}));
  // A plain name never matches part of a component.
  EXPECT_EQ(Adapted({"proj", "q_proj"}).size(), 2u);
}

TEST(Inject, RegexMustMatchTheWholePath) {
  EXPECT_EQ(Adapted({R"(model\.layers\.1\..*_proj)"}),
            (std::vector<std::string>{"model.layers.1.q_proj", "model.layers.1.v_proj", "model.layers.1.up_proj"}));
}

TEST(Inject, AllLinearLeavesTheOutputHeadAlone) {
  auto adapted = Adapted({"all-linear"});
  EXPECT_EQ(adapted.size(), 6u);
  for (const auto& path : adapted) EXPECT_EQ(path.find("lm_head"), std::string::npos);
}

TEST(Inject, FreezesEveryBaseParameterAndCounts) {
  TinyNet net(4, 2);
  const int64_t base_total = CountParameters(*net).total;
  EXPECT_EQ(CountParameters(*net).trainable, base_total);
  AdapterOptions o;
  o.method = AdapterMethod::kLora;
  o.r = 2;
  o.target_modules = {"q_proj"};
  auto report = InjectAdapters(*net, o);
  ASSERT_TRUE(report.ok()) << report.status();
  // Two q_proj layers of 4x4: A [2,4] + B [4,2] each.
  EXPECT_EQ(report->parameters.trainable, 2 * (8 + 8));
  EXPECT_EQ(report->parameters.total, base_total + 32);
  for (const auto& p : net->named_parameters()) {
    const bool adapter_param = p.key().find(".adapter.") != std::string::npos;
    EXPECT_EQ(p.value().requires_grad(), adapter_param) << p.key();
  }
  EXPECT_NE(report->parameters.ToString().find("trainable 32 / total"), std::string::npos)
      << report->parameters.ToString();
}

TEST(Inject, ErrorsNameTheProblem) {
  TinyNet net(4, 1);
  AdapterOptions o;
  o.target_modules = {"k_proj"};
  auto none = InjectAdapters(*net, o);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(std::string(none.status().message()).find("match no linear layer"), std::string::npos);

  o.target_modules = {"model.(layers"};
  auto bad = InjectAdapters(*net, o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("invalid regex 'model.(layers'"), std::string::npos);

  o.target_modules = {"q_proj"};
  ASSERT_TRUE(InjectAdapters(*net, o).ok());
  auto twice = InjectAdapters(*net, o);
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(std::string(twice.status().message()).find("already hosts an adapter"), std::string::npos);
}

TEST(Inject, SameSeedSameInitWhateverTheOrder) {
  TinyNet a(4, 2), b(4, 2);
  AdapterOptions o;
  o.target_modules = {"q_proj", "v_proj"};
  ASSERT_TRUE(InjectAdapters(*a, o).ok());
  o.target_modules = {"v_proj", "q_proj"};
  ASSERT_TRUE(InjectAdapters(*b, o).ok());
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (const auto& p : pa) {
    if (p.key().find(".adapter.") == std::string::npos) continue;
    EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
  }
  // Different layers get different draws.
  EXPECT_FALSE(torch::equal(pa["model.layers.0.q_proj.adapter.lora_A"], pa["model.layers.1.q_proj.adapter.lora_A"]));
}

TEST(Inject, MergeAdaptersGivesPlainLayersWithSameOutputs) {
  TinyNet net(8, 2);
  AdapterOptions o;
  o.target_modules = {"all-linear"};
  ASSERT_TRUE(InjectAdapters(*net, o).ok());
  for (auto& [path, linear] : LinearLayers(*net)) {
    if (linear->adapter()) testing::RandomizeAdapter(*linear->adapter());
  }
  net->eval();
  torch::Tensor x = torch::randn({3, 8});
  torch::Tensor before = net->forward(x).detach();
  MergeAdapters(*net);
  for (auto& [path, linear] : LinearLayers(*net)) EXPECT_FALSE(linear->adapter()) << path;
  torch::Tensor after = net->forward(x);
  EXPECT_LE(((after - before).abs().max() / before.abs().max()).item<double>(), 1e-5);
}

}  // namespace
}  // namespace d2lora::engine
