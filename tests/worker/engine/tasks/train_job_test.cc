#include <torch/torch.h>

#include "worker/engine/tasks/train_job.h"
#include "common/status_macros.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/trainer/error_file.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "worker/engine/distributed/process_group_gloo.h"
#include "worker/engine/distributed/process_group_threads.h"
#include "worker/engine/formats/safetensors.h"
#include "worker/engine/tasks/init_model.h"
#include "worker/engine/train/training_checkpoint.h"

namespace d2lora::engine {
namespace {

namespace fs = std::filesystem;
using d2lora::testing::ReadFile;
using d2lora::testing::TempDir;
using d2lora::testing::WriteFile;
using json = nlohmann::json;

const std::vector<std::string> kColors = {"red", "blue", "green", "yellow", "black", "white", "pink", "brown"};
const std::vector<std::string> kAnimals = {"dog", "cat", "fox", "bird", "fish", "horse", "mouse", "frog"};

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// One tiny model per test process (nothing writes to it).
const std::string& SharedModel() {
  static TempDir* dir = new TempDir();  // lives until the process exits
  static const std::string model = [] {
    InitModelOptions o;
    o.preset = "tiny";
    o.out_dir = dir->file("base");
    o.seed = 7;
    for (size_t i = 0; i < kColors.size(); ++i) {
      o.corpus.push_back("Question: which word is a color?\nA. " + kColors[i] + "\nB. " + kAnimals[i] +
                         "\nAnswer: " + kColors[i]);
      o.corpus.push_back("the " + kColors[i] + " " + kAnimals[i] + " runs. repeat: " + kAnimals[i]);
    }
    auto r = InitModel(o);
    EXPECT_TRUE(r.ok()) << r.status();
    return o.out_dir;
  }();
  return model;
}

// Multiple-choice records: "which word is a color?" with the color at label.
std::string McJsonl(int n, int offset) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    const int k = i + offset;
    const std::string color = kColors[k % kColors.size()];
    const std::string animal = kAnimals[(k * 3 + 1) % kAnimals.size()];
    const int label = k % 2;
    json choices = label == 0 ? json::array({color, animal}) : json::array({animal, color});
    out += json{{"question", "which word is a color?"}, {"choices", choices}, {"label", label}}.dump() + "\n";
  }
  return out;
}

// Instruction records: "repeat: the X Y" -> " X Y".
std::string InstructionJsonl(int n, int offset) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    const int k = i + offset;
    const std::string a = kColors[k % kColors.size()], b = kAnimals[(k * 5 + 2) % kAnimals.size()];
    out += json{{"prompt", "repeat: the " + a + " " + b + "\n"}, {"completion", a + " " + b}}.dump() + "\n";
  }
  return out;
}

// A spec over the shared tiny model; the caller sets data and output.
JobSpec BaseSpec(const std::string& train, const std::string& validation, const std::string& out) {
  JobSpec spec;
  spec.name = "train-job-test";
  spec.model = SharedModel();
  spec.adapter.r = 4;
  spec.adapter.alpha = 8;
  spec.adapter.target_modules = {"all-linear"};
  spec.adapter.dropout = 0.0;
  spec.data.train = train;
  spec.data.validation = validation;
  spec.data.format = "multiple_choice";
  spec.data.max_seq_len = 64;
  spec.train.epochs = 0;
  spec.train.max_steps = 4;
  spec.train.batch_size = 4;
  spec.train.micro_batch_size = 4;
  spec.train.lr = 3e-3;
  spec.train.warmup_steps = 1;
  spec.train.checkpoint_every = 2;
  spec.eval.every = 2;
  spec.eval.generate_max_new_tokens = 8;
  spec.metrics.volatility_window = 4;
  spec.output.dir = out;
  spec.resources.threads = 1;
  return spec;
}

absl::StatusOr<json> RunJob(const JobSpec& spec, const std::string& resume = "",
                         std::vector<TrainingCallback*> callbacks = {},
                            const std::atomic<bool>* stop = nullptr) {
  D2_ASSIGN_OR_RETURN(ValidJobSpec valid, ValidJobSpec::Check(spec));
  TrainJobOptions options;
  options.resume = resume;
  options.callbacks = std::move(callbacks);
  options.stop = stop;
  std::unique_ptr<ProcessGroup> group = CreateSingleProcessGroup();
  return RunTrainJob(valid, options, *group);
}

json ReadJson(const std::string& path) {
  json j = json::parse(ReadFile(path), nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << path << " is not JSON";
  return j;
}

std::vector<json> ReadJsonLines(const std::string& path) {
  std::vector<json> out;
  std::istringstream in(ReadFile(path));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << path << ": not JSON: " << line;
    out.push_back(std::move(j));
  }
  return out;
}

std::map<std::string, torch::Tensor> ReadTensors(const std::string& path) {
  std::map<std::string, torch::Tensor> out;
  auto file = SafetensorsFile::Open(path);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return out;
  for (const SafetensorsEntry& e : (*file)->entries()) {
    auto t = (*file)->Get(e.name);
    EXPECT_TRUE(t.ok()) << t.status();
    if (t.ok()) out[e.name] = t->clone();
  }
  return out;
}

