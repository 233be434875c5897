// The JSON files of a model directory on arbitrary bytes: config.json
// (model::ParseModelConfig) and tokenizer_config.json (ParseTokenizerConfig). A
// config that parses writes back (ToJson) to JSON that parses to the same config.
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "tests/fuzz/fuzz_check.h"
#include "common/model/model_config.h"
#include "worker/engine/tokenizer/tokenizer_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace d2lora::engine;
  namespace model = d2lora::model;
  const std::string text(reinterpret_cast<const char*>(data), size);

  auto config = model::ParseModelConfig(text, "config.json");
  if (!config.ok()) {
    FUZZ_CHECK(config.status().message().rfind("config.json", 0) == 0);
  } else {
    FUZZ_CHECK(config->vocab_size > 0 && config->hidden_size > 0 && config->num_hidden_layers > 0);
    FUZZ_CHECK(config->num_attention_heads > 0 && config->num_key_value_heads > 0 && config->head_dim > 0);
    FUZZ_CHECK(config->num_attention_heads % config->num_key_value_heads == 0);
    const nlohmann::json written = config->ToJson();
    std::string dumped;
    try {
      dumped = written.dump();
    } catch (const nlohmann::json::exception&) {
      FUZZ_CHECK(false && "ToJson() produced JSON that cannot be written");
    }
    auto again = model::ParseModelConfig(dumped, "config.json (written back)");
    if (!again.ok()) std::fprintf(stderr, "%s\n", std::string(again.status().message()).c_str());
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->ToJson() == written);
    for (int64_t layer = 0; layer < 4; ++layer) (void)config->layer_uses_sliding_window(layer);
  }

  auto tok_config = ParseTokenizerConfig(text, "tokenizer_config.json");
  if (!tok_config.ok()) FUZZ_CHECK(tok_config.status().message().rfind("tokenizer_config.json", 0) == 0);
  return 0;
}
