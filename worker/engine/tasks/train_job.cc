#include <torch/torch.h>

#include "worker/engine/tasks/train_job.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/model/memory_plan.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/text_format.h"
#include "worker/engine/adapters/adapter_init.h"
#include "worker/engine/adapters/adapter_io.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/adapters/peft_export.h"
#include "worker/engine/data/collate.h"
#include "worker/engine/data/examples.h"
#include "worker/engine/data/jsonl.h"
#include "worker/engine/distributed/agree.h"
#include "worker/engine/metrics/metrics_json.h"
#include "worker/engine/metrics/metrics_jsonl.h"
#include "worker/engine/model/checkpoint.h"
#include "worker/engine/tasks/merge_model.h"
#include "worker/engine/tasks/merge_report.h"
#include "worker/engine/tokenizer/tokenizer.h"
#include "worker/engine/runtime.h"
#include "worker/engine/torch_guard.h"
#include "worker/engine/train/trainer.h"
#include "worker/engine/train/training_checkpoint.h"

namespace d2lora::engine {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int64_t kMergeCheckSequences = 8;

struct PreparedData {
  std::shared_ptr<std::vector<Example>> train;
  ValidationSet validation;
  nlohmann::json report;
};

absl::StatusOr<PreparedData> PrepareData(const JobSpec& spec, const Tokenizer& tokenizer, int64_t vocab_size) {
  D2_ASSIGN_OR_RETURN(DataFormat format, ParseDataFormat(spec.data.format));
  JsonlOptions jo;
  jo.format = format;
  jo.skip_invalid = spec.data.skip_invalid;
  jo.vocab_size = vocab_size;
  PreparedData out;
  D2_ASSIGN_OR_RETURN(Dataset train, ReadJsonl(spec.data.train, jo));
  D2_ASSIGN_OR_RETURN(ExampleSet train_set, MakeExamples(train, tokenizer, spec.data.max_seq_len));
  out.train = std::make_shared<std::vector<Example>>(std::move(train_set.examples));
  out.report["train"] = {{"path", spec.data.train},        {"examples", out.train->size()},
                         {"skipped_lines", train.skipped}, {"truncated", train_set.truncated},
                         {"dropped", train_set.dropped}};
  if (train.skipped) out.report["train"]["skip_reasons"] = train.skip_reasons;
  if (spec.data.validation.empty()) return out;

  D2_ASSIGN_OR_RETURN(Dataset val, ReadJsonl(spec.data.validation, jo));
  D2_ASSIGN_OR_RETURN(ExampleSet val_set, MakeExamples(val, tokenizer, spec.data.max_seq_len));
  out.validation.examples = std::move(val_set.examples);
  if (format == DataFormat::kMultipleChoice) {
    D2_ASSIGN_OR_RETURN(out.validation.choices, MakeChoiceExamples(val, tokenizer, spec.data.max_seq_len));
  }
  for (const Record& rec : val.records) {
    if (format == DataFormat::kInstruction) {
      auto ex = MakeExample(rec, format, tokenizer, spec.data.max_seq_len);
      if (!ex.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(spec.data.validation, ":", rec.line, ": ", ex.status().message()));
      }
      size_t first_target = 0;
      while (first_target < ex->loss_mask.size() && !ex->loss_mask[first_target]) ++first_target;
      if (first_target == 0 || first_target == ex->ids.size()) continue;  // no prompt or no target left
      out.validation.generation.push_back(
          {std::vector<int64_t>(ex->ids.begin(), ex->ids.begin() + static_cast<int64_t>(first_target)), rec.completion});
    }
  }
  out.report["validation"] = {{"path", spec.data.validation},
                              {"examples", out.validation.examples.size()},
                              {"choice_items", out.validation.choices.size()},
                              {"generation_items", out.validation.generation.size()},
                              {"skipped_lines", val.skipped},
                              {"truncated", val_set.truncated},
                              {"dropped", val_set.dropped}};
  return out;
}

