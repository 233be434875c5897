// tokenizer_config.json: the parts the engine uses.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace d2lora::engine {

struct TokenizerConfig {
  std::string path;  // where it was read from; empty when there was no file
  // Token contents; each may be spelled "tok" or {"content": "tok", ...}.
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> pad_token;
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
};

// Parses the file at `path`; errors name the file and the field.
absl::StatusOr<TokenizerConfig> ParseTokenizerConfigFile(const std::string& path);
absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(const std::string& json_text,
                                                     const std::string& path_for_errors);

}  // namespace d2lora::engine
