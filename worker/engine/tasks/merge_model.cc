#include "worker/engine/tasks/merge_model.h"

#include <torch/torch.h>

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

absl::StatusOr<c10::ScalarType> DefaultMergedDtype(const ModelConfig& config) {
  if (config.torch_dtype.empty()) return c10::ScalarType::Float;
  return ParseModelDtype(config.torch_dtype);
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
  D2_ASSIGN_OR_RETURN(LoadedModel loaded, LoadMergedModel(options.model_dir, options.adapter_dir, &result));
  if (options.dtype) {
    result.dtype = *options.dtype;
  } else {
    D2_ASSIGN_OR_RETURN(result.dtype, DefaultMergedDtype(loaded.config));
  }
  SaveModelOptions save;
  save.dtype = result.dtype;
  save.tokenizer_source_dir = options.model_dir;
  save.overwrite = options.overwrite;
  D2_RETURN_IF_ERROR(SaveModel(*loaded.model, loaded.config, options.out_dir, save));
  return result;
}

}  // namespace d2lora::engine
