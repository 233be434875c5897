#include <sys/wait.h>

#include <cstdlib>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "bench/flop_count.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "worker/engine/tasks/init_model.h"

namespace d2lora::bench {
namespace {

using nlohmann::json;

// vocab 100, hidden 8, intermediate 16, 2 layers, 2 heads of 4, 1 KV head, untied.
// Per layer: q 8->8, k 8->4, v 8->4, o 8->8, gate 8->16, up 8->16, down 16->8:
// sum(in*out) = 576, sum(in+out) = 128; q, k, v: in*out 128, in 24, out 16.
model::ModelConfig HandConfig() {
  model::ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 100;
  c.hidden_size = 8;
  c.intermediate_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 4;
  c.tie_word_embeddings = false;
  return c;
}

// batch 2, seq 3: 6 tokens; r 2.
constexpr StepShape kShape{2, 3, 2, false};

TEST(FlopCountTest, SingleLayers) {
  // 6 tokens, 8 -> 4.
  FlopSplit frozen = BaseLinearFlops(6, 8, 4, /*trainable=*/false, /*input_grad=*/true);
  EXPECT_EQ(frozen.forward, 2 * 6 * 8 * 4);
  EXPECT_EQ(frozen.backward, 2 * 6 * 8 * 4);
  EXPECT_EQ(BaseLinearFlops(6, 8, 4, false, false).backward, 0);
  EXPECT_EQ(BaseLinearFlops(6, 8, 4, true, true).backward, 2 * 2 * 6 * 8 * 4);
  // QK^T and PV, 2 x 3 heads of 4, 5 positions, full square.
  FlopSplit att = AttentionFlops(2, 5, 3, 4);
  EXPECT_EQ(att.forward, 2 * (2.0 * 2 * 3 * 5 * 4 * 5));
  EXPECT_EQ(att.backward, 2 * att.forward);
  // LoRA r 2 on 8 -> 4 over 6 tokens: xA^T 2*6*8*2, (xA^T)B^T 2*6*2*4.
  FlopSplit lora = AdapterLinearFlops(StepMethod::kLora, 6, 8, 4, 2, true);
  EXPECT_EQ(lora.forward, 2 * 6 * 8 * 2 + 2 * 6 * 2 * 4);
  EXPECT_EQ(lora.backward, 2 * (2 * 6 * 2 * 4) + 2 * (2 * 6 * 8 * 2));
  EXPECT_EQ(AdapterLinearFlops(StepMethod::kLora, 6, 8, 4, 2, false).backward, 2 * (2 * 6 * 2 * 4) + 2 * 6 * 8 * 2);
  // D2-LoRA: rank 4 stacked, plus W0 A^T (2*4*8*4), A A^T (2*4*8*4), B (A A^T) (2*4*4*4).
  FlopSplit d2 = AdapterLinearFlops(StepMethod::kD2Lora, 6, 8, 4, 2, true);
  EXPECT_EQ(d2.forward, (2 * 6 * 8 * 4 + 2 * 6 * 4 * 4) + (2 * 4 * 8 * 4 + 2 * 4 * 8 * 4 + 2 * 4 * 4 * 4));
  EXPECT_EQ(d2.backward,
            (2 * (2 * 6 * 4 * 4) + 2 * (2 * 6 * 8 * 4)) + (2 * 4 * 8 * 4 + 2 * (2 * 4 * 8 * 4) + 2 * (2 * 4 * 4 * 4)));
  EXPECT_EQ(AdapterLinearFlops(StepMethod::kFull, 6, 8, 4, 2, true).total(), 0);
}

TEST(FlopCountTest, LoraStepByHand) {
  const StepFlops f = CountTrainStepFlops(HandConfig(), StepMethod::kLora, kShape);
  EXPECT_EQ(f.linears.forward, 2 * 6 * 576 * 2);
  // Layer 1: every input gradient; layer 0: not q, k, v (frozen embeddings below).
  EXPECT_EQ(f.linears.backward, 2 * 6 * 576 + 2 * 6 * (576 - 128));
  EXPECT_EQ(f.lm_head.forward, 2 * 6 * 8 * 100);
  EXPECT_EQ(f.lm_head.backward, 2 * 6 * 8 * 100);
  EXPECT_EQ(f.attention.forward, 2 * 2 * (2 * (2 * 2 * 3) * 4 * 3));
  EXPECT_EQ(f.attention.backward, 2 * f.attention.forward);
  EXPECT_EQ(f.adapters.forward, 2 * (2 * 6 * 2 * 128));
  // Layer 1: 48 (in + out) per linear; layer 0's q, k, v lose dx (24 in).
  EXPECT_EQ(f.adapters.backward, 48 * 128 + (48 * 128 - 24 * 24));
  EXPECT_EQ(f.recompute, 0);
  EXPECT_EQ(f.model(), 13824 + 12288 + 9600 + 9600 + 1152 + 2304);
  EXPECT_EQ(f.adapter(), 6144 + 11712);
}

TEST(FlopCountTest, D2LoraAndDoraStepsByHand) {
  const StepFlops d2 = CountTrainStepFlops(HandConfig(), StepMethod::kD2Lora, kShape);
  const StepFlops lora = CountTrainStepFlops(HandConfig(), StepMethod::kLora, kShape);
  EXPECT_EQ(d2.model(), lora.model());  // the base model's GEMMs do not depend on the adapter
  // Low-rank path at rank 4 (twice LoRA's) plus the row norms at k = 4:
  // forward 8 sum(out*in) + 32 sum(in+out), backward 8 sum(out*in) + 64 sum(in+out), per layer.
  EXPECT_EQ(d2.adapters.forward, 2 * 6144 + 2 * (8 * 576 + 32 * 128));
  EXPECT_EQ(d2.adapters.backward, 2 * 11712 + 2 * (8 * 576 + 64 * 128));
  const StepFlops dora = CountTrainStepFlops(HandConfig(), StepMethod::kDora, kShape);
  EXPECT_EQ(dora.adapters.forward, 6144 + 2 * (4 * 576 + 8 * 128));
  EXPECT_EQ(dora.adapters.backward, 11712 + 2 * (4 * 576 + 16 * 128));
}

TEST(FlopCountTest, FullFineTuningAndCheckpointing) {
  const StepFlops full = CountTrainStepFlops(HandConfig(), StepMethod::kFull, kShape);
  EXPECT_EQ(full.linears.forward, 13824);
  EXPECT_EQ(full.linears.backward, 2 * 13824);  // weight and input gradients everywhere
  EXPECT_EQ(full.lm_head.backward, 2 * 9600);
  EXPECT_EQ(full.attention.total(), 1152 + 2304);
  EXPECT_EQ(full.adapter(), 0);

  StepShape ckpt = kShape;
  ckpt.activation_checkpointing = true;
  const StepFlops f = CountTrainStepFlops(HandConfig(), StepMethod::kLora, ckpt);
  // The decoder layers' forward again: linears, attention and the adapters' forward.
  EXPECT_EQ(f.recompute, 13824 + 1152 + 6144);
  EXPECT_EQ(f.executed(), f.model() + f.adapter() + f.recompute);
  EXPECT_EQ(f.model(), CountTrainStepFlops(HandConfig(), StepMethod::kLora, kShape).model());
}

TEST(TrainStepBenchTest, TinyRunWritesJson) {
  testing::TempDir tmp;
  const std::string json_path = tmp.file("out.json");
  const std::string cmd = std::string("'") + D2LORA_TRAIN_STEP_BENCH +
                          "' --presets tiny --seqs 16 --tokens 32 --reps 1 --ref-seq 16 --gemm-sizes 128"
                          " --threads 1 --json '" + json_path + "' > '" + tmp.file("stdout") + "'";
  const int rc = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << cmd << " -> " << rc;
  const std::string table = testing::ReadFile(tmp.file("stdout"));
  EXPECT_NE(table.find("d2lora/lora"), std::string::npos) << table;

  const json j = json::parse(testing::ReadFile(json_path));
  ASSERT_TRUE(j.contains("gemm_peak"));
  EXPECT_GT(j["gemm_peak"]["peak_flops_per_s"].get<double>(), 0);
  ASSERT_TRUE(j["results"].is_array());
  ASSERT_EQ(j["results"].size(), 5u);  // lora, d2lora, dora, d2lora_ckpt, full at the ref seq

  auto tiny = engine::ModelPreset("tiny");
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  std::set<std::string> variants;
  for (const json& r : j["results"]) {
    for (const char* key : {"preset", "seq", "batch", "tokens", "method", "variant", "activation_checkpointing",
                            "median_step_s", "tokens_per_s", "peak_mib", "model_flops", "adapter_flops",
                            "recompute_flops", "mfu", "hfu"}) {
      EXPECT_TRUE(r.contains(key)) << key << " missing in " << r.dump();
    }
    variants.insert(r["variant"].get<std::string>());
    EXPECT_EQ(r["preset"], "tiny");
    EXPECT_EQ(r["seq"], 16);
    EXPECT_EQ(r["batch"], 2);
    EXPECT_GT(r["median_step_s"].get<double>(), 0);
    EXPECT_GT(r["mfu"].get<double>(), 0);
    EXPECT_TRUE(r["peak_mib"].is_number()) << r.dump();  // the child process ran
    // and counted the step's CPU tensor bytes through the allocator's hook
    ASSERT_TRUE(r["tensor_peak_mib"].is_number()) << r.dump();
    EXPECT_GT(r["tensor_peak_mib"].get<double>(), 0) << r.dump();
    StepMethod m = StepMethod::kLora;
    for (StepMethod c : {StepMethod::kLora, StepMethod::kD2Lora, StepMethod::kDora, StepMethod::kFull}) {
      if (StepMethodName(c) == r["method"]) m = c;
    }
    const StepFlops f = CountTrainStepFlops(*tiny, m, {2, 16, 8, r["activation_checkpointing"].get<bool>()});
    EXPECT_DOUBLE_EQ(r["model_flops"].get<double>(), f.model()) << r["variant"];
    EXPECT_DOUBLE_EQ(r["adapter_flops"].get<double>(), f.adapter()) << r["variant"];
  }
  EXPECT_EQ(variants, (std::set<std::string>{"lora", "d2lora", "dora", "d2lora_ckpt", "full"}));

  ASSERT_EQ(j["ratios"].size(), 1u);
  for (const char* key : {"d2lora_over_lora", "dora_over_lora", "d2lora_over_lora_peak_mib",
                          "d2lora_over_lora_tensor_peak_mib", "full_over_lora"}) {
    EXPECT_TRUE(j["ratios"][0].contains(key)) << key;
  }
  EXPECT_GT(j["ratios"][0]["d2lora_over_lora"].get<double>(), 0);
  ASSERT_EQ(j["activation_checkpointing"].size(), 1u);
  EXPECT_TRUE(j["activation_checkpointing"][0].contains("time_ckpt_over_plain"));
  ASSERT_EQ(j["breakdown"].size(), 1u);
  EXPECT_FALSE(j["breakdown"][0]["shapes"].empty());
  EXPECT_TRUE(j["breakdown"][0].contains("d2lora_extra_over_lora"));
}

TEST(TrainStepBenchTest, RejectsUnknownFlag) {
  const std::string cmd = std::string("'") + D2LORA_TRAIN_STEP_BENCH + "' --no-such-flag 2>/dev/null";
  const int rc = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) != 0);
}

}  // namespace
}  // namespace d2lora::bench
