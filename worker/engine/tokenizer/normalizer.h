// The Unicode normalizers of a tokenizer.json ("NFC", "NFKC", "NFD", "NFKD", or
// a "Sequence" of them), applied with utf8proc before pre-tokenisation, as
// Hugging Face tokenizers applies them (Qwen2 ships NFC).
//
// Text that is not valid UTF-8 is normalized run by run: each valid run is
// normalized and the invalid bytes between runs pass through unchanged.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace d2lora::engine {

enum class UnicodeForm { kNFC, kNFKC, kNFD, kNFKD };

// The form a tokenizer.json type name stands for, or false when `name` is none.
bool ParseUnicodeForm(absl::string_view name, UnicodeForm* form);

class Normalizer {
 public:
  void Add(UnicodeForm form) { forms_.push_back(form); }
  bool empty() const { return forms_.empty(); }
  // `text` with every form applied in order.
  std::string Apply(absl::string_view text) const;

 private:
  std::vector<UnicodeForm> forms_;
};

// `text` in one normalization form (valid runs only; see above).
std::string NormalizeUnicode(absl::string_view text, UnicodeForm form);

}  // namespace d2lora::engine
