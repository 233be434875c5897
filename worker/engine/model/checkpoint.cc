#include "worker/engine/model/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <algorithm>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "worker/engine/formats/safetensors.h"
#include "worker/engine/torch_guard.h"

namespace d2lora::engine {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// What a saved model carries besides its weights and config.json. Since
// transformers 4.47 the chat template lives in chat_template.jinja, and named
// ones in additional_chat_templates/NAME.jinja; both win over the template in
// tokenizer_config.json (transformers' utils/hub.py, tokenization_utils_base.py).
constexpr const char* kTokenizerFiles[] = {
    "tokenizer.json",         "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
    "generation_config.json", "vocab.json",      "merges.txt",            "added_tokens.json",
    "chat_template.jinja",
};
constexpr char kChatTemplatesDir[] = "additional_chat_templates";

std::string JoinPath(const std::string& dir, const std::string& name) { return (fs::path(dir) / name).string(); }

std::string ShapeString(const std::vector<int64_t>& shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

// Tensors a checkpoint may carry that the model has no use for.
bool IsIgnorable(const std::string& name, const model::ModelConfig& config) {
  if (absl::EndsWith(name, "rotary_emb.inv_freq")) return true;
  return config.tie_word_embeddings && name == "lm_head.weight";
}

// Where each tensor of a checkpoint lives.
struct WeightSource {
  std::string description;  // the file that names the tensors (for errors)
  std::map<std::string, std::shared_ptr<const SafetensorsFile>> files;  // by file name
  std::map<std::string, std::string> location;                        // tensor -> file name
};

absl::StatusOr<WeightSource> OpenSingle(const std::string& dir) {
  WeightSource src;
  src.description = JoinPath(dir, kSingleWeightsFile);
  D2_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(src.description));
  for (const SafetensorsEntry& e : file->entries()) src.location[e.name] = kSingleWeightsFile;
  src.files[kSingleWeightsFile] = std::move(file);
  return src;
}

absl::StatusOr<WeightSource> OpenSharded(const std::string& dir) {
  WeightSource src;
  const std::string index_path = JoinPath(dir, kWeightsIndexFile);
  src.description = index_path;
  D2_ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path));
  json index = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(index_path, ": not valid JSON"));
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": field 'weight_map': missing or not an object"));
  }
  for (const auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": field 'weight_map': the file of tensor '", name, "' is not a string"));
    }
    const std::string file_name = file.get<std::string>();
    if (file_name.empty() || file_name.find('/') != std::string::npos || file_name == "." || file_name == "..") {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": field 'weight_map': tensor '", name,
                                                     "' names file '", file_name,
                                                     "', which is not a file name in the checkpoint directory"));
    }
    src.location[name] = file_name;
    if (src.files.count(file_name) == 0) {
      const std::string shard_path = JoinPath(dir, file_name);
      absl::StatusOr<std::shared_ptr<const SafetensorsFile>> shard = SafetensorsFile::Open(shard_path);
      if (!shard.ok()) {
        return absl::Status(shard.status().code(),
                            absl::StrCat(index_path, ": shard '", file_name, "' (holding tensor '", name,
                                         "'): ", shard.status().message()));
      }
      src.files[file_name] = *std::move(shard);
    }
  }
  if (src.location.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": field 'weight_map': empty"));
  }
  for (const auto& [file_name, file] : src.files) {
    for (const SafetensorsEntry& e : file->entries()) {
      auto it = src.location.find(e.name);
      if (it == src.location.end()) {
        return absl::InvalidArgumentError(absl::StrCat(file->path(), ": tensor '", e.name, "' is not listed in ",
                                                       index_path));
      }
      if (it->second != file_name) {
        return absl::InvalidArgumentError(absl::StrCat(file->path(), ": tensor '", e.name, "' is listed in ",
                                                       index_path, " under another file, '", it->second, "'"));
      }
    }
  }
  for (const auto& [name, file_name] : src.location) {
    if (!src.files[file_name]->Contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat(JoinPath(dir, file_name), ": tensor '", name,
                                                     "' is missing (", index_path, " lists it there)"));
    }
  }
  return src;
}