// Same names, shapes and dtypes; every element within `tol` (0 = bitwise equal).
void ExpectSameTensors(const std::map<std::string, torch::Tensor>& a, const std::map<std::string, torch::Tensor>& b,
                       double tol) {
  ASSERT_FALSE(a.empty());
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, ta] : a) {
    auto it = b.find(name);
    ASSERT_NE(it, b.end()) << name;
    const torch::Tensor& tb = it->second;
    ASSERT_EQ(ta.sizes(), tb.sizes()) << name;
    ASSERT_EQ(ta.scalar_type(), tb.scalar_type()) << name;
    if (tol == 0) {
      EXPECT_TRUE(torch::equal(ta, tb)) << name << " differs";
    } else {
      const double diff = (ta.to(torch::kFloat64) - tb.to(torch::kFloat64)).abs().max().item<double>();
      EXPECT_LE(diff, tol) << name;
    }
  }
}

class StopAtStep : public TrainingCallback {
 public:
  StopAtStep(std::atomic<bool>* flag, int64_t step) : flag_(flag), step_(step) {}
  void OnStep(const StepMetrics& m) override {
    steps.push_back(m.step);
    if (m.step >= step_) flag_->store(true);
  }
  void OnEnd(const json& summary) override { end_summary = summary; }
  std::vector<int64_t> steps;
  json end_summary;

 private:
  std::atomic<bool>* flag_;
  int64_t step_;
};

// A merge over a threshold is not published: the job fails with
// MERGE_CHECK_FAILED naming the figure, the adapter and the report stay.
TEST(TrainJob, MergeGateStopsAMergeOverItsThreshold) {
  TempDir tmp;
  WriteFile(tmp.file("train.jsonl"), McJsonl(16, 0));
  WriteFile(tmp.file("val.jsonl"), McJsonl(8, 100));
  const std::string out = tmp.file("out");
  JobSpec spec = BaseSpec(tmp.file("train.jsonl"), tmp.file("val.jsonl"), out);
  spec.train.max_steps = 2;
  spec.output.merge_dtype = MergeDtype::kBf16;
  spec.output.merge_thresholds.max_logit_diff = 1e-9;  // bf16 weights cannot meet this
  auto result = RunJob(spec);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string message(result.status().message());
  EXPECT_TRUE(Contains(message, "MERGE_CHECK_FAILED: the merged model (bfloat16) was not published")) << message;
  EXPECT_TRUE(Contains(message, "logits: max_abs_diff")) << message;
  EXPECT_EQ(trainer::ReasonOf(result.status()), trainer::FailureReason::kMergeCheckFailed);
  EXPECT_FALSE(fs::exists(out + "/merged"));
  EXPECT_TRUE(fs::is_regular_file(out + "/adapter/adapter_model.safetensors"));
  const json report = ReadJson(out + "/merge_report.json");
  EXPECT_EQ(report["headline"]["passed"], false);
  EXPECT_EQ(report["thresholds"]["max_logit_diff"], 1e-9);
  EXPECT_EQ(report["thresholds"]["max_kl"], 1e-2);  // bf16's default
  const json summary = ReadJson(out + "/summary.json");
  EXPECT_EQ(summary["status"], "merge_check_failed");
  EXPECT_EQ(summary["merge_check"]["passed"], false);

  // output.merge_check: false reports the breach and publishes anyway.
  const std::string out2 = tmp.file("out2");
  spec.output.dir = out2;
  spec.output.merge_check = false;
  auto published = RunJob(spec);
  ASSERT_TRUE(published.ok()) << published.status();
  EXPECT_EQ((*published)["merge_check"]["passed"], false);
  EXPECT_TRUE(fs::is_regular_file(out2 + "/merged/model.safetensors"));
  // bf16's own figures: small next to its default thresholds.
  const json h = (*published)["merge_check"];
  EXPECT_GT(h["max_logit_diff"].get<double>(), 0.0);
  EXPECT_LT(h["max_logit_diff"].get<double>(), 0.5) << h;
  EXPECT_LT(h["mean_kl"].get<double>(), 1e-2) << h;
  EXPECT_GT(h["max_cast_error"].get<double>(), 1e-4) << h;
  EXPECT_LT(h["max_cast_error"].get<double>(), std::ldexp(1.0, -7)) << h;
}

