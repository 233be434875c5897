#include "worker/engine/data/jsonl.h"

#include <limits>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace d2lora::engine {
namespace {

using json = nlohmann::json;

absl::Status Bad(absl::string_view what) { return absl::InvalidArgumentError(what); }

const char* TypeName(const json& j) {
  if (j.is_number_integer()) return "an integer";
  if (j.is_number()) return "a number";
  return j.type_name();  // "null", "boolean", "string", "array", "object"
}

// Which kind of record `j` looks like, for "wrong kind" messages.
std::string LooksLike(const json& j) {
  if (j.contains("question") || j.contains("choices")) return " (this line looks like multiple_choice)";
  if (j.contains("prompt") || j.contains("completion")) return " (this line looks like instruction)";
  if (j.contains("text") || j.contains("input_ids")) return " (this line looks like lm)";
  return "";
}

absl::Status GetString(const json& j, const char* key, bool required, bool non_empty,
                       std::string* out) {
  auto it = j.find(key);
  if (it == j.end()) {
    return required ? Bad(absl::StrCat("missing \"", key, "\"", LooksLike(j))) : absl::OkStatus();
  }
  if (!it->is_string()) {
    return Bad(absl::StrCat("\"", key, "\" must be a string, not ", TypeName(*it)));
  }
  *out = it->get<std::string>();
  if (non_empty && out->empty()) return Bad(absl::StrCat("\"", key, "\" is empty"));
  return absl::OkStatus();
}

absl::Status ParseIds(const json& ids, int64_t vocab_size, std::vector<int64_t>* out) {
  if (!ids.is_array()) {
    return Bad(absl::StrCat("\"input_ids\" must be an array of integers, not ", TypeName(ids)));
  }
  if (ids.empty()) return Bad("\"input_ids\" is empty");
  out->reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const json& v = ids[i];
    if (!v.is_number_integer()) {
      return Bad(absl::StrCat("input_ids[", i, "] must be an integer, not ", TypeName(v)));
    }
    if (v.is_number_unsigned() &&
        v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Bad(absl::StrCat("input_ids[", i, "] = ", v.get<uint64_t>(), ": out of range"));
    }
    const int64_t id = v.get<int64_t>();
    if (id < 0) return Bad(absl::StrCat("input_ids[", i, "] = ", id, ": negative"));
    if (vocab_size > 0 && id >= vocab_size) {
      return Bad(absl::StrCat("input_ids[", i, "] = ", id, ": not below the vocabulary size ",
                              vocab_size));
    }
    out->push_back(id);
  }
  return absl::OkStatus();
}

absl::Status ParseLm(const json& j, int64_t vocab_size, Record* r) {
  const bool has_text = j.contains("text");
  const bool has_ids = j.contains("input_ids");
  if (has_text && has_ids) return Bad("has both \"text\" and \"input_ids\"; give one");
  if (!has_text && !has_ids) {
    return Bad(absl::StrCat("missing \"text\" or \"input_ids\" (format lm)", LooksLike(j)));
  }
  if (has_text) return GetString(j, "text", true, true, &r->text);
  r->has_input_ids = true;
  return ParseIds(j["input_ids"], vocab_size, &r->input_ids);
}

absl::Status ParseInstruction(const json& j, Record* r) {
  D2_RETURN_IF_ERROR(GetString(j, "prompt", true, false, &r->prompt));
  return GetString(j, "completion", true, true, &r->completion);
}

absl::Status ParseMultipleChoice(const json& j, Record* r) {
  D2_RETURN_IF_ERROR(GetString(j, "question", true, true, &r->question));
  D2_RETURN_IF_ERROR(GetString(j, "context", false, false, &r->context));
  auto it = j.find("choices");
  if (it == j.end()) return Bad("missing \"choices\"");
  if (!it->is_array()) {
    return Bad(absl::StrCat("\"choices\" must be an array of strings, not ", TypeName(*it)));
  }
  if (it->size() < 2) return Bad(absl::StrCat("\"choices\" has ", it->size(), ", needs at least 2"));
  if (static_cast<int64_t>(it->size()) > kMaxChoices) {
    return Bad(absl::StrCat("\"choices\" has ", it->size(), ", at most ", kMaxChoices, " allowed"));
  }
  for (size_t i = 0; i < it->size(); ++i) {
    const json& c = (*it)[i];
    if (!c.is_string()) {
      return Bad(absl::StrCat("choices[", i, "] must be a string, not ", TypeName(c)));
    }
    r->choices.push_back(c.get<std::string>());
    if (r->choices.back().empty()) return Bad(absl::StrCat("choices[", i, "] is empty"));
  }
  auto label = j.find("label");
  if (label == j.end()) return Bad("missing \"label\"");
  if (!label->is_number_integer()) {
    return Bad(absl::StrCat("\"label\" must be an integer, not ", TypeName(*label)));
  }
  const int64_t n = static_cast<int64_t>(r->choices.size());
  if (label->is_number_unsigned() && label->get<uint64_t>() >= static_cast<uint64_t>(n)) {
    return Bad(absl::StrCat("\"label\" = ", label->get<uint64_t>(), ": out of range [0, ", n, ")"));
  }
  r->label = label->get<int64_t>();
  if (r->label < 0 || r->label >= n) {
    return Bad(absl::StrCat("\"label\" = ", r->label, ": out of range [0, ", n, ")"));
  }
  return absl::OkStatus();
}

