#include "worker/engine/tasks/export_adapter.h"

#include "common/status_macros.h"
#include "worker/engine/adapters/adapter_io.h"
#include "worker/engine/model/checkpoint.h"

namespace d2lora::engine {

absl::StatusOr<AdapterOptions> ExportAdapter(const ExportAdapterOptions& options) {
  if (options.out_dir.empty()) return absl::InvalidArgumentError("export-adapter: --out is required");
  D2_ASSIGN_OR_RETURN(LoadedModel loaded, LoadModel(options.model_dir, c10::ScalarType::Float));
  D2_ASSIGN_OR_RETURN(AdapterOptions adapter, LoadAdapter(*loaded.model, options.adapter_dir));
  D2_RETURN_IF_ERROR(SavePeftAdapter(*loaded.model, adapter, options.format, options.out_dir, options.model_dir));
  return adapter;
}

}  // namespace d2lora::engine
