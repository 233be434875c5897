#include "common/model/memory_plan.h"

#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "tests/worker/engine/model/tiny_model.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/tasks/init_model.h"

namespace d2lora::model {
namespace {

spec::JobSpec SpecFor(spec::TrainingMethod method, std::vector<std::string> targets) {
  spec::JobSpec s;
  s.name = "plan";
  s.model = "/m";
  s.data.train = "/t.jsonl";
  s.method = method;
  s.adapter = spec::DefaultSpecAdapterOptions();
  s.adapter.method = method == spec::TrainingMethod::kLora   ? spec::AdapterMethod::kLora
                     : method == spec::TrainingMethod::kDora ? spec::AdapterMethod::kDora
                                                             : spec::AdapterMethod::kD2Lora;
  if (method == spec::TrainingMethod::kDora) s.adapter.norm_grad = spec::NormGrad::kDetached;
  s.adapter.r = 4;
  s.adapter.target_modules = std::move(targets);
  s.data.max_seq_len = 128;
  s.train.micro_batch_size = 4;
  s.train.batch_size = 4;
  return s;
}

// The plan's parameter counts are the engine's: the model built from the same
// config, adapters injected from the same spec, counted by CountParameters.
TEST(MemoryPlanTest, CountsTheParametersTheEngineBuilds) {
  struct Case {
    nlohmann::json config;
    spec::TrainingMethod method;
    std::vector<std::string> targets;
  };
  nlohmann::json qwen = engine::testing::TinyQwen2Json();  // q/k/v biases, untied head
  nlohmann::json tied = engine::testing::TinyLlamaJson();
  tied["tie_word_embeddings"] = true;
  const std::vector<Case> cases = {
      {engine::testing::TinyLlamaJson(), spec::TrainingMethod::kD2Lora, {"all-linear"}},
      {engine::testing::TinyLlamaJson(), spec::TrainingMethod::kLora, {"q_proj", "v_proj"}},
      {qwen, spec::TrainingMethod::kDora, {"o_proj", "down_proj"}},
      {qwen, spec::TrainingMethod::kD2Lora, {"lm_head", "gate_proj"}},
      {tied, spec::TrainingMethod::kLora, {R"(model\.layers\.[01]\.self_attn\.k_proj)"}},
      {tied, spec::TrainingMethod::kFull, {"all-linear"}},
  };
  for (const Case& c : cases) {
    const ModelConfig config = engine::testing::ConfigFrom(c.config);
    spec::JobSpec s = SpecFor(c.method, c.targets);
    auto plan = PlanMemory(config, s);
    ASSERT_TRUE(plan.ok()) << plan.status();
    engine::CausalLM m = engine::testing::RandomTinyModel(config, 1);
    const int64_t base = engine::CountParameters(*m).total;
    if (c.method == spec::TrainingMethod::kFull) {
      EXPECT_EQ(plan->trainable, base);
    } else {
      auto injected = engine::InjectAdapters(*m, s.adapter);
      ASSERT_TRUE(injected.ok()) << injected.status();
      const engine::ParameterCount after = engine::CountParameters(*m);
      EXPECT_EQ(plan->trainable, after.trainable) << c.targets[0];
    }
    EXPECT_EQ(plan->parameters, base) << c.config.dump();
    EXPECT_EQ(plan->weights, 4 * base);
    EXPECT_EQ(plan->optimizer, 8 * plan->trainable);
    EXPECT_EQ(plan->peak, plan->runtime + std::max(plan->load, plan->state() + std::max({plan->step(),
                                                                                          plan->gradients + plan->gradient_bucket,
                                                                                          plan->gradients + plan->evaluation,
                                                                                          plan->gradients + plan->merge_gate})));
  }
}

TEST(MemoryPlanTest, TermsFollowTheSpec) {
  auto preset = engine::ModelPreset("small");
  ASSERT_TRUE(preset.ok());
  const spec::JobSpec d2 = SpecFor(spec::TrainingMethod::kD2Lora, {"all-linear"});
  auto p = PlanMemory(*preset, d2);
  ASSERT_TRUE(p.ok());

  // Activations grow with the tokens of a micro-batch (attention's T x T part faster).
  spec::JobSpec longer = d2;
  longer.data.max_seq_len = 256;
  auto pl = PlanMemory(*preset, longer);
  EXPECT_GT(pl->activations, 2 * p->activations);
  spec::JobSpec wider = d2;
  wider.train.micro_batch_size = 8;
  wider.train.batch_size = 8;
  auto pw = PlanMemory(*preset, wider);
  spec::JobSpec wider3 = d2;
  wider3.train.micro_batch_size = 12;
  wider3.train.batch_size = 12;
  auto pw3 = PlanMemory(*preset, wider3);
  // Linear in the micro-batch, plus what does not depend on it (D2-LoRA's stacked adapter copies).
  EXPECT_EQ(pw3->activations - pw->activations, pw->activations - p->activations);
  EXPECT_NEAR(static_cast<double>(pw->activations) / static_cast<double>(p->activations), 2.0, 0.02);

  // D2-LoRA keeps each layer's scaled output for the row norms' gradient; LoRA
  // does not, and neither does D2-LoRA with the norm detached.
  auto lora = PlanMemory(*preset, SpecFor(spec::TrainingMethod::kLora, {"all-linear"}));
  spec::JobSpec detached = d2;
  detached.adapter.norm_grad = spec::NormGrad::kDetached;
  auto pd = PlanMemory(*preset, detached);
  EXPECT_GT(p->activations, pd->activations);
  EXPECT_GT(pd->activations, lora->activations);  // two branches: twice x A^T, and the stacked copies
  EXPECT_EQ(p->trainable, 2 * lora->trainable);
  // The paper's residual (+ dW after the projection) keeps nothing more: the
  // epilogue saves the layer's output itself, not a copy before the residual.
  spec::JobSpec no_residual = d2;
  no_residual.adapter.residual = false;
  EXPECT_EQ(PlanMemory(*preset, no_residual)->activations, p->activations);

  // Activation checkpointing keeps each layer's input only.
  spec::JobSpec ckpt = d2;
  ckpt.train.activation_checkpointing = true;
  auto pc = PlanMemory(*preset, ckpt);
  EXPECT_LT(pc->activations, p->activations / 3);

  // Accumulating micro-batches keeps the gradients through the next forward.
  spec::JobSpec accum = d2;
  accum.train.batch_size = 16;
  auto pa = PlanMemory(*preset, accum);
  EXPECT_TRUE(pa->accumulates);
  EXPECT_EQ(pa->step(), p->step() + p->gradients);

  // The guard's copy; bf16 halves the weights; data by tokens or bounded by bytes.
  spec::JobSpec guarded = d2;
  guarded.guard.spike_factor = 3;
  EXPECT_EQ(PlanMemory(*preset, guarded)->guard, p->trainable * 4 + p->optimizer);
  spec::JobSpec bf16 = d2;
  bf16.train.dtype = spec::ComputeDtype::kBf16;
  EXPECT_EQ(PlanMemory(*preset, bf16)->weights * 2, p->weights);
  MemoryPlanInputs tokens;
  tokens.data_tokens = 1000;
  tokens.data_examples = 10;
  auto pt = PlanMemory(*preset, d2, tokens);
  EXPECT_EQ(pt->data, 1000 * 9 + 10 * 96);
  EXPECT_FALSE(pt->data_is_bound);
  MemoryPlanInputs bytes;
  bytes.data_file_bytes = 5000;
  auto pb = PlanMemory(*preset, d2, bytes);
  EXPECT_EQ(pb->data, 5000 * 9);
  EXPECT_TRUE(pb->data_is_bound);

  // The merge gate only when the job merges, and larger on longer sequences.
  EXPECT_GT(p->merge_gate, 0);
  EXPECT_GT(pl->merge_gate, p->merge_gate * 3 / 2);
  spec::JobSpec no_merge = d2;
  no_merge.output.merge = false;
  EXPECT_EQ(PlanMemory(*preset, no_merge)->merge_gate, 0);

  // Full fine-tuning: every parameter trains, with gradients and moments.
  auto full = PlanMemory(*preset, SpecFor(spec::TrainingMethod::kFull, {"all-linear"}));
  EXPECT_EQ(full->trainable, full->parameters);
  EXPECT_EQ(full->gradients, full->weights);
  EXPECT_GT(full->peak, p->peak);

  const std::string text = p->Format();
  for (const char* word : {"weights", "activations", "optimizer", "peak", "runtime"}) {
    EXPECT_NE(text.find(word), std::string::npos) << word << "\n" << text;
  }
  EXPECT_EQ(p->ToJson()["peak_bytes"].get<int64_t>(), p->peak);
}

TEST(MemoryPlanTest, ATargetNothingMatchesIsAnError) {
  auto preset = engine::ModelPreset("tiny");
  ASSERT_TRUE(preset.ok());
  auto p = PlanMemory(*preset, SpecFor(spec::TrainingMethod::kLora, {"attention"}));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("adapter.target_modules"), std::string::npos) << p.status();
  auto bad = PlanMemory(*preset, SpecFor(spec::TrainingMethod::kLora, {"q_proj(("}));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("invalid regex"), std::string::npos) << bad.status();
}

