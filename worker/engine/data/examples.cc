#include "worker/engine/data/examples.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace d2lora::engine {
namespace {

// What Encode(text, true) puts before the text: found by encoding a probe
// both ways and locating the plain tokens inside the special ones.
std::vector<int64_t> SpecialPrefix(const Tokenizer& tok) {
  const std::vector<int64_t> with = tok.Encode("x", true);
  const std::vector<int64_t> plain = tok.Encode("x", false);
  auto at = std::search(with.begin(), with.end(), plain.begin(), plain.end());
  if (!plain.empty() && at != with.end()) return std::vector<int64_t>(with.begin(), at);
  if (tok.bos_id() && !with.empty() && with.front() == *tok.bos_id() &&
      (plain.empty() || plain.front() != *tok.bos_id())) {
    return {*tok.bos_id()};
  }
  return {};
}

// Tokens of `continuation` as they follow `prompt` (see examples.h).
std::vector<int64_t> EncodeContinuation(const Tokenizer& tok, const std::string& prompt,
                                        const std::vector<int64_t>& prompt_ids,
                                        const std::string& continuation) {
  std::vector<int64_t> whole = tok.Encode(prompt + continuation, false);
  if (whole.size() > prompt_ids.size() &&
      std::equal(prompt_ids.begin(), prompt_ids.end(), whole.begin())) {
    return std::vector<int64_t>(whole.begin() + static_cast<std::ptrdiff_t>(prompt_ids.size()),
                                whole.end());
  }
  return tok.Encode(continuation, false);
}

void Append(std::vector<int64_t>* ids, std::vector<uint8_t>* mask, const std::vector<int64_t>& add,
            uint8_t target) {
  ids->insert(ids->end(), add.begin(), add.end());
  mask->insert(mask->end(), add.size(), target);
}

// BOS + prompt + completion (+ EOS), truncated as examples.h says.
Example PromptCompletion(const Tokenizer& tok, const std::vector<int64_t>& prefix,
                         const std::string& prompt, const std::string& completion,
                         int64_t max_seq_len, bool* truncated) {
  std::vector<int64_t> p = tok.Encode(prompt, false);
  std::vector<int64_t> c = EncodeContinuation(tok, prompt, p, completion);
  if (tok.eos_id()) c.push_back(*tok.eos_id());
  const int64_t total = static_cast<int64_t>(prefix.size() + p.size() + c.size());
  *truncated = total > max_seq_len;
  if (*truncated) {
    const int64_t budget = max_seq_len - static_cast<int64_t>(prefix.size() + c.size());
    if (budget >= 0) {
      p.erase(p.begin(), p.end() - budget);
    } else {
      p.clear();
      const int64_t keep = std::max<int64_t>(0, max_seq_len - static_cast<int64_t>(prefix.size()));
      c.resize(static_cast<size_t>(keep));
    }
  }
  Example ex;
  Append(&ex.ids, &ex.loss_mask, prefix, 0);
  Append(&ex.ids, &ex.loss_mask, p, 0);
  Append(&ex.ids, &ex.loss_mask, c, 1);
  if (ex.ids.size() > static_cast<size_t>(max_seq_len)) {  // only when BOS alone is too long
    ex.ids.resize(static_cast<size_t>(max_seq_len));
    ex.loss_mask.resize(static_cast<size_t>(max_seq_len));
  }
  if (!ex.loss_mask.empty()) ex.loss_mask[0] = 0;
  return ex;
}

absl::StatusOr<Example> MakeExampleWithPrefix(const Record& r, DataFormat format,
                                              const Tokenizer& tok,
                                              const std::vector<int64_t>& prefix,
                                              int64_t max_seq_len, bool* truncated) {
  if (max_seq_len < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_seq_len = ", max_seq_len, ": must be >= 1"));
  }
  bool cut = false;
  Example ex;
  switch (format) {
    case DataFormat::kText: {
      if (r.has_input_ids) {
        for (size_t i = 0; i < r.input_ids.size(); ++i) {
          if (r.input_ids[i] < 0 || r.input_ids[i] >= tok.vocab_size()) {
            return absl::InvalidArgumentError(
                absl::StrCat("input_ids[", i, "] = ", r.input_ids[i],
                             ": outside the tokenizer's vocabulary of ", tok.vocab_size()));
          }
        }
        ex.ids = r.input_ids;
      } else {
        ex.ids = tok.Encode(r.text, true);
      }
      cut = static_cast<int64_t>(ex.ids.size()) > max_seq_len;
      if (cut) ex.ids.resize(static_cast<size_t>(max_seq_len));
      ex.loss_mask.assign(ex.ids.size(), 1);
      if (!ex.loss_mask.empty()) ex.loss_mask[0] = 0;
      break;
    }
    case DataFormat::kInstruction:
      ex = PromptCompletion(tok, prefix, r.prompt, r.completion, max_seq_len, &cut);
      break;
    case DataFormat::kMultipleChoice: {
      if (r.label < 0 || r.label >= static_cast<int64_t>(r.choices.size())) {
        return absl::InvalidArgumentError(absl::StrCat("label ", r.label, " out of range"));
      }
      ex = PromptCompletion(tok, prefix, FormatMultipleChoicePrompt(r.context, r.question, r.choices),
                            " " + r.choices[static_cast<size_t>(r.label)], max_seq_len, &cut);
      break;
    }
  }
  if (truncated != nullptr) *truncated = cut;
  return ex;
}

}  // namespace

