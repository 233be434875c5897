#include "worker/engine/tokenizer/bpe_model.h"

#include <queue>

#include "absl/strings/str_cat.h"
#include "worker/engine/tokenizer/byte_level.h"

namespace d2lora::engine {
namespace {

constexpr size_t kMaxCacheEntries = 1 << 18;
constexpr size_t kMaxCachedPieceBytes = 256;

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    std::unordered_map<std::string, int64_t> vocab,
    const std::vector<std::pair<std::string, std::string>>& merges, const std::string& where) {
  std::unique_ptr<BpeModel> model(new BpeModel());
  int64_t max_id = -1;
  for (const auto& [token, id] : vocab) {
    if (id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".vocab: token '", token, "' has negative id ", id));
    }
    if (id >= kMaxTokenIds) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".vocab: token '", token, "' has id ", id,
                                                     ", not below the limit of ", kMaxTokenIds));
    }
    max_id = std::max(max_id, id);
  }
  model->id_to_token_.resize(static_cast<size_t>(max_id + 1));
  model->id_present_.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [token, id] : vocab) {
    if (model->id_present_[id]) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".vocab: id ", id, " is used by both '",
                                                     model->id_to_token_[id], "' and '", token, "'"));
    }
    model->id_present_[id] = true;
    model->id_to_token_[id] = token;
  }
  model->vocab_ = std::move(vocab);
  for (int b = 0; b < 256; ++b) {
    auto it = model->vocab_.find(ByteToUnicode(static_cast<unsigned char>(b)));
    model->byte_ids_[b] = it == model->vocab_.end() ? -1 : it->second;
  }
  model->merges_.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const auto& [left, right] = merges[i];
    auto l = model->vocab_.find(left);
    auto r = model->vocab_.find(right);
    auto m = model->vocab_.find(left + right);
    const char* missing = l == model->vocab_.end()   ? "its first token"
                          : r == model->vocab_.end() ? "its second token"
                          : m == model->vocab_.end() ? "the merged token"
                                                     : nullptr;
    if (missing != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".merges[", i, "] ('", left, " ", right,
                                                     "'): ", missing, " is not in model.vocab"));
    }
    model->merges_.emplace(std::make_pair(l->second, r->second),
                           MergeInfo{static_cast<int32_t>(i), m->second});
  }
  return model;
}

std::optional<int64_t> BpeModel::TokenToId(absl::string_view token) const {
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int64_t id) const {
  if (id < 0 || id >= static_cast<int64_t>(id_to_token_.size()) || !id_present_[id]) return nullptr;
  return &id_to_token_[id];
}

std::vector<int64_t> BpeModel::Merge(absl::string_view bytes) const {
  if (ignore_merges_) {
    auto it = vocab_.find(BytesToUnicodeString(bytes));
    if (it != vocab_.end()) return {it->second};
  }
  struct Symbol {
    int64_t id;
    int prev;
    int next;
  };
  const int n = static_cast<int>(bytes.size());
  std::vector<Symbol> symbols(n);
  for (int i = 0; i < n; ++i) {
    symbols[i] = {byte_ids_[static_cast<unsigned char>(bytes[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  struct Candidate {
    int32_t rank;
    int left;
    int64_t left_id;
    int64_t right_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto push = [&](int left) {
    if (left < 0) return;
    const int right = symbols[left].next;
    if (right < 0) return;
    auto it = merges_.find({symbols[left].id, symbols[right].id});
    if (it != merges_.end()) {
      queue.push({it->second.rank, left, symbols[left].id, symbols[right].id});
    }
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    // The id of a merged-away symbol is set to -2, so stale entries fail here.
    if (left.id != c.left_id || left.next < 0 || symbols[left.next].id != c.right_id) continue;
    Symbol& right = symbols[left.next];
    left.id = merges_.at({c.left_id, c.right_id}).result;
    right.id = -2;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    push(left.prev);
    push(c.left);
  }
  std::vector<int64_t> ids;
  for (int i = n > 0 ? 0 : -1; i >= 0; i = symbols[i].next) {
    if (symbols[i].id >= 0) {
      ids.push_back(symbols[i].id);
    } else if (unk_id_.has_value()) {
      ids.push_back(*unk_id_);
    }
  }
  return ids;
}

void BpeModel::EncodePiece(absl::string_view bytes, std::vector<int64_t>* ids) const {
  if (bytes.empty()) return;
  const bool cacheable = bytes.size() <= kMaxCachedPieceBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(std::string(bytes));
    if (it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int64_t> word = Merge(bytes);
  ids->insert(ids->end(), word.begin(), word.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::string(bytes), std::move(word));
  }
}

}  // namespace d2lora::engine
