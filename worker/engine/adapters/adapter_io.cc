#include "worker/engine/adapters/adapter_io.h"

#include <torch/torch.h>

#include <cstdio>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "worker/engine/adapters/adapted_linear.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/adapters/linear.h"
#include "worker/engine/formats/safetensors.h"
#include "worker/engine/torch_guard.h"

namespace d2lora::engine {

using json = nlohmann::ordered_json;

namespace {

json ConfigJson(const AdapterOptions& o, const std::string& base_model) {
  json j;
  const bool d2 = o.method == AdapterMethod::kD2Lora;
  j["peft_type"] = d2 ? "D2LORA" : "LORA";
  j["task_type"] = "CAUSAL_LM";
  j["base_model_name_or_path"] = base_model.empty() ? json(nullptr) : json(base_model);
  j["r"] = o.r;
  j["lora_alpha"] = o.alpha;
  j["lora_dropout"] = o.dropout;
  // PEFT reads a list as module-name suffixes (a full path matches itself);
  // the savers pass the adapted modules' paths, never the spec's patterns,
  // whose regexes PEFT would read differently (a string is one full-match regex).
  j["target_modules"] = o.target_modules;
  j["use_rslora"] = o.use_rslora;
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = true;
  if (d2) {
    j["tau_init"] = o.tau_init;
    j["tau_learnable"] = o.tau_learnable;
    j["projection_strength"] = o.projection_strength;
    j["residual"] = o.residual;
    j["norm_grad"] = NormGradName(o.norm_grad);
    j["adapter_dtype"] = AdapterDtypeName(o.dtype);
  } else {
    j["use_dora"] = o.method == AdapterMethod::kDora;
  }
  return j;
}

// The key suffixes each method stores per module.
std::vector<std::string> SuffixesFor(AdapterMethod method) {
  switch (method) {
    case AdapterMethod::kLora:
      return {"lora_A.weight", "lora_B.weight"};
    case AdapterMethod::kDora:
      return {"lora_A.weight", "lora_B.weight", "lora_magnitude_vector"};
    case AdapterMethod::kD2Lora:
      return {"lora_A.weight", "lora_B.weight", "lora_A_neg.weight", "lora_B_neg.weight", "d2lora_tau"};
  }
  return {};
}

}  // namespace

absl::Status SaveAdapter(torch::nn::Module& root, const AdapterOptions& options, const std::string& dir,
                         const std::string& base_model_name_or_path) {
  return GuardTorch(absl::StrCat("saving adapter to ", dir), [&]() -> absl::Status {
    NamedTensors tensors;
    AdapterOptions saved = options;
    saved.target_modules.clear();  // the adapted modules, by path
    for (auto& [path, linear] : LinearLayers(root)) {
      if (!linear->adapter()) continue;
      for (auto& [suffix, t] : linear->adapter()->ExportTensors()) {
        tensors.emplace_back(absl::StrCat(kPeftKeyPrefix, path, ".", suffix), t);
      }
      saved.target_modules.push_back(path);
    }
    if (tensors.empty()) return absl::FailedPreconditionError("the model hosts no adapter to save");
    return WriteAdapterDirectory(tensors, saved, dir, base_model_name_or_path);
  });
}

absl::Status WriteAdapterDirectory(const NamedTensors& tensors, const AdapterOptions& options, const std::string& dir,
                                   const std::string& base_model_name_or_path) {
  D2_ASSIGN_OR_RETURN(StagedDirectory staged, StagedDirectory::Create(dir));
  D2_RETURN_IF_ERROR(WriteSafetensors(absl::StrCat(staged.path(), "/", kAdapterWeightsFile), tensors,
                                      {{"format", "pt"}}));
  D2_RETURN_IF_ERROR(WriteFileAtomically(absl::StrCat(staged.path(), "/", kAdapterConfigFile),
                                         ConfigJson(options, base_model_name_or_path).dump(2) + "\n"));
  return staged.Commit(/*replace=*/true);
}

absl::StatusOr<AdapterOptions> ReadAdapterConfig(const std::string& dir) {
  const std::string path = absl::StrCat(dir, "/", kAdapterConfigFile);
  D2_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  auto field_error = [&](const std::string& field, const std::string& want) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": field '", field, "' ", want));
  };
  AdapterOptions o;
  if (!j.contains("peft_type") || !j["peft_type"].is_string()) return field_error("peft_type", "must be a string");
  const std::string type = j["peft_type"];
  auto get_number = [&](const char* field, double* out) -> absl::Status {
    if (!j.contains(field)) return absl::OkStatus();
    if (!j[field].is_number()) return field_error(field, "must be a number");
    *out = j[field].get<double>();
    return absl::OkStatus();
  };
  auto get_bool = [&](const char* field, bool* out) -> absl::Status {
    if (!j.contains(field) || j[field].is_null()) return absl::OkStatus();
    if (!j[field].is_boolean()) return field_error(field, "must be true or false");
    *out = j[field].get<bool>();
    return absl::OkStatus();
  };
  if (type == "D2LORA") {
    o.method = AdapterMethod::kD2Lora;
  } else if (type == "LORA") {
    bool dora = false;
    D2_RETURN_IF_ERROR(get_bool("use_dora", &dora));
    o.method = dora ? AdapterMethod::kDora : AdapterMethod::kLora;
    if (dora) o.norm_grad = NormGrad::kDetached;  // PEFT's DoRA detaches ||W'||
  } else {
    return field_error("peft_type", absl::StrCat("is '", type, "' (expected LORA or D2LORA)"));
  }
  if (!j.contains("r") || !j["r"].is_number_integer()) return field_error("r", "must be an integer");
  o.r = j["r"].get<int64_t>();
  o.alpha = static_cast<double>(o.r);  // PEFT's default lora_alpha is 8; r keeps s = 1 if absent
  D2_RETURN_IF_ERROR(get_number("lora_alpha", &o.alpha));
  D2_RETURN_IF_ERROR(get_number("lora_dropout", &o.dropout));
  D2_RETURN_IF_ERROR(get_bool("use_rslora", &o.use_rslora));
  if (j.contains("target_modules")) {
    const json& t = j["target_modules"];
    o.target_modules.clear();
    if (t.is_string()) {
      o.target_modules.push_back(t.get<std::string>());
    } else if (t.is_array()) {
      for (const auto& e : t) {
        if (!e.is_string()) return field_error("target_modules", "must hold strings");
        o.target_modules.push_back(e.get<std::string>());
      }
    } else {
      return field_error("target_modules", "must be a string or a list of strings");
    }
  }
  if (o.method == AdapterMethod::kD2Lora) {
    D2_RETURN_IF_ERROR(get_number("tau_init", &o.tau_init));
    D2_RETURN_IF_ERROR(get_bool("tau_learnable", &o.tau_learnable));
    D2_RETURN_IF_ERROR(get_number("projection_strength", &o.projection_strength));
    // Adapters written before the paper's form (W_hat = W* + dW) have no
    // "residual" key: they were trained as W_hat = W* and keep that function.
    if (j.contains("residual")) {
      D2_RETURN_IF_ERROR(get_bool("residual", &o.residual));
    } else {
      o.residual = false;
      static std::once_flag said;
      std::call_once(said, [&] {
        std::fprintf(stderr,
                     "note: %s has no \"residual\" key (written before D2-LoRA's paper form): "
                     "loading it as residual: false (W_hat = W*), the form it was trained in\n",
                     path.c_str());
      });
    }
    if (j.contains("norm_grad")) {
      if (!j["norm_grad"].is_string()) return field_error("norm_grad", "must be a string");
      auto ng = ParseNormGrad(j["norm_grad"].get<std::string>());
      if (!ng.ok()) return field_error("norm_grad", std::string(ng.status().message()));
      o.norm_grad = *ng;
    }
    if (j.contains("adapter_dtype")) {
      const std::string d = j["adapter_dtype"].is_string() ? j["adapter_dtype"].get<std::string>() : "";
      absl::StatusOr<AdapterDtype> dtype = ParseAdapterDtype(d);
      if (!dtype.ok()) return field_error("adapter_dtype", "must be fp32, fp64, bf16 or fp16");
      o.dtype = *dtype;
    }
  }
  absl::Status valid = o.Validate();
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", valid.message()));
  return o;
}

