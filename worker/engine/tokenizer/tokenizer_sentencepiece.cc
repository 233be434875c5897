#include "worker/engine/tokenizer/tokenizer_sentencepiece.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/engine/tokenizer/sentencepiece_library.h"

namespace d2lora::engine {
namespace {

std::optional<int64_t> NonNegative(int id) {
  return id >= 0 ? std::optional<int64_t>(id) : std::nullopt;
}

// Calls `fill(buffer, capacity)`, which returns the size it needs (or -1),
// growing the buffer until everything fits.
template <typename T, typename Fill>
bool FillBuffer(size_t initial, std::vector<T>* buffer, Fill fill) {
  buffer->resize(initial);
  for (int attempt = 0; attempt < 2; ++attempt) {
    const long needed = fill(buffer->data(), buffer->size());
    if (needed < 0) return false;
    const size_t n = static_cast<size_t>(needed);
    if (n <= buffer->size()) {
      buffer->resize(n);
      return true;
    }
    buffer->resize(n);
  }
  return false;
}

}  // namespace

SentencePieceTokenizer::~SentencePieceTokenizer() {
  if (sp_ != nullptr) api_->destroy(sp_);
}

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::Load(
    const std::string& path, const TokenizerConfig& config) {
  absl::StatusOr<const D2SpmApi*> api = SentencePieceApi();
  if (!api.ok()) return absl::Status(api.status().code(), absl::StrCat(path, ": ", api.status().message()));
  std::unique_ptr<SentencePieceTokenizer> tok(new SentencePieceTokenizer(*api));
  char error[1024] = "";
  tok->sp_ = tok->api_->load(path.data(), path.size(), error, sizeof error);
  if (tok->sp_ == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot load SentencePiece model: ", error));
  }
  int ids[4];
  tok->api_->special_ids(tok->sp_, ids);
  tok->bos_id_ = NonNegative(ids[0]);
  tok->eos_id_ = NonNegative(ids[1]);
  tok->pad_id_ = NonNegative(ids[2]);
  tok->unk_id_ = ids[3];
  struct Named {
    const std::optional<std::string>& token;
    const char* name;
    std::optional<int64_t>* id;
  };
  for (const Named& n : {Named{config.bos_token, "bos_token", &tok->bos_id_},
                         Named{config.eos_token, "eos_token", &tok->eos_id_},
                         Named{config.pad_token, "pad_token", &tok->pad_id_}}) {
    if (!n.token.has_value()) continue;
    *n.id = tok->TokenToId(*n.token);
    if (!n.id->has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(config.path, ": ", n.name, " '", *n.token,
                                                     "' is not in the vocabulary of ", path));
    }
  }
  tok->add_bos_ = config.add_bos_token.value_or(true);
  tok->add_eos_ = config.add_eos_token.value_or(false);
  return tok;
}

std::vector<int64_t> SentencePieceTokenizer::Encode(absl::string_view text,
                                                    bool add_special_tokens) const {
  std::vector<int> pieces;
  // Cannot fail once a model is loaded; on failure the text contributes nothing.
  if (!FillBuffer(text.size() + 8, &pieces, [&](int* buf, size_t cap) {
        return api_->encode(sp_, text.data(), text.size(), buf, cap, nullptr, 0);
      })) {
    pieces.clear();
  }
  std::vector<int64_t> ids;
  ids.reserve(pieces.size() + 2);
  if (add_special_tokens && add_bos_ && bos_id_.has_value()) ids.push_back(*bos_id_);
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  if (add_special_tokens && add_eos_ && eos_id_.has_value()) ids.push_back(*eos_id_);
  return ids;
}

bool SentencePieceTokenizer::IsSpecial(int64_t id) const {
  return api_->is_control(sp_, static_cast<int>(id)) != 0 || id == bos_id_ || id == eos_id_ ||
         id == pad_id_;
}

std::string SentencePieceTokenizer::IdToPiece(int id) const {
  std::vector<char> piece;
  if (!FillBuffer(32, &piece, [&](char* buf, size_t cap) { return api_->id_to_piece(sp_, id, buf, cap); })) {
    return "";
  }
  return std::string(piece.begin(), piece.end());
}

std::string SentencePieceTokenizer::Decode(const std::vector<int64_t>& ids,
                                           bool skip_special_tokens) const {
  std::string out;
  std::vector<int> run;
  std::vector<char> text;
  auto flush = [&] {
    if (run.empty()) return;
    if (FillBuffer(run.size() * 8 + 16, &text, [&](char* buf, size_t cap) {
          return api_->decode(sp_, run.data(), run.size(), buf, cap, nullptr, 0);
        })) {
      out.append(text.begin(), text.end());
    }
    run.clear();
  };
  const int64_t size = vocab_size();
  for (int64_t id : ids) {
    if (id < 0 || id >= size) continue;
    if (IsSpecial(id)) {
      if (skip_special_tokens) continue;
      flush();
      out += IdToPiece(static_cast<int>(id));
      continue;
    }
    run.push_back(static_cast<int>(id));
  }
  flush();
  return out;
}

int64_t SentencePieceTokenizer::vocab_size() const { return api_->piece_size(sp_); }

std::optional<int64_t> SentencePieceTokenizer::TokenToId(absl::string_view token) const {
  const int id = api_->piece_to_id(sp_, token.data(), token.size());
  if (id < 0 || (id == unk_id_ && IdToPiece(id) != token)) return std::nullopt;
  return id;
}

}  // namespace d2lora::engine
