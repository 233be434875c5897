// Injecting adapters into a module tree by module-name patterns.
#pragma once

#include <torch/nn/module.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/spec/target_modules.h"
#include "worker/engine/spec_types.h"

namespace d2lora::engine {

class LinearImpl;

struct ParameterCount {
  int64_t trainable = 0;
  int64_t total = 0;
  std::string ToString() const;  // "trainable 12,288 / total 1,234,567 (0.996%)"
};

struct InjectionReport {
  std::vector<std::string> adapted;  // module paths, in tree order
  ParameterCount parameters;
};

// Engine Linear layers under `root` with their module paths, in tree order.
std::vector<std::pair<std::string, std::shared_ptr<LinearImpl>>> LinearLayers(torch::nn::Module& root);

// Which layers match: spec::MatchesTargetModules (common/spec/target_modules.h).
using spec::MatchesTargetModules;

// Freezes every parameter of `root`, then hosts an adapter on each Linear whose
// path matches options.target_modules. Refuses when nothing matches or a
// matched layer already hosts an adapter.
absl::StatusOr<InjectionReport> InjectAdapters(torch::nn::Module& root, const AdapterOptions& options);

// Hosts an adapter on exactly the Linear layers at `paths` (freezing every
// parameter first); an unknown path, or a path that is not a Linear, is an error.
absl::StatusOr<InjectionReport> InjectAdaptersAt(torch::nn::Module& root, const AdapterOptions& options,
                                                 const std::vector<std::string>& paths);

// Trainable vs total parameters (shared tensors counted once).
ParameterCount CountParameters(const torch::nn::Module& root);

// Folds every hosted adapter into its layer's weight (the merged model).
void MergeAdapters(torch::nn::Module& root);

}  // namespace d2lora::engine
