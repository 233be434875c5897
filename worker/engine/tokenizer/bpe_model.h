// The BPE model of a tokenizer.json: a vocabulary of byte-level strings and
// ranked merges. Encodes one pre-tokenised piece at a time, caching words.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace d2lora::engine {

// Token ids (model.vocab and added_tokens) must be below this: the model keeps
// an array indexed by id, and the largest real vocabularies have ~256k tokens.
inline constexpr int64_t kMaxTokenIds = int64_t{1} << 24;

class BpeModel {
 public:
  // `vocab`: token string -> id. `merges`: pairs of token strings, best first.
  // Errors (naming `where`, e.g. "tokenizer.json: model.merges[3]") when a merge
  // names a token outside the vocabulary or produces one.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(
      std::unordered_map<std::string, int64_t> vocab,
      const std::vector<std::pair<std::string, std::string>>& merges, const std::string& where);

  void set_ignore_merges(bool value) { ignore_merges_ = value; }
  void set_unk_id(std::optional<int64_t> id) { unk_id_ = id; }

  // Appends the ids of one piece of raw bytes.
  void EncodePiece(absl::string_view bytes, std::vector<int64_t>* ids) const;

  std::optional<int64_t> TokenToId(absl::string_view token) const;
  // The token string of `id`, or nullptr.
  const std::string* IdToToken(int64_t id) const;
  int64_t max_id() const { return static_cast<int64_t>(id_to_token_.size()) - 1; }

 private:
  BpeModel() = default;
  std::vector<int64_t> Merge(absl::string_view bytes) const;

  struct PairHash {
    size_t operator()(const std::pair<int64_t, int64_t>& p) const {
      return std::hash<int64_t>()(p.first * 1000003 ^ p.second);
    }
  };
  struct MergeInfo {
    int32_t rank;
    int64_t result;
  };

  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> id_to_token_;  // "" for holes
  std::vector<bool> id_present_;
  std::unordered_map<std::pair<int64_t, int64_t>, MergeInfo, PairHash> merges_;
  int64_t byte_ids_[256];  // -1 when a byte has no token
  bool ignore_merges_ = false;
  std::optional<int64_t> unk_id_;

  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

}  // namespace d2lora::engine
