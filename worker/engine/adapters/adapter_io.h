// Adapter directories in PEFT's layout: adapter_config.json +
// adapter_model.safetensors, keys "base_model.model.<module path>.<suffix>".
//   LoRA:    lora_A.weight [r, in], lora_B.weight [out, r]; peft_type LORA, use_dora false
//   DoRA:    the LoRA keys + lora_magnitude_vector [out];   peft_type LORA, use_dora true
//   D2-LoRA: the positive branch under the LoRA names, lora_A_neg.weight,
//            lora_B_neg.weight, d2lora_tau [1] (the effective tau); peft_type D2LORA
#pragma once

#include <torch/nn/module.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/spec_types.h"
#include "worker/engine/formats/safetensors.h"

namespace d2lora::engine {

inline constexpr char kAdapterConfigFile[] = "adapter_config.json";
inline constexpr char kAdapterWeightsFile[] = "adapter_model.safetensors";
inline constexpr char kPeftKeyPrefix[] = "base_model.model.";

// Writes the adapters hosted in `root` to `dir` atomically (the directory
// appears complete or not at all; an existing one is replaced). The config's
// target_modules is the list of adapted modules' paths, whatever patterns
// (names, regexes, all-linear) chose them: PEFT and LoadAdapter read a list as
// name suffixes, so the same modules and no others get the adapter back.
absl::Status SaveAdapter(torch::nn::Module& root, const AdapterOptions& options, const std::string& dir,
                         const std::string& base_model_name_or_path = "");

// Writes `tensors` (PEFT-named, "base_model.model.<path>.<suffix>") and the
// config of `options` to `dir` atomically; options.target_modules is written as
// given (pass the adapted paths).
absl::Status WriteAdapterDirectory(const NamedTensors& tensors, const AdapterOptions& options, const std::string& dir,
                                   const std::string& base_model_name_or_path);

// Parses `dir`/adapter_config.json; errors name the file and the field.
absl::StatusOr<AdapterOptions> ReadAdapterConfig(const std::string& dir);

// An adapter directory's contents, by module: what LoadAdapter hosts and
// InitAdaptersFrom (adapter_init.h) starts a run from.
struct AdapterTensors {
  AdapterOptions options;    // adapter_config.json
  std::string weights_path;  // dir/adapter_model.safetensors, for messages
  std::vector<std::string> modules;  // module paths, in file order
  // module path -> key suffix ("lora_A.weight", ...) -> tensor
  std::map<std::string, std::map<std::string, torch::Tensor>> tensors;
};

// Reads `dir`'s config and weights: every key must be "base_model.model.<module
// path>.<suffix>" with a suffix of the config's method; errors name the file and key.
absl::StatusOr<AdapterTensors> ReadAdapterTensors(const std::string& dir);

// Reads an adapter directory and hosts its adapters in `root` (freezing the
// base): every key must name a Linear of the model with the right shape, and
// every adapted module must have all its keys; the error names the key.
absl::StatusOr<AdapterOptions> LoadAdapter(torch::nn::Module& root, const std::string& dir);

}  // namespace d2lora::engine
