// Regex pre-tokenisation with RE2 for the patterns Hugging Face tokenizers run
// through Oniguruma.
//
// RE2 has no lookaround, and its \s is ASCII-only. The translation therefore
//  - widens \s and \S to Unicode White_Space (as Oniguruma and Python's `regex`
//    module define it), and
//  - replaces the trailing alternatives `\s+(?!\S)|\s+` that GPT-2, Llama 3 and
//    Qwen2 end with by a capturing `(\s+)` whose match is fixed up by hand:
//    a whitespace run that is followed by a non-space character gives its last
//    character back to the next piece (" " + "world"), exactly what the
//    lookahead does.
// Any other construct RE2 lacks (lookaround elsewhere, possessive quantifiers,
// backreferences) makes Create fail with RE2's message.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace re2 {
class RE2;
}

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

struct TranslatedPattern {
  std::string re2_pattern;
  // Whether the last capturing group stands for `\s+(?!\S)|\s+`.
  bool whitespace_lookahead = false;
};

// The RE2 spelling of an Oniguruma pattern (see above). Never fails; RE2 may
// still reject the result.
TranslatedPattern TranslateOnigurumaPattern(absl::string_view pattern);

class RegexSplitter {
 public:
  // Errors name the pattern and quote RE2's complaint.
  static absl::StatusOr<std::unique_ptr<RegexSplitter>> Create(absl::string_view pattern);
  ~RegexSplitter();

  // Appends the pieces of `text` in order: each match, and each stretch between
  // matches when `keep_gaps` (Hugging Face's "Isolated" behaviour); matches are
  // dropped instead when `!keep_matches` ("Removed"). Empty pieces never appear.
  void Split(absl::string_view text, std::vector<absl::string_view>* pieces,
             bool keep_matches = true, bool keep_gaps = true) const;

 private:
  RegexSplitter() = default;
  std::unique_ptr<re2::RE2> re_;
  int whitespace_group_ = 0;  // 0 when the pattern has no lookahead stand-in
};

}  // namespace d2lora::engine
