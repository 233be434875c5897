#include "datasets/wordnet/wordnet.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace d2lora::datasets::wordnet {
namespace {

constexpr absl::string_view kSpaces = " \t\r";

std::string Offset8(uint32_t offset) { return absl::StrFormat("%08u", offset); }

absl::string_view TrimSpaces(absl::string_view s) {
  while (!s.empty() && kSpaces.find(s.front()) != absl::string_view::npos) s.remove_prefix(1);
  while (!s.empty() && kSpaces.find(s.back()) != absl::string_view::npos) s.remove_suffix(1);
  return s;
}

bool AllDigits(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool AllHex(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return absl::ascii_isxdigit(c); });
}

uint32_t ParseUnsigned(absl::string_view s, int base) {
  uint32_t v = 0;
  for (char c : s) {
    int d = (c >= '0' && c <= '9') ? c - '0' : absl::ascii_tolower(c) - 'a' + 10;
    v = v * static_cast<uint32_t>(base) + static_cast<uint32_t>(d);
  }
  return v;
}

// Walks one data line field by field; every error names FILE:LINE.
class LineReader {
 public:
  LineReader(absl::string_view line, absl::string_view file, int line_number)
      : rest_(line), file_(file), line_number_(line_number) {}

  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(file_, ":", line_number_, ": ", what));
  }

  // The next space-separated field; `what` names it in the error when the line ends.
  absl::StatusOr<absl::string_view> Next(absl::string_view what) {
    while (!rest_.empty() && rest_.front() == ' ') rest_.remove_prefix(1);
    if (rest_.empty()) return Error(absl::StrCat("line ends where ", what, " was expected"));
    size_t end = rest_.find(' ');
    if (end == absl::string_view::npos) end = rest_.size();
    absl::string_view field = rest_.substr(0, end);
    rest_.remove_prefix(end);
    return field;
  }

  // A field of exactly `width` digits in `base` (10 or 16).
  absl::StatusOr<uint32_t> Number(absl::string_view what, size_t width, int base) {
    D2_ASSIGN_OR_RETURN(absl::string_view field, Next(what));
    bool ok = field.size() == width && (base == 10 ? AllDigits(field) : AllHex(field));
    if (!ok) {
      return Error(absl::StrCat(what, " '", field, "' is not ", width, base == 10 ? " decimal" : " hexadecimal",
                                width == 1 ? " digit" : " digits"));
    }
    return ParseUnsigned(field, base);
  }

  absl::string_view rest() const { return rest_; }

 private:
  absl::string_view rest_;
  absl::string_view file_;
  int line_number_;
};

absl::StatusOr<Pos> PointerPos(const LineReader& r, absl::string_view field, int n) {
  if (field == "n") return Pos::kNoun;
  if (field == "v") return Pos::kVerb;
  if (field == "a" || field == "s") return Pos::kAdjective;
  if (field == "r") return Pos::kAdverb;
  return r.Error(absl::StrCat("pointer ", n, ": pos '", field, "' is not n, v, a, s or r"));
}

