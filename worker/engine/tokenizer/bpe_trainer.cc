#include "worker/engine/tokenizer/bpe_trainer.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <queue>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "worker/engine/tokenizer/added_tokens.h"
#include "worker/engine/tokenizer/byte_level.h"
#include "worker/engine/tokenizer/regex_splitter.h"

namespace d2lora::engine {
namespace {

using Json = nlohmann::ordered_json;
using Pair = uint64_t;  // left id << 32 | right id

Pair MakePair(int32_t a, int32_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }
int32_t Left(Pair p) { return static_cast<int32_t>(p >> 32); }
int32_t Right(Pair p) { return static_cast<int32_t>(p & 0xFFFFFFFFu); }

struct Merge {
  int32_t left;
  int32_t right;
};

// The word counts of the corpus, special tokens cut out first.
absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> CountWords(
    const std::vector<std::string>& corpus, const std::vector<std::string>& special_tokens) {
  D2_ASSIGN_OR_RETURN(std::unique_ptr<RegexSplitter> splitter, RegexSplitter::Create(kGpt2Pattern));
  std::vector<AddedToken> specials;
  for (const std::string& s : special_tokens) specials.push_back({0, s, true});
  const AddedTokenMatcher matcher(std::move(specials));
  std::unordered_map<std::string, int64_t> counts;
  std::vector<absl::string_view> pieces;
  for (const std::string& text : corpus) {
    for (const AddedTokenMatcher::Segment& segment : matcher.Split(text)) {
      if (segment.token != nullptr) continue;
      pieces.clear();
      splitter->Split(segment.text, &pieces);
      for (absl::string_view piece : pieces) {
        if (piece.size() >= 2) ++counts[std::string(piece)];  // one byte has no pair
      }
    }
  }
  std::vector<std::pair<std::string, int64_t>> words(counts.begin(), counts.end());
  std::sort(words.begin(), words.end());
  return words;
}

class Trainer {
 public:
  Trainer(const std::vector<std::pair<std::string, int64_t>>& words, int64_t min_frequency)
      : min_frequency_(min_frequency) {
    for (const auto& [text, count] : words) {
      std::vector<int32_t> symbols;
      for (char c : text) symbols.push_back(static_cast<unsigned char>(c));
      words_.push_back(std::move(symbols));
      counts_.push_back(count);
    }
    stamp_.assign(words_.size(), -1);
    for (size_t w = 0; w < words_.size(); ++w) {
      const std::vector<int32_t>& s = words_[w];
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const Pair p = MakePair(s[i], s[i + 1]);
        pair_counts_[p] += counts_[w];
        where_[p].push_back(static_cast<int32_t>(w));
      }
    }
    for (const auto& [p, c] : pair_counts_) queue_.push({c, p});
  }

  // The best pair, or false when none is frequent enough.
  bool Best(Pair* best) {
    while (!queue_.empty()) {
      const Entry top = queue_.top();
      auto it = pair_counts_.find(top.pair);
      if (it == pair_counts_.end() || it->second != top.count) {
        queue_.pop();  // stale
        continue;
      }
      if (top.count < min_frequency_) return false;
      *best = top.pair;
      return true;
    }
    return false;
  }

  // Replaces `pair` by `new_id` in every word.
  void Apply(Pair pair, int32_t new_id, int32_t merge_index) {
    const int32_t a = Left(pair), b = Right(pair);
    std::vector<int32_t> users = std::move(where_[pair]);
    where_.erase(pair);
    std::unordered_set<Pair> touched;
    for (int32_t w : users) {
      if (stamp_[w] == merge_index) continue;
      stamp_[w] = merge_index;
      std::vector<int32_t>& s = words_[w];
      const int64_t count = counts_[w];
      bool found = false;
      for (size_t i = 0; i + 1 < s.size() && !found; ++i) found = s[i] == a && s[i + 1] == b;
      if (!found) continue;
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const Pair p = MakePair(s[i], s[i + 1]);
        pair_counts_[p] -= count;
        touched.insert(p);
      }
      std::vector<int32_t> merged;
      merged.reserve(s.size());
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          merged.push_back(new_id);
          ++i;
        } else {
          merged.push_back(s[i]);
        }
      }
      s = std::move(merged);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const Pair p = MakePair(s[i], s[i + 1]);
        pair_counts_[p] += count;
        touched.insert(p);
        if (s[i] == new_id || s[i + 1] == new_id) where_[p].push_back(w);
      }
    }
    for (Pair p : touched) {
      auto it = pair_counts_.find(p);
      if (it->second <= 0) {
        pair_counts_.erase(it);
      } else {
        queue_.push({it->second, p});
      }
    }
  }

 private:
  struct Entry {
    int64_t count;
    Pair pair;
    // Highest count first; among equals the smaller pair.
    bool operator<(const Entry& o) const { return count != o.count ? count < o.count : pair > o.pair; }
  };
  int64_t min_frequency_;
  std::vector<std::vector<int32_t>> words_;
  std::vector<int64_t> counts_;
  std::vector<int32_t> stamp_;
  std::unordered_map<Pair, int64_t> pair_counts_;
  std::unordered_map<Pair, std::vector<int32_t>> where_;
  std::priority_queue<Entry> queue_;
};

