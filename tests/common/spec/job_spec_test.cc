#include "common/spec/job_spec.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace d2lora::spec {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kMinimal[] = "name: job\nmodel: ./m\ndata: {train: t.jsonl}\n";

constexpr char kFull[] = R"(
name: wordnet-d2lora
model: ./models/base
method: dora
adapter: {r: 4, alpha: 8, target_modules: [q_proj, v_proj], dropout: 0.05, use_rslora: true,
          tau_init: 0.25, tau_learnable: false, projection_strength: 0.5, residual: false,
          norm_grad: detached, dtype: bf16}
data:
  train: ./data/train.jsonl
  validation: ./data/val.jsonl
  format: instruction
  max_seq_len: 512
  skip_invalid: true
train: {epochs: 3, max_steps: 100, batch_size: 32, micro_batch_size: 4, lr: 1.0e-4,
        schedule: linear, warmup_steps: 5, weight_decay: 0.01, grad_clip: 0.5, seed: 7,
        checkpoint_every: 25, keep_checkpoints: 2, max_nonfinite_steps: 0,
        activation_checkpointing: true, dtype: bf16}
eval: {every: 10, scoring: byte, max_examples: 200, generate_max_new_tokens: 32}
metrics: {volatility_window: 20, log_every: 5}
guard: {spike_factor: 2.5, max_rollbacks: 1, lr_backoff: 0.5, skip_batches: 2}
output: {dir: /tmp/out, merge: false, merge_dtype: fp16, merge_check: false, merge_max_row_norm_deviation: 1e-3,
         merge_max_cast_error: 0.01, merge_max_logit_diff: 0.2, merge_max_kl: 0.003, merge_max_accuracy_gap_pp: 1.5}
resources: {world_size: 2, device: cuda, threads: 4, min_world_size: 1, elastic_wait_seconds: 30}
)";

std::string ErrorOf(const std::string& text, const std::vector<std::string>& overrides = {}) {
  absl::StatusOr<JobSpec> s = ParseJobSpec(text, "job.yaml", overrides);
  EXPECT_FALSE(s.ok()) << text;
  return s.ok() ? "" : std::string(s.status().message());
}

