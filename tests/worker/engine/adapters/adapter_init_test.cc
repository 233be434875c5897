#include "worker/engine/adapters/adapter_init.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "absl/strings/match.h"
#include "tests/support/test_support.h"
#include "tests/worker/engine/adapters/adapter_test_util.h"
#include "worker/engine/adapters/adapted_linear.h"
#include "worker/engine/adapters/adapter_io.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/adapters/linear.h"

namespace d2lora::engine {
namespace {

using d2lora::testing::TempDir;
using testing::TinyNet;

AdapterOptions Options(AdapterMethod method, int64_t r = 3, double alpha = 6) {
  return testing::SmallAdapterOptions(method, r, alpha);
}

TinyNet SaveTrained(const AdapterOptions& o, const std::string& dir) { return testing::SaveTrainedAdapter(o, dir); }

// A run's model: the same base weights (same seed), adapters injected fresh.
TinyNet FreshRun(const AdapterOptions& o) {
  TinyNet net(6, 2);
  EXPECT_TRUE(InjectAdapters(*net, o).ok());
  return net;
}

std::map<std::string, torch::Tensor> EffectiveWeights(TinyNet& net) {
  std::map<std::string, torch::Tensor> out;
  torch::NoGradGuard no_grad;
  for (auto& [path, linear] : LinearLayers(*net)) {
    if (linear->adapter()) out[path] = linear->adapter()->effective_weight().to(torch::kFloat64);
  }
  return out;
}

double MaxDifference(const std::map<std::string, torch::Tensor>& a, const std::map<std::string, torch::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (const auto& [path, w] : a) worst = std::max(worst, (w - b.at(path)).abs().max().item<double>());
  return worst;
}

std::map<std::string, torch::Tensor> Parameters(TinyNet& net) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : net->named_parameters()) out[p.key()] = p.value().detach().clone();
  return out;
}

// The saved model's weights are the run's from step 0 where the run's form can
// express them: the same method at another alpha (B rescaled) or a larger rank
// (zero-padded), and DoRA from LoRA (m = ||W0 + dW||).
struct KeepsFunctionCase {
  AdapterMethod saved, run;
  int64_t saved_r, run_r;
  double saved_alpha, run_alpha;
};

class InitKeepsFunctionTest : public ::testing::TestWithParam<KeepsFunctionCase> {};

