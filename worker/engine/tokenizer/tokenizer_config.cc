#include "worker/engine/tokenizer/tokenizer_config.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace d2lora::engine {
namespace {

using Json = nlohmann::json;

absl::Status TokenField(const Json& root, const char* key, const std::string& path,
                        std::optional<std::string>* out) {
  auto it = root.find(key);
  if (it == root.end() || it->is_null()) return absl::OkStatus();
  if (it->is_string()) {
    *out = it->get<std::string>();
    return absl::OkStatus();
  }
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string()) {
      *out = content->get<std::string>();
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": field '", key, "' must be a string or an object with a string 'content'"));
}

absl::Status BoolField(const Json& root, const char* key, const std::string& path,
                       std::optional<bool>* out) {
  auto it = root.find(key);
  if (it == root.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": field '", key, "' must be a boolean"));
  }
  *out = it->get<bool>();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(const std::string& json_text,
                                                     const std::string& path) {
  Json root;
  try {
    root = Json::parse(json_text);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": malformed JSON: ", e.what()));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": top level must be a JSON object"));
  }
  TokenizerConfig config;
  config.path = path;
  D2_RETURN_IF_ERROR(TokenField(root, "bos_token", path, &config.bos_token));
  D2_RETURN_IF_ERROR(TokenField(root, "eos_token", path, &config.eos_token));
  D2_RETURN_IF_ERROR(TokenField(root, "pad_token", path, &config.pad_token));
  D2_RETURN_IF_ERROR(BoolField(root, "add_bos_token", path, &config.add_bos_token));
  D2_RETURN_IF_ERROR(BoolField(root, "add_eos_token", path, &config.add_eos_token));
  return config;
}

absl::StatusOr<TokenizerConfig> ParseTokenizerConfigFile(const std::string& path) {
  D2_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseTokenizerConfig(text, path);
}

}  // namespace d2lora::engine