// What a resumed run must share with the checkpoint it continues: the method,
// the adapter, the training data (by content), the base model's config (by
// content) and every setting that changes the numbers.
absl::StatusOr<nlohmann::json> Fingerprint(const JobSpec& spec) {
  nlohmann::json s = JobSpecToJson(spec);
  nlohmann::json fp;
  fp["method"] = s["method"];
  if (!spec.full_finetune()) fp["adapter"] = s["adapter"];
  D2_ASSIGN_OR_RETURN(std::string data_sha, Sha256File(spec.data.train));
  D2_ASSIGN_OR_RETURN(std::string config_sha, Sha256File(spec.model + "/" + kModelConfigFile));
  fp["data"] = {{"train_sha256", data_sha},
                {"format", s["data"]["format"]},
                {"max_seq_len", s["data"]["max_seq_len"]},
                {"skip_invalid", s["data"]["skip_invalid"]}};
  fp["model"] = {{"config_sha256", config_sha}};
  fp["train"] = s["train"];
  // Free on resume: what does not change the math. micro_batch_size only
  // changes how a rank splits its share of the global batch (summation order),
  // so a run resumed at another world size may pick one that divides.
  for (const char* free : {"checkpoint_every", "keep_checkpoints", "max_nonfinite_steps", "activation_checkpointing",
                           "micro_batch_size"}) {
    fp["train"].erase(free);
  }
  fp["metrics"] = {{"volatility_window", spec.metrics.volatility_window}};
  return fp;
}

bool DirHasFiles(const std::string& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && !fs::is_empty(dir, ec);
}

// Before any work: a fresh run needs an absent or empty output directory.
absl::Status CheckOutputDir(const JobSpec& spec, bool resuming) {
  const std::string& dir = spec.output.dir;
  if (!resuming && DirHasFiles(dir)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "output.dir ", dir, " already holds files (an earlier run?): pass --resume ", dir,
        " to continue it, or choose another output.dir"));
  }
  return absl::OkStatus();
}

absl::Status WriteSpecFile(const JobSpec& spec) {
  return WriteFileAtomically(spec.output.dir + "/" + trainer::kSpecFile, JobSpecToYaml(spec));
}

// After setup succeeded, so that a job refused for bad input leaves nothing behind.
// A resumed run writes spec.yaml only once its checkpoint was accepted (a refused
// resume must not replace the spec the checkpoints were trained with).
absl::Status CreateOutputDir(const JobSpec& spec, bool resuming) {
  const std::string& dir = spec.output.dir;
  std::error_code ec;
  fs::create_directories(dir + "/" + trainer::kCheckpointsDir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create output.dir ", dir, ": ", ec.message()));
  return resuming ? absl::OkStatus() : WriteSpecFile(spec);
}

absl::StatusOr<c10::ScalarType> TrainingDtype(const JobSpec& spec) {
  switch (spec.train.dtype) {
    case ComputeDtype::kFp32: return c10::ScalarType::Float;
    case ComputeDtype::kBf16: return c10::ScalarType::BFloat16;
    case ComputeDtype::kAuto:
      return spec.resources.device == DeviceKind::kCuda ? c10::ScalarType::BFloat16 : c10::ScalarType::Float;
  }
  return c10::ScalarType::Float;
}

absl::StatusOr<c10::ScalarType> MergedDtype(const JobSpec& spec, const model::ModelConfig& config) {
  if (spec.output.merge_dtype != MergeDtype::kAuto) return ParseDtypeFlag(MergeDtypeName(spec.output.merge_dtype));
  return DefaultMergedDtype(config);
}

// Logits [B, T, V] (fp32, CPU) of the sequences, padding zeroed.
torch::Tensor CheckLogits(CausalLMImpl& model, const Batch& batch, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  torch::Tensor logits = model.forward(batch.input_ids.to(device), batch.attention_mask.to(device))
                             .to(torch::kCPU, torch::kFloat32);
  model.train(was_training);
  return logits * batch.attention_mask.unsqueeze(-1).to(torch::kFloat32);
}

// The merge gate (tasks/merge_report.h): training-form logits on the first
// sequences of `source`, the merge with each layer's figures, the model
// rounded to the checkpoint dtype (what merged/ will hold), its logits and its
// validation against the training form's final evaluation. Every rank merges
// and validates (a collective); rank 0 compares logits, and its verdict is the
// job's.
absl::StatusOr<MergeReport> MergeAndCheck(const JobSpec& spec, CausalLMImpl& model, const Tokenizer& tokenizer,
                                          Trainer& trainer, const TrainResult& result,
                                          c10::ScalarType merged_dtype, ProcessGroup& group,
                                          const torch::Device& device, const std::vector<Example>& source,
                                          nlohmann::json* predictions) {
  const bool rank0 = group.rank() == 0;
  MergeReport report;
  report.enforced = spec.output.merge_check;
  report.thresholds = ThresholdsFor(merged_dtype, spec.output.merge_thresholds);
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < std::min<int64_t>(kMergeCheckSequences, static_cast<int64_t>(source.size())); ++i) {
    idx.push_back(i);
  }
  Batch batch;
  torch::Tensor before;
  D2_RETURN_IF_ERROR(GuardTorch("merging the adapters", [&]() -> absl::Status {
    if (rank0 && !idx.empty()) {
      batch = Collate(source, idx, CollatePadId(tokenizer));
      before = CheckLogits(model, batch, device);
    }
    report.layers = MergeAdaptersMeasured(model, merged_dtype);
    RoundTripToDtype(model, merged_dtype);
    if (before.defined()) report.logits = CompareLogits(before, CheckLogits(model, batch, device), batch.attention_mask);
    return absl::OkStatus();
  }));
  const ValidationSet& validation = trainer.validation();
  if (result.final_eval && !validation.empty()) {
    D2_ASSIGN_OR_RETURN(ValidationResult merged, Validate(model, validation, trainer.validation_options(), group,
                                                          result.steps, /*final=*/false));
    if (!merged.predictions.empty()) (*predictions)["merged"] = merged.predictions;
    const EvalMetrics& a = result.final_eval->metrics;
    const EvalMetrics& b = merged.metrics;
    if (a.accuracy && b.accuracy) {
      report.accuracy_training_form = *a.accuracy;
      report.accuracy_merged = *b.accuracy;
      report.scoring = a.scoring;
      // One near-tie question flipping by rounding is no sign of a bad merge:
      // the default accuracy threshold is at least two questions' worth.
      if (spec.output.merge_thresholds.max_accuracy_gap_pp == 0 && !validation.choices.empty()) {
        int64_t items = static_cast<int64_t>(validation.choices.size());
        if (spec.eval.max_examples > 0) items = std::min(items, spec.eval.max_examples);
        report.thresholds.max_accuracy_gap_pp =
            std::max(report.thresholds.max_accuracy_gap_pp, 200.0 / static_cast<double>(items));
      }
    }
    if (a.loss && b.loss) {
      report.loss_training_form = *a.loss;
      report.loss_merged = *b.loss;
    }
  }
  return report;
}