TEST(JobSpecTest, Defaults) {
  absl::StatusOr<JobSpec> s = ParseJobSpec(kMinimal, "job.yaml");
  D2_ASSERT_OK(s.status());
  EXPECT_EQ(s->name, "job");
  EXPECT_EQ(s->model, "./m");
  EXPECT_EQ(s->method, TrainingMethod::kD2Lora);
  EXPECT_FALSE(s->full_finetune());
  EXPECT_EQ(s->adapter.method, AdapterMethod::kD2Lora);
  EXPECT_EQ(s->adapter.r, 8);
  EXPECT_EQ(s->adapter.alpha, 16.0);
  EXPECT_THAT(s->adapter.target_modules,
              ElementsAre("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"));
  EXPECT_EQ(s->adapter.dropout, 0.0);
  EXPECT_FALSE(s->adapter.use_rslora);
  EXPECT_EQ(s->adapter.tau_init, 0.5);
  EXPECT_FALSE(s->adapter.tau_learnable);
  EXPECT_EQ(s->adapter.projection_strength, 1.0);
  EXPECT_TRUE(s->adapter.residual);
  EXPECT_EQ(s->adapter.norm_grad, NormGrad::kFull);
  EXPECT_EQ(s->adapter.dtype, AdapterDtype::kFp32);
  EXPECT_EQ(s->adapter.seed, 42u);
  EXPECT_EQ(s->data.train, "t.jsonl");
  EXPECT_EQ(s->data.validation, "");
  EXPECT_EQ(s->data.format, "multiple_choice");
  EXPECT_EQ(s->data.max_seq_len, 256);
  EXPECT_FALSE(s->data.skip_invalid);
  EXPECT_EQ(s->train.epochs, 2);
  EXPECT_EQ(s->train.max_steps, 0);
  EXPECT_EQ(s->train.batch_size, 16);
  EXPECT_EQ(s->train.micro_batch_size, 8);
  EXPECT_EQ(s->train.lr, 2.0e-4);
  EXPECT_EQ(s->train.schedule, LrSchedule::kCosine);
  EXPECT_EQ(s->train.warmup_steps, 10);
  EXPECT_EQ(s->train.weight_decay, 0.0);
  EXPECT_EQ(s->train.grad_clip, 1.0);
  EXPECT_EQ(s->train.seed, 42u);
  EXPECT_EQ(s->train.checkpoint_every, 50);
  EXPECT_EQ(s->train.keep_checkpoints, 3);
  EXPECT_EQ(s->train.max_nonfinite_steps, 5);
  EXPECT_FALSE(s->train.activation_checkpointing);
  EXPECT_EQ(s->train.dtype, ComputeDtype::kAuto);
  EXPECT_EQ(s->eval.every, 50);
  EXPECT_EQ(s->eval.scoring, ChoiceScoring::kMean);
  EXPECT_EQ(s->eval.max_examples, 0);
  EXPECT_EQ(s->eval.generate_max_new_tokens, 64);
  EXPECT_EQ(s->metrics.volatility_window, 50);
  EXPECT_EQ(s->metrics.log_every, 1);
  EXPECT_FALSE(s->guard.enabled());  // the guard is off unless asked for
  EXPECT_EQ(s->guard.spike_factor, 0.0);
  EXPECT_EQ(s->guard.max_rollbacks, 3);
  EXPECT_EQ(s->guard.lr_backoff, 1.0);
  EXPECT_EQ(s->guard.skip_batches, 0);
  EXPECT_EQ(s->output.dir, "./out");
  EXPECT_TRUE(s->output.merge);
  EXPECT_EQ(s->output.merge_dtype, MergeDtype::kAuto);
  EXPECT_TRUE(s->output.merge_check);
  EXPECT_EQ(s->output.merge_thresholds.max_logit_diff, 0.0);  // 0: the merged dtype's default
  EXPECT_EQ(s->resources.world_size, 1);
  EXPECT_EQ(s->resources.device, DeviceKind::kCpu);
  EXPECT_EQ(s->resources.threads, 0);

  JobSpec expected;
  expected.name = "job";
  expected.model = "./m";
  expected.data.train = "t.jsonl";
  EXPECT_EQ(*s, expected);
  D2_EXPECT_OK(ValidateJobSpec(expected));
}

// norm_grad's default follows the method: DoRA detaches (PEFT), D2-LoRA does not.
TEST(JobSpecTest, NormGradDefaultFollowsTheMethod) {
  absl::StatusOr<JobSpec> dora = ParseJobSpec(std::string(kMinimal) + "method: dora\n", "job.yaml");
  D2_ASSERT_OK(dora.status());
  EXPECT_EQ(dora->adapter.norm_grad, NormGrad::kDetached);
  absl::StatusOr<JobSpec> dora_full = ParseJobSpec(std::string(kMinimal) + "method: dora\nadapter: {norm_grad: full}\n", "job.yaml");
  D2_ASSERT_OK(dora_full.status());
  EXPECT_EQ(dora_full->adapter.norm_grad, NormGrad::kFull);
  absl::StatusOr<JobSpec> d2 = ParseJobSpec(kMinimal, "job.yaml", {"adapter.residual=false"});
  D2_ASSERT_OK(d2.status());
  EXPECT_EQ(d2->adapter.norm_grad, NormGrad::kFull);
  EXPECT_FALSE(d2->adapter.residual);
  // The canonical form keeps what was in effect.
  absl::StatusOr<JobSpec> again = ParseJobSpec(JobSpecToYaml(*dora), "canonical");
  D2_ASSERT_OK(again.status());
  EXPECT_EQ(*again, *dora);
  EXPECT_THAT(ErrorOf(kMinimal, {"output.merge_max_kl=-1"}), HasSubstr("output.merge_max_kl = -1"));
  EXPECT_THAT(ErrorOf(kMinimal, {"adapter.residual=maybe"}), HasSubstr("adapter.residual"));
}

