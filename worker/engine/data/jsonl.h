// Training and evaluation data in JSONL (DESIGN.md §3): one JSON object per
// line, of the kind the job spec's `data.format` names:
//
//   lm               {"text": "..."}  or  {"input_ids": [1, 2, ...]}
//   instruction      {"prompt": "...", "completion": "..."}
//   multiple_choice  {"question": "...", "choices": ["...", "...", ...], "label": k,
//                     "context": "..."}          (context optional)
//
// Keys other than these are ignored (datasets often carry ids or sources).
// Every line is validated against the format; a bad line is an error
// "FILE:LINE: what" unless `skip_invalid`, which skips it and counts it.
// Blank lines are skipped; lines are numbered from 1 as an editor shows them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace d2lora::engine {

enum class DataFormat { kText, kInstruction, kMultipleChoice };

// "lm" | "instruction" | "multiple_choice" (the job spec's `data.format`).
std::string DataFormatName(DataFormat format);
absl::StatusOr<DataFormat> ParseDataFormat(absl::string_view name);

// Most choices a multiple-choice record may have: one letter each, A to Z.
inline constexpr int64_t kMaxChoices = 26;

// One record; which fields are set depends on the dataset's format.
struct Record {
  int64_t line = 0;  // 1-based line in the source file

  // lm: either `text` (non-empty) or `input_ids` (non-empty, has_input_ids).
  std::string text;
  std::vector<int64_t> input_ids;
  bool has_input_ids = false;

  // instruction: `completion` non-empty; `prompt` may be empty.
  std::string prompt;
  std::string completion;

  // multiple_choice: `question` non-empty, 2..26 non-empty `choices`,
  // 0 <= label < choices.size(); `context` empty when absent.
  std::string context;
  std::string question;
  std::vector<std::string> choices;
  int64_t label = -1;
};

struct JsonlOptions {
  DataFormat format = DataFormat::kText;
  bool skip_invalid = false;
  // When > 0, `input_ids` must lie in [0, vocab_size).
  int64_t vocab_size = 0;
  // How many skip reasons Dataset keeps.
  size_t max_reasons = 5;
};

struct Dataset {
  std::string path;
  DataFormat format = DataFormat::kText;
  std::vector<Record> records;
  int64_t skipped = 0;                    // invalid lines skipped (skip_invalid)
  std::vector<std::string> skip_reasons;  // the first few, "FILE:LINE: what"

  // "" when nothing was skipped, else e.g.
  // "skipped 3 invalid lines of d.jsonl; first: d.jsonl:2: ...; d.jsonl:5: ...".
  std::string SkipReport() const;
};

// Parses one line (already known not to be blank) as a record of `format`.
// The error message says what is wrong, without file or line.
absl::StatusOr<Record> ParseRecord(absl::string_view line, DataFormat format,
                                   int64_t vocab_size = 0);

// Parses JSONL text; `source_name` prefixes messages ("NAME:LINE: what"). A
// text with no records (empty, blank, or every line skipped) is an error
// naming the source.
absl::StatusOr<Dataset> ParseJsonl(absl::string_view contents, const std::string& source_name,
                                   const JsonlOptions& options);

// Reads and parses the file at `path`.
absl::StatusOr<Dataset> ReadJsonl(const std::string& path, const JsonlOptions& options);

}  // namespace d2lora::engine