TEST(TrainJob, MultipleChoiceEndToEnd) {
  TempDir tmp;
  WriteFile(tmp.file("train.jsonl"), McJsonl(32, 0));
  WriteFile(tmp.file("val.jsonl"), McJsonl(8, 100));
  const std::string out = tmp.file("out");
  JobSpec spec = BaseSpec(tmp.file("train.jsonl"), tmp.file("val.jsonl"), out);
  spec.train.max_steps = 6;
  spec.model_id = "example-org/tiny-llama";  // named as the adapters' base model, not spec.model's path
  auto result = RunJob(spec);
  ASSERT_TRUE(result.ok()) << result.status();
  const json summary = ReadJson(out + "/summary.json");
  EXPECT_EQ(summary, *result);
  EXPECT_EQ(ReadJson(out + "/adapter/adapter_config.json")["base_model_name_or_path"], "example-org/tiny-llama");
  EXPECT_EQ(ReadJson(out + "/adapter-peft/adapter_config.json")["base_model_name_or_path"], "example-org/tiny-llama");
  EXPECT_EQ(ReadJson(out + "/checkpoints/step-6/adapter/adapter_config.json")["base_model_name_or_path"],
            "example-org/tiny-llama");

  EXPECT_EQ(summary["status"], "completed");
  EXPECT_EQ(summary["method"], "d2lora");
  EXPECT_EQ(summary["steps"], 6);
  EXPECT_EQ(summary["total_steps"], 6);
  EXPECT_EQ(summary["world_size"], 1);
  EXPECT_TRUE(summary["resumed_from"].is_null());
  ASSERT_TRUE(summary["final"].is_object()) << summary.dump(2);
  EXPECT_EQ(summary["final"]["step"], 6);
  ASSERT_TRUE(summary["final"]["loss"].is_number());
  EXPECT_TRUE(std::isfinite(summary["final"]["loss"].get<double>()));
  EXPECT_GT(summary["final"]["loss"].get<double>(), 0);
  EXPECT_EQ(summary["volatility"]["steps"], 6);
  EXPECT_TRUE(summary["volatility"]["volatility"].is_number()) << summary["volatility"];
  EXPECT_EQ(summary["data"]["train"]["examples"], 32);
  EXPECT_EQ(summary["data"]["train"]["skipped_lines"], 0);
  EXPECT_EQ(summary["data"]["validation"]["choice_items"], 8);
  EXPECT_GT(summary["parameters"]["trainable"].get<int64_t>(), 0);
  EXPECT_LT(summary["parameters"]["trainable"].get<int64_t>(), summary["parameters"]["total"].get<int64_t>());

  // Evaluation: loss and all four scorings.
  const json& eval = summary["eval"];
  ASSERT_TRUE(eval.is_object()) << summary.dump(2);
  EXPECT_TRUE(eval["loss"].is_number());
  EXPECT_EQ(eval["choice_items"], 8);
  EXPECT_EQ(eval["scoring"], "mean");
  for (const char* s : {"sum", "mean", "byte", "letter"}) {
    ASSERT_TRUE(eval["accuracy"][s].is_number()) << s << ": " << eval.dump(2);
    const double a = eval["accuracy"][s].get<double>();
    EXPECT_GE(a, 0.0) << s;
    EXPECT_LE(a, 1.0) << s;
    // 8 items: a multiple of 1/8.
    EXPECT_NEAR(a * 8, std::round(a * 8), 1e-9) << s;
  }

  // The merge check: the merged model scores like the adapted one.
  const json& check = summary["merge_check"];
  ASSERT_TRUE(check.is_object()) << summary.dump(2);
  ASSERT_TRUE(check["max_logit_diff"].is_number()) << check;
  EXPECT_LT(check["max_logit_diff"].get<double>(), 1e-4);
  EXPECT_EQ(check["sequences"], 8);
  ASSERT_TRUE(check["accuracy_gap_pp"].is_number()) << check;
  EXPECT_NEAR(check["accuracy_gap_pp"].get<double>(), 0.0, 1e-9);
  EXPECT_EQ(check["accuracy_unmerged"], eval["accuracy"]["mean"]);
  EXPECT_TRUE(check["loss_gap"].is_number());
  EXPECT_LT(std::abs(check["loss_gap"].get<double>()), 1e-4);
  EXPECT_EQ(check["merged_dtype"], "float32");  // the base model's dtype
  // The merge gate: passed, its report beside the adapter, every adapted layer measured.
  EXPECT_EQ(check["passed"], true) << check;
  EXPECT_TRUE(check["mean_kl"].is_number()) << check;
  EXPECT_LT(check["max_row_norm_deviation"].get<double>(), 1e-5) << check;
  const json report = ReadJson(out + "/merge_report.json");
  EXPECT_EQ(report["headline"]["passed"], true);
  EXPECT_EQ(report["headline"]["max_logit_diff"], check["max_logit_diff"]);
  EXPECT_TRUE(report["breaches"].empty()) << report["breaches"];
  EXPECT_EQ(report["layers"].size(), 4u * 7) << "every adapted linear layer of the tiny model";
  EXPECT_EQ(report["thresholds"]["max_logit_diff"], 1e-3);  // fp32's default
  EXPECT_EQ(summary["paths"]["merge_report"], out + "/merge_report.json");
  // predictions.json: each question's answer under every scoring, agreeing
  // with the accuracies; the merged model's under the spec's scoring.
  EXPECT_EQ(summary["paths"]["predictions"], out + "/predictions.json");
  const json pred = ReadJson(out + "/predictions.json");
  EXPECT_EQ(pred["step"], 6);
  ASSERT_EQ(pred["labels"].size(), 8u) << pred.dump();
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(pred["labels"][i], (100 + i) % 2) << i;  // McJsonl's labels
  for (const char* s : {"sum", "mean", "byte", "letter"}) {
    const json& p = pred["training_form"][s];
    ASSERT_EQ(p.size(), 8u) << s;
    int correct = 0;
    for (size_t i = 0; i < 8; ++i) {
      EXPECT_GE(p[i].get<int>(), 0);
      EXPECT_LT(p[i].get<int>(), 2);
      correct += p[i] == pred["labels"][i];
    }
    EXPECT_NEAR(correct / 8.0, eval["accuracy"][s].get<double>(), 1e-12) << s;
  }
  EXPECT_EQ(pred["merged"]["mean"], pred["training_form"]["mean"]);
  EXPECT_FALSE(pred["merged"].contains("sum"));
  // D2-LoRA jobs also write the exact PEFT DoRA export.
  EXPECT_EQ(summary["paths"]["adapter_peft"], out + "/adapter-peft");
  const json peft = ReadJson(out + "/adapter-peft/adapter_config.json");
  EXPECT_EQ(peft["peft_type"], "LORA");
  EXPECT_EQ(peft["use_dora"], true);
  EXPECT_EQ(peft["r"], 2 * spec.adapter.r);

  // Paths and files.
  const json& paths = summary["paths"];
  EXPECT_EQ(paths["output_dir"], out);
  EXPECT_EQ(paths["adapter"], out + "/adapter");
  EXPECT_EQ(paths["merged"], out + "/merged");
  EXPECT_EQ(paths["metrics"], out + "/metrics.jsonl");
  EXPECT_EQ(paths["checkpoint"], out + "/checkpoints/step-6");
  for (const char* f : {"spec.yaml", "summary.json", "metrics.jsonl", "adapter/adapter_config.json",
                        "adapter/adapter_model.safetensors", "merged/config.json", "merged/model.safetensors",
                        "merged/tokenizer.json", "checkpoints/step-6/trainer_state.json",
                        "checkpoints/step-6/parameters.safetensors", "checkpoints/step-6/optimizer.safetensors",
                        "checkpoints/step-6/adapter/adapter_model.safetensors", "checkpoints/step-2/trainer_state.json",
                        "checkpoints/step-4/trainer_state.json"}) {
    EXPECT_TRUE(fs::is_regular_file(out + "/" + f)) << f;
  }
  // spec.yaml parses back to the spec in effect.
  absl::StatusOr<JobSpec> written = LoadJobSpec(out + "/spec.yaml");
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(*written, spec);

  // The final adapter is the one in the last checkpoint.
  ExpectSameTensors(ReadTensors(out + "/adapter/adapter_model.safetensors"),
                    ReadTensors(out + "/checkpoints/step-6/adapter/adapter_model.safetensors"), 0);
  // The merged model has the base model's tensors (no adapter parameters), changed by training.
  auto base = ReadTensors(SharedModel() + "/model.safetensors");
  auto merged = ReadTensors(out + "/merged/model.safetensors");
  ASSERT_EQ(base.size(), merged.size());
  int changed = 0;
  for (const auto& [name, t] : base) {
    ASSERT_TRUE(merged.count(name)) << name;
    ASSERT_EQ(merged[name].sizes(), t.sizes()) << name;
    if (!torch::equal(merged[name], t)) ++changed;
  }
  EXPECT_GE(changed, 4 * 7) << "every adapted linear layer should be changed by the merge";

  // metrics.jsonl: start, steps 1..6 with a loss, evals, checkpoints, end.
  std::vector<json> events = ReadJsonLines(out + "/metrics.jsonl");
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.front()["event"], "start");
  EXPECT_EQ(events.front()["total_steps"], 6);
  EXPECT_EQ(events.front()["start_step"], 0);
  EXPECT_EQ(events.back()["event"], "end");
  EXPECT_EQ(events.back()["summary"], summary);
  std::vector<int64_t> steps, checkpoints;
  int evals = 0, final_evals = 0;
  for (const json& e : events) {
    ASSERT_TRUE(e["time"].is_number()) << e;
    if (e["event"] == "step") {
      steps.push_back(e["step"].get<int64_t>());
      ASSERT_TRUE(e["loss"].is_number()) << e;
      EXPECT_TRUE(std::isfinite(e["loss"].get<double>())) << e;
    } else if (e["event"] == "eval") {
      ++evals;
      if (e["final"] == true) ++final_evals;
    } else if (e["event"] == "checkpoint") {
      checkpoints.push_back(e["step"].get<int64_t>());
    }
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(checkpoints, (std::vector<int64_t>{2, 4, 6}));
  EXPECT_EQ(evals, 3);  // after steps 2 and 4, and the final one
  EXPECT_EQ(final_evals, 1);
  EXPECT_EQ(events[events.size() - 2]["event"], "eval") << "the final evaluation comes last before the end";
}