TEST(JobSpecTest, FullExample) {
  absl::StatusOr<JobSpec> s = ParseJobSpec(kFull, "job.yaml");
  D2_ASSERT_OK(s.status());
  EXPECT_EQ(s->name, "wordnet-d2lora");
  EXPECT_EQ(s->method, TrainingMethod::kDora);
  EXPECT_EQ(s->adapter.method, AdapterMethod::kDora);
  EXPECT_EQ(s->adapter.r, 4);
  EXPECT_EQ(s->adapter.alpha, 8.0);
  EXPECT_THAT(s->adapter.target_modules, ElementsAre("q_proj", "v_proj"));
  EXPECT_EQ(s->adapter.dropout, 0.05);
  EXPECT_TRUE(s->adapter.use_rslora);
  EXPECT_EQ(s->adapter.tau_init, 0.25);
  EXPECT_FALSE(s->adapter.tau_learnable);
  EXPECT_EQ(s->adapter.projection_strength, 0.5);
  EXPECT_FALSE(s->adapter.residual);
  EXPECT_EQ(s->adapter.norm_grad, NormGrad::kDetached);
  EXPECT_EQ(s->adapter.dtype, AdapterDtype::kBf16);
  EXPECT_FALSE(s->output.merge_check);
  EXPECT_EQ(s->output.merge_thresholds.max_row_norm_deviation, 1e-3);
  EXPECT_EQ(s->output.merge_thresholds.max_cast_error, 0.01);
  EXPECT_EQ(s->output.merge_thresholds.max_logit_diff, 0.2);
  EXPECT_EQ(s->output.merge_thresholds.max_kl, 0.003);
  EXPECT_EQ(s->output.merge_thresholds.max_accuracy_gap_pp, 1.5);
  EXPECT_EQ(s->adapter.seed, 7u);
  EXPECT_EQ(s->data.validation, "./data/val.jsonl");
  EXPECT_EQ(s->data.format, "instruction");
  EXPECT_EQ(s->data.max_seq_len, 512);
  EXPECT_TRUE(s->data.skip_invalid);
  EXPECT_EQ(s->train.epochs, 3);
  EXPECT_EQ(s->train.max_steps, 100);
  EXPECT_EQ(s->train.batch_size, 32);
  EXPECT_EQ(s->train.micro_batch_size, 4);
  EXPECT_EQ(s->train.lr, 1.0e-4);
  EXPECT_EQ(s->train.schedule, LrSchedule::kLinear);
  EXPECT_EQ(s->train.weight_decay, 0.01);
  EXPECT_EQ(s->train.grad_clip, 0.5);
  EXPECT_EQ(s->train.seed, 7u);
  EXPECT_EQ(s->train.checkpoint_every, 25);
  EXPECT_EQ(s->train.keep_checkpoints, 2);
  EXPECT_EQ(s->train.max_nonfinite_steps, 0);
  EXPECT_TRUE(s->train.activation_checkpointing);
  EXPECT_EQ(s->train.dtype, ComputeDtype::kBf16);
  EXPECT_EQ(s->eval.every, 10);
  EXPECT_EQ(s->eval.scoring, ChoiceScoring::kByte);
  EXPECT_EQ(s->eval.max_examples, 200);
  EXPECT_EQ(s->eval.generate_max_new_tokens, 32);
  EXPECT_EQ(s->metrics.volatility_window, 20);
  EXPECT_EQ(s->metrics.log_every, 5);
  EXPECT_EQ(s->guard.spike_factor, 2.5);
  EXPECT_TRUE(s->guard.enabled());
  EXPECT_EQ(s->guard.max_rollbacks, 1);
  EXPECT_EQ(s->guard.lr_backoff, 0.5);
  EXPECT_EQ(s->guard.skip_batches, 2);
  EXPECT_EQ(s->output.dir, "/tmp/out");
  EXPECT_FALSE(s->output.merge);
  EXPECT_EQ(s->output.merge_dtype, MergeDtype::kFp16);
  EXPECT_EQ(s->resources.world_size, 2);
  EXPECT_EQ(s->resources.device, DeviceKind::kCuda);
  EXPECT_EQ(s->resources.threads, 4);
  EXPECT_EQ(s->resources.min_world_size, 1);
  EXPECT_EQ(s->resources.elastic_wait_seconds, 30);
}