absl::StatusOr<Synset> ParseLine(absl::string_view line, absl::string_view file, int line_number, Pos pos) {
  LineReader r(line, file, line_number);
  Synset s;
  s.line = line_number;
  s.pos = pos;
  D2_ASSIGN_OR_RETURN(s.offset, r.Number("synset_offset", 8, 10));
  D2_ASSIGN_OR_RETURN(uint32_t lex_filenum, r.Number("lex_filenum", 2, 10));
  s.lex_filenum = static_cast<int>(lex_filenum);
  D2_ASSIGN_OR_RETURN(absl::string_view ss_type, r.Next("ss_type"));
  bool type_ok = (pos == Pos::kNoun && ss_type == "n") || (pos == Pos::kVerb && ss_type == "v") ||
                 (pos == Pos::kAdjective && (ss_type == "a" || ss_type == "s")) ||
                 (pos == Pos::kAdverb && ss_type == "r");
  if (!type_ok) {
    return r.Error(absl::StrCat("ss_type '", ss_type, "' does not belong in ", DataFileName(pos), " (expected ",
                                pos == Pos::kAdjective ? "a or s" : std::string(1, PosLetter(pos)), ")"));
  }
  s.satellite = ss_type == "s";

  D2_ASSIGN_OR_RETURN(uint32_t w_cnt, r.Number("w_cnt", 2, 16));
  if (w_cnt == 0) return r.Error("w_cnt is 0: a synset needs at least one word");
  for (uint32_t i = 1; i <= w_cnt; ++i) {
    D2_ASSIGN_OR_RETURN(absl::string_view token, r.Next(absl::StrCat("word ", i)));
    Word w;
    if (pos == Pos::kAdjective) {
      for (absl::string_view marker : {"ip", "a", "p"}) {
        std::string suffix = absl::StrCat("(", marker, ")");
        if (absl::EndsWith(token, suffix)) {
          w.marker = std::string(marker);
          token.remove_suffix(suffix.size());
          break;
        }
      }
    }
    if (token.empty()) return r.Error(absl::StrCat("word ", i, " is only a syntactic marker"));
    w.lemma = std::string(token);
    std::replace(w.lemma.begin(), w.lemma.end(), '_', ' ');
    D2_ASSIGN_OR_RETURN(uint32_t lex_id, r.Number(absl::StrCat("lex_id of word ", i), 1, 16));
    w.lex_id = static_cast<int>(lex_id);
    s.words.push_back(std::move(w));
  }

  D2_ASSIGN_OR_RETURN(uint32_t p_cnt, r.Number("p_cnt", 3, 10));
  for (uint32_t i = 1; i <= p_cnt; ++i) {
    Pointer p;
    int n = static_cast<int>(i);
    D2_ASSIGN_OR_RETURN(absl::string_view symbol, r.Next(absl::StrCat("pointer ", n, "'s symbol")));
    if (symbol == "|" || AllDigits(symbol)) {
      return r.Error(absl::StrCat("pointer ", n, ": '", symbol, "' is not a pointer symbol (p_cnt is ", p_cnt, ")"));
    }
    p.symbol = std::string(symbol);
    D2_ASSIGN_OR_RETURN(p.target_offset, r.Number(absl::StrCat("pointer ", n, "'s synset_offset"), 8, 10));
    D2_ASSIGN_OR_RETURN(absl::string_view pos_field, r.Next(absl::StrCat("pointer ", n, "'s pos")));
    D2_ASSIGN_OR_RETURN(p.target_pos, PointerPos(r, pos_field, n));
    D2_ASSIGN_OR_RETURN(uint32_t st, r.Number(absl::StrCat("pointer ", n, "'s source/target"), 4, 16));
    p.source = static_cast<int>(st >> 8);
    p.target = static_cast<int>(st & 0xff);
    if ((p.source == 0) != (p.target == 0)) {
      return r.Error(absl::StrCat("pointer ", n, ": source/target ", p.source, "/", p.target,
                                  " is neither semantic (0000) nor lexical (both words set)"));
    }
    if (p.source > static_cast<int>(w_cnt)) {
      return r.Error(absl::StrCat("pointer ", n, ": source word ", p.source, " but the synset has ", w_cnt, " words"));
    }
    s.pointers.push_back(std::move(p));
  }

  if (pos == Pos::kVerb) {
    D2_ASSIGN_OR_RETURN(uint32_t f_cnt, r.Number("f_cnt", 2, 10));
    for (uint32_t i = 1; i <= f_cnt; ++i) {
      D2_ASSIGN_OR_RETURN(absl::string_view plus, r.Next(absl::StrCat("frame ", i)));
      if (plus != "+") return r.Error(absl::StrCat("frame ", i, ": expected '+', found '", plus, "'"));
      VerbFrame f;
      D2_ASSIGN_OR_RETURN(uint32_t f_num, r.Number(absl::StrCat("frame ", i, "'s f_num"), 2, 10));
      D2_ASSIGN_OR_RETURN(uint32_t w_num, r.Number(absl::StrCat("frame ", i, "'s w_num"), 2, 16));
      if (w_num > w_cnt) {
        return r.Error(absl::StrCat("frame ", i, ": w_num ", w_num, " but the synset has ", w_cnt, " words"));
      }
      f.frame = static_cast<int>(f_num);
      f.word = static_cast<int>(w_num);
      s.frames.push_back(f);
    }
  }

  D2_ASSIGN_OR_RETURN(absl::string_view bar, r.Next("'|' before the gloss"));
  if (bar != "|") {
    return r.Error(absl::StrCat("expected '|' before the gloss, found '", bar, "' (w_cnt ", w_cnt, ", p_cnt ", p_cnt,
                                pos == Pos::kVerb ? " and f_cnt" : "", " may be wrong)"));
  }
  SplitGloss(r.rest(), &s.definition, &s.examples);
  return s;
}

}  // namespace

