#include "worker/engine/adapters/adapter_init.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/adapters/adapted_linear.h"
#include "worker/engine/adapters/adapter_io.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/adapters/linear.h"
#include "worker/engine/torch_guard.h"

namespace d2lora::engine {
namespace {

namespace fs = std::filesystem;
using TensorMap = std::map<std::string, torch::Tensor>;

bool IsAdapterDirectory(const std::string& dir) {
  std::error_code ec;
  return fs::is_regular_file(absl::StrCat(dir, "/", kAdapterConfigFile), ec);
}

// One module's starting values, converted: `run` is what the run's adapter
// exports now (its fresh init), `saved` the saved module's tensors.
class ModuleInit {
 public:
  ModuleInit(const AdaptedLinearImpl& layer, const AdapterOptions& saved_options, const std::string& where)
      : layer_(layer), where_(where), ratio_(saved_options.scaling() / layer.options().scaling()) {
    for (auto& [name, t] : layer.ExportTensors()) run_[name] = t.detach().clone();
  }

  // Places saved A [r', in] into the first r' rows of run key `a_key` and
  // saved B [out, r'] x (s_saved / s_run) into the first r' columns of `b_key`.
  absl::Status PlacePair(const TensorMap& saved, const std::string& saved_a, const std::string& saved_b,
                         const std::string& a_key, const std::string& b_key) {
    D2_ASSIGN_OR_RETURN(torch::Tensor a, Saved(saved, saved_a));
    D2_ASSIGN_OR_RETURN(torch::Tensor b, Saved(saved, saved_b));
    torch::Tensor& run_a = run_.at(a_key);
    torch::Tensor& run_b = run_.at(b_key);
    const int64_t r = run_a.size(0);
    if (a.dim() != 2 || b.dim() != 2 || a.size(1) != run_a.size(1) || b.size(0) != run_b.size(0) ||
        a.size(0) != b.size(1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where_, ".", saved_a, " ", ShapeText(a), " and ", saved_b, " ", ShapeText(b), " do not fit this layer (",
          run_b.size(0), " outputs, ", run_a.size(1), " inputs)"));
    }
    if (a.size(0) > r) {
      return absl::InvalidArgumentError(absl::StrCat(where_, ": rank ", a.size(0), " is larger than adapter.r = ", r,
                                                     " (a rank can grow from an adapter, not shrink)"));
    }
    run_a.narrow(0, 0, a.size(0)).copy_(a);
    run_b.narrow(1, 0, b.size(1)).copy_(b.to(torch::kFloat64) * ratio_);
    return absl::OkStatus();
  }

  // DoRA's magnitude: the saved one, or ||W0 + s_saved B A|| per row (the saved LoRA model).
  absl::Status PlaceMagnitude(const TensorMap& saved, bool saved_has_magnitude) {
    torch::Tensor& m = run_.at("lora_magnitude_vector");
    if (saved_has_magnitude) {
      D2_ASSIGN_OR_RETURN(torch::Tensor v, Saved(saved, "lora_magnitude_vector"));
      if (v.numel() != m.numel()) {
        return absl::InvalidArgumentError(absl::StrCat(where_, ".lora_magnitude_vector ", ShapeText(v),
                                                       " does not fit this layer's ", m.numel(), " outputs"));
      }
      m.copy_(v.reshape_as(m));
      return absl::OkStatus();
    }
    const torch::Tensor w0 = layer_.base_weight().to(torch::kFloat64);
    const torch::Tensor a = run_.at("lora_A.weight").to(torch::kFloat64);
    const torch::Tensor b = run_.at("lora_B.weight").to(torch::kFloat64);
    const double s = layer_.options().scaling();
    m.copy_((w0 + s * b.matmul(a)).norm(2, {1}).reshape_as(m));
    return absl::OkStatus();
  }

  void SetTau(double tau) { run_.at("d2lora_tau").fill_(tau); }
  double run_tau() const { return run_.at("d2lora_tau").item<double>(); }

  absl::Status Apply(AdaptedLinearImpl& layer) const { return layer.ImportTensors(run_, where_); }

 private:
  absl::StatusOr<torch::Tensor> Saved(const TensorMap& saved, const std::string& key) const {
    auto it = saved.find(key);
    if (it == saved.end()) return absl::InvalidArgumentError(absl::StrCat(where_, ".", key, ": missing"));
    return it->second;
  }
  static std::string ShapeText(const torch::Tensor& t) {
    std::string out = "[";
    for (int64_t i = 0; i < t.dim(); ++i) absl::StrAppend(&out, i ? ", " : "", t.size(i));
    return out + "]";
  }

  const AdaptedLinearImpl& layer_;
  const std::string where_;
  const double ratio_;
  TensorMap run_;
};

}  // namespace

absl::StatusOr<std::string> FindAdapterDirectory(const std::string& path) {
  if (IsAdapterDirectory(path)) return path;
  const std::string inner = absl::StrCat(path, "/adapter");
  if (IsAdapterDirectory(inner)) return inner;
  return absl::NotFoundError(absl::StrCat("init.adapter ", path, ": neither it nor ", inner, " holds ",
                                          kAdapterConfigFile, " (expected an adapter, checkpoint or output directory)"));
}