TEST(JobSpecTest, FullFineTuning) {
  absl::StatusOr<JobSpec> s = ParseJobSpec(std::string(kMinimal) + "method: full\n", "job.yaml");
  D2_ASSERT_OK(s.status());
  EXPECT_TRUE(s->full_finetune());
  EXPECT_EQ(s->adapter.method, AdapterMethod::kD2Lora);
}

TEST(JobSpecTest, NullKeepsTheDefault) {
  absl::StatusOr<JobSpec> s =
      ParseJobSpec(std::string(kMinimal) + "train: {lr: ~, epochs: null}\neval:\n", "job.yaml");
  D2_ASSERT_OK(s.status());
  EXPECT_EQ(s->train.lr, 2.0e-4);
  EXPECT_EQ(s->train.epochs, 2);
}

TEST(JobSpecTest, UnknownKeysNameTheirPath) {
  const std::string base = kMinimal;
  EXPECT_THAT(ErrorOf(base + "modle: x\n"), HasSubstr("job.yaml: modle: unknown key (top level has: name,"));
  EXPECT_THAT(ErrorOf(base + "train: {lr_max: 1}\n"),
              HasSubstr("job.yaml: train.lr_max: unknown key (train has: epochs,"));
  EXPECT_THAT(ErrorOf("name: j\nmodel: m\ndata: {train: t, valid: v}\n"),
              HasSubstr("data.valid: unknown key"));
  EXPECT_THAT(ErrorOf(base + "adapter: {rank: 4}\n"), HasSubstr("adapter.rank: unknown key"));
  EXPECT_THAT(ErrorOf(base + "eval: {evry: 4}\n"), HasSubstr("eval.evry: unknown key"));
  EXPECT_THAT(ErrorOf(base + "metrics: {window: 4}\n"), HasSubstr("metrics.window: unknown key"));
  EXPECT_THAT(ErrorOf(base + "output: {path: o}\n"), HasSubstr("output.path: unknown key"));
  EXPECT_THAT(ErrorOf(base + "resources: {gpus: 1}\n"), HasSubstr("resources.gpus: unknown key"));
  EXPECT_THAT(ErrorOf(base + "train: {lr: 1, lr: 2}\n"), HasSubstr("train.lr: duplicate key"));
}

TEST(JobSpecTest, WrongTypesNameTheField) {
  const std::string base = kMinimal;
  EXPECT_THAT(ErrorOf(base + "train: {batch_size: many}\n"),
              HasSubstr("job.yaml: train.batch_size: must be an integer, got 'many'"));
  EXPECT_THAT(ErrorOf(base + "train: {batch_size: 1.5}\n"),
              HasSubstr("train.batch_size: must be an integer, got '1.5'"));
  EXPECT_THAT(ErrorOf(base + "adapter: {r: \"8\"}\n"),
              HasSubstr("adapter.r: must be an integer, got the quoted string \"8\""));
  EXPECT_THAT(ErrorOf(base + "train: {lr: fast}\n"), HasSubstr("train.lr: must be a number, got 'fast'"));
  EXPECT_THAT(ErrorOf(base + "train: {lr: [1]}\n"), HasSubstr("train.lr: must be a number, got a list"));
  EXPECT_THAT(ErrorOf(base + "output: {merge: yes}\n"),
              HasSubstr("output.merge: must be true or false, got 'yes'"));
  EXPECT_THAT(ErrorOf("name: j\nmodel: m\ndata: {train: t, skip_invalid: 1}\n"),
              HasSubstr("data.skip_invalid: must be true or false"));
  EXPECT_THAT(ErrorOf("name: {a: 1}\nmodel: m\ndata: {train: t}\n"),
              HasSubstr("name: must be a string, got a mapping"));
  EXPECT_THAT(ErrorOf(base + "adapter: {target_modules: {q: 1}}\n"),
              HasSubstr("adapter.target_modules: must be a list of strings, got a mapping"));
  EXPECT_THAT(ErrorOf(base + "adapter: {target_modules: [q_proj, [v]]}\n"),
              HasSubstr("adapter.target_modules[1]: must be a string, got a list"));
  EXPECT_THAT(ErrorOf(base + "train: 5\n"), HasSubstr("train: must be a mapping, got '5'"));
  EXPECT_THAT(ErrorOf(base + "train: {seed: -1}\n"), HasSubstr("train.seed: must be an integer in [0, 2^64)"));
  EXPECT_THAT(ErrorOf("- a\n- b\n"), HasSubstr("job.yaml: spec: must be a mapping, got a list"));
  EXPECT_THAT(ErrorOf("name: [a\n"), HasSubstr("job.yaml:2:1: "));
}