absl::string_view PosName(Pos pos) {
  switch (pos) {
    case Pos::kNoun: return "noun";
    case Pos::kVerb: return "verb";
    case Pos::kAdjective: return "adjective";
    case Pos::kAdverb: return "adverb";
  }
  return "?";
}

absl::string_view DataFileName(Pos pos) {
  switch (pos) {
    case Pos::kNoun: return "data.noun";
    case Pos::kVerb: return "data.verb";
    case Pos::kAdjective: return "data.adj";
    case Pos::kAdverb: return "data.adv";
  }
  return "?";
}

char PosLetter(Pos pos) {
  switch (pos) {
    case Pos::kNoun: return 'n';
    case Pos::kVerb: return 'v';
    case Pos::kAdjective: return 'a';
    case Pos::kAdverb: return 'r';
  }
  return '?';
}

void SplitGloss(absl::string_view gloss, std::string* definition, std::vector<std::string>* examples) {
  gloss = TrimSpaces(gloss);
  definition->clear();
  examples->clear();
  // The examples start at the first opening quote that begins the gloss or
  // follows ';' or ':'; quotes inside the definition ("as in "on the job"")
  // do not count.
  size_t start = absl::string_view::npos;
  int quotes = 0;
  for (size_t i = 0; i < gloss.size(); ++i) {
    if (gloss[i] != '"') continue;
    if (quotes % 2 == 0) {
      absl::string_view before = TrimSpaces(gloss.substr(0, i));
      if (before.empty() || before.back() == ';' || before.back() == ':') {
        start = i;
        break;
      }
    }
    ++quotes;
  }
  absl::string_view def = start == absl::string_view::npos ? gloss : gloss.substr(0, start);
  def = TrimSpaces(def);
  while (!def.empty() && (def.back() == ';' || def.back() == ':')) def = TrimSpaces(def.substr(0, def.size() - 1));
  *definition = std::string(def);
  if (start == absl::string_view::npos) return;

  absl::string_view tail = gloss.substr(start);
  size_t i = 0;
  while (i < tail.size()) {
    char c = tail[i];
    if (c == ' ' || c == ';' || c == ':' || c == ',') {
      ++i;
    } else if (c == '"') {
      size_t close = tail.find('"', i + 1);
      absl::string_view ex = close == absl::string_view::npos ? tail.substr(i + 1) : tail.substr(i + 1, close - i - 1);
      ex = TrimSpaces(ex);
      if (!ex.empty()) examples->emplace_back(ex);
      if (close == absl::string_view::npos) break;
      i = close + 1;
    } else {  // an unquoted fragment ("- Shakespeare", "or"): dropped
      size_t next = tail.find_first_of(";\"", i);
      i = next == absl::string_view::npos ? tail.size() : next;
    }
  }
}

