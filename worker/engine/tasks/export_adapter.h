// `d2lora export-adapter`: an adapter directory -> a PEFT adapter directory
// (adapters/peft_export.h says what each method becomes).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/spec_types.h"
#include "worker/engine/adapters/peft_export.h"

namespace d2lora::engine {

struct ExportAdapterOptions {
  std::string model_dir;    // the base model (D2-LoRA's row scale needs W0)
  std::string adapter_dir;  // what `d2lora train` wrote
  std::string out_dir;
  PeftFormat format = PeftFormat::kDora;
};

// Loads the base model in fp32, hosts the adapter and writes the export
// atomically; returns the options of the adapter that was exported.
absl::StatusOr<AdapterOptions> ExportAdapter(const ExportAdapterOptions& options);

}  // namespace d2lora::engine