TEST(TrainJob, InstructionReportsRougeL) {
  TempDir tmp;
  WriteFile(tmp.file("train.jsonl"), InstructionJsonl(32, 0));
  WriteFile(tmp.file("val.jsonl"), InstructionJsonl(6, 50));
  const std::string out = tmp.file("out");
  JobSpec spec = BaseSpec(tmp.file("train.jsonl"), tmp.file("val.jsonl"), out);
  spec.data.format = "instruction";
  spec.train.max_steps = 3;
  spec.output.merge = false;
  auto result = RunJob(spec);
  ASSERT_TRUE(result.ok()) << result.status();
  const json summary = ReadJson(out + "/summary.json");
  EXPECT_EQ(summary["status"], "completed");
  const json& eval = summary["eval"];
  ASSERT_TRUE(eval["rouge_l"].is_number()) << summary.dump(2);
  EXPECT_GE(eval["rouge_l"].get<double>(), 0.0);
  EXPECT_LE(eval["rouge_l"].get<double>(), 1.0);
  EXPECT_EQ(eval["generation_items"], 6);
  EXPECT_TRUE(eval["loss"].is_number());
  EXPECT_FALSE(eval.contains("accuracy"));
  EXPECT_EQ(summary["data"]["validation"]["generation_items"], 6);
  // output.merge = false: an adapter, no merged model, no merge check.
  EXPECT_TRUE(fs::is_regular_file(out + "/adapter/adapter_model.safetensors"));
  EXPECT_FALSE(fs::exists(out + "/merged"));
  EXPECT_FALSE(summary.contains("merge_check"));
  EXPECT_FALSE(summary["paths"].contains("merged"));
}