TEST(MemoryPlanTest, ASizeBeyondCountingIsAnErrorNotAWrappedNumber) {
  auto preset = engine::ModelPreset("tiny");
  ASSERT_TRUE(preset.ok());
  ModelConfig huge = *preset;
  huge.vocab_size = int64_t{1} << 40;
  huge.hidden_size = int64_t{1} << 30;
  auto p = PlanMemory(huge, SpecFor(spec::TrainingMethod::kLora, {"q_proj"}));
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("more than an exabyte"), std::string::npos) << p.status();
  spec::JobSpec s = SpecFor(spec::TrainingMethod::kLora, {"q_proj"});
  s.data.max_seq_len = 1 << 20;
  s.train.micro_batch_size = 1 << 20;
  EXPECT_FALSE(PlanMemory(*preset, s).ok());
}

TEST(MemoryPlanTest, LocalBytesSumsAFileOrAFoldersMatchingFiles) {
  ::d2lora::testing::TempDir dir;
  ::d2lora::testing::WriteFile(dir.file("a.safetensors"), std::string(10, 'x'));
  ::d2lora::testing::WriteFile(dir.file("b.safetensors"), std::string(20, 'x'));
  ::d2lora::testing::WriteFile(dir.file("config.json"), std::string(5, 'x'));
  std::filesystem::create_directories(dir.file("sub"));
  ::d2lora::testing::WriteFile(dir.file("sub/c.safetensors"), std::string(40, 'x'));  // not in the folder itself
  EXPECT_EQ(LocalBytes(dir.path(), ".safetensors"), 30);
  EXPECT_EQ(LocalBytes(dir.path()), 35);
  EXPECT_EQ(LocalBytes(dir.file("config.json")), 5);
  EXPECT_EQ(LocalBytes(dir.file("missing")), 0);
}

TEST(MemoryPlanTest, ReadsTheProcessMemory) {
  EXPECT_GT(ResidentBytes(), 0);
  EXPECT_GE(PeakResidentBytes(), ResidentBytes());
}

}  // namespace
}  // namespace d2lora::model
