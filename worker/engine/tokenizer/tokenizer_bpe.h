// Hugging Face tokenizer.json byte-level BPE (GPT-2, Llama 3, Qwen2 style).
//
// Supported: model.type "BPE" (vocab; merges as "a b" or ["a", "b"];
// ignore_merges; unk_token), added_tokens, normalizer null, NFC, NFKC, NFD,
// NFKD or a Sequence of them (utf8proc; see normalizer.h), pre_tokenizer
// ByteLevel or a Sequence of Split (Isolated/Removed), Digits and ByteLevel,
// decoder ByteLevel, post_processor TemplateProcessing, RobertaProcessing,
// BertProcessing, ByteLevel, a Sequence of those, or null. A tokenizer.json
// that is not byte-level (e.g. Llama 2's SentencePiece-style BPE) is refused
// with kUnimplemented, so that a caller may fall back to tokenizer.model.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/tokenizer/added_tokens.h"
#include "worker/engine/tokenizer/bpe_model.h"
#include "worker/engine/tokenizer/normalizer.h"
#include "worker/engine/tokenizer/pre_tokenizer.h"
#include "worker/engine/tokenizer/tokenizer.h"
#include "worker/engine/tokenizer/tokenizer_config.h"

namespace d2lora::engine {

class BpeTokenizer : public Tokenizer {
 public:
  // One item of a single-sequence template: fixed ids, or the sequence itself.
  struct TemplateItem {
    bool is_sequence = false;
    std::vector<int64_t> ids;
  };
  struct Parts {
    std::unique_ptr<BpeModel> model;
    std::vector<AddedToken> added_tokens;
    Normalizer normalizer;  // applied to the text between added tokens
    PreTokenizer pre_tokenizer;
    // Set when the post-processor has a template; else BOS/EOS follow add_bos / add_eos.
    std::optional<std::vector<TemplateItem>> single_template;
    bool add_bos = false;
    bool add_eos = false;
    std::optional<int64_t> bos_id, eos_id, pad_id;
  };

  explicit BpeTokenizer(Parts parts);

  std::vector<int64_t> Encode(absl::string_view text, bool add_special_tokens) const override;
  std::string Decode(const std::vector<int64_t>& ids, bool skip_special_tokens = true) const override;
  int64_t vocab_size() const override { return vocab_size_; }
  std::optional<int64_t> bos_id() const override { return parts_.bos_id; }
  std::optional<int64_t> eos_id() const override { return parts_.eos_id; }
  std::optional<int64_t> pad_id() const override { return parts_.pad_id; }
  std::optional<int64_t> TokenToId(absl::string_view token) const override;

 private:
  void EncodeText(absl::string_view text, std::vector<int64_t>* ids) const;

  Parts parts_;
  AddedTokenMatcher matcher_;
  std::unordered_map<int64_t, size_t> added_by_id_;  // index into matcher_.tokens()
  int64_t vocab_size_ = 0;
};

// Parses tokenizer.json text; errors name `path` and the offending field.
absl::StatusOr<std::unique_ptr<BpeTokenizer>> ParseBpeTokenizer(const std::string& json_text,
                                                                const std::string& path,
                                                                const TokenizerConfig& config);
absl::StatusOr<std::unique_ptr<BpeTokenizer>> LoadBpeTokenizer(const std::string& path,
                                                               const TokenizerConfig& config);

}  // namespace d2lora::engine
