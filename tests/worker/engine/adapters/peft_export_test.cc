#include "worker/engine/adapters/peft_export.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>

#include <nlohmann/json.hpp>

#include "tests/support/test_support.h"
#include "tests/worker/engine/adapters/adapter_test_util.h"
#include "worker/engine/adapters/adapter_io.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/adapters/linear.h"
#include "worker/engine/formats/safetensors.h"

namespace d2lora::engine {
namespace {

using d2lora::testing::ReadFile;
using d2lora::testing::TempDir;
using testing::ReferenceD2LoraWeight;
using testing::TinyNet;

struct ExportCase {
  double lambda;
  bool residual;
  bool rslora;
};

AdapterOptions D2Options(const ExportCase& c) {
  AdapterOptions o;
  o.method = AdapterMethod::kD2Lora;
  o.r = 3;
  o.alpha = 7;
  o.projection_strength = c.lambda;
  o.residual = c.residual;
  o.use_rslora = c.rslora;
  o.target_modules = {"q_proj", "v_proj", "up_proj"};
  return o;
}

// A TinyNet hosting randomised adapters (fixed seed: the same net each call).
TinyNet Trained(const AdapterOptions& o) {
  TinyNet net(8, 2);
  EXPECT_TRUE(InjectAdapters(*net, o).ok());
  torch::manual_seed(17);
  for (auto& [path, linear] : LinearLayers(*net)) {
    if (linear->adapter()) testing::RandomizeAdapter(*linear->adapter(), 0.4);
  }
  return net;
}

std::map<std::string, torch::Tensor> MergedWeights(torch::nn::Module& net) {
  std::map<std::string, torch::Tensor> out;
  for (auto& [path, linear] : LinearLayers(net)) {
    if (linear->adapter()) out[path] = linear->adapter()->MergeWeight().weight;
  }
  return out;
}

class PeftDoraExportTest : public ::testing::TestWithParam<ExportCase> {};

// The export, loaded by the engine as an ordinary DoRA adapter, merges to the
// same weights (relative error <= 1e-6, fp32) and gives the same logits.
TEST_P(PeftDoraExportTest, LoadsAsDoraWithTheSameWeightsAndLogits) {
  TempDir tmp;
  const AdapterOptions o = D2Options(GetParam());
  TinyNet d2 = Trained(o);
  D2_ASSERT_OK(SavePeftAdapter(*d2, o, PeftFormat::kDora, tmp.file("peft"), "models/tiny"));

  TinyNet dora(8, 2);  // same base weights
  auto loaded = LoadAdapter(*dora, tmp.file("peft"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->method, AdapterMethod::kDora);
  EXPECT_EQ(loaded->r, 2 * o.r);
  EXPECT_NEAR(loaded->scaling(), o.scaling(), 1e-12);

  auto want = MergedWeights(*d2);
  auto got = MergedWeights(*dora);
  ASSERT_EQ(want.size(), 2u * 3);
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [path, w] : want) {
    const double rel = ((got[path] - w).norm() / w.norm()).item<double>();
    EXPECT_LE(rel, 1e-6) << path;
  }
  torch::Tensor x = torch::randn({3, 8});
  torch::NoGradGuard ng;
  d2->eval();
  dora->eval();
  torch::Tensor a = d2->forward(x), b = dora->forward(x);
  EXPECT_LE(((a - b).abs().max() / a.abs().max()).item<double>(), 1e-5);  // fp32 rounding of two forms
}

// The export against PEFT's DoRA formula written out here from the files
// alone (peft/tuners/lora/layer.py: scaling = lora_alpha / r, or / sqrt(r)
// with use_rslora; dora.py: W = m / ||W0 + s B A|| ⊙ (W0 + s B A)), compared
// with D2-LoRA's W_hat from its raw parameters (fp64).
TEST_P(PeftDoraExportTest, FilesFollowPeftsDoraFormula) {
  TempDir tmp;
  const AdapterOptions o = D2Options(GetParam());
  TinyNet d2 = Trained(o);
  D2_ASSERT_OK(SavePeftAdapter(*d2, o, PeftFormat::kDora, tmp.file("peft"), ""));
  const nlohmann::json config = nlohmann::json::parse(ReadFile(tmp.file("peft/adapter_config.json")));
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_EQ(config["use_dora"], true);
  EXPECT_EQ(config["use_rslora"], o.use_rslora);
  EXPECT_EQ(config["target_modules"],
            nlohmann::json({"model.layers.0.q_proj", "model.layers.0.v_proj", "model.layers.0.up_proj",
                            "model.layers.1.q_proj", "model.layers.1.v_proj", "model.layers.1.up_proj"}));
  const double r = config["r"].get<double>();
  const double alpha = config["lora_alpha"].get<double>();
  const double s = config["use_rslora"].get<bool>() ? alpha / std::sqrt(r) : alpha / r;
  auto file = SafetensorsFile::Open(tmp.file("peft/adapter_model.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  auto get = [&](const std::string& key) {
    auto t = (*file)->Get(key);
    EXPECT_TRUE(t.ok()) << key << ": " << t.status();
    return t.ok() ? t->to(torch::kFloat64) : torch::Tensor();
  };
  int checked = 0;
  for (auto& [path, linear] : LinearLayers(*d2)) {
    if (!linear->adapter()) continue;
    const std::string k = "base_model.model." + path + ".";
    torch::Tensor A = get(k + "lora_A.weight"), B = get(k + "lora_B.weight"), m = get(k + "lora_magnitude_vector");
    ASSERT_TRUE(A.defined() && B.defined() && m.defined());
    EXPECT_EQ(A.size(0), r);
    torch::Tensor w0 = linear->weight().to(torch::kFloat64);
    torch::Tensor w = w0 + s * torch::matmul(B, A);
    torch::Tensor peft = (m / w.pow(2).sum(1).sqrt()).unsqueeze(1) * w;
    torch::Tensor ours = ReferenceD2LoraWeight(*std::dynamic_pointer_cast<D2LoraLinearImpl>(linear->adapter()));
    const double rel = ((peft - ours).norm() / ours.norm()).item<double>();
    EXPECT_LE(rel, 1e-6) << path;
    ++checked;
  }
  EXPECT_EQ(checked, 6);
}

INSTANTIATE_TEST_SUITE_P(Forms, PeftDoraExportTest,
                         ::testing::Values(ExportCase{1.0, true, false}, ExportCase{0.5, true, true},
                                           ExportCase{1.0, false, false}, ExportCase{0.0, true, false}));

TEST(PeftLoraExport, RefusedWhereTheUpdateIsNotLowRank) {
  TempDir tmp;
  const AdapterOptions o = D2Options({1.0, true, false});
  TinyNet d2 = Trained(o);
  absl::Status s = SavePeftAdapter(*d2, o, PeftFormat::kLora, tmp.file("peft"), "");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(s.message()).find("model.layers.0.q_proj: peft-lora cannot hold this D2-LoRA adapter"),
            std::string::npos)
      << s;
  EXPECT_NE(std::string(s.message()).find("export it as peft-dora"), std::string::npos) << s;
  EXPECT_FALSE(std::filesystem::exists(tmp.file("peft")));

  AdapterOptions dora_options = o;
  dora_options.method = AdapterMethod::kDora;
  TinyNet dora = Trained(dora_options);
  s = SavePeftAdapter(*dora, dora_options, PeftFormat::kLora, tmp.file("peft"), "");
  EXPECT_NE(std::string(s.message()).find("peft-lora cannot hold a DoRA adapter"), std::string::npos) << s;
}

// lambda = 0 is exactly low-rank: W0 + dW, or W0 + 2 dW with the residual.
TEST(PeftLoraExport, ExactWithoutTheProjection) {
  for (bool residual : {false, true}) {
    TempDir tmp;
    const AdapterOptions o = D2Options({0.0, residual, false});
    TinyNet d2 = Trained(o);
    D2_ASSERT_OK(SavePeftAdapter(*d2, o, PeftFormat::kLora, tmp.file("peft"), ""));
    TinyNet lora(8, 2);
    auto loaded = LoadAdapter(*lora, tmp.file("peft"));
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(loaded->method, AdapterMethod::kLora);
    auto want = MergedWeights(*d2);
    auto got = MergedWeights(*lora);
    for (const auto& [path, w] : want) {
      EXPECT_LE(((got[path] - w).norm() / w.norm()).item<double>(), 1e-6) << path << " residual " << residual;
    }
  }
}

// LoRA exports as it is; DoRA as it is.
TEST(PeftExport, LoraAndDoraExportUnchanged) {
  for (AdapterMethod method : {AdapterMethod::kLora, AdapterMethod::kDora}) {
    TempDir tmp;
    AdapterOptions o = D2Options({1.0, true, false});
    o.method = method;
    TinyNet net = Trained(o);
    D2_ASSERT_OK(SaveAdapter(*net, o, tmp.file("native"), ""));
    const PeftFormat format = method == AdapterMethod::kLora ? PeftFormat::kLora : PeftFormat::kDora;
    D2_ASSERT_OK(SavePeftAdapter(*net, o, format, tmp.file("peft"), ""));
    auto native = SafetensorsFile::Open(tmp.file("native/adapter_model.safetensors"));
    auto peft = SafetensorsFile::Open(tmp.file("peft/adapter_model.safetensors"));
    ASSERT_TRUE(native.ok() && peft.ok());
    ASSERT_EQ((*native)->entries().size(), (*peft)->entries().size());
    for (const SafetensorsEntry& e : (*native)->entries()) {
      auto a = (*native)->Get(e.name);
      auto b = (*peft)->Get(e.name);
      ASSERT_TRUE(a.ok() && b.ok()) << e.name;
      EXPECT_TRUE(torch::equal(*a, *b)) << e.name;
    }
    const nlohmann::json config = nlohmann::json::parse(ReadFile(tmp.file("peft/adapter_config.json")));
    EXPECT_EQ(config["r"], o.r);
    EXPECT_EQ(config["lora_alpha"], o.alpha);
  }
}

}  // namespace
}  // namespace d2lora::engine