absl::StatusOr<WeightSource> OpenWeights(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(JoinPath(dir, kSingleWeightsFile), ec)) return OpenSingle(dir);
  if (fs::exists(JoinPath(dir, kWeightsIndexFile), ec)) return OpenSharded(dir);
  std::string hint;
  if (fs::exists(JoinPath(dir, "pytorch_model.bin"), ec) ||
      fs::exists(JoinPath(dir, "pytorch_model.bin.index.json"), ec)) {
    hint = " (pytorch_model.bin checkpoints are not supported: convert them to safetensors)";
  }
  return absl::NotFoundError(
      absl::StrCat(dir, ": no ", kSingleWeightsFile, " and no ", kWeightsIndexFile, hint));
}

// Checks names, shapes and dtypes against the config before anything is allocated.
absl::Status CheckWeights(const WeightSource& src, const model::ModelConfig& config, const std::string& dir) {
  const auto expected = ExpectedTensorShapes(config);
  std::set<std::string> expected_names;
  for (const auto& [name, shape] : expected) {
    expected_names.insert(name);
    auto it = src.location.find(name);
    if (it == src.location.end()) {
      return absl::NotFoundError(absl::StrCat(src.description, ": missing tensor '", name, "' (expected shape ",
                                              ShapeString(shape), ")"));
    }
    const auto& file = src.files.at(it->second);
    const SafetensorsEntry* entry = file->Find(name);
    if (entry->shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(file->path(), ": tensor '", name, "' has shape ",
                                                     ShapeString(entry->shape), ", expected ",
                                                     ShapeString(shape), " from ", JoinPath(dir, kModelConfigFile)));
    }
    if (!c10::isFloatingType(entry->dtype)) {
      return absl::InvalidArgumentError(absl::StrCat(file->path(), ": tensor '", name, "' has dtype ",
                                                     c10::toString(entry->dtype), ", expected a floating type"));
    }
  }
  std::vector<std::string> unexpected;
  for (const auto& [name, file_name] : src.location) {
    if (expected_names.count(name) == 0 && !IsIgnorable(name, config)) {
      unexpected.push_back(absl::StrCat("'", name, "' (in ", file_name, ")"));
    }
  }
  if (!unexpected.empty()) {
    const size_t shown = std::min<size_t>(unexpected.size(), 5);
    return absl::InvalidArgumentError(absl::StrCat(
        src.description, ": ", unexpected.size(), " unexpected tensor(s) for a ", config.architecture, ": ",
        absl::StrJoin(unexpected.begin(), unexpected.begin() + shown, ", "),
        unexpected.size() > shown ? ", ..." : ""));
  }
  return absl::OkStatus();
}

// Parameters of `model` by Hugging Face name, checked against the config.
absl::StatusOr<std::vector<std::pair<std::string, torch::Tensor>>> ModelTensors(CausalLMImpl& model,
                                                                                const model::ModelConfig& config) {
  auto params = model.named_parameters(/*recurse=*/true);
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& [name, shape] : ExpectedTensorShapes(config)) {
    const torch::Tensor* p = params.find(name);
    if (p == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("the model has no parameter '", name, "' that its config needs"));
    }
    if (p->sizes().vec() != shape) {
      return absl::InvalidArgumentError(absl::StrCat("parameter '", name, "' has shape ", ShapeString(p->sizes().vec()),
                                                     ", the config says ", ShapeString(shape)));
    }
    out.emplace_back(name, *p);
  }
  return out;
}

absl::Status CheckWeightDtype(c10::ScalarType dtype) { return ModelDtypeName(dtype).status(); }

}  // namespace

