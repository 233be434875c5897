#include "worker/engine/tokenizer/added_tokens.h"

#include <algorithm>
#include <utility>

namespace d2lora::engine {

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens)
    : tokens_(std::move(tokens)), by_first_byte_(256) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    if (tokens_[i].content.empty()) continue;
    by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(i);
  }
  for (auto& bucket : by_first_byte_) {
    std::stable_sort(bucket.begin(), bucket.end(), [this](size_t a, size_t b) {
      return tokens_[a].content.size() > tokens_[b].content.size();
    });
  }
}

std::vector<AddedTokenMatcher::Segment> AddedTokenMatcher::Split(absl::string_view text) const {
  std::vector<Segment> segments;
  size_t plain_start = 0;
  size_t i = 0;
  while (i < text.size() && !by_first_byte_.empty()) {
    const AddedToken* found = nullptr;
    for (size_t index : by_first_byte_[static_cast<unsigned char>(text[i])]) {
      const std::string& content = tokens_[index].content;
      if (text.substr(i, content.size()) == content) {
        found = &tokens_[index];
        break;
      }
    }
    if (found == nullptr) {
      ++i;
      continue;
    }
    if (i > plain_start) segments.push_back({text.substr(plain_start, i - plain_start), nullptr});
    segments.push_back({text.substr(i, found->content.size()), found});
    i += found->content.size();
    plain_start = i;
  }
  if (plain_start < text.size()) segments.push_back({text.substr(plain_start), nullptr});
  return segments;
}

}  // namespace d2lora::engine