TEST(JobSpecTest, BadEnumsListTheChoices) {
  const std::string base = kMinimal;
  EXPECT_THAT(ErrorOf(base + "method: qlora\n"),
              HasSubstr("method = qlora: unknown value 'qlora'; expected d2lora, lora, dora, full"));
  EXPECT_THAT(ErrorOf(base + "train: {schedule: cosin}\n"),
              HasSubstr("train.schedule = cosin: unknown value 'cosin'; expected cosine, linear, constant"));
  EXPECT_THAT(ErrorOf(base + "train: {dtype: fp16}\n"),
              HasSubstr("train.dtype = fp16: unknown value 'fp16'; expected auto, fp32, bf16"));
  EXPECT_THAT(ErrorOf(base + "eval: {scoring: max}\n"),
              HasSubstr("eval.scoring = max: unknown value 'max'; expected sum, mean, byte, letter"));
  EXPECT_THAT(ErrorOf(base + "resources: {device: tpu}\n"),
              HasSubstr("resources.device = tpu: unknown value 'tpu'; expected cpu, cuda"));
  EXPECT_THAT(ErrorOf(base + "output: {merge_dtype: int8}\n"),
              HasSubstr("output.merge_dtype = int8: unknown value"));
  EXPECT_THAT(ErrorOf(base + "adapter: {norm_grad: half}\n"),
              HasSubstr("adapter.norm_grad = half: unknown norm_grad 'half'"));
  EXPECT_THAT(ErrorOf(base + "adapter: {dtype: fp8}\n"),
              HasSubstr("adapter.dtype = fp8: unknown value 'fp8'; expected fp32, fp64, bf16, fp16"));
  EXPECT_THAT(ErrorOf("name: j\nmodel: m\ndata: {train: t, format: chat}\n"),
              HasSubstr("data.format = chat: unknown value; expected lm, instruction, multiple_choice"));
}

TEST(JobSpecTest, RequiredFields) {
  EXPECT_THAT(ErrorOf("model: m\ndata: {train: t}\n"), HasSubstr("job.yaml: name: required"));
  EXPECT_THAT(ErrorOf("name: j\ndata: {train: t}\n"), HasSubstr("model: required"));
  EXPECT_THAT(ErrorOf("name: j\nmodel: m\n"), HasSubstr("data.train: required"));
  EXPECT_THAT(ErrorOf(""), HasSubstr("name: required"));
  EXPECT_THAT(ErrorOf("name: a b\nmodel: m\ndata: {train: t}\n"),
              HasSubstr("name = 'a b': must be 1 to 64 characters"));
  EXPECT_THAT(ErrorOf("name: " + std::string(65, 'x') + "\nmodel: m\ndata: {train: t}\n"),
              HasSubstr("must be 1 to 64 characters"));
}