int64_t Example::num_targets() const {
  return static_cast<int64_t>(std::count(loss_mask.begin(), loss_mask.end(), uint8_t{1}));
}

std::string ChoiceLetter(size_t index) { return std::string(1, static_cast<char>('A' + index)); }

std::string FormatMultipleChoicePrompt(absl::string_view context, absl::string_view question,
                                       const std::vector<std::string>& choices) {
  std::string out;
  if (!context.empty()) absl::StrAppend(&out, context, "\n\n");
  absl::StrAppend(&out, "Question: ", question, "\n");
  for (size_t i = 0; i < choices.size(); ++i) {
    absl::StrAppend(&out, ChoiceLetter(i), ". ", choices[i], "\n");
  }
  absl::StrAppend(&out, "Answer:");
  return out;
}

absl::StatusOr<Example> MakeExample(const Record& record, DataFormat format,
                                    const Tokenizer& tokenizer, int64_t max_seq_len,
                                    bool* truncated) {
  return MakeExampleWithPrefix(record, format, tokenizer, SpecialPrefix(tokenizer), max_seq_len,
                               truncated);
}

absl::StatusOr<ExampleSet> MakeExamples(const Dataset& data, const Tokenizer& tokenizer,
                                        int64_t max_seq_len) {
  const std::vector<int64_t> prefix = SpecialPrefix(tokenizer);
  ExampleSet set;
  set.examples.reserve(data.records.size());
  for (const Record& r : data.records) {
    bool cut = false;
    absl::StatusOr<Example> ex =
        MakeExampleWithPrefix(r, data.format, tokenizer, prefix, max_seq_len, &cut);
    if (!ex.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(data.path, ":", r.line, ": ", ex.status().message()));
    }
    if (ex->num_targets() == 0) {
      ++set.dropped;
      continue;
    }
    set.truncated += cut ? 1 : 0;
    set.examples.push_back(*std::move(ex));
    set.source_lines.push_back(r.line);
  }
  return set;
}

absl::StatusOr<ChoiceExample> MakeChoiceExample(const Record& record, const Tokenizer& tokenizer,
                                                int64_t max_seq_len) {
  const size_t n = record.choices.size();
  if (n < 2 || record.label < 0 || record.label >= static_cast<int64_t>(n)) {
    return absl::InvalidArgumentError(
        absl::StrCat("line ", record.line, ": not a multiple-choice record"));
  }
  const std::string prompt =
      FormatMultipleChoicePrompt(record.context, record.question, record.choices);
  const std::vector<int64_t> prefix = SpecialPrefix(tokenizer);
  std::vector<int64_t> p = tokenizer.Encode(prompt, false);
  ChoiceExample ex;
  ex.label = record.label;
  size_t longest = 0;
  for (size_t i = 0; i < n; ++i) {
    ex.choice_ids.push_back(EncodeContinuation(tokenizer, prompt, p, " " + record.choices[i]));
    ex.letter_ids.push_back(EncodeContinuation(tokenizer, prompt, p, " " + ChoiceLetter(i)));
    ex.choice_bytes.push_back(static_cast<int64_t>(record.choices[i].size()));
    longest = std::max({longest, ex.choice_ids.back().size(), ex.letter_ids.back().size()});
  }
  if (max_seq_len > 0) {
    const int64_t budget = max_seq_len - static_cast<int64_t>(prefix.size() + longest);
    if (budget < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", record.line, ": a continuation of ", longest,
                       " tokens does not fit in max_seq_len ", max_seq_len));
    }
    if (static_cast<int64_t>(p.size()) > budget) p.erase(p.begin(), p.end() - budget);
  }
  ex.prompt_ids = prefix;
  ex.prompt_ids.insert(ex.prompt_ids.end(), p.begin(), p.end());
  return ex;
}

absl::StatusOr<std::vector<ChoiceExample>> MakeChoiceExamples(const Dataset& data, const Tokenizer& tokenizer,
                                                              int64_t max_seq_len) {
  std::vector<ChoiceExample> items;
  items.reserve(data.records.size());
  for (const Record& rec : data.records) {
    auto item = MakeChoiceExample(rec, tokenizer, max_seq_len);
    if (!item.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(data.path, ":", rec.line, ": ", item.status().message()));
    }
    items.push_back(std::move(*item));
  }
  return items;
}

}  // namespace d2lora::engine