Json AddedTokenJson(int64_t id, const std::string& content) {
  return Json{{"id", id},          {"content", content}, {"single_word", false}, {"lstrip", false},
              {"rstrip", false},   {"normalized", false}, {"special", true}};
}

std::string TokenizerJson(const std::vector<std::string>& tokens, const std::vector<Merge>& merges,
                          const std::vector<std::string>& specials) {
  const int64_t first_special = static_cast<int64_t>(tokens.size());
  Json added = Json::array();
  for (size_t i = 0; i < specials.size(); ++i) added.push_back(AddedTokenJson(first_special + i, specials[i]));
  Json vocab = Json::object();
  for (size_t id = 0; id < tokens.size(); ++id) vocab[tokens[id]] = id;
  Json merge_list = Json::array();
  for (const Merge& m : merges) merge_list.push_back(tokens[m.left] + " " + tokens[m.right]);

  Json post = nullptr;
  if (!specials.empty()) {
    const std::string& bos = specials[0];
    Json bos_item = {{"SpecialToken", {{"id", bos}, {"type_id", 0}}}};
    post = Json{{"type", "TemplateProcessing"},
                {"single", Json::array({bos_item, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                {"pair", Json::array({bos_item,
                                      {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                      {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
                                      {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
                {"special_tokens",
                 {{bos, {{"id", bos}, {"ids", Json::array({first_special})}, {"tokens", Json::array({bos})}}}}}};
  }
  Json root = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         Json::array({{{"type", "Split"},
                       {"pattern", {{"Regex", std::string(kGpt2Pattern)}}},
                       {"behavior", "Isolated"},
                       {"invert", false}},
                      {{"type", "ByteLevel"},
                       {"add_prefix_space", false},
                       {"trim_offsets", true},
                       {"use_regex", false}}})}}},
      {"post_processor", post},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", merge_list}}}};
  return root.dump(2) + "\n";
}

std::string TokenizerConfigJson(const std::vector<std::string>& specials) {
  auto token = [&](size_t i) -> Json { return i < specials.size() ? Json(specials[i]) : Json(nullptr); };
  Json root = {{"bos_token", token(0)},
               {"eos_token", token(1)},
               {"pad_token", token(2)},
               {"add_bos_token", !specials.empty()},
               {"add_eos_token", false},
               {"clean_up_tokenization_spaces", false},
               {"tokenizer_class", "PreTrainedTokenizerFast"}};
  return root.dump(2) + "\n";
}

}  // namespace

absl::Status TrainByteLevelBpe(const std::vector<std::string>& corpus, const BpeTrainerOptions& options,
                               const std::string& out_dir) {
  const std::vector<std::string>& specials = options.special_tokens;
  std::set<std::string> unique_specials(specials.begin(), specials.end());
  if (unique_specials.size() != specials.size() || unique_specials.count("") > 0) {
    return absl::InvalidArgumentError("BPE trainer: special tokens must be distinct and non-empty");
  }
  const int64_t target = options.vocab_size - static_cast<int64_t>(specials.size());
  if (target < 256) {
    return absl::InvalidArgumentError(absl::StrCat("BPE trainer: vocab_size ", options.vocab_size,
                                                   " leaves no room for 256 byte tokens and ",
                                                   specials.size(), " special tokens"));
  }
  D2_ASSIGN_OR_RETURN(auto words, CountWords(corpus, specials));
  Trainer trainer(words, std::max(options.min_frequency, 1));

  std::vector<std::string> tokens;  // byte-level spelling by id
  std::unordered_map<std::string, int32_t> token_ids;
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(ByteToUnicode(static_cast<unsigned char>(b)));
    token_ids.emplace(tokens.back(), b);
  }
  std::vector<Merge> merges;
  Pair best;
  while (static_cast<int64_t>(tokens.size()) < target && trainer.Best(&best)) {
    const std::string merged = tokens[Left(best)] + tokens[Right(best)];
    // Two merges may spell the same token ("ab"+"c", "a"+"bc"): it keeps one id.
    auto [it, inserted] = token_ids.emplace(merged, static_cast<int32_t>(tokens.size()));
    if (inserted) tokens.push_back(merged);
    merges.push_back({Left(best), Right(best)});
    trainer.Apply(best, it->second, static_cast<int32_t>(merges.size()));
  }

  std::string tokenizer_json, config_json;
  try {
    tokenizer_json = TokenizerJson(tokens, merges, specials);
    config_json = TokenizerConfigJson(specials);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("BPE trainer: special tokens must be UTF-8: ", e.what()));
  }
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", out_dir, ": ", ec.message()));
  D2_RETURN_IF_ERROR(WriteFileAtomically(out_dir + "/tokenizer.json", tokenizer_json));
  return WriteFileAtomically(out_dir + "/tokenizer_config.json", config_json);
}

}  // namespace d2lora::engine
