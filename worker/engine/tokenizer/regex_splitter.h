// Regex pre-tokenisation with Oniguruma, the engine Hugging Face tokenizers
// runs tokenizer.json's Split patterns with: the patterns run as written
// (lookaround, Unicode \s and \p{..} classes, (?i:..) groups).
//
// Oniguruma works on valid UTF-8 only. Text that is not (tokenizers itself
// never sees such text: Rust strings are UTF-8) is split at the invalid bytes:
// each valid run is searched on its own and every invalid byte is a piece of
// its own, so byte-level BPE still encodes every byte.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace d2lora::engine {

// GPT-2's pattern (also what a ByteLevel pre-tokenizer with use_regex uses).
inline constexpr absl::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// As Llama 3's tokenizer.json ships it.
inline constexpr absl::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// As Qwen2's tokenizer.json ships it.
inline constexpr absl::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A pattern that matches `literal` exactly (a Split step's {"String": ...}):
// ASCII punctuation other than '_' is escaped, NUL spelled \\x00.
std::string QuoteRegexLiteral(absl::string_view literal);

class RegexSplitter {
 public:
  // Errors name the pattern and quote Oniguruma's complaint.
  static absl::StatusOr<std::unique_ptr<RegexSplitter>> Create(absl::string_view pattern);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Appends the pieces of `text` in order: each match, and each stretch between
  // matches when `keep_gaps` (Hugging Face's "Isolated" behaviour); matches are
  // dropped instead when `!keep_matches` ("Removed"). Empty pieces never appear.
  // A search that exceeds Oniguruma's backtracking limit (only a pathological
  // pattern does) ends the splitting: the rest of the run is one gap.
  // Thread-safe: searches share the compiled pattern, nothing else.
  void Split(absl::string_view text, std::vector<absl::string_view>* pieces,
             bool keep_matches = true, bool keep_gaps = true) const;

 private:
  struct Compiled;
  explicit RegexSplitter(std::unique_ptr<Compiled> compiled);
  // Splits a run of valid UTF-8 that starts at `text[run_begin]`.
  void SplitValidRun(absl::string_view text, size_t run_begin, size_t run_end,
                     std::vector<absl::string_view>* pieces, bool keep_matches, bool keep_gaps,
                     size_t* last_end) const;

  std::unique_ptr<Compiled> compiled_;
};

}  // namespace d2lora::engine