TEST_P(InitKeepsFunctionTest, TheRunStartsAtTheSavedModel) {
  const KeepsFunctionCase c = GetParam();
  TempDir tmp;
  TinyNet saved = SaveTrained(Options(c.saved, c.saved_r, c.saved_alpha), tmp.file("adapter"));
  AdapterOptions run_options = Options(c.run, c.run_r, c.run_alpha);
  run_options.tau_learnable = c.run == AdapterMethod::kD2Lora;  // takes the saved tau
  TinyNet run = FreshRun(run_options);
  ASSERT_GT(MaxDifference(EffectiveWeights(saved), EffectiveWeights(run)), 1e-2);  // not there by chance
  auto init = InitAdaptersFrom(*run, tmp.file("adapter"));
  ASSERT_TRUE(init.ok()) << init.status();
  EXPECT_EQ(init->modules, 4);
  EXPECT_EQ(init->fresh_modules, 0);
  EXPECT_EQ(init->saved_r, c.saved_r);
  EXPECT_LT(MaxDifference(EffectiveWeights(saved), EffectiveWeights(run)), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, InitKeepsFunctionTest,
    ::testing::Values(KeepsFunctionCase{AdapterMethod::kLora, AdapterMethod::kLora, 3, 3, 6, 6},
                      KeepsFunctionCase{AdapterMethod::kLora, AdapterMethod::kLora, 3, 3, 6, 16},
                      KeepsFunctionCase{AdapterMethod::kLora, AdapterMethod::kLora, 2, 5, 4, 10},
                      KeepsFunctionCase{AdapterMethod::kLora, AdapterMethod::kDora, 3, 4, 6, 8},
                      KeepsFunctionCase{AdapterMethod::kDora, AdapterMethod::kDora, 3, 3, 6, 3},
                      KeepsFunctionCase{AdapterMethod::kD2Lora, AdapterMethod::kD2Lora, 3, 4, 6, 12}));

TEST(AdapterInitTest, LoraStartsD2LorasPositiveBranch) {
  TempDir tmp;
  TinyNet saved = SaveTrained(Options(AdapterMethod::kLora, 3, 6), tmp.file("out/adapter"));
  TinyNet run = FreshRun(Options(AdapterMethod::kD2Lora, 3, 12));
  const auto before = Parameters(run);
  // An output directory names its adapter/.
  auto init = InitAdaptersFrom(*run, tmp.file("out"));
  ASSERT_TRUE(init.ok()) << init.status();
  EXPECT_EQ(init->dir, tmp.file("out/adapter"));
  EXPECT_EQ(init->saved_method, AdapterMethod::kLora);
  ASSERT_EQ(init->notes.size(), 1u);
  EXPECT_TRUE(absl::StrContains(init->notes[0], "negative branch starts fresh")) << init->notes[0];
  const auto saved_params = Parameters(saved);
  const auto after = Parameters(run);
  const std::string q = "model.layers.0.q_proj.adapter.";
  // B+ s_run = B s_saved (s 12/3 vs 6/3): B+ is half the saved B.
  EXPECT_TRUE(torch::allclose(after.at(q + "lora_A"), saved_params.at(q + "lora_A")));
  EXPECT_TRUE(torch::allclose(after.at(q + "lora_B"), saved_params.at(q + "lora_B") * 0.5));
  EXPECT_TRUE(torch::equal(after.at(q + "lora_A_neg"), before.at(q + "lora_A_neg")));
  EXPECT_EQ(after.at(q + "lora_B_neg").abs().max().item<double>(), 0.0);
}

TEST(AdapterInitTest, DoraStartsLoraWithoutItsMagnitude) {
  TempDir tmp;
  SaveTrained(Options(AdapterMethod::kDora), tmp.file("adapter"));
  TinyNet run = FreshRun(Options(AdapterMethod::kLora));
  auto init = InitAdaptersFrom(*run, tmp.file("adapter"));
  ASSERT_TRUE(init.ok()) << init.status();
  ASSERT_EQ(init->notes.size(), 1u);
  EXPECT_TRUE(absl::StrContains(init->notes[0], "magnitude vector is left out")) << init->notes[0];
}

TEST(AdapterInitTest, FixedTauIsTheRunsAndTheDifferenceIsNoted) {
  TempDir tmp;
  AdapterOptions saved_options = Options(AdapterMethod::kD2Lora);
  saved_options.tau_learnable = true;  // RandomizeAdapter sets tau = softplus(0.3) ~ 0.854
  SaveTrained(saved_options, tmp.file("adapter"));
  TinyNet run = FreshRun(Options(AdapterMethod::kD2Lora));  // fixed tau 0.5
  auto init = InitAdaptersFrom(*run, tmp.file("adapter"));
  ASSERT_TRUE(init.ok()) << init.status();
  ASSERT_EQ(init->notes.size(), 1u);
  EXPECT_TRUE(absl::StrContains(init->notes[0], "tau is fixed at this run's adapter.tau_init = 0.5")) << init->notes[0];
  for (auto& [path, linear] : LinearLayers(*run)) {
    if (!linear->adapter()) continue;
    for (const auto& [name, t] : linear->adapter()->ExportTensors()) {
      if (name == "d2lora_tau") {
        EXPECT_DOUBLE_EQ(t.item<double>(), 0.5) << path;
      }
    }
  }
}

TEST(AdapterInitTest, ModulesBeyondTheSavedOnesStartFresh) {
  TempDir tmp;
  AdapterOptions saved_options = Options(AdapterMethod::kLora);
  saved_options.target_modules = {"q_proj"};
  SaveTrained(saved_options, tmp.file("adapter"));
  TinyNet run = FreshRun(Options(AdapterMethod::kLora));
  auto init = InitAdaptersFrom(*run, tmp.file("adapter"));
  ASSERT_TRUE(init.ok()) << init.status();
  EXPECT_EQ(init->modules, 2);
  EXPECT_EQ(init->fresh_modules, 2);
  EXPECT_EQ(ToJson(*init)["fresh_modules"], 2);
}

// Each refusal names what is wrong and leaves the run's adapters as they were.
struct RefusalCase {
  const char* name;
  AdapterMethod saved, run;
  int64_t saved_r, run_r;
  std::vector<std::string> saved_targets, run_targets;
  const char* expected;
};

class InitRefusalTest : public ::testing::TestWithParam<RefusalCase> {};

TEST_P(InitRefusalTest, NamesTheProblemAndChangesNothing) {
  const RefusalCase c = GetParam();
  TempDir tmp;
  AdapterOptions saved_options = Options(c.saved, c.saved_r);
  saved_options.target_modules = c.saved_targets;
  SaveTrained(saved_options, tmp.file("adapter"));
  AdapterOptions run_options = Options(c.run, c.run_r);
  run_options.target_modules = c.run_targets;
  TinyNet run = FreshRun(run_options);
  const auto before = Parameters(run);
  auto init = InitAdaptersFrom(*run, tmp.file("adapter"));
  ASSERT_FALSE(init.ok());
  EXPECT_TRUE(absl::StartsWith(init.status().message(), "init.adapter " + tmp.file("adapter") + ": "))
      << init.status();
  EXPECT_TRUE(absl::StrContains(init.status().message(), c.expected)) << init.status();
  for (const auto& [name, t] : Parameters(run)) EXPECT_TRUE(torch::equal(t, before.at(name))) << name;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, InitRefusalTest,
    ::testing::Values(
        RefusalCase{"D2LoraIntoLora", AdapterMethod::kD2Lora, AdapterMethod::kLora, 3, 3, {"q_proj"}, {"q_proj"},
                    "a d2lora adapter cannot start a lora run"},
        RefusalCase{"RankShrinks", AdapterMethod::kLora, AdapterMethod::kLora, 4, 2, {"q_proj"}, {"q_proj"},
                    "rank 4 is larger than adapter.r = 2"},
        RefusalCase{"ModuleNotAdapted", AdapterMethod::kLora, AdapterMethod::kLora, 3, 3, {"q_proj", "up_proj"},
                    {"q_proj"}, "it adapts model.layers.0.up_proj, which this run does not adapt"}),
    [](const ::testing::TestParamInfo<RefusalCase>& info) { return std::string(info.param.name); });

TEST(AdapterInitTest, ANonAdapterDirectoryIsNamed) {
  TempDir tmp;
  std::filesystem::create_directories(tmp.file("empty"));
  TinyNet run = FreshRun(Options(AdapterMethod::kLora));
  auto init = InitAdaptersFrom(*run, tmp.file("empty"));
  ASSERT_FALSE(init.ok());
  EXPECT_EQ(init.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(init.status().message(), tmp.file("empty/adapter"))) << init.status();
}

TEST(AdapterInitTest, AShapeFromAnotherModelIsNamed) {
  TempDir tmp;
  {
    TinyNet other(8, 2);  // hidden size 8, not 6
    ASSERT_TRUE(InjectAdapters(*other, Options(AdapterMethod::kLora)).ok());
    ASSERT_TRUE(SaveAdapter(*other, Options(AdapterMethod::kLora), tmp.file("adapter"), "").ok());
  }
  TinyNet run = FreshRun(Options(AdapterMethod::kLora));
  auto init = InitAdaptersFrom(*run, tmp.file("adapter"));
  ASSERT_FALSE(init.ok());
  EXPECT_TRUE(absl::StrContains(init.status().message(), "do not fit this layer")) << init.status();
}

}  // namespace
}  // namespace d2lora::engine
