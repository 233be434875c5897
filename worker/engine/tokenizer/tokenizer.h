// Tokenizers for the models users bring (DESIGN.md §3): Hugging Face
// `tokenizer.json` byte-level BPE (GPT-2, Llama 3, Qwen2) and SentencePiece
// `tokenizer.model` (Llama 2 family).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace d2lora::engine {

class Tokenizer {
 public:
  virtual ~Tokenizer();

  // Token ids for `text`; `add_special_tokens` adds what the model expects
  // around a single sequence (BOS for Llama-style models, nothing for GPT-2).
  virtual std::vector<int64_t> Encode(absl::string_view text, bool add_special_tokens) const = 0;
  // Text for `ids`; unknown ids are skipped.
  virtual std::string Decode(const std::vector<int64_t>& ids,
                             bool skip_special_tokens = true) const = 0;

  // One more than the largest id (added tokens included).
  virtual int64_t vocab_size() const = 0;
  virtual std::optional<int64_t> bos_id() const = 0;
  virtual std::optional<int64_t> eos_id() const = 0;
  virtual std::optional<int64_t> pad_id() const = 0;
  // The id of a token as it is spelled in the vocabulary (e.g. "Ġthe", "▁the",
  // "<|end_of_text|>").
  virtual std::optional<int64_t> TokenToId(absl::string_view token) const = 0;
};

// Loads the tokenizer of a Hugging Face model directory: `tokenizer.json` when
// present (falling back to `tokenizer.model` when the JSON is not byte-level
// BPE), else `tokenizer.model`; `tokenizer_config.json`, when present, names
// the BOS/EOS/PAD tokens and says whether BOS/EOS are added.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir);

}  // namespace d2lora::engine
