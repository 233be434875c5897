// WordNet's database files (Princeton WordNet 3.0, wndb(5)): data.noun,
// data.verb, data.adj and data.adv, as Debian's wordnet-base ships them in
// /usr/share/wordnet. No LibTorch.
//
// A data line:
//   synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id...] p_cnt
//   [ptr...] [frames...] | gloss
// with w_cnt two hex digits, lex_id one hex digit, p_cnt three digits, each
// pointer `symbol offset pos source/target` (source/target four hex digits:
// two for the source word, two for the target word, 0000 for a semantic
// pointer between whole synsets) and, in data.verb only, `f_cnt` and
// `+ f_num w_num` frames. Lines that start with two spaces are the licence
// header. Every error is an absl::Status whose message starts with FILE:LINE.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace d2lora::datasets::wordnet {

// The four files; satellite adjectives (ss_type `s`) are adjectives.
enum class Pos : uint8_t { kNoun = 0, kVerb = 1, kAdjective = 2, kAdverb = 3 };
inline constexpr std::array<Pos, 4> kAllPos = {Pos::kNoun, Pos::kVerb, Pos::kAdjective, Pos::kAdverb};

absl::string_view PosName(Pos pos);      // "noun", "verb", "adjective", "adverb"
absl::string_view DataFileName(Pos pos);  // "data.noun", "data.verb", "data.adj", "data.adv"
char PosLetter(Pos pos);                  // 'n', 'v', 'a', 'r'

struct Word {
  std::string lemma;   // underscores as spaces, syntactic marker stripped: "ready to hand"
  std::string marker;  // adjectives only: "", "a", "p" or "ip" (the "(p)" of "ready_to_hand(p)")
  int lex_id = 0;
};

struct Pointer {
  std::string symbol;  // "@" hypernym, "@i" instance hypernym, "!" antonym, "&" similar to, ...
  uint32_t target_offset = 0;
  Pos target_pos = Pos::kNoun;
  int source = 0;         // 1-based word of this synset; 0 for a semantic pointer
  int target = 0;         // 1-based word of the target synset; 0 for a semantic pointer
  int target_index = -1;  // the target in WordNet::synsets (set by LinkWordNet)

  bool lexical() const { return source != 0; }
};

struct VerbFrame {
  int frame = 0;  // f_num, 1..35 in WordNet 3.0
  int word = 0;   // 1-based word it applies to; 0 for every word of the synset
};

struct Synset {
  uint32_t offset = 0;
  Pos pos = Pos::kNoun;
  bool satellite = false;  // ss_type `s`
  int lex_filenum = 0;
  std::vector<Word> words;
  std::vector<Pointer> pointers;
  std::vector<VerbFrame> frames;
  // The gloss split at its first quoted example: "a member of the genus Canis;
  // "the dog barked all night"" has definition "a member of the genus Canis"
  // and one example. Unquoted fragments among the examples (attributions such
  // as "- Shakespeare") are dropped.
  std::string definition;
  std::vector<std::string> examples;
  int line = 0;  // 1-based line in its data file
};

// Splits a gloss into its definition and quoted examples (see Synset).
void SplitGloss(absl::string_view gloss, std::string* definition, std::vector<std::string>* examples);

// Parses one data file's contents. `file_name` is used in error messages
// ("data.noun:31: ..."); `pos` is the file's part of speech. Pointers are not
// resolved here (see LinkWordNet).
absl::StatusOr<std::vector<Synset>> ParseDataFile(absl::string_view contents, absl::string_view file_name, Pos pos);

struct WordNet {
  // Nouns, verbs, adjectives, adverbs, each in file order.
  std::vector<Synset> synsets;
  std::array<std::string, 4> files;  // the data file of each Pos, as named in errors

  // The index in `synsets` of the synset at `offset` in `pos`'s file, or -1.
  int Find(Pos pos, uint32_t offset) const;
  size_t Count(Pos pos) const;

  std::unordered_map<uint64_t, int> index;  // (pos << 32 | offset) -> index in synsets
};

// Builds a WordNet from the four parsed files (indexed by Pos) and resolves
// every pointer: its target must exist and a lexical pointer's word numbers
// must name words of both synsets. `files` names the files in errors.
absl::StatusOr<WordNet> LinkWordNet(std::array<std::vector<Synset>, 4> parsed, std::array<std::string, 4> files);

// Reads DIR/data.noun, DIR/data.verb, DIR/data.adj and DIR/data.adv.
absl::StatusOr<WordNet> LoadWordNet(const std::string& dir);

}  // namespace d2lora::datasets::wordnet