TEST(TrainJob, BadTrainingLineIsNamedOrSkipped) {
  TempDir tmp;
  std::string data = McJsonl(2, 0) + "{\"question\": \"which word is a color?\", \"choices\": [\"red\"], \"label\": 0}\n" +
                     McJsonl(13, 2);
  const std::string train = tmp.file("train.jsonl");
  WriteFile(train, data);
  JobSpec spec = BaseSpec(train, "", tmp.file("out"));
  spec.train.max_steps = 2;
  spec.output.merge = false;
  auto failed = RunJob(spec);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInvalidArgument) << failed.status();
  EXPECT_TRUE(Contains(std::string(failed.status().message()), train + ":3")) << failed.status();
  // A job refused for bad input leaves nothing behind, so the same output.dir can be used again.
  EXPECT_FALSE(fs::exists(spec.output.dir));

  spec.data.skip_invalid = true;
  auto result = RunJob(spec);
  ASSERT_TRUE(result.ok()) << result.status();
  const json summary = ReadJson(spec.output.dir + "/summary.json");
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_EQ(summary["data"]["train"]["skipped_lines"], 1);
  EXPECT_EQ(summary["data"]["train"]["examples"], 15);
  ASSERT_TRUE(summary["data"]["train"]["skip_reasons"].is_array()) << summary["data"];
  ASSERT_EQ(summary["data"]["train"]["skip_reasons"].size(), 1u);
  EXPECT_TRUE(Contains(summary["data"]["train"]["skip_reasons"][0].get<std::string>(), train + ":3"))
      << summary["data"];
  EXPECT_FALSE(summary.contains("eval"));  // no validation set
}

TEST(TrainJob, FreshRunRefusesOutputDirWithFiles) {
  TempDir tmp;
  WriteFile(tmp.file("train.jsonl"), McJsonl(16, 0));
  const std::string out = tmp.file("out");
  fs::create_directories(out + "/checkpoints");
  WriteFile(out + "/notes.txt", "keep me");
  JobSpec spec = BaseSpec(tmp.file("train.jsonl"), "", out);
  spec.train.max_steps = 1;
  auto refused = RunJob(spec);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  const std::string msg(refused.status().message());
  EXPECT_TRUE(Contains(msg, out)) << msg;
  EXPECT_TRUE(Contains(msg, "--resume")) << msg;
  // Nothing was deleted, nothing was written.
  EXPECT_EQ(ReadFile(out + "/notes.txt"), "keep me");
  EXPECT_TRUE(fs::is_directory(out + "/checkpoints"));
  EXPECT_FALSE(fs::exists(out + "/spec.yaml"));
  EXPECT_FALSE(fs::exists(out + "/metrics.jsonl"));
  EXPECT_EQ(std::distance(fs::directory_iterator(out), fs::directory_iterator()), 2);

  // An existing but empty directory is fine.
  const std::string empty = tmp.file("empty");
  fs::create_directories(empty);
  spec.output.dir = empty;
  auto ok = RunJob(spec);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)["status"], "completed");
}

double FirstStepLoss(const std::string& out) {
  for (const json& e : ReadJsonLines(out + "/metrics.jsonl")) {
    if (e["event"] == "step" && e["step"] == 1) return e["loss"].get<double>();
  }
  ADD_FAILURE() << out << ": no step 1";
  return 0;
}

// init.adapter: a run starts from an earlier run's adapter (its output
// directory names adapter/), so its first batch already has the lower loss;
// a resumed run reads its checkpoint, not the init (gone by then).
TEST(TrainJob, InitAdapterStartsFromAnEarlierRun) {
  TempDir tmp;
  WriteFile(tmp.file("train.jsonl"), McJsonl(32, 0));
  JobSpec earlier = BaseSpec(tmp.file("train.jsonl"), "", tmp.file("earlier"));
  earlier.method = TrainingMethod::kLora;
  earlier.adapter.method = AdapterMethod::kLora;
  earlier.train.max_steps = 16;
  earlier.train.lr = 1e-2;
  earlier.output.merge = false;
  auto first = RunJob(earlier);
  ASSERT_TRUE(first.ok()) << first.status();

  JobSpec fresh = earlier;
  fresh.train.max_steps = 3;
  fresh.train.checkpoint_every = 1;
  fresh.output.dir = tmp.file("fresh");
  ASSERT_TRUE(RunJob(fresh).ok());
  JobSpec from = fresh;
  from.output.dir = tmp.file("from");
  from.init.adapter = tmp.file("earlier");
  std::atomic<bool> stop{false};
  StopAtStep stopper(&stop, 1);
  auto started = RunJob(from, "", {&stopper}, &stop);
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ((*started)["status"], "stopped");
  const json& init = (*started)["init"];
  EXPECT_EQ(init["adapter"], tmp.file("earlier/adapter"));
  EXPECT_EQ(init["saved_method"], "lora");
  EXPECT_GT(init["modules"].get<int64_t>(), 0);
  EXPECT_EQ(init["fresh_modules"], 0);
  const double fresh_loss = FirstStepLoss(tmp.file("fresh")), from_loss = FirstStepLoss(tmp.file("from"));
  EXPECT_LT(from_loss, fresh_loss - 0.1) << "fresh " << fresh_loss << ", from the earlier adapter " << from_loss;

  fs::remove_all(tmp.file("earlier"));
  auto resumed = RunJob(from, tmp.file("from"));
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ((*resumed)["status"], "completed");
  EXPECT_EQ((*resumed)["steps"], 3);

  // A job id is the service's to resolve.
  JobSpec by_job = fresh;
  by_job.output.dir = tmp.file("by-job");
  by_job.init.from_job = "j-123";
  auto refused = RunJob(by_job);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_TRUE(Contains(std::string(refused.status().message()), "init.from_job = j-123")) << refused.status();
}

