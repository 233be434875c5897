#include "worker/engine/tokenizer/tokenizer_bpe.h"

#include <algorithm>
#include <utility>

#include "worker/engine/tokenizer/byte_level.h"

namespace d2lora::engine {

BpeTokenizer::BpeTokenizer(Parts parts) : parts_(std::move(parts)) {
  matcher_ = AddedTokenMatcher(parts_.added_tokens);
  vocab_size_ = parts_.model->max_id() + 1;
  for (size_t i = 0; i < matcher_.tokens().size(); ++i) {
    const int64_t id = matcher_.tokens()[i].id;
    added_by_id_.emplace(id, i);
    vocab_size_ = std::max(vocab_size_, id + 1);
  }
}

void BpeTokenizer::EncodeText(absl::string_view text, std::vector<int64_t>* ids) const {
  for (const AddedTokenMatcher::Segment& segment : matcher_.Split(text)) {
    if (segment.token != nullptr) {
      ids->push_back(segment.token->id);
      continue;
    }
    const std::vector<std::string> pieces =
        parts_.normalizer.empty() ? parts_.pre_tokenizer.Run(segment.text)
                                  : parts_.pre_tokenizer.Run(parts_.normalizer.Apply(segment.text));
    for (const std::string& piece : pieces) {
      parts_.model->EncodePiece(piece, ids);
    }
  }
}

std::vector<int64_t> BpeTokenizer::Encode(absl::string_view text, bool add_special_tokens) const {
  std::vector<int64_t> ids;
  if (!add_special_tokens) {
    EncodeText(text, &ids);
    return ids;
  }
  if (parts_.single_template.has_value()) {
    for (const TemplateItem& item : *parts_.single_template) {
      if (item.is_sequence) {
        EncodeText(text, &ids);
      } else {
        ids.insert(ids.end(), item.ids.begin(), item.ids.end());
      }
    }
    return ids;
  }
  if (parts_.add_bos && parts_.bos_id.has_value()) ids.push_back(*parts_.bos_id);
  EncodeText(text, &ids);
  if (parts_.add_eos && parts_.eos_id.has_value()) ids.push_back(*parts_.eos_id);
  return ids;
}

std::string BpeTokenizer::Decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::string out;
  for (int64_t id : ids) {
    auto added = added_by_id_.find(id);
    if (added != added_by_id_.end()) {
      const AddedToken& token = matcher_.tokens()[added->second];
      if (!(token.special && skip_special_tokens)) out += token.content;
      continue;
    }
    const std::string* token = parts_.model->IdToToken(id);
    if (token == nullptr) continue;
    // As Hugging Face's ByteLevel decoder: a token with a character outside
    // the byte table is kept as it is spelled.
    std::optional<std::string> bytes = UnicodeStringToBytes(*token);
    out += bytes.has_value() ? *bytes : *token;
  }
  return out;
}

std::optional<int64_t> BpeTokenizer::TokenToId(absl::string_view token) const {
  for (const AddedToken& added : matcher_.tokens()) {
    if (added.content == token) return added.id;
  }
  return parts_.model->TokenToId(token);
}

}  // namespace d2lora::engine