// summary.json's memory: the plan, and this process's measured peak beside it
// (CPU: the resident high-water mark, which covers every phase of the run).
nlohmann::json MemorySummary(const model::MemoryPlan& plan, int64_t runtime_bytes, bool cuda) {
  nlohmann::json j = {{"plan", plan.ToJson()}, {"predicted_peak_bytes", plan.peak}, {"allocator", AllocatorName()}};
  if (cuda) {
    j["measured_peak_bytes"] = nullptr;  // the device's peak is not read yet (host memory is not the plan's)
    return j;
  }
  const int64_t peak = model::PeakResidentBytes();
  j["measured_peak_bytes"] = peak > 0 ? nlohmann::json(peak) : nlohmann::json(nullptr);
  j["measured_runtime_bytes"] = runtime_bytes > 0 ? nlohmann::json(runtime_bytes) : nlohmann::json(nullptr);
  if (peak > 0 && plan.peak > 0) j["measured_over_predicted"] = static_cast<double>(peak) / static_cast<double>(plan.peak);
  return j;
}

// summary.json's merge_check: the report's headline plus the figures it has
// always had (training form = "unmerged").
nlohmann::json MergeCheckSummary(const MergeReport& r) {
  nlohmann::json check = r.Headline();
  if (r.logits) check["sequences"] = r.logits->sequences;
  if (r.accuracy_training_form && r.accuracy_merged) {
    check["accuracy_unmerged"] = *r.accuracy_training_form;
    check["accuracy_merged"] = *r.accuracy_merged;
    check["scoring"] = r.scoring;
  }
  if (r.loss_training_form && r.loss_merged) {
    check["loss_unmerged"] = *r.loss_training_form;
    check["loss_merged"] = *r.loss_merged;
  }
  if (!r.passed()) check["breaches"] = r.breaches;
  return check;
}

// --resume: the checkpoint to continue from (the newest that verifies).
absl::StatusOr<std::string> ResumeDirectory(const std::string& resume) {
  std::vector<std::string> skipped;
  D2_ASSIGN_OR_RETURN(std::string dir, ResolveResumePath(resume, &skipped));
  for (const std::string& why : skipped) {
    std::fprintf(stderr, "warning: skipping a checkpoint that fails verification: %s\n", why.c_str());
  }
  if (!skipped.empty()) std::fprintf(stderr, "warning: resuming from the previous checkpoint %s\n", dir.c_str());
  return dir;
}

