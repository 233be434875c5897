#include "worker/engine/tokenizer/tokenizer.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/tokenizer/tokenizer_bpe.h"
#include "worker/engine/tokenizer/tokenizer_config.h"
#include "worker/engine/tokenizer/tokenizer_sentencepiece.h"

namespace d2lora::engine {

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string config_path = model_dir + "/tokenizer_config.json";
  const std::string json_path = model_dir + "/tokenizer.json";
  const std::string sp_path = model_dir + "/tokenizer.model";
  TokenizerConfig config;
  if (fs::exists(config_path, ec)) {
    D2_ASSIGN_OR_RETURN(config, ParseTokenizerConfigFile(config_path));
  }
  const bool has_sp = fs::exists(sp_path, ec);
  if (fs::exists(json_path, ec)) {
    absl::StatusOr<std::unique_ptr<BpeTokenizer>> bpe = LoadBpeTokenizer(json_path, config);
    if (bpe.ok()) return std::unique_ptr<Tokenizer>(std::move(bpe).value());
    // A tokenizer.json that is not byte-level BPE: the SentencePiece model may do.
    if (!(bpe.status().code() == absl::StatusCode::kUnimplemented && has_sp)) return bpe.status();
  }
  if (has_sp) {
    D2_ASSIGN_OR_RETURN(std::unique_ptr<SentencePieceTokenizer> sp,
                        SentencePieceTokenizer::Load(sp_path, config));
    return std::unique_ptr<Tokenizer>(std::move(sp));
  }
  return absl::NotFoundError(absl::StrCat("no tokenizer in ", model_dir, ": neither ", json_path,
                                          " nor ", sp_path, " exists"));
}

}  // namespace d2lora::engine