absl::StatusOr<AdapterTensors> ReadAdapterTensors(const std::string& dir) {
  AdapterTensors out;
  D2_ASSIGN_OR_RETURN(out.options, ReadAdapterConfig(dir));
  out.weights_path = absl::StrCat(dir, "/", kAdapterWeightsFile);
  const std::string& weights_path = out.weights_path;
  D2_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(weights_path));
  const std::vector<std::string> suffixes = SuffixesFor(out.options.method);
  for (const SafetensorsEntry& e : file->entries()) {
    if (!absl::StartsWith(e.name, kPeftKeyPrefix)) {
      return absl::InvalidArgumentError(
          absl::StrCat(weights_path, ": key '", e.name, "' does not start with '", kPeftKeyPrefix, "'"));
    }
    const std::string rest = e.name.substr(sizeof(kPeftKeyPrefix) - 1);
    std::string module, suffix;
    for (const std::string& s : suffixes) {
      if (absl::EndsWith(rest, absl::StrCat(".", s))) {
        module = rest.substr(0, rest.size() - s.size() - 1);
        suffix = s;
        break;
      }
    }
    if (module.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(weights_path, ": key '", e.name, "' is not a ",
                                                     MethodName(out.options.method), " adapter tensor"));
    }
    D2_ASSIGN_OR_RETURN(torch::Tensor t, file->Get(e.name));
    if (out.tensors.find(module) == out.tensors.end()) out.modules.push_back(module);
    out.tensors[module][suffix] = t;
  }
  if (out.modules.empty()) return absl::InvalidArgumentError(absl::StrCat(weights_path, ": holds no tensor"));
  return out;
}

