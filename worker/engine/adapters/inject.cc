#include "worker/engine/adapters/inject.h"

#include <torch/torch.h>

#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/spec/target_modules.h"
#include "common/status_macros.h"
#include "worker/engine/adapters/adapted_linear.h"
#include "worker/engine/adapters/linear.h"
#include "worker/engine/torch_guard.h"

namespace d2lora::engine {

namespace {
std::string WithCommas(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}
}  // namespace

std::string ParameterCount::ToString() const {
  double pct = total > 0 ? 100.0 * static_cast<double>(trainable) / static_cast<double>(total) : 0.0;
  return absl::StrFormat("trainable %s / total %s (%.3f%%)", WithCommas(trainable), WithCommas(total), pct);
}

std::vector<std::pair<std::string, std::shared_ptr<LinearImpl>>> LinearLayers(torch::nn::Module& root) {
  std::vector<std::pair<std::string, std::shared_ptr<LinearImpl>>> out;
  for (const auto& item : root.named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    if (auto linear = std::dynamic_pointer_cast<LinearImpl>(item.value())) out.emplace_back(item.key(), linear);
  }
  return out;
}

ParameterCount CountParameters(const torch::nn::Module& root) {
  ParameterCount count;
  std::set<const void*> seen;
  for (const auto& p : root.parameters(/*recurse=*/true)) {
    if (!seen.insert(p.unsafeGetTensorImpl()).second) continue;
    count.total += p.numel();
    if (p.requires_grad()) count.trainable += p.numel();
  }
  return count;
}

absl::StatusOr<InjectionReport> InjectAdapters(torch::nn::Module& root, const AdapterOptions& options) {
  D2_RETURN_IF_ERROR(options.Validate());
  std::vector<std::string> paths;
  for (auto& [path, linear] : LinearLayers(root)) {
    D2_ASSIGN_OR_RETURN(bool match, MatchesTargetModules(path, options.target_modules));
    if (match) paths.push_back(path);
  }
  if (paths.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("adapter.target_modules [",
                                                   absl::StrJoin(options.target_modules, ", "),
                                                   "] match no linear layer of the model"));
  }
  return InjectAdaptersAt(root, options, paths);
}

absl::StatusOr<InjectionReport> InjectAdaptersAt(torch::nn::Module& root, const AdapterOptions& options,
                                                 const std::vector<std::string>& paths) {
  D2_RETURN_IF_ERROR(options.Validate());
  std::map<std::string, std::shared_ptr<LinearImpl>> layers;
  for (auto& [path, linear] : LinearLayers(root)) layers.emplace(path, linear);
  std::vector<std::pair<std::string, std::shared_ptr<LinearImpl>>> targets;
  for (const std::string& path : paths) {
    auto it = layers.find(path);
    if (it == layers.end()) {
      return absl::NotFoundError(absl::StrCat("the model has no linear layer '", path, "'"));
    }
    if (it->second->adapter()) {
      return absl::FailedPreconditionError(absl::StrCat(path, " already hosts an adapter"));
    }
    targets.emplace_back(path, it->second);
  }
  InjectionReport report;
  for (auto& p : root.parameters(/*recurse=*/true)) p.requires_grad_(false);
  for (auto& [path, linear] : targets) {
    D2_ASSIGN_OR_RETURN(auto adapter, CreateAdaptedLinear(*linear, options, path));
    linear->set_adapter(std::move(adapter));
    report.adapted.push_back(path);
  }
  report.parameters = CountParameters(root);
  return report;
}

void MergeAdapters(torch::nn::Module& root) {
  for (auto& [path, linear] : LinearLayers(root)) linear->merge_adapter();
}

}  // namespace d2lora::engine
