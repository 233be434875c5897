// Run-time access to SentencePiece through libd2lora_spm_shim.so, loaded with
// dlmopen() into a link namespace of its own (see
// sentencepiece_shim/spm_shim_api.h for why it is never linked directly).
//
// The shim is looked for at $D2LORA_SPM_SHIM, at the path the build put it,
// next to the running executable, then by name on the library search path.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/tokenizer/sentencepiece_shim/spm_shim_api.h"

namespace d2lora::engine {

// The shim's function table, loaded once; the error lists where it was sought.
absl::StatusOr<const D2SpmApi*> SentencePieceApi();

// sentencepiece::SentencePieceTrainer::Train with command-line style `args`
// (e.g. "--input=corpus.txt --model_prefix=dir/tokenizer --vocab_size=1000").
absl::Status TrainSentencePiece(const std::string& args);

}  // namespace d2lora::engine
