// Trains a small byte-level BPE tokenizer (for tests, examples and tiny
// models): 256 byte tokens, then merges of the most frequent adjacent pair
// (ties: the pair with the smaller ids) until vocab_size, special tokens last.
// Writes a Llama-3-style tokenizer.json (GPT-2 regex as Split + ByteLevel,
// BOS added by TemplateProcessing) and tokenizer_config.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace d2lora::engine {

struct BpeTrainerOptions {
  // Everything: byte tokens, merges and special tokens.
  int64_t vocab_size = 512;
  // The first is BOS, the second EOS, the third PAD (those present).
  std::vector<std::string> special_tokens = {"<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"};
  // Pairs seen fewer times are never merged (training may stop early).
  int min_frequency = 2;
};

// Writes out_dir/tokenizer.json and out_dir/tokenizer_config.json (atomically;
// out_dir is created when missing).
absl::Status TrainByteLevelBpe(const std::vector<std::string>& corpus,
                               const BpeTrainerOptions& options, const std::string& out_dir);

}  // namespace d2lora::engine
