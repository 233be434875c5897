// Added tokens (special or not) are found in the raw text before anything
// else runs, leftmost first and longest among those starting at one place, as
// Hugging Face tokenizers does.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace d2lora::engine {

struct AddedToken {
  int64_t id = 0;
  std::string content;
  bool special = false;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);

  // One stretch of text: an added token (token != nullptr) or plain text.
  struct Segment {
    absl::string_view text;
    const AddedToken* token = nullptr;
  };
  std::vector<Segment> Split(absl::string_view text) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  // Indices into tokens_ by first byte, longest content first.
  std::vector<std::vector<size_t>> by_first_byte_;
};

}  // namespace d2lora::engine