// nlohmann's messages start with "[json.exception.parse_error.101] ".
std::string JsonError(const std::exception& e) {
  absl::string_view m = e.what();
  if (!m.empty() && m.front() == '[') {
    const size_t close = m.find("] ");
    if (close != absl::string_view::npos) m.remove_prefix(close + 2);
  }
  return std::string(m);
}

}  // namespace

std::string DataFormatName(DataFormat format) {
  switch (format) {
    case DataFormat::kText:
      return "lm";
    case DataFormat::kInstruction:
      return "instruction";
    case DataFormat::kMultipleChoice:
      return "multiple_choice";
  }
  return "unknown";
}

absl::StatusOr<DataFormat> ParseDataFormat(absl::string_view name) {
  if (name == "lm") return DataFormat::kText;
  if (name == "instruction") return DataFormat::kInstruction;
  if (name == "multiple_choice") return DataFormat::kMultipleChoice;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown data format '", name, "' (expected lm, instruction or multiple_choice)"));
}

std::string Dataset::SkipReport() const {
  if (skipped == 0) return "";
  return absl::StrCat("skipped ", skipped, " invalid line", skipped == 1 ? "" : "s", " of ", path,
                      "; first: ", absl::StrJoin(skip_reasons, "; "));
}

absl::StatusOr<Record> ParseRecord(absl::string_view line, DataFormat format, int64_t vocab_size) {
  json j;
  try {
    j = json::parse(line.begin(), line.end());
  } catch (const json::exception& e) {
    return Bad(absl::StrCat("not valid JSON: ", JsonError(e)));
  }
  if (!j.is_object()) return Bad(absl::StrCat("not a JSON object but ", TypeName(j)));
  Record r;
  switch (format) {
    case DataFormat::kText:
      D2_RETURN_IF_ERROR(ParseLm(j, vocab_size, &r));
      break;
    case DataFormat::kInstruction:
      D2_RETURN_IF_ERROR(ParseInstruction(j, &r));
      break;
    case DataFormat::kMultipleChoice:
      D2_RETURN_IF_ERROR(ParseMultipleChoice(j, &r));
      break;
  }
  return r;
}

absl::StatusOr<Dataset> ParseJsonl(absl::string_view contents, const std::string& source_name,
                                   const JsonlOptions& options) {
  Dataset data;
  data.path = source_name;
  data.format = options.format;
  if (contents.substr(0, 3) == "\xEF\xBB\xBF") contents.remove_prefix(3);  // UTF-8 BOM
  int64_t line_no = 0;
  while (!contents.empty()) {
    ++line_no;
    const size_t end = contents.find('\n');
    absl::string_view line = contents.substr(0, end);
    contents.remove_prefix(end == absl::string_view::npos ? contents.size() : end + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    absl::StatusOr<Record> r = ParseRecord(line, options.format, options.vocab_size);
    if (!r.ok()) {
      std::string where = absl::StrCat(source_name, ":", line_no, ": ", r.status().message());
      if (!options.skip_invalid) return absl::InvalidArgumentError(where);
      ++data.skipped;
      if (data.skip_reasons.size() < options.max_reasons) data.skip_reasons.push_back(std::move(where));
      continue;
    }
    r->line = line_no;
    data.records.push_back(*std::move(r));
  }
  if (data.records.empty()) {
    if (data.skipped > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(source_name, ": no valid records (", data.SkipReport(), ")"));
    }
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": no records"));
  }
  return data;
}

absl::StatusOr<Dataset> ReadJsonl(const std::string& path, const JsonlOptions& options) {
  D2_ASSIGN_OR_RETURN(std::string contents, ReadFileToString(path));
  return ParseJsonl(contents, path, options);
}

}  // namespace d2lora::engine
