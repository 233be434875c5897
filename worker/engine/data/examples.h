// Records (jsonl.h) tokenised into training examples and multiple-choice
// evaluation items.
//
// Special tokens: "BOS per tokenizer" means whatever Encode(text, true) puts in
// front of a sequence (the tokenizer's own add_bos setting); anything it puts
// behind is not used except where said below.
//
//   lm, "text"        ids = Encode(text, true); loss on every token but the first.
//   lm, "input_ids"   ids as given (no tokens added); loss on every token but the first.
//   instruction       ids = BOS + prompt + completion + EOS (EOS when the tokenizer has
//                     one); loss on the completion tokens and that EOS only.
//   multiple_choice   prompt = FormatMultipleChoicePrompt(...), completion = " " + the
//                     correct choice's text; then as instruction.
//
// A completion is tokenised in context: with P = Encode(prompt, false) and
// W = Encode(prompt + completion, false), the completion tokens are W[|P|:]
// when W starts with P (it does whenever the tokenizer does not merge across
// the boundary, as for "...Answer:" + " Paris"), else Encode(completion, false).
//
// Truncation to max_seq_len tokens:
//   lm                 keep the first max_seq_len tokens.
//   instruction / mc   drop prompt tokens from the left (after BOS) until the
//                      sequence fits; if BOS + completion + EOS alone is too
//                      long, the prompt is dropped and the completion cut on the right.
// The first token is never a target (nothing precedes it). An example left with
// no target is dropped and counted.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/engine/data/jsonl.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace d2lora::engine {

struct Example {
  std::vector<int64_t> ids;
  // Same length as ids; 1 = ids[t] is a prediction target (predicted from
  // ids[0..t-1]); loss_mask[0] is always 0.
  std::vector<uint8_t> loss_mask;

  int64_t num_targets() const;
};

struct ExampleSet {
  std::vector<Example> examples;
  std::vector<int64_t> source_lines;  // per example, its record's line in the file
  int64_t truncated = 0;              // examples cut to max_seq_len (kept)
  int64_t dropped = 0;                // records with no target left (not kept)
};

// The multiple-choice prompt, one template for training and evaluation:
//
//   {context}\n\n                   (only when context is non-empty)
//   Question: {question}\n
//   A. {choices[0]}\n
//   B. {choices[1]}\n
//   ...                             (letters A..Z)
//   Answer:
//
// with no trailing space or newline after "Answer:"; the continuation scored or
// trained on is " " + choice text (or " " + letter for letter scoring).
std::string FormatMultipleChoicePrompt(absl::string_view context, absl::string_view question,
                                       const std::vector<std::string>& choices);
// "A", "B", ... for index 0, 1, ... (index < kMaxChoices).
std::string ChoiceLetter(size_t index);

// One training example from one record (see the rules above); `truncated` is set
// when it was cut. `max_seq_len` must be >= 1. An "input_ids" id outside the
// tokenizer's vocabulary is an error.
absl::StatusOr<Example> MakeExample(const Record& record, DataFormat format,
                                    const Tokenizer& tokenizer, int64_t max_seq_len,
                                    bool* truncated = nullptr);

// Examples for every record of `data`, dropping (and counting) those without a
// target. Errors name the file and line.
absl::StatusOr<ExampleSet> MakeExamples(const Dataset& data, const Tokenizer& tokenizer,
                                        int64_t max_seq_len);

// A multiple-choice item for evaluation by continuation likelihood.
struct ChoiceExample {
  std::vector<int64_t> prompt_ids;               // BOS per tokenizer + prompt tokens
  std::vector<std::vector<int64_t>> choice_ids;  // per choice, tokens of " " + text
  std::vector<int64_t> choice_bytes;             // per choice, UTF-8 bytes of its text
  std::vector<std::vector<int64_t>> letter_ids;  // per choice, tokens of " A", " B", ...
  int64_t label = 0;
};

// For a multiple_choice record. With max_seq_len > 0 the prompt is cut from
// the left (after BOS) so that prompt + the longest continuation (choice or
// letter) fits; an error when even that cannot fit.
absl::StatusOr<ChoiceExample> MakeChoiceExample(const Record& record, const Tokenizer& tokenizer,
                                                int64_t max_seq_len);
// One item per record of a multiple_choice dataset; errors name the file and line.
absl::StatusOr<std::vector<ChoiceExample>> MakeChoiceExamples(const Dataset& data, const Tokenizer& tokenizer,
                                                              int64_t max_seq_len);

}  // namespace d2lora::engine
