// `d2lora init-model`: a random-initialised LLaMA-family model with a
// byte-level BPE tokenizer, in the Hugging Face layout, for tests, demos and
// benchmarks.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/model_config.h"

namespace d2lora::engine {

// tiny (~0.3M parameters), small (~11M), base (~96M); an unknown name is an error.
absl::StatusOr<model::ModelConfig> ModelPreset(const std::string& name);

struct InitModelOptions {
  std::string preset = "tiny";
  std::string out_dir;
  uint64_t seed = 0;
  // Text the tokenizer's merges are learnt from (one document per entry);
  // empty: a byte-level tokenizer with no merges (256 bytes + special tokens).
  std::vector<std::string> corpus;
  bool overwrite = false;
};

struct InitModelResult {
  model::ModelConfig config;
  int64_t parameters = 0;
  int64_t tokenizer_vocab = 0;
};

// Trains the tokenizer (at most the preset's vocab_size tokens), initialises
// the weights from the seed and writes config.json, model.safetensors (fp32)
// and the tokenizer files to out_dir, atomically.
absl::StatusOr<InitModelResult> InitModel(const InitModelOptions& options);

// Reads a corpus for InitModelOptions::corpus: JSONL records with "text" (or
// "prompt" + "completion", or "question" + "choices"), or plain text (one
// document per non-empty line) when the file is not JSONL.
absl::StatusOr<std::vector<std::string>> ReadCorpus(const std::string& path);

}  // namespace d2lora::engine