TEST(TrainJob, StopAndResumeMatchesUninterruptedRun) {
  TempDir tmp;
  WriteFile(tmp.file("train.jsonl"), McJsonl(24, 0));
  WriteFile(tmp.file("val.jsonl"), McJsonl(4, 100));
  JobSpec spec = BaseSpec(tmp.file("train.jsonl"), tmp.file("val.jsonl"), tmp.file("a"));
  spec.train.max_steps = 6;
  spec.train.checkpoint_every = 2;
  spec.adapter.dropout = 0.1;  // dropout masks must follow the step on resume too
  spec.output.merge = false;
  spec.eval.every = 0;

  // A: uninterrupted.
  auto a = RunJob(spec);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ((*a)["status"], "completed");

  // B: stopped after step 3, then resumed.
  JobSpec spec_b = spec;
  spec_b.output.dir = tmp.file("b");
  std::atomic<bool> stop{false};
  StopAtStep stopper(&stop, 3);
  auto stopped = RunJob(spec_b, "", {&stopper}, &stop);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ((*stopped)["status"], "stopped");
  const int64_t stopped_at = (*stopped)["steps"].get<int64_t>();
  EXPECT_GE(stopped_at, 3);
  EXPECT_LT(stopped_at, 6);
  EXPECT_EQ(stopper.steps.back(), stopped_at);
  EXPECT_EQ(stopper.end_summary, *stopped);
  EXPECT_EQ(ReadJson(spec_b.output.dir + "/summary.json"), *stopped);
  EXPECT_TRUE(fs::is_regular_file(CheckpointPath(spec_b.output.dir + "/checkpoints", stopped_at) + "/trainer_state.json"));
  EXPECT_EQ((*stopped)["paths"]["checkpoint"], CheckpointPath(spec_b.output.dir + "/checkpoints", stopped_at));
  EXPECT_FALSE(fs::exists(spec_b.output.dir + "/adapter")) << "a stopped run writes no final adapter";
  EXPECT_FALSE((*stopped).contains("eval"));

  auto resumed = RunJob(spec_b, spec_b.output.dir);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ((*resumed)["status"], "completed");
  EXPECT_EQ((*resumed)["steps"], 6);
  EXPECT_EQ((*resumed)["resumed_from"], CheckpointPath(spec_b.output.dir + "/checkpoints", stopped_at));
  EXPECT_EQ((*resumed)["volatility"]["steps"], 6);
  EXPECT_EQ((*resumed)["final"]["loss"], (*a)["final"]["loss"]);
  EXPECT_EQ((*resumed)["eval"]["loss"], (*a)["eval"]["loss"]);

  ExpectSameTensors(ReadTensors(tmp.file("a/adapter/adapter_model.safetensors")),
                    ReadTensors(tmp.file("b/adapter/adapter_model.safetensors")), 0);
  ExpectSameTensors(ReadTensors(tmp.file("a/checkpoints/step-6/optimizer.safetensors")),
                    ReadTensors(tmp.file("b/checkpoints/step-6/optimizer.safetensors")), 0);

  // metrics.jsonl of B: the resumed session appended its own start.
  std::vector<json> events = ReadJsonLines(tmp.file("b/metrics.jsonl"));
  int starts = 0, ends = 0;
  for (const json& e : events) {
    if (e["event"] == "start") {
      EXPECT_EQ(e["start_step"], starts == 0 ? 0 : stopped_at) << e;
      ++starts;
    }
    if (e["event"] == "end") ++ends;
  }
  EXPECT_EQ(starts, 2);
  EXPECT_EQ(ends, 2);
  EXPECT_EQ(events.back()["event"], "end");
  EXPECT_EQ(events.back()["summary"]["status"], "completed");

  // Resuming with a different learning rate is refused, naming the key.
  JobSpec changed = spec;
  changed.train.lr = 1e-3;
  auto refused = RunJob(changed, spec.output.dir);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_TRUE(Contains(std::string(refused.status().message()), "train.lr")) << refused.status();
  // ... and leaves spec.yaml, the spec the checkpoints were trained with, as it was.
  absl::StatusOr<JobSpec> kept = LoadJobSpec(spec.output.dir + "/spec.yaml");
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(*kept, spec);

  // A corrupt checkpoint named as such is data loss, naming the file ...
  const std::string newest = tmp.file("b/checkpoints/step-6");
  const std::string params = newest + "/" + kParametersFile;
  std::string bytes = ReadFile(params);
  ASSERT_GT(bytes.size(), 100u);
  bytes[bytes.size() - 5] ^= 0x40;
  WriteFile(params, bytes);
  auto corrupt = RunJob(spec_b, newest);
  ASSERT_FALSE(corrupt.ok());
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kDataLoss) << corrupt.status();
  EXPECT_TRUE(Contains(std::string(corrupt.status().message()), params)) << corrupt.status();
  // ... while resuming an output directory passes over it to the previous one.
  auto fallback = RunJob(spec_b, spec_b.output.dir);
  ASSERT_TRUE(fallback.ok()) << fallback.status();
  EXPECT_TRUE(Contains((*fallback)["resumed_from"].get<std::string>(), "step-4")) << (*fallback)["resumed_from"];
  EXPECT_EQ((*fallback)["status"], "completed");
}

