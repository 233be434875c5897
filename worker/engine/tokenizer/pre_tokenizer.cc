#include "worker/engine/tokenizer/pre_tokenizer.h"

#include <utility>

#include "common/status_macros.h"

namespace d2lora::engine {

absl::Status PreTokenizer::AddSplit(absl::string_view pattern, bool remove_matches) {
  D2_ASSIGN_OR_RETURN(std::unique_ptr<RegexSplitter> splitter, RegexSplitter::Create(pattern));
  Step step;
  step.splitter = std::move(splitter);
  step.remove_matches = remove_matches;
  steps_.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status PreTokenizer::AddByteLevel(bool add_prefix_space, bool use_regex) {
  Step step;
  step.add_prefix_space = add_prefix_space;
  if (use_regex) {
    static const RegexSplitter* gpt2 = RegexSplitter::Create(kGpt2Pattern).value().release();
    step.splitter = std::shared_ptr<const RegexSplitter>(gpt2, [](const RegexSplitter*) {});
  }
  steps_.push_back(std::move(step));
  has_byte_level_ = true;
  return absl::OkStatus();
}

std::vector<std::string> PreTokenizer::Run(absl::string_view text) const {
  std::vector<std::string> pieces{std::string(text)};
  std::vector<absl::string_view> parts;
  for (const Step& step : steps_) {
    std::vector<std::string> next;
    next.reserve(pieces.size());
    for (std::string& piece : pieces) {
      if (step.add_prefix_space && (piece.empty() || piece[0] != ' ')) piece.insert(0, 1, ' ');
      if (!step.splitter) {
        next.push_back(std::move(piece));
        continue;
      }
      parts.clear();
      step.splitter->Split(piece, &parts, /*keep_matches=*/!step.remove_matches, /*keep_gaps=*/true);
      for (absl::string_view part : parts) next.emplace_back(part);
    }
    pieces = std::move(next);
  }
  return pieces;
}

}  // namespace d2lora::engine