// What every rank loads the same: model, tokenizer, data, adapters.
struct JobSetup {
  LoadedModel loaded;
  std::shared_ptr<Tokenizer> tokenizer;
  PreparedData data;
  nlohmann::json fingerprint;
  std::optional<AdapterInitResult> init;  // spec init.adapter, on a fresh run
};

// init: the adapters' starting values (a fresh run only: a resumed one has its checkpoint's).
absl::StatusOr<std::optional<AdapterInitResult>> InitAdapters(const JobSpec& spec, CausalLMImpl& model,
                                                              bool resuming) {
  const spec::InitSpec& init = spec.init;
  if (resuming || init.empty()) return std::nullopt;
  if (init.adapter.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "init.from_job = ", init.from_job, ": a job id means something only to the service (d2lora submit); "
        "for a local run set init.adapter to that job's output, checkpoint or adapter directory"));
  }
  if (init.adapter.rfind("upload:", 0) == 0) {
    return absl::FailedPreconditionError(absl::StrCat("init.adapter = ", init.adapter,
                                                      ": an upload means something only to the service"));
  }
  D2_ASSIGN_OR_RETURN(AdapterInitResult r, InitAdaptersFrom(model, init.adapter));
  return std::optional<AdapterInitResult>(std::move(r));
}

// The memory plan's inputs that only the loaded data and checkpoint know:
// tokens and examples held in memory, the weight files' bytes.
model::MemoryPlanInputs PlanInputs(const JobSpec& spec, const PreparedData& data) {
  model::MemoryPlanInputs in;
  in.merge_check_sequences = kMergeCheckSequences;
  in.data_tokens = 0;
  auto add = [&](const std::vector<int64_t>& ids) { in.data_tokens += static_cast<int64_t>(ids.size()); };
  for (const Example& e : *data.train) add(e.ids);
  for (const Example& e : data.validation.examples) add(e.ids);
  for (const ChoiceExample& c : data.validation.choices) {
    add(c.prompt_ids);
    for (const auto& ids : c.choice_ids) add(ids);
    for (const auto& ids : c.letter_ids) add(ids);
  }
  in.data_examples = static_cast<int64_t>(data.train->size() + data.validation.examples.size() +
                                          data.validation.choices.size());
  in.checkpoint_bytes = model::LocalBytes(spec.model, ".safetensors");
  return in;
}

// This rank's part of the setup; the caller agrees on it across ranks, so a
// failure on one rank fails them all.
absl::Status SetUp(const JobSpec& spec, c10::ScalarType dtype, const torch::Device& device, bool rank0,
                   bool resuming, JobSetup* out) {
  D2_ASSIGN_OR_RETURN(out->loaded, LoadModel(spec.model, dtype));
  D2_ASSIGN_OR_RETURN(out->tokenizer, LoadTokenizer(spec.model));
  D2_ASSIGN_OR_RETURN(out->data, PrepareData(spec, *out->tokenizer, out->loaded.config.vocab_size));
  D2_RETURN_IF_ERROR(GuardTorch("preparing the model", [&]() -> absl::Status {
    CausalLMImpl& model = *out->loaded.model;
    if (spec.full_finetune()) {
      for (auto& p : model.parameters()) p.requires_grad_(true);
    } else {
      D2_RETURN_IF_ERROR(InjectAdapters(model, spec.adapter).status());
      D2_ASSIGN_OR_RETURN(out->init, InitAdapters(spec, model, resuming));
    }
    model.to(device);
    return absl::OkStatus();
  }));
  D2_ASSIGN_OR_RETURN(out->fingerprint, Fingerprint(spec));
  if (rank0) D2_RETURN_IF_ERROR(CreateOutputDir(spec, resuming));
  return absl::OkStatus();
}