absl::StatusOr<c10::ScalarType> ParseModelDtype(const std::string& name) {
  if (name == "float32" || name == "fp32") return c10::ScalarType::Float;
  if (name == "bfloat16" || name == "bf16") return c10::ScalarType::BFloat16;
  if (name == "float16" || name == "fp16") return c10::ScalarType::Half;
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported model dtype '", name, "' (supported: float32, bfloat16, float16)"));
}

absl::StatusOr<std::string> ModelDtypeName(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::ScalarType::Float: return std::string("float32");
    case c10::ScalarType::BFloat16: return std::string("bfloat16");
    case c10::ScalarType::Half: return std::string("float16");
    default:
      return absl::InvalidArgumentError(absl::StrCat("unsupported model dtype ", c10::toString(dtype),
                                                     " (supported: float32, bfloat16, float16)"));
  }
}

absl::StatusOr<LoadedModel> LoadModel(const std::string& dir, c10::ScalarType dtype, const c10::Device& device) {
  D2_RETURN_IF_ERROR(CheckWeightDtype(dtype));
  D2_ASSIGN_OR_RETURN(model::ModelConfig config, model::LoadModelConfig(dir));
  D2_ASSIGN_OR_RETURN(WeightSource src, OpenWeights(dir));
  D2_RETURN_IF_ERROR(CheckWeights(src, config, dir));
  return GuardTorch(absl::StrCat("loading ", dir), [&]() -> absl::StatusOr<LoadedModel> {
    LoadedModel loaded;
    loaded.config = config;
    loaded.model = CausalLM(config, torch::TensorOptions().dtype(dtype).device(device));
    D2_ASSIGN_OR_RETURN(auto params, ModelTensors(*loaded.model, config));
    torch::NoGradGuard no_grad;
    for (auto& [name, param] : params) {
      const auto& file = src.files.at(src.location.at(name));
      D2_ASSIGN_OR_RETURN(at::Tensor value, file->Get(name));
      param.copy_(value);
    }
    return loaded;
  });
}

