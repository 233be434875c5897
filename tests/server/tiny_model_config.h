// A config.json the coordinator's memory plan can read (server/submit_memory.h):
// a 2-layer LLaMA of ~10k parameters.
#pragma once

namespace d2lora::server::testing {

inline constexpr char kTinyModelConfigJson[] =
    R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64, "hidden_size": 32,)"
    R"( "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2})";

}  // namespace d2lora::server::testing