absl::StatusOr<std::vector<Synset>> ParseDataFile(absl::string_view contents, absl::string_view file_name, Pos pos) {
  std::vector<Synset> synsets;
  std::unordered_map<uint32_t, int> line_of_offset;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (absl::StartsWith(line, "  ")) continue;  // the licence header
    if (TrimSpaces(line).empty()) continue;
    D2_ASSIGN_OR_RETURN(Synset s, ParseLine(line, file_name, line_number, pos));
    auto [it, inserted] = line_of_offset.emplace(s.offset, line_number);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(file_name, ":", line_number, ": synset_offset ",
                                                     absl::string_view(line).substr(0, 8), " repeats line ",
                                                     it->second));
    }
    synsets.push_back(std::move(s));
  }
  return synsets;
}

int WordNet::Find(Pos pos, uint32_t offset) const {
  auto it = index.find(static_cast<uint64_t>(pos) << 32 | offset);
  return it == index.end() ? -1 : it->second;
}

size_t WordNet::Count(Pos pos) const {
  return static_cast<size_t>(
      std::count_if(synsets.begin(), synsets.end(), [pos](const Synset& s) { return s.pos == pos; }));
}

absl::StatusOr<WordNet> LinkWordNet(std::array<std::vector<Synset>, 4> parsed, std::array<std::string, 4> files) {
  WordNet wn;
  wn.files = std::move(files);
  size_t total = 0;
  for (const auto& v : parsed) total += v.size();
  wn.synsets.reserve(total);
  for (Pos pos : kAllPos) {
    for (Synset& s : parsed[static_cast<size_t>(pos)]) {
      if (s.pos != pos) {
        return absl::InvalidArgumentError(absl::StrCat(wn.files[static_cast<size_t>(pos)], ":", s.line, ": a ",
                                                       PosName(s.pos), " synset among the ", PosName(pos), "s"));
      }
      int idx = static_cast<int>(wn.synsets.size());
      auto [it, inserted] = wn.index.emplace(static_cast<uint64_t>(pos) << 32 | s.offset, idx);
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrCat(wn.files[static_cast<size_t>(pos)], ":", s.line,
                                                       ": synset_offset ", Offset8(s.offset), " repeats line ",
                                                       wn.synsets[static_cast<size_t>(it->second)].line));
      }
      wn.synsets.push_back(std::move(s));
    }
  }
  for (Synset& s : wn.synsets) {
    const std::string& file = wn.files[static_cast<size_t>(s.pos)];
    for (size_t i = 0; i < s.pointers.size(); ++i) {
      Pointer& p = s.pointers[i];
      p.target_index = wn.Find(p.target_pos, p.target_offset);
      std::string name = absl::StrCat("pointer ", i + 1, " (", p.symbol, " ", Offset8(p.target_offset), " ",
                                      std::string(1, PosLetter(p.target_pos)), ")");
      if (p.target_index < 0) {
        return absl::InvalidArgumentError(absl::StrCat(file, ":", s.line, ": ", name, " names no synset in ",
                                                       wn.files[static_cast<size_t>(p.target_pos)]));
      }
      const Synset& t = wn.synsets[static_cast<size_t>(p.target_index)];
      if (p.target > static_cast<int>(t.words.size())) {
        return absl::InvalidArgumentError(absl::StrCat(file, ":", s.line, ": ", name, " names target word ", p.target,
                                                       " but that synset has ", t.words.size(), " words"));
      }
    }
  }
  return wn;
}

absl::StatusOr<WordNet> LoadWordNet(const std::string& dir) {
  std::array<std::vector<Synset>, 4> parsed;
  std::array<std::string, 4> files;
  for (Pos pos : kAllPos) {
    size_t i = static_cast<size_t>(pos);
    files[i] = absl::StrCat(dir, "/", DataFileName(pos));
    D2_ASSIGN_OR_RETURN(std::string contents, ReadFileToString(files[i]));
    D2_ASSIGN_OR_RETURN(parsed[i], ParseDataFile(contents, files[i], pos));
  }
  return LinkWordNet(std::move(parsed), std::move(files));
}

}  // namespace d2lora::datasets::wordnet
