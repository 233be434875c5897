// Data sets built from WordNet (wordnet.h): a gloss corpus (a small English
// dictionary, one {"text": ...} record per synset) and three multiple-choice
// tasks in the engine's format ({"question", "choices", "label"}):
//
//   definition  Which word means "{definition}"?   answer: a word of the synset
//   hypernym    What is "{word}" a kind of?         answer: a word of a hypernym
//   antonym     What is the opposite of "{word}"?   answer: the word's antonym
//   pos         What part of speech is "{word}"?    answer: noun, verb, adjective
//               or adverb (the same four choices in that order; words with one
//               part of speech only; each split holds as many questions of
//               each part of speech, so always answering one scores 25%)
//
// Only plain lemmas take part (IsPlainLemma). Train and validation are split by
// WORD: each plain lemma falls in one split by a seeded hash (WordSplit), a
// question belongs to a split only when all its words (the question's word,
// the answer, every distractor) do, and distractors come from that split's
// pool. No word is shared between the splits. Everything is deterministic in
// Options::seed: same WordNet, same options => byte-identical files.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "datasets/wordnet/wordnet.h"

namespace d2lora::datasets::wordnet {

enum class Task : uint8_t { kDefinition = 0, kHypernym = 1, kAntonym = 2, kPartOfSpeech = 3, kCategory = 4 };
inline constexpr std::array<Task, 5> kAllTasks = {Task::kDefinition, Task::kHypernym, Task::kAntonym,
                                                  Task::kPartOfSpeech, Task::kCategory};
absl::string_view TaskName(Task task);  // "definition", "hypernym", "antonym", "pos", "category"
absl::StatusOr<Task> ParseTask(absl::string_view name);

// The semantic category of a noun synset's lexicographer file (lexnames(5) of
// WordNet 3.0: 4 "act" ... 28 "time"); empty for noun.Tops (3) and for any
// number that names no noun file.
absl::string_view NounCategory(int lex_filenum);

enum class Split : uint8_t { kTrain = 0, kValidation = 1 };
absl::string_view SplitName(Split split);  // "train", "validation"

struct Options {
  uint64_t seed = 1;
  double val_fraction = 0.2;  // chance that a word is a validation word
  int choices = 4;            // answer + choices - 1 distractors (pos: always the 4 parts of speech; category: at most 25)
  int64_t max_train = 0;      // questions per task and split; 0 keeps all
  int64_t max_val = 0;

  absl::Status Validate() const;
};

// A small deterministic generator (splitmix64); the same on every platform,
// unlike the std distributions.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  uint64_t Uniform(uint64_t n);  // in [0, n), n > 0
  double UniformDouble();        // in [0, 1)

 private:
  uint64_t state_;
};

// FNV-1a, 64 bits.
uint64_t HashString(absl::string_view s);

// Lowercase ASCII letters, '-', '\'' and single inner spaces, with at least one
// letter, starting and ending with a letter, at most 30 characters. Lemmas
// with capitals (proper nouns), digits or dots are not plain.
bool IsPlainLemma(absl::string_view lemma);

// The split of a lemma: validation with probability val_fraction, from a hash
// of the lemma and the seed.
Split WordSplit(absl::string_view lemma, const Options& options);

// Whether `word` occurs in `text` as a whole word or phrase, ignoring case
// (letters and digits are word characters; "dog" occurs in "a dog's life").
bool ContainsWholeWord(absl::string_view text, absl::string_view word);

// "dog, domestic dog (noun): a member of the genus Canis; "the dog barked all night""
std::string GlossText(const Synset& synset);
// {"text": GlossText(synset)}
std::string CorpusJsonLine(const Synset& synset);

struct Question {
  std::string question;
  std::vector<std::string> choices;
  int label = 0;
  std::string word;  // the word the question asks about; empty for definition
  Pos pos = Pos::kNoun;
  bool choices_are_labels = false;  // pos: the choices name classes; they are no split's words

  const std::string& answer() const { return choices[static_cast<size_t>(label)]; }
};
// {"question": ..., "choices": [...], "label": k}
std::string QuestionJsonLine(const Question& question);

struct TaskResult {
  Task task = Task::kDefinition;
  std::array<std::vector<Question>, 2> splits;  // by Split, in WordNet's order
  int64_t candidates = 0;      // distinct questions WordNet yields before the split
  int64_t straddling = 0;      // dropped: no answer in the question word's split
  int64_t no_distractors = 0;  // dropped: too few distractors in the split's pool
  std::array<int64_t, 2> capped = {0, 0};  // dropped by max_train / max_val (pos: and to balance)

  const std::vector<Question>& train() const { return splits[0]; }
  const std::vector<Question>& validation() const { return splits[1]; }
};

absl::StatusOr<TaskResult> BuildTask(const WordNet& wordnet, Task task, const Options& options);

// Writes OUT/corpus.jsonl, OUT/TASK/{train,validation}.jsonl for each task and
// OUT/stats.json. The directory appears complete or not at all (staged, then
// renamed); an existing non-empty OUT is refused unless `overwrite`.
struct DatasetRequest {
  std::string out_dir;
  std::vector<Task> tasks = {kAllTasks.begin(), kAllTasks.end()};
  Options options;
  bool overwrite = false;
  std::string wordnet_dir;  // recorded in stats.json
};

struct WrittenFile {
  std::string path;     // under out_dir
  int64_t records = 0;  // JSONL lines (0 for stats.json)
  std::string summary;  // "117659 glosses", "8403 questions, 9120 words"
};

absl::StatusOr<std::vector<WrittenFile>> WriteDataset(const WordNet& wordnet, const DatasetRequest& request);

}  // namespace d2lora::datasets::wordnet
