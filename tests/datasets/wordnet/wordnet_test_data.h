// Small synthetic WordNet databases for the tests: data lines written the way
// wndb(5) lays them out, so that every test goes through the real parser.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "datasets/wordnet/wordnet.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace d2lora::datasets::wordnet::testdata {

// The licence header's shape: lines that start with two spaces.
inline const char kHeader[] =
    "  1 This software and database is being provided to you, the LICENSEE, by  \n"
    "  2 Princeton University under the following license.  \n";

struct Ptr {
  std::string symbol;
  uint32_t offset;
  char pos;
  int source = 0;
  int target = 0;
};

// One data line: `words` with spaces written as '_', lex_id 0 each; lexicographer file 3 unless given.
inline std::string Line(uint32_t offset, char ss_type, const std::vector<std::string>& words,
                        const std::vector<Ptr>& ptrs, const std::string& gloss, const std::string& frames = "",
                        int lex_filenum = 3) {
  std::string line = absl::StrFormat("%08u %02d %c %02x", offset, lex_filenum, ss_type, words.size());
  for (std::string w : words) {
    for (char& c : w) {
      if (c == ' ') c = '_';
    }
    absl::StrAppend(&line, " ", w, " 0");
  }
  absl::StrAppend(&line, absl::StrFormat(" %03d", ptrs.size()));
  for (const Ptr& p : ptrs) {
    absl::StrAppend(&line, absl::StrFormat(" %s %08u %c %02x%02x", p.symbol, p.offset, p.pos, p.source, p.target));
  }
  if (ss_type == 'v') absl::StrAppend(&line, " ", frames.empty() ? "01 + 02 00" : frames);
  absl::StrAppend(&line, " | ", gloss, "  \n");
  return line;
}

// A plain lemma for number i: "q" + base-26 letters ("qa", "qb", ..., "qba").
inline std::string Name(const std::string& prefix, int i) {
  std::string letters;
  do {
    letters.insert(letters.begin(), static_cast<char>('a' + i % 26));
    i /= 26;
  } while (i > 0);
  return prefix + letters;
}

// Four data files in `dir`.
struct Files {
  std::string noun = kHeader, verb = kHeader, adj = kHeader, adv = kHeader;

  void Write(const std::string& dir) const {
    ::d2lora::testing::WriteFile(dir + "/data.noun", noun);
    ::d2lora::testing::WriteFile(dir + "/data.verb", verb);
    ::d2lora::testing::WriteFile(dir + "/data.adj", adj);
    ::d2lora::testing::WriteFile(dir + "/data.adv", adv);
  }
};

// A larger database for the split and determinism tests: a noun hypernym tree
// of `nouns` synsets (two lemmas each, one of them multiword, in four categories), `pairs` pairs of
// antonymous adjectives each with a satellite, `verbs` verbs in a hypernym
// chain with antonym pairs, and 80 adverbs.
inline Files Generated(int nouns, int pairs, int verbs) {
  Files f;
  auto noun_off = [](int i) { return static_cast<uint32_t>(1000000 + 100 * i); };
  for (int i = 0; i < nouns; ++i) {
    std::vector<Ptr> ptrs;
    if (i > 0) ptrs.push_back({"@", noun_off((i - 1) / 3), 'n'});
    for (int c = 3 * i + 1; c <= 3 * i + 3 && c < nouns; ++c) ptrs.push_back({"~", noun_off(c), 'n'});
    f.noun += Line(noun_off(i), 'n', {Name("n", i), Name("big n", i)}, ptrs,
                   absl::StrCat("the thing with code ", 7 * i, "; \"an example of thing ", i, "\""), "",
                   4 + i % 4);  // four categories (act ... attribute) for the category task
  }
  auto adj_off = [](int i) { return static_cast<uint32_t>(2000000 + 100 * i); };
  for (int p = 0; p < pairs; ++p) {
    int a = 4 * p, b = 4 * p + 1, sa = 4 * p + 2, sb = 4 * p + 3;
    f.adj += Line(adj_off(a), 'a', {Name("h", p)}, {{"!", adj_off(b), 'a', 1, 1}, {"&", adj_off(sa), 'a'}},
                  absl::StrCat("having quality ", p));
    f.adj += Line(adj_off(b), 'a', {Name("c", p)}, {{"!", adj_off(a), 'a', 1, 1}, {"&", adj_off(sb), 'a'}},
                  absl::StrCat("lacking quality ", p));
    f.adj += Line(adj_off(sa), 's', {Name("hs", p) + "(p)"}, {{"&", adj_off(a), 'a'}},
                  absl::StrCat("very much having quality ", p));
    f.adj += Line(adj_off(sb), 's', {Name("cs", p) + "(a)"}, {{"&", adj_off(b), 'a'}},
                  absl::StrCat("very much lacking quality ", p));
  }
  auto verb_off = [](int i) { return static_cast<uint32_t>(3000000 + 100 * i); };
  for (int i = 0; i < verbs; ++i) {
    std::vector<Ptr> ptrs;
    if (i > 0) ptrs.push_back({"@", verb_off(i - 1), 'v'});
    int partner = i ^ 1;  // 0-1, 2-3, ... are antonyms
    if (partner < verbs) ptrs.push_back({"!", verb_off(partner), 'v', 1, 1});
    f.verb += Line(verb_off(i), 'v', {Name("v", i)}, ptrs, absl::StrCat("to act in manner ", i), "01 + 08 00");
  }
  auto adv_off = [](int i) { return static_cast<uint32_t>(4000000 + 100 * i); };
  for (int i = 0; i < 80; ++i) {
    f.adv += Line(adv_off(i), 'r', {Name("r", i)}, {}, absl::StrCat("in manner ", i));
  }
  return f;
}

// Debian's WordNet 3.0 (wordnet-base), for the tests over the real database.
inline constexpr char kDebianWordNet[] = "/usr/share/wordnet";
inline bool HaveDebianWordNet() { return std::filesystem::exists(std::string(kDebianWordNet) + "/data.noun"); }

}  // namespace d2lora::datasets::wordnet::testdata
