#include "worker/engine/adapters/adapter_io.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "tests/support/test_support.h"
#include "tests/worker/engine/adapters/adapter_test_util.h"
#include "worker/engine/adapters/adapted_linear.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/adapters/linear.h"
#include "worker/engine/formats/safetensors.h"

namespace d2lora::engine {
namespace {

using d2lora::testing::ReadFile;
using d2lora::testing::TempDir;
using d2lora::testing::WriteFile;
using testing::TinyNet;

AdapterOptions Options(AdapterMethod method, int64_t r = 3, double alpha = 6) {
  return testing::SmallAdapterOptions(method, r, alpha);
}

TinyNet SaveTrained(const AdapterOptions& o, const std::string& dir) { return testing::SaveTrainedAdapter(o, dir); }

std::string Message(const absl::Status& s) { return std::string(s.message()); }

class AdapterIoTest : public ::testing::TestWithParam<AdapterMethod> {};

TEST_P(AdapterIoTest, SaveLoadRoundTripIsBitExact) {
  TempDir tmp;
  const std::string dir = tmp.file("adapter");
  TinyNet trained = SaveTrained(Options(GetParam()), dir);
  TinyNet fresh(6, 2);  // same seed: the same base weights
  auto loaded = LoadAdapter(*fresh, dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->method, GetParam());
  EXPECT_EQ(loaded->r, 3);
  EXPECT_EQ(loaded->alpha, 6);
  auto a = trained->named_parameters(), b = fresh->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& p : a) {
    ASSERT_NE(b.find(p.key()), nullptr) << p.key();
    if (absl::EndsWith(p.key(), "tau_raw")) {
      // The file holds the effective tau; softplus is many-to-one in floating
      // point, so the raw parameter may differ while tau itself is identical.
      EXPECT_TRUE(torch::equal(torch::softplus(p.value()), torch::softplus(b[p.key()]))) << p.key();
    } else {
      EXPECT_TRUE(torch::equal(p.value(), b[p.key()])) << p.key();
    }
  }
  // Saving the loaded adapter again gives the same bytes.
  D2_ASSERT_OK(SaveAdapter(*fresh, *loaded, tmp.file("again"), "models/tiny"));
  EXPECT_EQ(ReadFile(dir + "/adapter_model.safetensors"), ReadFile(tmp.file("again/adapter_model.safetensors")));
  trained->eval();
  fresh->eval();
  torch::Tensor x = torch::randn({2, 6});
  EXPECT_TRUE(torch::equal(trained->forward(x), fresh->forward(x)));
}

// Patterns that mix a plain name and a regex used to be written as one
// full-match regex, under which the plain "q_proj" no longer matched
// "model.layers.0.q_proj": the saved config named other modules than the
// adapted ones. It now lists the adapted paths, and a load adapts exactly those.
TEST_P(AdapterIoTest, MixedPatternsSaveTheAdaptedModulesByPath) {
  TempDir tmp;
  AdapterOptions o = Options(GetParam());
  o.target_modules = {"q_proj", R"(model\.layers\.1\.up_.*)"};
  TinyNet trained = SaveTrained(o, tmp.file("adapter"));
  auto config = nlohmann::json::parse(ReadFile(tmp.file("adapter/adapter_config.json")));
  EXPECT_EQ(config["target_modules"],
            nlohmann::json::array({"model.layers.0.q_proj", "model.layers.1.q_proj", "model.layers.1.up_proj"}));
  TinyNet fresh(6, 2);
  auto loaded = LoadAdapter(*fresh, tmp.file("adapter"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  std::vector<std::string> adapted;
  for (auto& [path, linear] : LinearLayers(*fresh)) {
    if (linear->adapter()) adapted.push_back(path);
  }
  EXPECT_EQ(adapted, (std::vector<std::string>{"model.layers.0.q_proj", "model.layers.1.q_proj",
                                                "model.layers.1.up_proj"}));
  trained->eval();
  fresh->eval();
  torch::Tensor x = torch::randn({2, 6});
  EXPECT_TRUE(torch::equal(trained->forward(x), fresh->forward(x)));
}

TEST_P(AdapterIoTest, PeftKeysAndConfig) {
  TempDir tmp;
  const std::string dir = tmp.file("adapter");
  SaveTrained(Options(GetParam()), dir);
  auto file = SafetensorsFile::Open(dir + "/adapter_model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  const std::string m = "base_model.model.model.layers.1.up_proj.";
  auto a = (*file)->Find(m + "lora_A.weight");
  auto b = (*file)->Find(m + "lora_B.weight");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{3, 6}));
  EXPECT_EQ(b->shape, (std::vector<int64_t>{12, 3}));
  auto config = nlohmann::json::parse(ReadFile(dir + "/adapter_config.json"));
  EXPECT_EQ(config["r"], 3);
  EXPECT_EQ(config["lora_alpha"], 6.0);
  // The adapted modules by path, not the patterns that chose them.
  EXPECT_EQ(config["target_modules"],
            nlohmann::json::array({"model.layers.0.q_proj", "model.layers.0.up_proj", "model.layers.1.q_proj",
                                   "model.layers.1.up_proj"}));
  EXPECT_EQ(config["base_model_name_or_path"], "models/tiny");
  switch (GetParam()) {
    case AdapterMethod::kLora:
      EXPECT_EQ(config["peft_type"], "LORA");
      EXPECT_EQ(config["use_dora"], false);
      EXPECT_EQ((*file)->entries().size(), 4u * 2);
      break;
    case AdapterMethod::kDora: {
      EXPECT_EQ(config["peft_type"], "LORA");
      EXPECT_EQ(config["use_dora"], true);
      auto mag = (*file)->Find(m + "lora_magnitude_vector");
      ASSERT_TRUE(mag);
      EXPECT_EQ(mag->shape, (std::vector<int64_t>{12}));
      break;
    }
    case AdapterMethod::kD2Lora: {
      EXPECT_EQ(config["peft_type"], "D2LORA");
      EXPECT_EQ(config["tau_learnable"], false);
      EXPECT_EQ(config["residual"], true);
      EXPECT_EQ(config["projection_strength"], 1.0);
      EXPECT_EQ(config["norm_grad"], "full");
      EXPECT_TRUE((*file)->Find(m + "lora_A_neg.weight"));
      EXPECT_TRUE((*file)->Find(m + "lora_B_neg.weight"));
      auto tau = (*file)->Find(m + "d2lora_tau");
      ASSERT_TRUE(tau);
      EXPECT_EQ(tau->shape, (std::vector<int64_t>{1}));
      // tau is fixed at tau_init by default.
      auto t = (*file)->Get(m + "d2lora_tau");
      ASSERT_TRUE(t.ok());
      EXPECT_EQ(t->item<double>(), 0.5);
      break;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllMethods, AdapterIoTest,
                         ::testing::Values(AdapterMethod::kD2Lora, AdapterMethod::kLora, AdapterMethod::kDora));

// Rewrites the adapter's weights through `edit` and returns LoadAdapter's error.
absl::Status LoadEdited(const std::function<void(NamedTensors&)>& edit) {
  TempDir tmp;
  const std::string dir = tmp.file("adapter");
  SaveTrained(Options(AdapterMethod::kD2Lora), dir);
  const std::string weights = dir + "/adapter_model.safetensors";
  NamedTensors tensors;
  {
    auto file = SafetensorsFile::Open(weights);
    EXPECT_TRUE(file.ok());
    for (const auto& e : (*file)->entries()) tensors.emplace_back(e.name, (*file)->Get(e.name)->clone());
  }
  edit(tensors);
  EXPECT_TRUE(WriteSafetensors(weights, tensors).ok());
  TinyNet fresh(6, 2);
  std::vector<bool> trainable;
  for (const auto& p : fresh->parameters()) trainable.push_back(p.requires_grad());
  absl::Status s = LoadAdapter(*fresh, dir).status();
  if (!s.ok()) {  // a refused adapter leaves the model exactly as it was
    for (auto& [path, linear] : LinearLayers(*fresh)) EXPECT_FALSE(linear->adapter()) << path;
    size_t i = 0;
    for (const auto& p : fresh->parameters()) EXPECT_EQ(p.requires_grad(), trainable[i++]);
  }
  return s;
}

// The effective tau of a learnable tau is stored (softplus of the raw value).
TEST(AdapterIo, LearnableTauIsStoredAsTheEffectiveTau) {
  TempDir tmp;
  AdapterOptions o = Options(AdapterMethod::kD2Lora);
  o.tau_learnable = true;
  SaveTrained(o, tmp.file("adapter"));
  auto file = SafetensorsFile::Open(tmp.file("adapter/adapter_model.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  auto t = (*file)->Get("base_model.model.model.layers.0.q_proj.d2lora_tau");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_NEAR(t->item<double>(), std::log1p(std::exp(0.3)), 1e-6);  // RandomizeAdapter's raw 0.3
}

// A D2-LoRA adapter written before the paper's form (no "residual" key) loads
// as residual: false, the form it was trained in, and the loader says so.
TEST(AdapterIo, LegacyD2LoraConfigLoadsWithoutTheResidual) {
  TempDir tmp;
  const std::string dir = tmp.file("adapter");
  TinyNet trained = SaveTrained(Options(AdapterMethod::kD2Lora), dir);
  nlohmann::json config = nlohmann::json::parse(ReadFile(dir + "/adapter_config.json"));
  config.erase("residual");
  WriteFile(dir + "/adapter_config.json", config.dump());
  TinyNet fresh(6, 2);
  ::testing::internal::CaptureStderr();
  auto loaded = LoadAdapter(*fresh, dir);
  const std::string said = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->residual);
  EXPECT_NE(said.find("no \"residual\" key"), std::string::npos) << said;
  torch::Tensor x = torch::randn({2, 6});
  torch::NoGradGuard ng;
  fresh->eval();
  trained->eval();
  EXPECT_FALSE(torch::allclose(fresh->forward(x), trained->forward(x), 1e-4, 1e-4))
      << "the legacy adapter must run without the residual";
  // With the key, the same weights give the trained (residual) outputs.
  config["residual"] = true;
  WriteFile(dir + "/adapter_config.json", config.dump());
  TinyNet again(6, 2);
  ASSERT_TRUE(LoadAdapter(*again, dir).ok());
  again->eval();
  EXPECT_TRUE(torch::allclose(again->forward(x), trained->forward(x), 1e-6, 1e-6));
}

// PEFT's DoRA detaches ||W'||: a DoRA adapter_config.json loads that way.
TEST(AdapterIo, DoraLoadsWithTheNormDetached) {
  TempDir tmp;
  SaveTrained(Options(AdapterMethod::kDora), tmp.file("adapter"));
  auto o = ReadAdapterConfig(tmp.file("adapter"));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->norm_grad, NormGrad::kDetached);
}

TEST(AdapterIo, KeyNamingAnUnknownModuleIsRefused) {
  absl::Status s = LoadEdited([](NamedTensors& t) {
    t.emplace_back("base_model.model.model.layers.7.q_proj.lora_A.weight", torch::zeros({3, 6}));
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(Message(s).find("names module 'model.layers.7.q_proj', which is not a linear layer"), std::string::npos)
      << s;
  EXPECT_NE(Message(s).find("adapter_model.safetensors"), std::string::npos) << s;
}

TEST(AdapterIo, WrongShapeIsRefused) {
  absl::Status s = LoadEdited([](NamedTensors& t) {
    for (auto& [name, tensor] : t) {
      if (name == "base_model.model.model.layers.0.q_proj.lora_B.weight") tensor = torch::zeros({6, 4});
    }
  });
  EXPECT_NE(Message(s).find("model.layers.0.q_proj.lora_B.weight has shape [6, 4] but the model needs [6, 3]"),
            std::string::npos)
      << s;
}

TEST(AdapterIo, MissingKeyIsRefused) {
  absl::Status s = LoadEdited([](NamedTensors& t) {
    t.erase(std::remove_if(t.begin(), t.end(),
                           [](const auto& p) { return p.first == "base_model.model.model.layers.1.q_proj.d2lora_tau"; }),
            t.end());
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(Message(s).find("model.layers.1.q_proj.d2lora_tau is missing"), std::string::npos) << s;
}

TEST(AdapterIo, ForeignKeyIsRefused) {
  absl::Status s = LoadEdited([](NamedTensors& t) { t.emplace_back("model.layers.0.q_proj.weight", torch::zeros({1})); });
  EXPECT_NE(Message(s).find("key 'model.layers.0.q_proj.weight' does not start with 'base_model.model.'"),
            std::string::npos)
      << s;
}

TEST(AdapterIo, NegativeTauIsRefused) {
  absl::Status s = LoadEdited([](NamedTensors& t) {
    for (auto& [name, tensor] : t) {
      if (name.find("d2lora_tau") != std::string::npos) tensor = torch::full({1}, -1.0);
    }
  });
  EXPECT_NE(Message(s).find("d2lora_tau = -1: must be finite and >= 0"), std::string::npos) << s;
}

TEST(AdapterIo, ConfigErrorsNameTheFileAndField) {
  TempDir tmp;
  const std::string dir = tmp.file("adapter");
  SaveTrained(Options(AdapterMethod::kLora), dir);
  const std::string config = dir + "/adapter_config.json";
  struct Case {
    std::string json;
    std::string expect;
  } cases[] = {
      {"not json", "adapter_config.json: not a JSON object"},
      {R"({"r": 4})", "field 'peft_type' must be a string"},
      {R"({"peft_type": "IA3", "r": 4})", "field 'peft_type' is 'IA3'"},
      {R"({"peft_type": "LORA"})", "field 'r' must be an integer"},
      {R"({"peft_type": "LORA", "r": 4, "lora_alpha": "x"})", "field 'lora_alpha' must be a number"},
      {R"({"peft_type": "LORA", "r": 0})", "adapter.r = 0"},
      {R"({"peft_type": "D2LORA", "r": 4, "norm_grad": "half"})", "field 'norm_grad' unknown norm_grad 'half'"},
      {R"({"peft_type": "LORA", "r": 4, "target_modules": 5})", "field 'target_modules' must be a string or a list"},
  };
  for (const auto& c : cases) {
    WriteFile(config, c.json);
    TinyNet fresh(6, 2);
    absl::Status s = LoadAdapter(*fresh, dir).status();
    EXPECT_FALSE(s.ok()) << c.json;
    EXPECT_NE(Message(s).find(c.expect), std::string::npos) << c.json << " -> " << s;
    EXPECT_NE(Message(s).find(config), std::string::npos) << s;
  }
  TinyNet fresh(6, 2);
  absl::Status missing = LoadAdapter(*fresh, tmp.file("nowhere")).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(Message(missing).find("nowhere/adapter_config.json"), std::string::npos) << missing;
}

TEST(AdapterIo, NothingHalfWritten) {
  TempDir tmp;
  TinyNet net(6, 1);  // no adapter hosted: saving fails and leaves nothing
  absl::Status s = SaveAdapter(*net, Options(AdapterMethod::kLora), tmp.file("adapter"));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(std::filesystem::exists(tmp.file("adapter")));
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path()));
}

}  // namespace
}  // namespace d2lora::engine
