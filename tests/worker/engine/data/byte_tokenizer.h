// A test-only tokenizer: one token per byte (id = 3 + byte), PAD = 0, BOS = 1,
// EOS = 2; Encode(text, true) puts BOS in front when the tokenizer has one.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "worker/engine/tokenizer/tokenizer.h"

namespace d2lora::engine::testing {

class ByteTokenizer : public Tokenizer {
 public:
  explicit ByteTokenizer(bool has_bos = true, bool has_eos = true, bool has_pad = true)
      : has_bos_(has_bos), has_eos_(has_eos), has_pad_(has_pad) {}

  static int64_t Id(char c) { return 3 + static_cast<unsigned char>(c); }
  // Ids of `text`, no specials.
  static std::vector<int64_t> Ids(const std::string& text) {
    std::vector<int64_t> ids;
    for (char c : text) ids.push_back(Id(c));
    return ids;
  }

  std::vector<int64_t> Encode(absl::string_view text, bool add_special_tokens) const override {
    std::vector<int64_t> ids;
    if (add_special_tokens && has_bos_) ids.push_back(1);
    for (char c : text) ids.push_back(Id(c));
    return ids;
  }
  std::string Decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const override {
    std::string out;
    for (int64_t id : ids) {
      if (id >= 3) {
        out.push_back(static_cast<char>(id - 3));
      } else if (!skip_special_tokens) {
        out += id == 0 ? "<pad>" : id == 1 ? "<s>" : "</s>";
      }
    }
    return out;
  }
  int64_t vocab_size() const override { return 259; }
  std::optional<int64_t> bos_id() const override { return has_bos_ ? std::optional<int64_t>(1) : std::nullopt; }
  std::optional<int64_t> eos_id() const override { return has_eos_ ? std::optional<int64_t>(2) : std::nullopt; }
  std::optional<int64_t> pad_id() const override { return has_pad_ ? std::optional<int64_t>(0) : std::nullopt; }
  std::optional<int64_t> TokenToId(absl::string_view) const override { return std::nullopt; }

 private:
  bool has_bos_, has_eos_, has_pad_;
};

}  // namespace d2lora::engine::testing