absl::Status SaveModel(CausalLMImpl& model, const model::ModelConfig& config, const std::string& out_dir,
                       const SaveModelOptions& options) {
  D2_ASSIGN_OR_RETURN(std::string dtype_name, ModelDtypeName(options.dtype));
  if (options.max_shard_bytes == 0) return absl::InvalidArgumentError("max_shard_bytes must be positive");
  for (const auto& [path, linear] : DecoderLinearLayers(model, /*include_lm_head=*/true)) {
    if (linear->adapter()) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot save ", out_dir, ": ", path, " hosts an unmerged adapter (merge adapters first)"));
    }
  }
  std::error_code ec;
  if (!options.overwrite && fs::exists(out_dir, ec)) {
    return absl::AlreadyExistsError(absl::StrCat(out_dir, " already exists"));
  }
  D2_ASSIGN_OR_RETURN(auto tensors, ModelTensors(model, config));

  // Shards in checkpoint order, as transformers' shard_checkpoint groups them.
  const uint64_t element = c10::elementSize(options.dtype);
  std::vector<std::vector<size_t>> shards;
  uint64_t current = 0, total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t bytes = static_cast<uint64_t>(tensors[i].second.numel()) * element;
    if (shards.empty() || (current + bytes > options.max_shard_bytes && current > 0)) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(i);
    current += bytes;
    total += bytes;
  }

  D2_ASSIGN_OR_RETURN(StagedDirectory staged, StagedDirectory::Create(out_dir));
  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  json weight_map = json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string file_name =
        shards.size() == 1 ? std::string(kSingleWeightsFile)
                           : absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, shards.size());
    D2_ASSIGN_OR_RETURN(NamedTensors named,
                        GuardTorch(absl::StrCat("saving ", out_dir), [&]() -> absl::StatusOr<NamedTensors> {
                          torch::NoGradGuard no_grad;
                          NamedTensors out;
                          for (size_t i : shards[s]) {
                            out.emplace_back(tensors[i].first, tensors[i].second.detach().to(options.dtype));
                          }
                          return out;
                        }));
    D2_RETURN_IF_ERROR(WriteSafetensors(JoinPath(staged.path(), file_name), named, metadata));
    for (size_t i : shards[s]) weight_map[tensors[i].first] = file_name;
  }
  if (shards.size() > 1) {
    json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    D2_RETURN_IF_ERROR(WriteFileAtomically(JoinPath(staged.path(), kWeightsIndexFile), index.dump(2) + "\n"));
  }

  model::ModelConfig saved = config;
  saved.dtype = dtype_name;
  D2_RETURN_IF_ERROR(WriteFileAtomically(JoinPath(staged.path(), kModelConfigFile), saved.ToJson().dump(2) + "\n"));

  if (!options.tokenizer_source_dir.empty()) {
    if (!fs::is_directory(options.tokenizer_source_dir, ec)) {
      return absl::NotFoundError(absl::StrCat("tokenizer source ", options.tokenizer_source_dir, " is not a directory"));
    }
    std::vector<std::string> names(std::begin(kTokenizerFiles), std::end(kTokenizerFiles));
    const std::string templates = JoinPath(options.tokenizer_source_dir, kChatTemplatesDir);
    if (fs::is_directory(templates, ec)) {
      std::vector<std::string> found;
      for (const fs::directory_entry& e : fs::directory_iterator(templates, ec)) {
        if (e.is_regular_file(ec) && e.path().extension() == ".jinja") found.push_back(e.path().filename().string());
      }
      if (ec) return absl::InternalError(absl::StrCat("reading ", templates, ": ", ec.message()));
      std::sort(found.begin(), found.end());
      if (!found.empty()) fs::create_directories(JoinPath(staged.path(), kChatTemplatesDir), ec);
      for (const std::string& f : found) names.push_back(absl::StrCat(kChatTemplatesDir, "/", f));
    }
    for (const std::string& name : names) {
      const std::string from = JoinPath(options.tokenizer_source_dir, name);
      if (!fs::is_regular_file(from, ec)) continue;
      D2_ASSIGN_OR_RETURN(std::string contents, ReadFileToString(from));
      D2_RETURN_IF_ERROR(WriteFileAtomically(JoinPath(staged.path(), name), contents));
    }
  }
  return staged.Commit(options.overwrite);
}

absl::StatusOr<CausalLM> InitRandomModel(const model::ModelConfig& config, uint64_t seed, c10::ScalarType dtype,
                                         const c10::Device& device) {
  D2_RETURN_IF_ERROR(CheckWeightDtype(dtype));
  return GuardTorch("initialising a random model", [&]() -> absl::StatusOr<CausalLM> {
    CausalLM model(config, torch::TensorOptions().dtype(dtype).device(device));
    D2_ASSIGN_OR_RETURN(auto params, ModelTensors(*model, config));
    at::Generator gen = at::detail::createCPUGenerator(seed);
    torch::NoGradGuard no_grad;
    for (auto& [name, param] : params) {
      torch::Tensor value;
      if (absl::EndsWith(name, "norm.weight")) {
        value = torch::ones(param.sizes(), torch::kFloat32);
      } else if (absl::EndsWith(name, ".bias")) {
        value = torch::zeros(param.sizes(), torch::kFloat32);
      } else {
        value = torch::empty(param.sizes(), torch::kFloat32).normal_(0.0, config.initializer_range, gen);
      }
      if (name == "model.embed_tokens.weight" && config.pad_token_id.has_value() && *config.pad_token_id >= 0 &&
          *config.pad_token_id < config.vocab_size) {
        value[*config.pad_token_id].zero_();
      }
      param.copy_(value);
    }
    return model;
  });
}

}  // namespace d2lora::engine
