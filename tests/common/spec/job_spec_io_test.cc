// Overrides, canonical YAML / JSON output, YAML-JSON equivalence, paths.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "common/spec/job_spec.h"

namespace d2lora::spec {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kMinimal[] = "name: job\nmodel: ./m\ndata: {train: t.jsonl}\n";

JobSpec Parse(const std::string& text, const std::vector<std::string>& overrides = {}) {
  absl::StatusOr<JobSpec> s = ParseJobSpec(text, "job.yaml", overrides);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : JobSpec();
}

TEST(OverrideTest, SetsScalarsNestedKeysAndLists) {
  JobSpec s = Parse(kMinimal, {"train.lr=1e-4", "adapter.target_modules=[q_proj,v_proj]",
                               "method=lora", "data.validation=v.jsonl", "adapter.r=16",
                               "output.merge=false", "name=renamed"});
  EXPECT_EQ(s.train.lr, 1e-4);
  EXPECT_THAT(s.adapter.target_modules, ElementsAre("q_proj", "v_proj"));
  EXPECT_EQ(s.method, TrainingMethod::kLora);
  EXPECT_EQ(s.adapter.method, AdapterMethod::kLora);
  EXPECT_EQ(s.data.validation, "v.jsonl");
  EXPECT_EQ(s.data.train, "t.jsonl");  // the rest of the section stays
  EXPECT_EQ(s.adapter.r, 16);
  EXPECT_FALSE(s.output.merge);
  EXPECT_EQ(s.name, "renamed");
}

TEST(OverrideTest, CreatesMissingSectionsAndReplacesWholeOnes) {
  JobSpec s = Parse("name: j\nmodel: m\n", {"data.train=x.jsonl", "eval={every: 5, scoring: sum}"});
  EXPECT_EQ(s.data.train, "x.jsonl");
  EXPECT_EQ(s.eval.every, 5);
  EXPECT_EQ(s.eval.scoring, ChoiceScoring::kSum);
  // The later override wins; an empty value resets to the default.
  s = Parse(kMinimal, {"train.epochs=5", "train.epochs=7", "train.lr=0.1", "train.lr="});
  EXPECT_EQ(s.train.epochs, 7);
  EXPECT_EQ(s.train.lr, 2.0e-4);
  s = Parse(kMinimal, {"adapter.target_modules=all-linear"});
  EXPECT_THAT(s.adapter.target_modules, ElementsAre("all-linear"));
}

TEST(OverrideTest, Errors) {
  auto err = [](const std::string& o) {
    absl::StatusOr<JobSpec> s = ParseJobSpec(kMinimal, "job.yaml", {o});
    EXPECT_FALSE(s.ok()) << o;
    return s.ok() ? std::string() : std::string(s.status().message());
  };
  EXPECT_THAT(err("train.lr_max=1"), HasSubstr("job.yaml: override 'train.lr_max=1': train.lr_max: unknown key"));
  EXPECT_THAT(err("trian.lr=1"), HasSubstr("trian.lr: unknown key"));
  EXPECT_THAT(err("bogus=1"), HasSubstr("bogus: unknown key"));
  EXPECT_THAT(err("name.x=1"), HasSubstr("name.x: unknown key"));
  EXPECT_THAT(err("train.lr.x=1"), HasSubstr("train.lr.x: unknown key"));
  EXPECT_THAT(err("train.lr"), HasSubstr("override 'train.lr': expected key.path=value"));
  EXPECT_THAT(err("=1"), HasSubstr("expected key.path=value"));
  EXPECT_THAT(err("adapter.target_modules=[q_proj"), HasSubstr("override 'adapter.target_modules=[q_proj': value:"));
  EXPECT_THAT(err("train.batch_size=0"), HasSubstr("train.batch_size = 0: must be >= 1"));
  EXPECT_THAT(err("train.lr=abc"), HasSubstr("train.lr: must be a number, got 'abc'"));

  YAML::Node tree = YAML::Load("train: 5");
  EXPECT_THAT(ApplyOverride(tree, "train.lr=1").message(), HasSubstr("train: must be a mapping"));
}

TEST(JobSpecOutputTest, YamlRoundTripsDefaultsAndAFullSpec) {
  JobSpec minimal = Parse(kMinimal);
  EXPECT_EQ(Parse(JobSpecToYaml(minimal)), minimal);

  JobSpec s = minimal;
  s.name = "true";  // a string that looks like a boolean
  s.model = "/models/123";
  s.model_id = "meta-llama/Llama-3.2-1B";
  s.method = TrainingMethod::kFull;
  s.adapter.r = 3;
  s.adapter.alpha = 0.1;
  s.adapter.dropout = 1.0 / 3.0;
  s.adapter.target_modules = {"q_proj", "model.layers.0.mlp.*", "null"};
  s.adapter.use_rslora = true;
  s.adapter.norm_grad = NormGrad::kDetached;
  s.adapter.dtype = AdapterDtype::kFp16;
  s.data.validation = "val: file.jsonl";
  s.data.format = "lm";
  s.train.lr = 3.0000000000000001e-05;
  s.train.seed = 18446744073709551615ULL;
  s.adapter.seed = s.train.seed;
  s.train.schedule = LrSchedule::kConstant;
  s.train.dtype = ComputeDtype::kFp32;
  s.train.epochs = 0;
  s.train.max_steps = 9;
  s.eval.scoring = ChoiceScoring::kLetter;
  s.output.merge_dtype = MergeDtype::kBf16;
  s.resources.device = DeviceKind::kCuda;
  D2_ASSERT_OK(ValidateJobSpec(s));
  const std::string yaml = JobSpecToYaml(s);
  EXPECT_EQ(Parse(yaml), s) << yaml;
  EXPECT_EQ(JobSpecToYaml(Parse(yaml)), yaml);  // canonical: a fixed point
}

TEST(JobSpecOutputTest, CanonicalYamlListsEveryKeyInOrder) {
  const std::string yaml = JobSpecToYaml(Parse(kMinimal));
  EXPECT_THAT(yaml, HasSubstr("name: \"job\"\nmodel: \"./m\"\nmodel_id: ~\nmethod: d2lora\n"
                              "init:\n  adapter: ~\n  from_job: ~\n  step: 0\nadapter:\n  r: 8\n"
                              "  alpha: 16\n  target_modules: [\"q_proj\", \"k_proj\""));
  EXPECT_THAT(yaml, HasSubstr("data:\n  train: \"t.jsonl\"\n  validation: ~\n  format: multiple_choice"));
  EXPECT_THAT(yaml, HasSubstr("  lr: 0.0002\n"));
  EXPECT_THAT(yaml, HasSubstr("resources:\n  world_size: 1\n  device: cpu\n  threads: 0\n"));
}

TEST(JobSpecOutputTest, YamlAndJsonAreEquivalent) {
  const std::string yaml = R"(
name: j
model: m
method: lora
adapter: {r: 4, target_modules: [q_proj]}
data: {train: t, format: lm}
train: {lr: 0.001, batch_size: 8, micro_batch_size: 2}
resources: {world_size: 2}
)";
  const std::string json = R"({
  "name": "j", "model": "m", "method": "lora",
  "adapter": {"r": 4, "target_modules": ["q_proj"]},
  "data": {"train": "t", "format": "lm"},
  "train": {"lr": 0.001, "batch_size": 8, "micro_batch_size": 2},
  "resources": {"world_size": 2}
})";
  const JobSpec from_yaml = Parse(yaml);
  EXPECT_EQ(Parse(json), from_yaml);
  EXPECT_EQ(Parse(JobSpecToJson(from_yaml).dump(2)), from_yaml);

  const nlohmann::json j = JobSpecToJson(from_yaml);
  EXPECT_EQ(j["method"], "lora");
  EXPECT_EQ(j["adapter"]["r"], 4);
  EXPECT_EQ(j["adapter"]["target_modules"], nlohmann::json::array({"q_proj"}));
  EXPECT_EQ(j["train"]["lr"], 0.001);
  EXPECT_TRUE(j["data"]["validation"].is_null());
  EXPECT_EQ(j["resources"]["world_size"], 2);
  for (const char* section : {"adapter", "data", "train", "eval", "metrics", "output", "resources"}) {
    EXPECT_TRUE(j[section].is_object()) << section;
  }

  // A string quoted in JSON stays a string; a JSON number in a string field is read as text.
  EXPECT_FALSE(ParseJobSpec(R"({"name": "j", "model": "m", "data": {"train": "t"},
                                "adapter": {"r": "4"}})", "job.json").ok());
  EXPECT_EQ(Parse(R"({"name": 12, "model": "m", "data": {"train": "t"}})").name, "12");
}