absl::StatusOr<AdapterOptions> LoadAdapter(torch::nn::Module& root, const std::string& dir) {
  D2_ASSIGN_OR_RETURN(AdapterTensors read, ReadAdapterTensors(dir));
  const AdapterOptions& options = read.options;
  const std::string& weights_path = read.weights_path;
  const std::vector<std::string>& order = read.modules;
  auto& by_module = read.tensors;
  std::set<std::string> linear_paths;
  for (auto& [path, linear] : LinearLayers(root)) linear_paths.insert(path);
  for (const std::string& module : order) {
    if (!linear_paths.count(module)) {
      return absl::InvalidArgumentError(absl::StrCat(weights_path, ": key '", kPeftKeyPrefix, module, ".",
                                                     by_module[module].begin()->first,
                                                     "' names module '", module,
                                                     "', which is not a linear layer of the model"));
    }
  }
  // A refused adapter leaves `root` as it was: no adapter added, gradients as before.
  std::vector<std::pair<torch::Tensor, bool>> requires_grad;
  for (const torch::Tensor& p : root.parameters()) requires_grad.emplace_back(p, p.requires_grad());
  std::set<std::string> hosted_before;
  for (auto& [path, linear] : LinearLayers(root)) {
    if (linear->adapter()) hosted_before.insert(path);
  }
  absl::Status status = InjectAdaptersAt(root, options, order).status();
  if (status.ok()) {
    status = GuardTorch(absl::StrCat("loading ", weights_path), [&]() -> absl::Status {
      for (auto& [path, linear] : LinearLayers(root)) {
        auto it = by_module.find(path);
        if (it == by_module.end()) continue;
        D2_RETURN_IF_ERROR(linear->adapter()->ImportTensors(
            it->second, absl::StrCat(weights_path, ": ", kPeftKeyPrefix, path)));
      }
      return absl::OkStatus();
    });
  }
  if (!status.ok()) {
    for (auto& [path, linear] : LinearLayers(root)) {
      if (by_module.count(path) && !hosted_before.count(path)) linear->set_adapter(nullptr);
    }
    for (auto& [p, flag] : requires_grad) p.requires_grad_(flag);
    return status;
  }
  return options;
}

}  // namespace d2lora::engine