TrainerOptions MakeTrainerOptions(const JobSpec& spec, const JobSetup& setup, const ParameterCount& counts,
                                  std::vector<TrainingCallback*> callbacks, const std::atomic<bool>* stop) {
  std::shared_ptr<Tokenizer> tokenizer = setup.tokenizer;
  TrainerOptions to;
  to.pad_id = CollatePadId(*tokenizer);
  to.validation.eval = spec.eval;
  to.validation.batch_size = spec.train.micro_batch_size;
  to.validation.eos_token_ids = setup.loaded.config.eos_token_ids;
  if (tokenizer->eos_id()) to.validation.eos_token_ids.push_back(*tokenizer->eos_id());
  to.validation.decode = [tokenizer](const std::vector<int64_t>& ids) { return tokenizer->Decode(ids, true); };
  to.checkpoints_dir = spec.output.dir + "/" + trainer::kCheckpointsDir;
  if (!spec.full_finetune()) {
    CausalLM model = setup.loaded.model;
    to.write_checkpoint_extra = [model, spec](const std::string& staged) mutable {
      return SaveAdapter(*model, spec.adapter, staged + "/adapter", spec.base_model_name());
    };
  }
  to.fingerprint = setup.fingerprint;
  to.callbacks = std::move(callbacks);
  to.stop = stop;
  to.run_info.name = spec.name;
  to.run_info.method = TrainingMethodName(spec.method);
  to.run_info.trainable_parameters = counts.trainable;
  to.run_info.total_parameters = counts.total;
  to.run_info.output_dir = spec.output.dir;
  return to;
}

nlohmann::json RunSummary(const JobSpec& spec, const TrainResult& result, int64_t world_size,
                          const std::string& resume_dir, const ParameterCount& counts, const nlohmann::json& data) {
  nlohmann::json summary;
  summary["name"] = spec.name;
  summary["method"] = TrainingMethodName(spec.method);
  summary["status"] = result.stopped ? "stopped" : "completed";
  summary["steps"] = result.steps;
  summary["total_steps"] = result.total_steps;
  summary["skipped_steps"] = result.skipped_steps;
  summary["rollbacks"] = result.rollbacks;
  summary["world_size"] = world_size;
  summary["resumed_from"] = resume_dir.empty() ? nlohmann::json(nullptr) : nlohmann::json(resume_dir);
  summary["parameters"] = {{"trainable", counts.trainable}, {"total", counts.total}};
  summary["data"] = data;
  if (result.last_step) summary["final"] = ToJson(*result.last_step);
  summary["volatility"] = ToJson(result.run_volatility);
  if (result.final_eval) summary["eval"] = result.final_eval->details;
  return summary;
}

// predictions.json: the final evaluation's answer to each multiple-choice
// question, by scoring, with the labels: {"step", "labels", "training_form":
// {"mean": [...], ...}} and, once the merged model is evaluated, "merged" (the spec's
// scoring). Empty when the validation set has no multiple-choice items.
nlohmann::json PredictionsJson(const TrainResult& result) {
  if (!result.final_eval || result.final_eval->predictions.empty()) return nlohmann::json::object();
  return {{"step", result.steps},
          {"labels", result.final_eval->labels},
          {"training_form", result.final_eval->predictions}};
}

absl::Status WritePredictions(const JobSpec& spec, const nlohmann::json& predictions) {
  return WriteFileAtomically(spec.output.dir + "/" + trainer::kPredictionsFile, predictions.dump() + "\n");
}

// adapter/ (rank 0), and for D2-LoRA its exact rank-2r PEFT DoRA form beside
// it, for stacks that know DoRA but not D2-LoRA. That one is an extra: a layer
// DoRA cannot express (a zero row of W0) is reported, not fatal.
absl::Status SaveAdapters(const JobSpec& spec, CausalLMImpl& model, bool rank0, nlohmann::json& summary,
                          nlohmann::json& paths) {
  const std::string adapter_dir = spec.output.dir + "/" + trainer::kAdapterDir;
  if (rank0) D2_RETURN_IF_ERROR(SaveAdapter(model, spec.adapter, adapter_dir, spec.base_model_name()));
  paths["adapter"] = adapter_dir;
  if (spec.method != TrainingMethod::kD2Lora) return absl::OkStatus();
  const std::string peft_dir = spec.output.dir + "/" + trainer::kPeftAdapterDir;
  absl::Status exported = rank0 ? SavePeftAdapter(model, spec.adapter, PeftFormat::kDora, peft_dir,
                                                  spec.base_model_name())
                                : absl::OkStatus();
  if (exported.ok()) {
    paths["adapter_peft"] = peft_dir;
  } else {
    std::fprintf(stderr, "warning: no %s: %s\n", trainer::kPeftAdapterDir, std::string(exported.message()).c_str());
    summary["adapter_peft_error"] = exported.message();
  }
  return absl::OkStatus();
}