TEST(SpecPathsTest, ResolvesRelativePathsAgainstTheSpecDirectory) {
  EXPECT_EQ(SpecDirectory("/jobs/a/job.yaml"), "/jobs/a");
  EXPECT_EQ(SpecDirectory("job.yaml"), ".");
  EXPECT_EQ(SpecDirectory("/job.yaml"), "/");
  EXPECT_EQ(ResolveSpecPath("/jobs/a", "./data/t.jsonl"), "/jobs/a/data/t.jsonl");
  EXPECT_EQ(ResolveSpecPath("/jobs/a/", "m"), "/jobs/a/m");
  EXPECT_EQ(ResolveSpecPath("/jobs/a", "../m"), "/jobs/a/../m");
  EXPECT_EQ(ResolveSpecPath("/jobs/a", "/abs/m"), "/abs/m");
  EXPECT_EQ(ResolveSpecPath("/jobs/a", ""), "");
  EXPECT_EQ(ResolveSpecPath("/jobs/a", "."), "/jobs/a");

  JobSpec s = Parse("name: j\nmodel: ./models/base\ndata: {train: d/t.jsonl, validation: /v.jsonl}\n");
  JobSpec r = ResolveSpecPaths(s, "/jobs/a");
  EXPECT_EQ(s.model, "./models/base");  // kept as written
  EXPECT_EQ(r.model, "/jobs/a/models/base");
  EXPECT_EQ(r.data.train, "/jobs/a/d/t.jsonl");
  EXPECT_EQ(r.data.validation, "/v.jsonl");
  EXPECT_EQ(r.output.dir, "/jobs/a/out");
}

}  // namespace
}  // namespace d2lora::spec