TEST(TrainJob, FullFineTuneWritesTheModelAndNoAdapter) {
  TempDir tmp;
  WriteFile(tmp.file("train.jsonl"), McJsonl(16, 0));
  WriteFile(tmp.file("val.jsonl"), McJsonl(4, 100));
  const std::string out = tmp.file("out");
  JobSpec spec = BaseSpec(tmp.file("train.jsonl"), tmp.file("val.jsonl"), out);
  spec.method = TrainingMethod::kFull;
  spec.train.max_steps = 2;
  spec.train.lr = 1e-3;
  auto result = RunJob(spec);
  ASSERT_TRUE(result.ok()) << result.status();
  const json summary = ReadJson(out + "/summary.json");
  EXPECT_EQ(summary["status"], "completed");
  EXPECT_EQ(summary["method"], "full");
  EXPECT_EQ(summary["steps"], 2);
  EXPECT_EQ(summary["parameters"]["trainable"], summary["parameters"]["total"]);
  EXPECT_FALSE(summary.contains("merge_check"));
  EXPECT_FALSE(summary["paths"].contains("adapter"));
  EXPECT_EQ(summary["paths"]["merged"], out + "/merged");
  EXPECT_TRUE(summary["eval"]["accuracy"].is_object()) << summary.dump(2);
  EXPECT_FALSE(fs::exists(out + "/adapter"));
  EXPECT_FALSE(fs::exists(out + "/checkpoints/step-2/adapter"));
  for (const char* f : {"merged/config.json", "merged/model.safetensors", "merged/tokenizer.json"}) {
    EXPECT_TRUE(fs::is_regular_file(out + "/" + f)) << f;
  }
  // The merged model is the fine-tuned one: the base model's tensors, all of
  // them changed, equal to the final checkpoint's parameters.
  auto base = ReadTensors(SharedModel() + "/model.safetensors");
  auto merged = ReadTensors(out + "/merged/model.safetensors");
  ASSERT_EQ(base.size(), merged.size());
  int changed = 0;
  for (const auto& [name, t] : base) {
    ASSERT_TRUE(merged.count(name)) << name;
    if (!torch::equal(merged[name], t)) ++changed;
  }
  EXPECT_EQ(changed, static_cast<int>(base.size()));
  auto params = ReadTensors(out + "/checkpoints/step-2/parameters.safetensors");
  EXPECT_EQ(params.size(), base.size());
}

// A loopback port that was free a moment ago.
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    socklen_t len = sizeof(addr);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

// Runs `spec` as 2 Gloo ranks (threads of this process over loopback TCP);
// `resume`, `rank0_callbacks` and `stop` as for RunJob.
std::vector<absl::StatusOr<json>> RunTwoGlooRanks(const JobSpec& spec, const std::string& resume = "",
                                                  std::vector<TrainingCallback*> rank0_callbacks = {},
                                                  const std::atomic<bool>* stop = nullptr) {
  std::vector<absl::StatusOr<json>> results(2, absl::UnknownError("not run"));
  const int port = FreePort();
  if (port <= 0) return results;
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      DistributedOptions o;
      o.rank = r;
      o.world_size = 2;
      o.local_rank = r;
      o.master_addr = "127.0.0.1";
      o.master_port = port;
      o.timeout = std::chrono::milliseconds(60000);
      auto pg = GlooProcessGroup::Create(o);
      if (!pg.ok()) {
        results[r] = pg.status();
        return;
      }
      auto valid = ValidJobSpec::Check(spec);
      if (!valid.ok()) {
        results[r] = valid.status();
        return;
      }
      TrainJobOptions options;
      options.resume = resume;
      if (r == 0) options.callbacks = rank0_callbacks;
      options.stop = stop;
      results[r] = RunTrainJob(*valid, options, **pg);
    });
    if (r == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (std::thread& t : threads) t.join();
  return results;
}

TEST(TrainJob, TwoGlooRanksMatchOneRank) {
  TempDir tmp;
  WriteFile(tmp.file("train.jsonl"), McJsonl(32, 0));
  WriteFile(tmp.file("val.jsonl"), McJsonl(6, 100));
  JobSpec spec = BaseSpec(tmp.file("train.jsonl"), tmp.file("val.jsonl"), tmp.file("two"));
  spec.train.max_steps = 20;
  spec.train.batch_size = 8;
  spec.train.micro_batch_size = 2;
  spec.train.lr = 1e-3;
  spec.train.checkpoint_every = 10;
  spec.eval.every = 10;
  spec.adapter.dropout = 0.0;
  spec.resources.world_size = 2;

  std::vector<absl::StatusOr<json>> results = RunTwoGlooRanks(spec);
  for (int r = 0; r < 2; ++r) ASSERT_TRUE(results[r].ok()) << "rank " << r << ": " << results[r].status();
  EXPECT_EQ((*results[0])["world_size"], 2);
  EXPECT_EQ((*results[1])["steps"], 20);
  EXPECT_EQ((*results[0])["final"]["loss"], (*results[1])["final"]["loss"]);
  for (const char* key : {"loss", "accuracy", "choice_items"}) {
    EXPECT_EQ((*results[0])["eval"][key], (*results[1])["eval"][key]) << key;
  }
  // Only rank 0 reports the merge check and paths.
  EXPECT_TRUE((*results[0]).contains("merge_check"));

  JobSpec single = spec;
  single.resources.world_size = 1;
  single.output.dir = tmp.file("one");
  auto one = RunJob(single);
  ASSERT_TRUE(one.ok()) << one.status();

  const json two_summary = ReadJson(tmp.file("two/summary.json"));
  EXPECT_EQ(two_summary["status"], "completed");
  EXPECT_EQ(two_summary["world_size"], 2);
  // The same global batches: same loss, token count and gradient norm.
  EXPECT_NEAR(two_summary["final"]["loss"].get<double>(), (*one)["final"]["loss"].get<double>(), 1e-4);
  EXPECT_EQ(two_summary["final"]["tokens"], (*one)["final"]["tokens"]);
  EXPECT_NEAR(two_summary["final"]["grad_norm"].get<double>(), (*one)["final"]["grad_norm"].get<double>(),
              1e-4 * (*one)["final"]["grad_norm"].get<double>());
  EXPECT_EQ(two_summary["eval"]["choice_items"], 6);
  EXPECT_NEAR(two_summary["eval"]["loss"].get<double>(), (*one)["eval"]["loss"].get<double>(), 1e-4);
  EXPECT_LT(two_summary["merge_check"]["max_logit_diff"].get<double>(), 1e-4);
  // Each rank scored every other question: predictions.json holds all six, in order.
  const json two_pred = ReadJson(tmp.file("two/predictions.json"));
  const json one_pred = ReadJson(tmp.file("one/predictions.json"));
  ASSERT_EQ(two_pred["training_form"]["mean"].size(), 6u);
  EXPECT_EQ(two_pred["labels"], one_pred["labels"]);
  EXPECT_EQ(two_pred["training_form"], one_pred["training_form"]);
  ExpectSameTensors(ReadTensors(tmp.file("one/adapter/adapter_model.safetensors")),
                    ReadTensors(tmp.file("two/adapter/adapter_model.safetensors")), 1e-5);
  // Training did move the adapter away from its initialisation.
  auto mid = ReadTensors(tmp.file("two/checkpoints/step-10/adapter/adapter_model.safetensors"));
  auto last = ReadTensors(tmp.file("two/adapter/adapter_model.safetensors"));
  double moved = 0;
  for (const auto& [name, t] : last) {
    moved = std::max(moved, (t - mid[name]).abs().max().item<double>());
  }
  EXPECT_GT(moved, 1e-4);
}