TEST(JobSpecTest, ModelIdIsAHubId) {
  for (const char* ok : {"gpt2", "meta-llama/Llama-3.2-1B", "Qwen/Qwen2.5-0.5B-Instruct", "a_b.c/d-e"}) {
    absl::StatusOr<ValidJobSpec> s = ParseJobSpec(absl::StrCat(kMinimal, "model_id: \"", ok, "\"\n"), "job.yaml");
    ASSERT_TRUE(s.ok()) << ok << ": " << s.status();
    EXPECT_EQ((*s)->model_id, ok);
    EXPECT_EQ((*s)->base_model_name(), ok);
  }
  absl::StatusOr<ValidJobSpec> none = ParseJobSpec(kMinimal, "job.yaml");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ((*none)->base_model_name(), (*none)->model);  // no hub id: the model's path
  for (const char* bad : {"a/b/c", "/abs", "org/", "../x", "has space", "x/..", "caf\xc3\xa9"}) {
    EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "model_id: \"", bad, "\"\n")),
                HasSubstr(absl::StrCat("model_id = '", bad, "': must be a hub id")))
        << bad;
  }
}

TEST(JobSpecTest, InitStartsAnAdapterFromEarlierWork) {
  absl::StatusOr<ValidJobSpec> none = ParseJobSpec(kMinimal, "job.yaml");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE((*none)->init.empty());
  absl::StatusOr<ValidJobSpec> adapter = ParseJobSpec(absl::StrCat(kMinimal, "init: {adapter: ./earlier}\n"), "job.yaml");
  ASSERT_TRUE(adapter.ok()) << adapter.status();
  EXPECT_EQ((*adapter)->init.adapter, "./earlier");
  EXPECT_EQ(ResolveSpecPaths(*adapter, "/specs")->init.adapter, "/specs/earlier");
  absl::StatusOr<ValidJobSpec> upload = ParseJobSpec(absl::StrCat(kMinimal, "init: {adapter: upload:up-1}\n"), "job.yaml");
  ASSERT_TRUE(upload.ok()) << upload.status();
  EXPECT_EQ(ResolveSpecPaths(*upload, "/specs")->init.adapter, "upload:up-1");  // the service's, not a path
  absl::StatusOr<ValidJobSpec> job = ParseJobSpec(absl::StrCat(kMinimal, "init: {from_job: j-1, step: 50}\n"), "job.yaml");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ((*job)->init.from_job, "j-1");
  EXPECT_EQ((*job)->init.step, 50);
  // The canonical form carries it.
  absl::StatusOr<ValidJobSpec> again = ParseJobSpec(JobSpecToYaml(*job), "again.yaml");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->get(), job->get());

  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "init: {step: 5}\n")),
              HasSubstr("init.step = 5: names a checkpoint of init.from_job, which is not set"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "init: {from_job: j-1, step: -1}\n")), HasSubstr("init.step = -1: must be >= 0"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "init: {from_job: 'a/b'}\n")),
              HasSubstr("init.from_job = 'a/b': must be a job id"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "method: full\ninit: {adapter: ./a}\n")),
              HasSubstr("init: starts an adapter, and method full trains no adapter"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kMinimal, "init: {checkpoint: 5}\n")), HasSubstr("init.checkpoint: unknown key"));
}

