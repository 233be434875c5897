#include "worker/engine/tasks/init_model.h"

#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/model/checkpoint.h"
#include "worker/engine/tokenizer/bpe_trainer.h"
#include "worker/engine/tokenizer/tokenizer.h"
#include "worker/engine/torch_guard.h"

namespace d2lora::engine {

namespace {

struct Preset {
  const char* name;
  int64_t vocab, hidden, intermediate, layers, heads, kv_heads;
  bool tied;
};

// Shapes in the style of SmolLM / TinyLlama, scaled down.
constexpr Preset kPresets[] = {
    {"tiny", 1024, 64, 176, 4, 4, 2, false},
    {"small", 4096, 384, 1024, 6, 6, 2, true},
    {"base", 8192, 768, 2560, 12, 12, 4, true},
};

}  // namespace

absl::StatusOr<model::ModelConfig> ModelPreset(const std::string& name) {
  for (const Preset& p : kPresets) {
    if (name != p.name) continue;
    nlohmann::json j = {
        {"architectures", {"LlamaForCausalLM"}},
        {"model_type", "llama"},
        {"vocab_size", p.vocab},
        {"hidden_size", p.hidden},
        {"intermediate_size", p.intermediate},
        {"num_hidden_layers", p.layers},
        {"num_attention_heads", p.heads},
        {"num_key_value_heads", p.kv_heads},
        {"hidden_act", "silu"},
        {"rms_norm_eps", 1e-5},
        {"rope_theta", 10000.0},
        {"max_position_embeddings", 2048},
        {"tie_word_embeddings", p.tied},
        {"attention_bias", false},
        {"mlp_bias", false},
        {"initializer_range", 0.02},
        {"bos_token_id", p.vocab - 3},
        {"eos_token_id", p.vocab - 2},
        {"pad_token_id", p.vocab - 1},
        {"torch_dtype", "float32"},
    };
    return model::ParseModelConfig(j.dump(), absl::StrCat("preset ", name));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown preset '", name, "' (expected tiny, small or base)"));
}

absl::StatusOr<std::vector<std::string>> ReadCorpus(const std::string& path) {
  D2_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  std::vector<std::string> docs;
  int64_t line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    if (line.front() != '{') {
      docs.emplace_back(line);
      continue;
    }
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": not a JSON object"));
    }
    std::string doc;
    auto add = [&](const char* key) {
      if (j.contains(key) && j[key].is_string()) absl::StrAppend(&doc, doc.empty() ? "" : " ", j[key].get<std::string>());
    };
    add("context");
    add("text");
    add("prompt");
    add("completion");
    add("question");
    if (j.contains("choices") && j["choices"].is_array()) {
      for (const auto& c : j["choices"]) {
        if (c.is_string()) absl::StrAppend(&doc, " ", c.get<std::string>());
      }
    }
    if (doc.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no, ": no text field"));
    }
    docs.push_back(std::move(doc));
  }
  if (docs.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": holds no text"));
  return docs;
}

absl::StatusOr<InitModelResult> InitModel(const InitModelOptions& options) {
  if (options.out_dir.empty()) return absl::InvalidArgumentError("init-model: --out is required");
  D2_ASSIGN_OR_RETURN(model::ModelConfig config, ModelPreset(options.preset));
  std::error_code ec;
  if (std::filesystem::exists(options.out_dir, ec) && !options.overwrite) {
    return absl::AlreadyExistsError(absl::StrCat(options.out_dir, " already exists"));
  }
  // The tokenizer goes to a scratch directory first; SaveModel copies it into
  // the model directory, which appears complete or not at all.
  D2_ASSIGN_OR_RETURN(StagedDirectory scratch, StagedDirectory::Create(options.out_dir + ".tokenizer"));
  BpeTrainerOptions bpe;
  bpe.vocab_size = config.vocab_size;
  D2_RETURN_IF_ERROR(TrainByteLevelBpe(options.corpus, bpe, scratch.path()));
  D2_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, LoadTokenizer(scratch.path()));
  // Point the config's special ids at the tokenizer's own.
  if (tokenizer->bos_id()) config.bos_token_id = *tokenizer->bos_id();
  if (tokenizer->eos_id()) config.eos_token_ids = {*tokenizer->eos_id()};
  if (tokenizer->pad_id()) config.pad_token_id = *tokenizer->pad_id();
  if (tokenizer->vocab_size() > config.vocab_size) {
    return absl::InternalError(absl::StrCat("tokenizer has ", tokenizer->vocab_size(),
                                            " tokens but the preset's vocabulary is ", config.vocab_size));
  }
  D2_ASSIGN_OR_RETURN(CausalLM model, InitRandomModel(config, options.seed));
  SaveModelOptions save;
  save.dtype = c10::ScalarType::Float;
  save.tokenizer_source_dir = scratch.path();
  save.overwrite = options.overwrite;
  D2_RETURN_IF_ERROR(SaveModel(*model, config, options.out_dir, save));
  InitModelResult result;
  result.config = config;
  result.parameters = CountParameters(*model).total;
  result.tokenizer_vocab = tokenizer->vocab_size();
  return result;
}

}  // namespace d2lora::engine
