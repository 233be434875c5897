#include "worker/engine/tasks/merge_model.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/adapters/adapter_io.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/torch_guard.h"

namespace d2lora::engine {

absl::StatusOr<c10::ScalarType> ParseDtypeFlag(const std::string& name) {
  if (name == "bf16" || name == "bfloat16") return c10::ScalarType::BFloat16;
  if (name == "fp16" || name == "float16") return c10::ScalarType::Half;
  if (name == "fp32" || name == "float32") return c10::ScalarType::Float;
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", name, "' (expected bf16, fp16 or fp32)"));
}

absl::StatusOr<c10::ScalarType> DefaultMergedDtype(const model::ModelConfig& config) {
  if (config.dtype.empty()) return c10::ScalarType::Float;
  return ParseModelDtype(config.dtype);
}

absl::StatusOr<LoadedModel> LoadMergedModel(const std::string& model_dir, const std::string& adapter_dir,
                                            MergeResult* info) {
  D2_ASSIGN_OR_RETURN(LoadedModel loaded, LoadModel(model_dir, c10::ScalarType::Float));
  if (!adapter_dir.empty()) {
    D2_ASSIGN_OR_RETURN(AdapterOptions adapter, LoadAdapter(*loaded.model, adapter_dir));
    int64_t merged = 0;
    D2_RETURN_IF_ERROR(GuardTorch("merging " + adapter_dir, [&]() -> absl::Status {
      for (auto& [path, linear] : LinearLayers(*loaded.model)) merged += linear->adapter() ? 1 : 0;
      MergeAdapters(*loaded.model);
      return absl::OkStatus();
    }));
    if (info) {
      info->adapter = adapter;
      info->merged_layers = merged;
    }
  }
  loaded.model->eval();
  return loaded;
}

absl::StatusOr<MergeResult> MergeModel(const MergeOptions& options) {
  if (options.adapter_dir.empty()) return absl::InvalidArgumentError("merge: --adapter is required");
  if (options.out_dir.empty()) return absl::InvalidArgumentError("merge: --out is required");
  MergeResult result;
  D2_ASSIGN_OR_RETURN(LoadedModel loaded, LoadModel(options.model_dir, c10::ScalarType::Float));
  D2_ASSIGN_OR_RETURN(result.adapter, LoadAdapter(*loaded.model, options.adapter_dir));
  if (options.dtype) {
    result.dtype = *options.dtype;
  } else {
    D2_ASSIGN_OR_RETURN(result.dtype, DefaultMergedDtype(loaded.config));
  }
  MergeReport& report = result.report;
  D2_ASSIGN_OR_RETURN(report.merged_dtype, ModelDtypeName(result.dtype));
  report.enforced = !options.force;
  report.thresholds = ThresholdsFor(result.dtype, options.thresholds);
  D2_RETURN_IF_ERROR(GuardTorch("merging " + options.adapter_dir, [&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    CausalLMImpl& model = *loaded.model;
    model.eval();
    // Probe sequences: random tokens from a fixed seed (no data is needed to merge).
    at::Generator gen = at::detail::createCPUGenerator(0);
    torch::Tensor ids = torch::randint(loaded.config.vocab_size, {kMergeProbeSequences, kMergeProbeLength}, gen,
                                       torch::TensorOptions().dtype(torch::kInt64));
    torch::Tensor mask = torch::ones_like(ids);
    torch::Tensor before = model.forward(ids, mask).to(torch::kFloat32);
    report.layers = MergeAdaptersMeasured(model, result.dtype);
    RoundTripToDtype(model, result.dtype);
    report.logits = CompareLogits(before, model.forward(ids, mask).to(torch::kFloat32), mask);
    return absl::OkStatus();
  }));
  result.merged_layers = static_cast<int64_t>(report.layers.size());
  Judge(&report);
  if (absl::Status verdict = report.Verdict(); !verdict.ok()) {
    std::error_code ec;
    std::filesystem::create_directories(options.out_dir, ec);
    if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", options.out_dir, ": ", ec.message()));
    D2_RETURN_IF_ERROR(WriteMergeReport(report, options.out_dir));
    return verdict;
  }
  SaveModelOptions save;
  save.dtype = result.dtype;
  save.tokenizer_source_dir = options.model_dir;
  save.overwrite = options.overwrite;
  D2_RETURN_IF_ERROR(SaveModel(*loaded.model, loaded.config, options.out_dir, save));
  D2_RETURN_IF_ERROR(WriteMergeReport(report, options.out_dir));
  return result;
}

}  // namespace d2lora::engine