// Elastic resume: a checkpoint holds only the trainable state and the data
// cursor counts global batches, so a run stopped at one world size continues
// at another (here with another micro-batch size too) and ends with the
// uninterrupted run's adapter, up to summation order.
TEST(TrainJob, ResumesAtAnotherWorldSize) {
  TempDir tmp;
  WriteFile(tmp.file("train.jsonl"), McJsonl(32, 0));
  WriteFile(tmp.file("val.jsonl"), McJsonl(6, 100));
  JobSpec spec = BaseSpec(tmp.file("train.jsonl"), tmp.file("val.jsonl"), tmp.file("ref"));
  spec.train.max_steps = 12;
  spec.train.batch_size = 8;
  spec.train.micro_batch_size = 2;
  spec.train.lr = 1e-3;
  spec.train.checkpoint_every = 4;
  spec.eval.every = 0;
  // Dropout masks are drawn per (seed, rank, step): with dropout a resume at
  // another world size draws other masks, and only matches in distribution.
  spec.adapter.dropout = 0.0;
  spec.output.merge = false;
  auto ref = RunJob(spec);
  ASSERT_TRUE(ref.ok()) << ref.status();
  const auto ref_adapter = ReadTensors(tmp.file("ref/adapter/adapter_model.safetensors"));

  // 2 ranks, stopped after step 5, resumed on 1 rank with micro-batches of 8.
  JobSpec two = spec;
  two.resources.world_size = 2;
  two.output.dir = tmp.file("two-one");
  std::atomic<bool> stop{false};
  StopAtStep stopper(&stop, 5);
  auto stopped = RunTwoGlooRanks(two, "", {&stopper}, &stop);
  for (int r = 0; r < 2; ++r) ASSERT_TRUE(stopped[r].ok()) << "rank " << r << ": " << stopped[r].status();
  ASSERT_EQ((*stopped[0])["status"], "stopped");
  const int64_t at = (*stopped[0])["steps"].get<int64_t>();
  JobSpec one = spec;
  one.output.dir = two.output.dir;
  one.train.micro_batch_size = 8;
  auto resumed = RunJob(one, one.output.dir);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ((*resumed)["steps"], 12);
  EXPECT_EQ((*resumed)["world_size"], 1);
  EXPECT_EQ((*resumed)["resumed_from"], CheckpointPath(one.output.dir + "/checkpoints", at));
  EXPECT_NEAR((*resumed)["final"]["loss"].get<double>(), (*ref)["final"]["loss"].get<double>(), 1e-5);
  ExpectSameTensors(ref_adapter, ReadTensors(tmp.file("two-one/adapter/adapter_model.safetensors")), 1e-5);

  // 1 rank, stopped after step 5, resumed on 2 ranks.
  JobSpec first = spec;
  first.output.dir = tmp.file("one-two");
  std::atomic<bool> stop2{false};
  StopAtStep stopper2(&stop2, 5);
  auto stopped1 = RunJob(first, "", {&stopper2}, &stop2);
  ASSERT_TRUE(stopped1.ok()) << stopped1.status();
  ASSERT_EQ((*stopped1)["status"], "stopped");
  JobSpec grown = two;
  grown.output.dir = first.output.dir;
  auto resumed2 = RunTwoGlooRanks(grown, grown.output.dir);
  for (int r = 0; r < 2; ++r) ASSERT_TRUE(resumed2[r].ok()) << "rank " << r << ": " << resumed2[r].status();
  EXPECT_EQ((*resumed2[0])["world_size"], 2);
  EXPECT_EQ((*resumed2[0])["steps"], 12);
  ExpectSameTensors(ref_adapter, ReadTensors(tmp.file("one-two/adapter/adapter_model.safetensors")), 1e-5);

  // A world size the global batch cannot be split over is refused, naming the numbers.
  JobSpec three = spec;
  three.resources.world_size = 3;
  absl::Status invalid = ValidateJobSpec(three);
  EXPECT_NE(invalid.message().find("train.batch_size = 8: must be divisible by train.micro_batch_size * "
                                   "resources.world_size = 2 * 3 (no micro_batch_size can"),
            std::string::npos)
      << invalid;
}

}  // namespace
}  // namespace d2lora::engine
