// The pre-tokenizer pipeline of a byte-level BPE tokenizer.json: Split steps
// (a regex, "Isolated" or "Removed") and ByteLevel steps (optional prefix
// space, optional GPT-2 regex), applied in order, each to every piece the
// previous step produced.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/engine/tokenizer/regex_splitter.h"

namespace d2lora::engine {

class PreTokenizer {
 public:
  // A Split step with Hugging Face's "Isolated" (matches and gaps kept) or
  // "Removed" (matches dropped) behaviour.
  absl::Status AddSplit(absl::string_view pattern, bool remove_matches);
  // A ByteLevel step.
  absl::Status AddByteLevel(bool add_prefix_space, bool use_regex);

  // Pieces of `text` (raw bytes; the byte-to-unicode mapping happens later).
  std::vector<std::string> Run(absl::string_view text) const;

  bool has_byte_level() const { return has_byte_level_; }

 private:
  struct Step {
    std::shared_ptr<const RegexSplitter> splitter;  // null: no regex
    bool remove_matches = false;
    bool add_prefix_space = false;
  };
  std::vector<Step> steps_;
  bool has_byte_level_ = false;
};

}  // namespace d2lora::engine
