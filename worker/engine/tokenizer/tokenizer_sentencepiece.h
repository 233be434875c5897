// SentencePiece tokenizer.model (Llama 2 family). BOS is added when
// add_bos_token (default true, as Llama 2), EOS when add_eos_token (default false).
// SentencePiece runs inside libd2lora_spm_shim.so (see sentencepiece_library.h).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/tokenizer/sentencepiece_shim/spm_shim_api.h"
#include "worker/engine/tokenizer/tokenizer.h"
#include "worker/engine/tokenizer/tokenizer_config.h"

namespace d2lora::engine {

class SentencePieceTokenizer : public Tokenizer {
 public:
  // Errors name `path`.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Load(const std::string& path,
                                                                      const TokenizerConfig& config);
  ~SentencePieceTokenizer() override;
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;

  std::vector<int64_t> Encode(absl::string_view text, bool add_special_tokens) const override;
  std::string Decode(const std::vector<int64_t>& ids, bool skip_special_tokens = true) const override;
  int64_t vocab_size() const override;
  std::optional<int64_t> bos_id() const override { return bos_id_; }
  std::optional<int64_t> eos_id() const override { return eos_id_; }
  std::optional<int64_t> pad_id() const override { return pad_id_; }
  std::optional<int64_t> TokenToId(absl::string_view token) const override;

 private:
  explicit SentencePieceTokenizer(const D2SpmApi* api) : api_(api) {}
  bool IsSpecial(int64_t id) const;
  std::string IdToPiece(int id) const;

  const D2SpmApi* api_;
  void* sp_ = nullptr;  // owned; api_->destroy
  int unk_id_ = -1;
  std::optional<int64_t> bos_id_, eos_id_, pad_id_;
  bool add_bos_ = true;
  bool add_eos_ = false;
};

}  // namespace d2lora::engine
