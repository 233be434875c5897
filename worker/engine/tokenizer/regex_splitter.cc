#include "worker/engine/tokenizer/regex_splitter.h"

#include <oniguruma.h>

#include <mutex>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "worker/engine/tokenizer/byte_level.h"

namespace d2lora::engine {
namespace {

const UChar* U(const char* p) { return reinterpret_cast<const UChar*>(p); }

void InitializeOniguruma() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
}

std::string OnigMessage(int code, OnigErrorInfo* info) {
  UChar buffer[ONIG_MAX_ERROR_MESSAGE_LEN];
  const int n = info != nullptr ? onig_error_code_to_str(buffer, code, info)
                                : onig_error_code_to_str(buffer, code);
  return std::string(reinterpret_cast<const char*>(buffer), n > 0 ? static_cast<size_t>(n) : 0);
}

// An OnigRegion that frees what a search allocated in it.
class Region {
 public:
  Region() { onig_region_init(&region_); }
  ~Region() { onig_region_free(&region_, /*free_self=*/0); }
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
  OnigRegion* get() { return &region_; }

 private:
  OnigRegion region_;
};

}  // namespace

std::string QuoteRegexLiteral(absl::string_view literal) {
  std::string out;
  out.reserve(literal.size() * 2);
  for (char c : literal) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u == 0) {
      out += "\\x00";
      continue;
    }
    if (u < 0x80 && absl::ascii_ispunct(u) && c != '_') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

struct RegexSplitter::Compiled {
  regex_t* regex = nullptr;
  ~Compiled() {
    if (regex != nullptr) onig_free(regex);
  }
};

RegexSplitter::RegexSplitter(std::unique_ptr<Compiled> compiled) : compiled_(std::move(compiled)) {}
RegexSplitter::~RegexSplitter() = default;

absl::StatusOr<std::unique_ptr<RegexSplitter>> RegexSplitter::Create(absl::string_view pattern) {
  InitializeOniguruma();
  if (ValidUtf8Length(pattern) != pattern.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("pre-tokenizer pattern '", pattern, "' is not valid UTF-8"));
  }
  auto compiled = std::make_unique<Compiled>();
  OnigErrorInfo info;
  // As tokenizers compiles it: Oniguruma's default syntax, no options, UTF-8.
  const int rc = onig_new(&compiled->regex, U(pattern.data()), U(pattern.data() + pattern.size()),
                          ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &info);
  if (rc != ONIG_NORMAL) {
    compiled->regex = nullptr;
    return absl::InvalidArgumentError(absl::StrCat("pre-tokenizer pattern '", pattern,
                                                   "' is not valid (Oniguruma: ", OnigMessage(rc, &info),
                                                   ")"));
  }
  return std::unique_ptr<RegexSplitter>(new RegexSplitter(std::move(compiled)));
}

void RegexSplitter::SplitValidRun(absl::string_view text, size_t run_begin, size_t run_end,
                                  std::vector<absl::string_view>* pieces, bool keep_matches,
                                  bool keep_gaps, size_t* last_end) const {
  const UChar* base = U(text.data() + run_begin);
  const UChar* end = U(text.data() + run_end);
  Region region;
  size_t pos = run_begin;
  while (pos < run_end) {
    const int found = onig_search(compiled_->regex, base, end, U(text.data() + pos), end, region.get(),
                                  ONIG_OPTION_NONE);
    if (found < 0) return;  // ONIG_MISMATCH, or the backtracking limit: the rest is a gap
    const size_t start = run_begin + static_cast<size_t>(region.get()->beg[0]);
    const size_t stop = run_begin + static_cast<size_t>(region.get()->end[0]);
    if (stop == start) {  // empty match: step over one character
      pos = start + Utf8CharLength(static_cast<unsigned char>(text[start]));
      continue;
    }
    if (keep_gaps && start > *last_end) pieces->push_back(text.substr(*last_end, start - *last_end));
    if (keep_matches) pieces->push_back(text.substr(start, stop - start));
    *last_end = stop;
    pos = stop;
  }
}

void RegexSplitter::Split(absl::string_view text, std::vector<absl::string_view>* pieces,
                          bool keep_matches, bool keep_gaps) const {
  size_t last_end = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t valid = ValidUtf8Length(text.substr(pos));
    if (valid > 0) {
      SplitValidRun(text, pos, pos + valid, pieces, keep_matches, keep_gaps, &last_end);
      pos += valid;
    }
    if (pos < text.size()) {  // an invalid byte: a piece of its own
      if (keep_gaps && pos > last_end) pieces->push_back(text.substr(last_end, pos - last_end));
      if (keep_gaps) pieces->push_back(text.substr(pos, 1));
      last_end = ++pos;
    }
  }
  if (keep_gaps && last_end < text.size()) pieces->push_back(text.substr(last_end));
}

}  // namespace d2lora::engine
