// Small helpers the coordinator's tests share.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "tests/support/test_support.h"
#include "server/artifact_store.h"

namespace d2lora::server::testing {

// A config.json the coordinator's memory plan can read (server/submit_memory.h):
// a 2-layer LLaMA of ~10k parameters.
inline constexpr char kTinyModelConfigJson[] =
    R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64, "hidden_size": 32,)"
    R"( "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2})";

// Writes and commits `data` under `key`.
inline void Put(ArtifactStore& store, const std::string& key, const std::string& data) {
  auto w = store.OpenWriter(key);
  ASSERT_TRUE(w.ok()) << w.status();
  D2_ASSERT_OK((*w)->Append(data));
  ASSERT_TRUE((*w)->Commit().ok());
}

}  // namespace d2lora::server::testing
