// The JSONL data readers on arbitrary bytes: ParseJsonl, then training examples
// (MakeExamples) and multiple-choice items (MakeChoiceExamples) through a real
// byte-level BPE tokenizer. Input layout: byte 0 picks the options (format =
// byte % 3: 0 lm, 1 instruction, 2 multiple_choice; bit 2 skip_invalid; bit 3 a
// vocab_size limit), byte 1 max_seq_len (1 + byte % 64); the rest is the file.
// Seeds start with two printable bytes, e.g. "2@" = multiple_choice, max_seq_len 1.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/fuzz/fuzz_check.h"
#include "worker/engine/data/examples.h"
#include "worker/engine/data/jsonl.h"
#include "worker/engine/tokenizer/byte_level.h"
#include "worker/engine/tokenizer/tokenizer_bpe.h"

namespace {

using namespace d2lora::engine;

// 256 byte tokens, a few merges, <s> = 256 and </s> = 257 added by a template.
const Tokenizer& TheTokenizer() {
  static const BpeTokenizer* tok = [] {
    nlohmann::json vocab = nlohmann::json::object();
    for (int b = 0; b < 256; ++b) vocab[ByteToUnicode(static_cast<unsigned char>(b))] = b;
    const std::vector<std::string> merged = {"Ġt", "he", "Ġthe", "ĠA", "Ġa"};
    for (size_t i = 0; i < merged.size(); ++i) vocab[merged[i]] = 258 + i;
    nlohmann::json j = {
        {"added_tokens",
         {{{"id", 256}, {"content", "<s>"}, {"special", true}}, {{"id", 257}, {"content", "</s>"}, {"special", true}}}},
        {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
        {"post_processor",
         {{"type", "TemplateProcessing"},
          {"single", {{{"SpecialToken", {{"id", "<s>"}}}}, {{"Sequence", {{"id", "A"}}}}, {{"SpecialToken", {{"id", "</s>"}}}}}}}},
        {"decoder", {{"type", "ByteLevel"}}},
        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"Ġ t", "h e", "Ġt he", "Ġ A", "Ġ a"}}}}};
    auto parsed = ParseBpeTokenizer(j.dump(), "jsonl_fuzzer tokenizer.json", TokenizerConfig{});
    FUZZ_CHECK(parsed.ok());
    return parsed->release();
  }();
  return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const Tokenizer& tok = TheTokenizer();
  JsonlOptions options;
  options.format = static_cast<DataFormat>(data[0] % 3);
  options.skip_invalid = (data[0] & 4) != 0;
  options.vocab_size = (data[0] & 8) != 0 ? tok.vocab_size() : 0;
  const int64_t max_seq_len = 1 + data[1] % 64;
  const absl::string_view contents(reinterpret_cast<const char*>(data + 2), size - 2);

  auto dataset = ParseJsonl(contents, "data.jsonl", options);
  if (!dataset.ok()) {
    FUZZ_CHECK(dataset.status().message().rfind("data.jsonl", 0) == 0);
    return 0;
  }
  FUZZ_CHECK(!dataset->records.empty());
  FUZZ_CHECK(dataset->skipped == 0 || options.skip_invalid);
  int64_t last_line = 0;
  for (const Record& r : dataset->records) {
    FUZZ_CHECK(r.line > last_line);
    last_line = r.line;
    switch (options.format) {
      case DataFormat::kText:
        FUZZ_CHECK(r.has_input_ids ? !r.input_ids.empty() : !r.text.empty());
        for (int64_t id : r.input_ids) FUZZ_CHECK(id >= 0 && (options.vocab_size == 0 || id < options.vocab_size));
        break;
      case DataFormat::kInstruction:
        FUZZ_CHECK(!r.completion.empty());
        break;
      case DataFormat::kMultipleChoice:
        FUZZ_CHECK(!r.question.empty() && r.choices.size() >= 2 &&
                   static_cast<int64_t>(r.choices.size()) <= kMaxChoices);
        FUZZ_CHECK(r.label >= 0 && r.label < static_cast<int64_t>(r.choices.size()));
        break;
    }
  }
  (void)dataset->SkipReport();

  auto examples = MakeExamples(*dataset, tok, max_seq_len);
  if (examples.ok()) {
    FUZZ_CHECK(examples->examples.size() + static_cast<size_t>(examples->dropped) == dataset->records.size());
    for (const Example& ex : examples->examples) {
      FUZZ_CHECK(!ex.ids.empty() && ex.ids.size() <= static_cast<size_t>(max_seq_len));
      FUZZ_CHECK(ex.loss_mask.size() == ex.ids.size() && ex.loss_mask[0] == 0 && ex.num_targets() > 0);
      for (int64_t id : ex.ids) FUZZ_CHECK(id >= 0 && id < tok.vocab_size());
    }
  } else {
    // Only an input_ids id outside the vocabulary fails.
    FUZZ_CHECK(options.format == DataFormat::kText && options.vocab_size == 0);
  }
  if (options.format == DataFormat::kMultipleChoice) {
    auto items = MakeChoiceExamples(*dataset, tok, max_seq_len);
    if (items.ok()) {
      FUZZ_CHECK(items->size() == dataset->records.size());
      for (const ChoiceExample& item : *items) {
        size_t longest = 0;
        for (const auto& c : item.choice_ids) longest = std::max(longest, c.size());
        for (const auto& c : item.letter_ids) longest = std::max(longest, c.size());
        FUZZ_CHECK(item.prompt_ids.size() + longest <= static_cast<size_t>(max_seq_len));
      }
    }
  }
  return 0;
}
