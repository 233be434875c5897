// Parsing of tokenizer.json into BpeTokenizer::Parts.
#include <nlohmann/json.hpp>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "worker/engine/tokenizer/tokenizer_bpe.h"

namespace d2lora::engine {
namespace {

using Json = nlohmann::json;
using IdLookup = std::function<std::optional<int64_t>(const std::string&)>;
// Whether an id names a token (of model.vocab or added_tokens).
using IdKnown = std::function<bool(int64_t)>;

absl::Status Invalid(const std::string& path, absl::string_view field, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", field, ": ", message));
}

absl::Status Unsupported(const std::string& path, absl::string_view field,
                         absl::string_view message) {
  return absl::UnimplementedError(absl::StrCat(path, ": ", field, ": ", message));
}

std::string TypeOf(const Json& j) {
  auto it = j.find("type");
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool BoolOr(const Json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

absl::StatusOr<std::unique_ptr<BpeModel>> ParseModel(const Json& root, const std::string& path) {
  auto it = root.find("model");
  if (it == root.end() || !it->is_object()) return Invalid(path, "model", "missing or not an object");
  const Json& model = *it;
  const std::string type = TypeOf(model);
  if (!type.empty() && type != "BPE") {
    return Unsupported(path, "model.type", absl::StrCat("'", type, "' is not supported (only BPE)"));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto affix = model.find(key);
    if (affix != model.end() && affix->is_string() && !affix->get<std::string>().empty()) {
      return Unsupported(path, absl::StrCat("model.", key), "is not supported");
    }
  }
  auto vocab_it = model.find("vocab");
  if (vocab_it == model.end()) return Invalid(path, "model.vocab", "missing");
  if (!vocab_it->is_object()) return Invalid(path, "model.vocab", "must be an object {token: id}");
  std::unordered_map<std::string, int64_t> vocab;
  vocab.reserve(vocab_it->size());
  for (auto entry = vocab_it->begin(); entry != vocab_it->end(); ++entry) {
    if (!entry.value().is_number_integer()) {
      return Invalid(path, absl::StrCat("model.vocab[\"", entry.key(), "\"]"), "id must be an integer");
    }
    vocab.emplace(entry.key(), entry.value().get<int64_t>());
  }
  auto merges_it = model.find("merges");
  if (merges_it == model.end()) return Invalid(path, "model.merges", "missing");
  if (!merges_it->is_array()) return Invalid(path, "model.merges", "must be an array");
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(merges_it->size());
  for (size_t i = 0; i < merges_it->size(); ++i) {
    const Json& merge = (*merges_it)[i];
    if (merge.is_string()) {
      const std::string& s = merge.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space != std::string::npos && space > 0 && space + 1 < s.size() &&
          s.find(' ', space + 1) == std::string::npos) {
        merges.emplace_back(s.substr(0, space), s.substr(space + 1));
        continue;
      }
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
      continue;
    }
    return Invalid(path, absl::StrCat("model.merges[", i, "]"),
                   "must be a string \"a b\" or a pair [\"a\", \"b\"]");
  }
  D2_ASSIGN_OR_RETURN(std::unique_ptr<BpeModel> bpe,
                      BpeModel::Create(std::move(vocab), merges, absl::StrCat(path, ": model")));
  bpe->set_ignore_merges(BoolOr(model, "ignore_merges", false));
  auto unk = model.find("unk_token");
  if (unk != model.end() && unk->is_string()) bpe->set_unk_id(bpe->TokenToId(unk->get<std::string>()));
  return bpe;
}

absl::StatusOr<std::vector<AddedToken>> ParseAddedTokens(const Json& root, const std::string& path) {
  std::vector<AddedToken> tokens;
  auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return tokens;
  if (!it->is_array()) return Invalid(path, "added_tokens", "must be an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& t = (*it)[i];
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || t["id"].get<int64_t>() < 0 ||
        t["id"].get<int64_t>() >= kMaxTokenIds ||
        !t.contains("content") || !t["content"].is_string() || t["content"].get<std::string>().empty()) {
      return Invalid(path, absl::StrCat("added_tokens[", i, "]"),
                     absl::StrCat("needs an integer 'id' in [0, ", kMaxTokenIds, ") and a non-empty string 'content'"));
    }
    tokens.push_back({t["id"].get<int64_t>(), t["content"].get<std::string>(), BoolOr(t, "special", false)});
  }
  return tokens;
}

absl::Status ParseNormalizer(const Json& root, const std::string& path, Normalizer* normalizer) {
  auto it = root.find("normalizer");
  if (it == root.end() || it->is_null()) return absl::OkStatus();
  std::function<absl::Status(const Json&, const std::string&)> add =
      [&](const Json& n, const std::string& field) -> absl::Status {
    const std::string type = TypeOf(n);
    UnicodeForm form;
    if (ParseUnicodeForm(type, &form)) {
      normalizer->Add(form);
      return absl::OkStatus();
    }
    if (type == "Sequence" && n.contains("normalizers") && n["normalizers"].is_array()) {
      for (size_t i = 0; i < n["normalizers"].size(); ++i) {
        D2_RETURN_IF_ERROR(add(n["normalizers"][i], absl::StrCat(field, ".normalizers[", i, "]")));
      }
      return absl::OkStatus();
    }
    return Unsupported(path, field,
                       absl::StrCat("type '", type, "' is not supported (NFC, NFKC, NFD, NFKD or a Sequence of them)"));
  };
  return add(*it, "normalizer");
}

absl::Status AddPreTokenizer(const Json& j, const std::string& path, const std::string& field,
                             PreTokenizer* pre) {
  if (!j.is_object()) return Invalid(path, field, "must be an object");
  const std::string type = TypeOf(j);
  if (type == "ByteLevel") {
    return pre->AddByteLevel(BoolOr(j, "add_prefix_space", true), BoolOr(j, "use_regex", true));
  }
  if (type == "Sequence") {
    auto steps = j.find("pretokenizers");
    if (steps == j.end() || !steps->is_array()) return Invalid(path, field + ".pretokenizers", "must be an array");
    for (size_t i = 0; i < steps->size(); ++i) {
      D2_RETURN_IF_ERROR(
          AddPreTokenizer((*steps)[i], path, absl::StrCat(field, ".pretokenizers[", i, "]"), pre));
    }
    return absl::OkStatus();
  }
  std::string pattern;
  bool remove_matches = false;
  if (type == "Split") {
    auto p = j.find("pattern");
    if (p != j.end() && p->is_object() && p->contains("Regex") && (*p)["Regex"].is_string()) {
      pattern = (*p)["Regex"].get<std::string>();
    } else if (p != j.end() && p->is_object() && p->contains("String") && (*p)["String"].is_string()) {
      pattern = QuoteRegexLiteral((*p)["String"].get<std::string>());
    } else {
      return Invalid(path, field + ".pattern", "must be {\"Regex\": ...} or {\"String\": ...}");
    }
    const std::string behavior = j.contains("behavior") && j["behavior"].is_string()
                                     ? j["behavior"].get<std::string>()
                                     : std::string("Isolated");
    if (behavior == "Removed") {
      remove_matches = true;
    } else if (behavior != "Isolated") {
      return Unsupported(path, field + ".behavior", absl::StrCat("'", behavior, "' is not supported"));
    }
    if (BoolOr(j, "invert", false)) return Unsupported(path, field + ".invert", "true is not supported");
  } else if (type == "Digits") {
    pattern = BoolOr(j, "individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)";
  } else {
    return Unsupported(path, field, absl::StrCat("type '", type, "' is not supported"));
  }
  absl::Status status = pre->AddSplit(pattern, remove_matches);
  if (!status.ok()) return Invalid(path, field + ".pattern", status.message());
  return absl::OkStatus();
}

absl::Status AddPostProcessor(const Json& j, const std::string& path, const std::string& field,
                              const IdLookup& lookup, const IdKnown& known, BpeTokenizer::Parts* parts) {
  if (j.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(j);
  if (type == "ByteLevel") return absl::OkStatus();
  if (type == "Sequence") {
    auto steps = j.find("processors");
    if (steps == j.end() || !steps->is_array()) return Invalid(path, field + ".processors", "must be an array");
    for (size_t i = 0; i < steps->size(); ++i) {
      D2_RETURN_IF_ERROR(AddPostProcessor((*steps)[i], path, absl::StrCat(field, ".processors[", i, "]"),
                                          lookup, known, parts));
    }
    return absl::OkStatus();
  }
  std::vector<BpeTokenizer::TemplateItem> items;
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    for (const char* key : {"cls", "sep"}) {
      auto t = j.find(key);
      if (t == j.end() || !t->is_array() || t->size() != 2 || !(*t)[1].is_number_integer()) {
        return Invalid(path, absl::StrCat(field, ".", key), "must be [token, id]");
      }
      if (!known((*t)[1].get<int64_t>())) {
        return Invalid(path, absl::StrCat(field, ".", key),
                       absl::StrCat("id ", (*t)[1].get<int64_t>(), " is not in the vocabulary"));
      }
      if (std::string(key) == "sep") items.push_back({true, {}});
      items.push_back({false, {(*t)[1].get<int64_t>()}});
    }
  } else if (type == "TemplateProcessing") {
    auto single = j.find("single");
    if (single == j.end() || !single->is_array()) return Invalid(path, field + ".single", "must be an array");
    const Json empty = Json::object();
    auto specials_it = j.find("special_tokens");
    const Json& specials = specials_it != j.end() && specials_it->is_object() ? *specials_it : empty;
    for (size_t i = 0; i < single->size(); ++i) {
      const Json& item = (*single)[i];
      const std::string item_field = absl::StrCat(field, ".single[", i, "]");
      if (item.contains("Sequence")) {
        items.push_back({true, {}});
        continue;
      }
      if (!item.contains("SpecialToken") || !item["SpecialToken"].contains("id") ||
          !item["SpecialToken"]["id"].is_string()) {
        return Invalid(path, item_field, "must be {\"Sequence\": ...} or {\"SpecialToken\": {\"id\": ...}}");
      }
      const std::string name = item["SpecialToken"]["id"].get<std::string>();
      BpeTokenizer::TemplateItem special;
      auto entry = specials.find(name);
      if (entry != specials.end() && entry->contains("ids") && (*entry)["ids"].is_array()) {
        for (const Json& id : (*entry)["ids"]) {
          if (!id.is_number_integer()) {
            return Invalid(path, absl::StrCat(field, ".special_tokens[\"", name, "\"].ids"), "must be integers");
          }
          if (!known(id.get<int64_t>())) {
            return Invalid(path, absl::StrCat(field, ".special_tokens[\"", name, "\"].ids"),
                           absl::StrCat("id ", id.get<int64_t>(), " is not in the vocabulary"));
          }
          special.ids.push_back(id.get<int64_t>());
        }
      } else if (std::optional<int64_t> id = lookup(name)) {
        special.ids.push_back(*id);
      } else {
        return Invalid(path, item_field, absl::StrCat("special token '", name, "' is unknown"));
      }
      items.push_back(std::move(special));
    }
  } else {
    return Unsupported(path, field, absl::StrCat("type '", type, "' is not supported"));
  }
  parts->single_template = std::move(items);
  return absl::OkStatus();
}

absl::Status ResolveSpecial(const std::optional<std::string>& token, const char* name,
                            const std::string& path, const TokenizerConfig& config,
                            const IdLookup& lookup, std::optional<int64_t>* id) {
  if (!token.has_value()) return absl::OkStatus();
  *id = lookup(*token);
  if (!id->has_value()) {
    const std::string source = config.path.empty() ? "tokenizer_config.json" : config.path;
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", name, " '", *token,
                                                   "' is not in the vocabulary of ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> Parse(const Json& root, const std::string& path,
                                                    const TokenizerConfig& config) {
  if (!root.is_object()) return Invalid(path, "top level", "must be a JSON object");
  BpeTokenizer::Parts parts;
  D2_ASSIGN_OR_RETURN(parts.model, ParseModel(root, path));
  D2_ASSIGN_OR_RETURN(parts.added_tokens, ParseAddedTokens(root, path));
  D2_RETURN_IF_ERROR(ParseNormalizer(root, path, &parts.normalizer));
  auto pre = root.find("pre_tokenizer");
  if (pre != root.end() && !pre->is_null()) {
    D2_RETURN_IF_ERROR(AddPreTokenizer(*pre, path, "pre_tokenizer", &parts.pre_tokenizer));
  }
  if (!parts.pre_tokenizer.has_byte_level()) {
    return Unsupported(path, "pre_tokenizer", "has no ByteLevel step; only byte-level BPE is supported");
  }
  const BpeModel* model = parts.model.get();
  const std::vector<AddedToken>* added = &parts.added_tokens;
  IdLookup lookup = [model, added](const std::string& token) -> std::optional<int64_t> {
    for (const AddedToken& t : *added) {
      if (t.content == token) return t.id;
    }
    return model->TokenToId(token);
  };
  IdKnown known = [model, added](int64_t id) {
    for (const AddedToken& t : *added) {
      if (t.id == id) return true;
    }
    return model->IdToToken(id) != nullptr;
  };
  auto post = root.find("post_processor");
  if (post != root.end()) {
    D2_RETURN_IF_ERROR(AddPostProcessor(*post, path, "post_processor", lookup, known, &parts));
  }

  // BOS/EOS: tokenizer_config.json names them; else the template implies them.
  if (parts.single_template.has_value()) {
    bool before = true;
    for (const BpeTokenizer::TemplateItem& item : *parts.single_template) {
      if (item.is_sequence) {
        before = false;
      } else if (item.ids.size() == 1) {
        std::optional<int64_t>& slot = before ? parts.bos_id : parts.eos_id;
        if (!slot.has_value()) slot = item.ids[0];
      }
    }
  }
  D2_RETURN_IF_ERROR(ResolveSpecial(config.bos_token, "bos_token", path, config, lookup, &parts.bos_id));
  D2_RETURN_IF_ERROR(ResolveSpecial(config.eos_token, "eos_token", path, config, lookup, &parts.eos_id));
  D2_RETURN_IF_ERROR(ResolveSpecial(config.pad_token, "pad_token", path, config, lookup, &parts.pad_id));
  parts.add_bos = config.add_bos_token.value_or(false);
  parts.add_eos = config.add_eos_token.value_or(false);
  return std::make_unique<BpeTokenizer>(std::move(parts));
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeTokenizer>> ParseBpeTokenizer(const std::string& json_text,
                                                                const std::string& path,
                                                                const TokenizerConfig& config) {
  Json root;
  try {
    root = Json::parse(json_text);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": malformed JSON: ", e.what()));
  }
  try {
    return Parse(root, path, config);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": unexpected JSON structure: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<BpeTokenizer>> LoadBpeTokenizer(const std::string& path,
                                                               const TokenizerConfig& config) {
  D2_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseBpeTokenizer(text, path, config);
}

}  // namespace d2lora::engine