// A spec built in code (tests, tools) must keep adapter.method with method,
// as every reader does (SetDerivedFields): else a "lora" run would train D2-LoRA.
TEST(JobSpecTest, AdapterMethodFollowsMethod) {
  absl::StatusOr<ValidJobSpec> parsed = ParseJobSpec(absl::StrCat(kMinimal, "method: lora\n"), "job.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  JobSpec spec = parsed->get();
  spec.method = TrainingMethod::kDora;
  absl::Status refused = ValidJobSpec::Check(spec).status();
  EXPECT_THAT(std::string(refused.message()), HasSubstr("adapter.method = lora: does not follow method = dora"));
  spec.adapter.method = AdapterMethod::kDora;
  D2_EXPECT_OK(ValidJobSpec::Check(spec).status());
}

TEST(JobSpecTest, RangesNameTheFieldAndValue) {
  const std::string base = kMinimal;
  auto err = [&](const std::string& extra) { return ErrorOf(base + extra); };
  EXPECT_THAT(err("train: {batch_size: 0}\n"), HasSubstr("train.batch_size = 0: must be >= 1"));
  EXPECT_THAT(err("train: {micro_batch_size: 0}\n"), HasSubstr("train.micro_batch_size = 0: must be >= 1"));
  EXPECT_THAT(err("train: {batch_size: 12}\n"),
              HasSubstr("train.batch_size = 12: must be divisible by train.micro_batch_size * "
                        "resources.world_size = 8 * 1 (train.micro_batch_size = 6 would)"));
  EXPECT_THAT(err("resources: {world_size: 3}\n"),
              HasSubstr("train.batch_size = 16: must be divisible by train.micro_batch_size * "
                        "resources.world_size = 8 * 3 (no micro_batch_size can: 3 ranks cannot share 16 "
                        "examples evenly)"));
  EXPECT_THAT(err("resources: {world_size: 4}\ntrain: {micro_batch_size: 8}\n"),
              HasSubstr("= 8 * 4 (train.micro_batch_size = 4 would)"));
  EXPECT_THAT(err("adapter: {r: 0}\n"), HasSubstr("adapter.r = 0: must be in [1, 65536]"));
  EXPECT_THAT(err("adapter: {alpha: -1}\n"), HasSubstr("adapter.alpha = -1"));
  EXPECT_THAT(err("adapter: {dropout: 1}\n"), HasSubstr("adapter.dropout = 1: must be in [0, 1)"));
  EXPECT_THAT(err("adapter: {projection_strength: 2}\n"), HasSubstr("adapter.projection_strength = 2"));
  EXPECT_THAT(err("adapter: {tau_init: -0.5}\n"), HasSubstr("adapter.tau_init = -0.5"));
  EXPECT_THAT(err("adapter: {target_modules: []}\n"), HasSubstr("adapter.target_modules must name"));
  EXPECT_THAT(err("train: {lr: 0}\n"), HasSubstr("train.lr = 0: must be a finite number > 0"));
  EXPECT_THAT(err("train: {lr: nan}\n"), HasSubstr("train.lr = nan: must be a finite number > 0"));
  EXPECT_THAT(err("train: {lr: inf}\n"), HasSubstr("train.lr = inf: must be a finite number > 0"));
  EXPECT_THAT(err("train: {epochs: 0}\n"),
              HasSubstr("train.epochs = 0: must be >= 1 unless train.max_steps > 0"));
  D2_EXPECT_OK(ParseJobSpec(base + "train: {epochs: 0, max_steps: 10}\n", "job.yaml").status());
  EXPECT_THAT(err("train: {max_steps: -1}\n"), HasSubstr("train.max_steps = -1: must be >= 0"));
  EXPECT_THAT(err("train: {warmup_steps: -1}\n"), HasSubstr("train.warmup_steps = -1: must be >= 0"));
  EXPECT_THAT(err("train: {weight_decay: -0.1}\n"), HasSubstr("train.weight_decay = -0.1: must be a finite number >= 0"));
  EXPECT_THAT(err("train: {grad_clip: -1}\n"), HasSubstr("train.grad_clip = -1"));
  EXPECT_THAT(err("train: {keep_checkpoints: 0}\n"), HasSubstr("train.keep_checkpoints = 0: must be >= 1"));
  EXPECT_THAT(err("train: {checkpoint_every: -5}\n"), HasSubstr("train.checkpoint_every = -5"));
  EXPECT_THAT(err("train: {max_nonfinite_steps: -1}\n"), HasSubstr("train.max_nonfinite_steps = -1"));
  EXPECT_THAT(ErrorOf("name: j\nmodel: m\ndata: {train: t, max_seq_len: 1}\n"),
              HasSubstr("data.max_seq_len = 1: must be >= 2"));
  EXPECT_THAT(err("eval: {every: -1}\n"), HasSubstr("eval.every = -1: must be >= 0"));
  EXPECT_THAT(err("eval: {max_examples: -1}\n"), HasSubstr("eval.max_examples = -1"));
  EXPECT_THAT(err("eval: {generate_max_new_tokens: 0}\n"), HasSubstr("eval.generate_max_new_tokens = 0: must be >= 1"));
  EXPECT_THAT(err("metrics: {volatility_window: 1}\n"), HasSubstr("metrics.volatility_window = 1: must be >= 2"));
  EXPECT_THAT(err("metrics: {log_every: 0}\n"), HasSubstr("metrics.log_every = 0: must be >= 1"));
  EXPECT_THAT(err("guard: {spike_factor: 1}\n"), HasSubstr("guard.spike_factor = 1: must be 0 (off) or a finite number > 1"));
  EXPECT_THAT(err("guard: {spike_factor: -2}\n"), HasSubstr("guard.spike_factor = -2"));
  EXPECT_THAT(err("guard: {max_rollbacks: -1}\n"), HasSubstr("guard.max_rollbacks = -1: must be >= 0"));
  EXPECT_THAT(err("guard: {lr_backoff: 0}\n"), HasSubstr("guard.lr_backoff = 0: must be in (0, 1]"));
  EXPECT_THAT(err("guard: {lr_backoff: 1.5}\n"), HasSubstr("guard.lr_backoff = 1.5"));
  EXPECT_THAT(err("guard: {skip_batches: -1}\n"), HasSubstr("guard.skip_batches = -1: must be >= 0"));
  EXPECT_THAT(err("guard: {spike: 2}\n"), HasSubstr("guard.spike: unknown key"));
  EXPECT_THAT(err("output: {dir: ''}\n"), HasSubstr("output.dir: must not be empty"));
  EXPECT_THAT(err("resources: {world_size: 0}\n"), HasSubstr("resources.world_size = 0: must be >= 1"));
  EXPECT_THAT(err("resources: {threads: -1}\n"), HasSubstr("resources.threads = -1: must be >= 0"));
  EXPECT_THAT(err("resources: {world_size: 2, min_world_size: 3}\n"),
              HasSubstr("resources.min_world_size = 3: must be <= 2 (resources.world_size)"));
  EXPECT_THAT(err("resources: {elastic_wait_seconds: -1}\n"), HasSubstr("resources.elastic_wait_seconds = -1"));
}

TEST(JobSpecTest, FittingMicroBatchSize) {
  EXPECT_EQ(FittingMicroBatchSize(16, 8, 2), 8);
  EXPECT_EQ(FittingMicroBatchSize(16, 8, 4), 4);
  EXPECT_EQ(FittingMicroBatchSize(12, 8, 1), 6);
  EXPECT_EQ(FittingMicroBatchSize(12, 4, 3), 4);
  EXPECT_EQ(FittingMicroBatchSize(10, 4, 2), 1);  // a share of 5: only 1 or 5 split it, and 5 > 4
  EXPECT_EQ(FittingMicroBatchSize(16, 8, 3), 0);
  EXPECT_EQ(FittingMicroBatchSize(16, 8, 0), 0);
}

TEST(JobSpecTest, LoadFromFile) {
  d2lora::testing::TempDir dir;
  d2lora::testing::WriteFile(dir.file("job.yaml"), kMinimal);
  absl::StatusOr<JobSpec> s = LoadJobSpec(dir.file("job.yaml"), {"train.lr=0.001"});
  D2_ASSERT_OK(s.status());
  EXPECT_EQ(s->train.lr, 0.001);
  absl::StatusOr<JobSpec> missing = LoadJobSpec(dir.file("nope.yaml"));
  EXPECT_FALSE(missing.ok());
  d2lora::testing::WriteFile(dir.file("bad.yaml"), "name: j\nmodel: m\ndata: {train: t}\nx: 1\n");
  EXPECT_THAT(LoadJobSpec(dir.file("bad.yaml")).status().message(),
              HasSubstr(dir.file("bad.yaml") + ": x: unknown key"));
}

}  // namespace
}  // namespace d2lora::spec
