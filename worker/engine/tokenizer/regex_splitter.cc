#include "worker/engine/tokenizer/regex_splitter.h"

#include <re2/re2.h>

#include "absl/strings/str_cat.h"
#include "worker/engine/tokenizer/byte_level.h"

namespace d2lora::engine {
namespace {

// Unicode White_Space, as a character-class body.
constexpr absl::string_view kWhitespaceClass =
    R"(\t\n\x0B\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

// Splits at '|' outside groups and character classes.
std::vector<std::string> TopLevelAlternatives(absl::string_view p) {
  std::vector<std::string> alts(1);
  int depth = 0;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      absl::StrAppend(&alts.back(), p.substr(i, 2));
      ++i;
      continue;
    }
    if (in_class) {
      if (c == ']') in_class = false;
    } else if (c == '[') {
      in_class = true;
      alts.back().push_back(c);
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < p.size() && p[i + 1] == '^') alts.back().push_back(p[++i]);
      if (i + 1 < p.size() && p[i + 1] == ']') alts.back().push_back(p[++i]);
      continue;
    } else if (c == '(') {
      ++depth;
    } else if (c == ')') {
      --depth;
    } else if (c == '|' && depth == 0) {
      alts.emplace_back();
      continue;
    }
    alts.back().push_back(c);
  }
  return alts;
}

std::string WidenWhitespace(absl::string_view p) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char d = p[i + 1];
      ++i;
      if (d == 's') {
        out += in_class ? std::string(kWhitespaceClass) : absl::StrCat("[", kWhitespaceClass, "]");
      } else if (d == 'S' && !in_class) {
        out += absl::StrCat("[^", kWhitespaceClass, "]");
      } else {
        out.push_back(c);
        out.push_back(d);
      }
      continue;
    }
    out.push_back(c);
    if (in_class) {
      if (c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // [:alpha:]
        const size_t close = p.find(":]", i + 2);
        if (close != absl::string_view::npos) {
          absl::StrAppend(&out, p.substr(i + 1, close + 1 - i));
          i = close + 1;
        }
      } else if (c == ']') {
        in_class = false;
      }
    } else if (c == '[') {
      in_class = true;
      if (i + 1 < p.size() && p[i + 1] == '^') out.push_back(p[++i]);
      if (i + 1 < p.size() && p[i + 1] == ']') out.push_back(p[++i]);
    }
  }
  return out;
}

}  // namespace

TranslatedPattern TranslateOnigurumaPattern(absl::string_view pattern) {
  TranslatedPattern result;
  std::vector<std::string> alts = TopLevelAlternatives(pattern);
  if (alts.size() >= 2 && alts[alts.size() - 2] == R"(\s+(?!\S))" && alts.back() == R"(\s+)") {
    alts.pop_back();
    alts.back() = R"((\s+))";
    result.whitespace_lookahead = true;
  }
  std::string joined;
  for (size_t i = 0; i < alts.size(); ++i) {
    if (i > 0) joined.push_back('|');
    joined += alts[i];
  }
  result.re2_pattern = WidenWhitespace(joined);
  return result;
}

RegexSplitter::~RegexSplitter() = default;

absl::StatusOr<std::unique_ptr<RegexSplitter>> RegexSplitter::Create(absl::string_view pattern) {
  const TranslatedPattern translated = TranslateOnigurumaPattern(pattern);
  RE2::Options options;
  options.set_log_errors(false);
  options.set_max_mem(64 << 20);
  auto re = std::make_unique<RE2>(translated.re2_pattern, options);
  if (!re->ok()) {
    return absl::InvalidArgumentError(absl::StrCat("pre-tokenizer pattern '", pattern,
                                                   "' is not supported (RE2: ", re->error(), ")"));
  }
  std::unique_ptr<RegexSplitter> splitter(new RegexSplitter());
  if (translated.whitespace_lookahead) splitter->whitespace_group_ = re->NumberOfCapturingGroups();
  splitter->re_ = std::move(re);
  return splitter;
}

void RegexSplitter::Split(absl::string_view text, std::vector<absl::string_view>* pieces,
                          bool keep_matches, bool keep_gaps) const {
  const re2::StringPiece input(text.data(), text.size());
  const int nsub = whitespace_group_ + 1;
  std::vector<re2::StringPiece> groups(nsub);
  size_t pos = 0;
  size_t last_end = 0;
  while (pos <= text.size() &&
         re_->Match(input, pos, text.size(), RE2::UNANCHORED, groups.data(), nsub)) {
    const size_t start = static_cast<size_t>(groups[0].data() - text.data());
    size_t end = start + groups[0].size();
    if (whitespace_group_ > 0 && groups[whitespace_group_].data() != nullptr && end < text.size()) {
      // `\s+(?!\S)`: a run followed by a non-space gives its last character back.
      size_t last = end - 1;
      while (last > start && (static_cast<unsigned char>(text[last]) & 0xC0) == 0x80) --last;
      if (last > start) end = last;
    }
    if (end == start) {  // empty match: step over one character
      if (start >= text.size()) break;
      pos = start + Utf8CharLength(static_cast<unsigned char>(text[start]));
      continue;
    }
    if (keep_gaps && start > last_end) pieces->push_back(text.substr(last_end, start - last_end));
    if (keep_matches) pieces->push_back(text.substr(start, end - start));
    last_end = end;
    pos = end;
  }
  if (keep_gaps && last_end < text.size()) pieces->push_back(text.substr(last_end));
}

}  // namespace d2lora::engine