// What the merge needs besides the model.
struct MergeInputs {
  const model::ModelConfig* config;
  const Tokenizer* tokenizer;
  Trainer* trainer;
  const TrainResult* result;
  const std::vector<Example>* check_source;  // the sequences whose logits are compared
  torch::Device device;
};

// merged/ (output.merge; always for method full), behind the merge gate for
// adapters. Returns the gate's verdict, MERGE_CHECK_FAILED on rank 0 when it
// stops the merge: then the adapter, merge_report.json and summary.json stay
// and nothing is published. The other ranks end normally, so that through the
// service the job's failure is rank 0's, with its summary and artifacts.
absl::Status MergeOutputs(const JobSpec& spec, CausalLMImpl& model, const MergeInputs& in, ProcessGroup& group,
                          nlohmann::json& summary, nlohmann::json& paths, nlohmann::json* predictions) {
  const bool rank0 = group.rank() == 0;
  D2_ASSIGN_OR_RETURN(c10::ScalarType merged_dtype, MergedDtype(spec, *in.config));
  D2_ASSIGN_OR_RETURN(std::string dtype_name, ModelDtypeName(merged_dtype));
  if (!spec.full_finetune()) {
    D2_ASSIGN_OR_RETURN(MergeReport report, MergeAndCheck(spec, model, *in.tokenizer, *in.trainer, *in.result,
                                                          merged_dtype, group, in.device, *in.check_source,
                                                          predictions));
    report.merged_dtype = dtype_name;
    Judge(&report);
    if (rank0) D2_RETURN_IF_ERROR(WriteMergeReport(report, spec.output.dir));
    paths["merge_report"] = spec.output.dir + "/" + trainer::kMergeReportFile;
    summary["merge_check"] = MergeCheckSummary(report);
    const absl::Status verdict = rank0 ? report.Verdict() : absl::OkStatus();
    if (!verdict.ok()) {
      summary["status"] = "merge_check_failed";
      summary["error"] = verdict.message();
      summary["paths"] = paths;
      summary["spec"] = JobSpecToJson(spec);
      D2_RETURN_IF_ERROR(WriteFileAtomically(spec.output.dir + "/" + trainer::kSummaryFile, summary.dump(2) + "\n"));
      return verdict;
    }
  }
  const std::string merged_dir = spec.output.dir + "/" + trainer::kMergedDir;
  if (rank0) {
    SaveModelOptions save;
    save.dtype = merged_dtype;
    save.tokenizer_source_dir = spec.model;
    save.overwrite = true;
    D2_RETURN_IF_ERROR(SaveModel(model, *in.config, merged_dir, save));
  }
  paths["merged"] = merged_dir;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<nlohmann::json> RunTrainJob(const ValidJobSpec& valid, const TrainJobOptions& options,
                                           ProcessGroup& group) {
  const auto wall_start = Clock::now();
  const int64_t runtime_bytes = model::ResidentBytes();  // before the model: the plan's runtime term
  const JobSpec& spec = valid;
  const bool rank0 = group.rank() == 0;
  const bool resuming = !options.resume.empty();
  std::string resume_dir;
  if (resuming) {
    D2_ASSIGN_OR_RETURN(resume_dir, ResumeDirectory(options.resume));
  }
  if (spec.resources.device == DeviceKind::kCuda && !torch::cuda::is_available()) {
    return absl::FailedPreconditionError("resources.device = cuda, but LibTorch sees no CUDA device");
  }
  D2_RETURN_IF_ERROR(AgreeAcrossRanks(group, rank0 ? CheckOutputDir(spec, resuming) : absl::OkStatus(),
                                      "the output directory check"));

  // Model, tokenizer, data, adapters: every rank the same.
  D2_ASSIGN_OR_RETURN(c10::ScalarType dtype, TrainingDtype(spec));
  const torch::Device device = spec.resources.device == DeviceKind::kCuda
                                   ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(options.local_rank))
                                   : torch::Device(torch::kCPU);
  JobSetup setup;
  D2_RETURN_IF_ERROR(AgreeAcrossRanks(group, SetUp(spec, dtype, device, rank0, resuming, &setup),
                                      "setup (model, tokenizer, data, output directory)"));
  CausalLM model = setup.loaded.model;

  std::vector<TrainingCallback*> callbacks = options.callbacks;
  std::unique_ptr<JsonlMetricsWriter> jsonl;
  if (rank0) {
    D2_ASSIGN_OR_RETURN(jsonl, JsonlMetricsWriter::Create(spec.output.dir + "/" + trainer::kMetricsFile, resuming));
    callbacks.insert(callbacks.begin(), jsonl.get());
  }
  const ParameterCount counts = CountParameters(*model);
  D2_ASSIGN_OR_RETURN(const model::MemoryPlan plan,
                      model::PlanMemory(setup.loaded.config, spec, PlanInputs(spec, setup.data)));
  if (rank0) {
    std::fprintf(stderr, "%s", plan.Format().c_str());
    const int64_t available = model::AvailableMemoryBytes();
    if (spec.resources.device == DeviceKind::kCpu && available > 0 && plan.peak > available) {
      std::fprintf(stderr, "warning: the predicted peak (%s) is more than this machine has available (%s)\n",
                   FormatBytes(plan.peak).c_str(), FormatBytes(available).c_str());
    }
  }
  if (rank0 && setup.init) {
    const AdapterInitResult& init = *setup.init;
    std::fprintf(stderr, "init: %lld adapted modules start from %s (%s, r=%lld), %lld start fresh\n",
                 static_cast<long long>(init.modules), init.dir.c_str(), MethodName(init.saved_method).c_str(),
                 static_cast<long long>(init.saved_r), static_cast<long long>(init.fresh_modules));
    for (const std::string& note : init.notes) std::fprintf(stderr, "init: note: %s\n", note.c_str());
  }
  D2_ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer,
                      Trainer::Create(model, setup.data.train, std::move(setup.data.validation), valid,
                                      MakeTrainerOptions(spec, setup, counts, callbacks, options.stop), &group));
  if (resuming) {
    absl::Status resumed = trainer->Resume(resume_dir);
    if (resumed.ok() && rank0) resumed = WriteSpecFile(spec);
    D2_RETURN_IF_ERROR(AgreeAcrossRanks(group, resumed, "resume from " + resume_dir));
  }
  D2_ASSIGN_OR_RETURN(TrainResult result, trainer->Run());
  ReleaseFreeMemory();  // what the last step freed, before the merge allocates in other sizes

  nlohmann::json summary = RunSummary(spec, result, group.world_size(), resume_dir, counts, setup.data.report);
  if (setup.init) summary["init"] = ToJson(*setup.init);
  nlohmann::json paths = {{"output_dir", spec.output.dir},
                          {"metrics", spec.output.dir + "/" + trainer::kMetricsFile},
                          {"checkpoint", result.last_checkpoint}};
  nlohmann::json predictions = PredictionsJson(result);
  if (!result.stopped) {
    if (!spec.full_finetune()) D2_RETURN_IF_ERROR(SaveAdapters(spec, *model, rank0, summary, paths));
    if (spec.output.merge || spec.full_finetune()) {
      const ValidationSet& validation = trainer->validation();
      const MergeInputs in{&setup.loaded.config, setup.tokenizer.get(), trainer.get(), &result,
                           validation.examples.empty() ? setup.data.train.get() : &validation.examples, device};
      absl::Status merged = MergeOutputs(spec, *model, in, group, summary, paths, &predictions);
      if (!merged.ok() && rank0 && !predictions.empty()) {
        // A failed merge gate keeps the answers that show it, question by question.
        D2_RETURN_IF_ERROR(WritePredictions(spec, predictions));
      }
      D2_RETURN_IF_ERROR(merged);
    }
  }
  if (!predictions.empty()) {
    if (rank0) D2_RETURN_IF_ERROR(WritePredictions(spec, predictions));
    paths["predictions"] = spec.output.dir + "/" + trainer::kPredictionsFile;
  }
  summary["paths"] = paths;
  summary["memory"] = MemorySummary(plan, runtime_bytes, spec.resources.device == DeviceKind::kCuda);
  summary["train_seconds"] = result.train_seconds;
  summary["wall_seconds"] = std::chrono::duration<double>(Clock::now() - wall_start).count();
  summary["spec"] = JobSpecToJson(spec);
  if (rank0) {
    D2_RETURN_IF_ERROR(WriteFileAtomically(spec.output.dir + "/" + trainer::kSummaryFile, summary.dump(2) + "\n"));
    for (TrainingCallback* cb : callbacks) cb->OnEnd(summary);
  }
  return summary;
}

}  // namespace d2lora::engine