absl::StatusOr<AdapterInitResult> InitAdaptersFrom(torch::nn::Module& root, const std::string& path) {
  D2_ASSIGN_OR_RETURN(std::string dir, FindAdapterDirectory(path));
  const std::string prefix = absl::StrCat("init.adapter ", path, ": ");
  auto with_prefix = [&](const absl::Status& s) { return absl::Status(s.code(), absl::StrCat(prefix, s.message())); };
  absl::StatusOr<AdapterTensors> read = ReadAdapterTensors(dir);
  if (!read.ok()) return with_prefix(read.status());
  const AdapterOptions& saved = read->options;

  AdapterInitResult result;
  result.dir = dir;
  result.saved_method = saved.method;
  result.saved_r = saved.r;
  std::map<std::string, std::shared_ptr<LinearImpl>> hosted;
  for (auto& [module_path, linear] : LinearLayers(root)) {
    if (linear->adapter()) hosted.emplace(module_path, linear);
  }
  if (hosted.empty()) return absl::FailedPreconditionError(absl::StrCat(prefix, "the model hosts no adapter"));
  const AdapterMethod run_method = hosted.begin()->second->adapter()->method();
  const bool saved_d2 = saved.method == AdapterMethod::kD2Lora;
  if (saved_d2 && run_method != AdapterMethod::kD2Lora) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "a d2lora adapter cannot start a ", MethodName(run_method),
        " run (its update is not one low-rank pair); its exact PEFT DoRA form (adapter-peft/, rank 2r) can start "
        "a dora run"));
  }
  for (const std::string& module : read->modules) {
    if (hosted.find(module) == hosted.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          prefix, "it adapts ", module, ", which this run does not adapt (adapter.target_modules): add it, or "
          "the saved update there would be lost"));
    }
  }

  std::vector<std::pair<std::shared_ptr<LinearImpl>, std::unique_ptr<ModuleInit>>> inits;
  bool tau_differs = false;
  double run_tau = 0, saved_tau_seen = 0;
  absl::Status status = GuardTorch(absl::StrCat("reading ", dir), [&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    for (const std::string& module : read->modules) {
      const auto& linear = hosted.at(module);
      const AdaptedLinearImpl& layer = *linear->adapter();
      const TensorMap& tensors = read->tensors.at(module);
      auto init = std::make_unique<ModuleInit>(layer, saved, absl::StrCat(read->weights_path, ": ", module));
      D2_RETURN_IF_ERROR(init->PlacePair(tensors, "lora_A.weight", "lora_B.weight", "lora_A.weight", "lora_B.weight"));
      if (run_method == AdapterMethod::kDora) {
        D2_RETURN_IF_ERROR(init->PlaceMagnitude(tensors, saved.method == AdapterMethod::kDora));
      }
      if (saved_d2) {
        D2_RETURN_IF_ERROR(init->PlacePair(tensors, "lora_A_neg.weight", "lora_B_neg.weight", "lora_A_neg.weight",
                                           "lora_B_neg.weight"));
        auto tau = tensors.find("d2lora_tau");
        if (tau == tensors.end()) {
          return absl::InvalidArgumentError(absl::StrCat(read->weights_path, ": ", module, ".d2lora_tau: missing"));
        }
        const double saved_tau = tau->second.to(torch::kFloat64).flatten()[0].item<double>();
        if (layer.options().tau_learnable) {
          init->SetTau(saved_tau);
        } else if (std::abs(saved_tau - init->run_tau()) > 1e-6 * std::max(1.0, std::abs(saved_tau))) {
          tau_differs = true;
          run_tau = init->run_tau();
          saved_tau_seen = saved_tau;
        }
      }
      inits.emplace_back(linear, std::move(init));
    }
    for (auto& [linear, init] : inits) D2_RETURN_IF_ERROR(init->Apply(*linear->adapter()));
    return absl::OkStatus();
  });
  if (!status.ok()) return with_prefix(status);

  result.modules = static_cast<int64_t>(inits.size());
  result.fresh_modules = static_cast<int64_t>(hosted.size()) - result.modules;
  if (saved.method == AdapterMethod::kDora && run_method != AdapterMethod::kDora) {
    result.notes.push_back("the saved DoRA magnitude vector is left out (this run has none)");
  }
  if (!saved_d2 && run_method == AdapterMethod::kD2Lora) {
    result.notes.push_back(absl::StrCat("the saved ", MethodName(saved.method),
                                        " update starts the positive branch; the negative branch starts fresh"));
  }
  if (tau_differs) {
    result.notes.push_back(absl::StrCat("tau is fixed at this run's adapter.tau_init = ", run_tau,
                                        ", not the saved ", saved_tau_seen));
  }
  return result;
}

nlohmann::json ToJson(const AdapterInitResult& r) {
  return {{"adapter", r.dir},
          {"saved_method", MethodName(r.saved_method)},
          {"saved_r", r.saved_r},
          {"modules", r.modules},
          {"fresh_modules", r.fresh_modules},
          {"notes", r.notes}};
}

}  // namespace d2lora::engine
