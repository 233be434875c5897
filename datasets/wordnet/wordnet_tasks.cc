#include "datasets/wordnet/wordnet_tasks.h"

#include <algorithm>
#include <filesystem>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace d2lora::datasets::wordnet {
namespace {

using Json = nlohmann::ordered_json;

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A seed for one purpose ("definition/train", "definition/train/cap"), so that
// one task's draws never shift another's.
uint64_t DeriveSeed(uint64_t seed, absl::string_view purpose) { return Mix(Mix(seed) ^ HashString(purpose)); }

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

bool IsHypernymPointer(const Pointer& p) { return p.symbol == "@" || p.symbol == "@i"; }

// Whether a definition gives `lemma` away: it holds the lemma, or one of the
// lemma's parts of three letters or more ("crisis" of "crisis intervention").
bool GivesAway(absl::string_view definition, absl::string_view lemma) {
  if (ContainsWholeWord(definition, lemma)) return true;
  for (absl::string_view part : absl::StrSplit(lemma, absl::ByAnyChar(" -"))) {
    if (part.size() >= 3 && part.size() < lemma.size() && ContainsWholeWord(definition, part)) return true;
  }
  return false;
}

// `k` of the indices 0..n-1 (k <= n), drawn by a partial Fisher-Yates shuffle,
// in the order drawn.
std::vector<size_t> SeededSample(size_t n, size_t k, SplitMix64& rng) {
  std::vector<size_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = i;
  for (size_t i = 0; i < k; ++i) std::swap(idx[i], idx[i + rng.Uniform(n - i)]);
  idx.resize(k);
  return idx;
}

using WordSet = std::unordered_set<std::string_view>;

void SortUnique(std::vector<std::string_view>* v) {
  std::sort(v->begin(), v->end());
  v->erase(std::unique(v->begin(), v->end()), v->end());
}

// What every task needs: where each lemma occurs and the distractor pools.
class Builder {
 public:
  Builder(const WordNet& wn, const Options& options) : wn_(wn), options_(options) {
    senses_.reserve(wn.synsets.size() * 2);
    std::vector<std::string_view> all[2];
    for (size_t i = 0; i < wn.synsets.size(); ++i) {
      const Synset& s = wn.synsets[i];
      for (const Word& w : s.words) {
        std::vector<int>& senses = senses_[w.lemma];
        if (senses.empty() || senses.back() != static_cast<int>(i)) senses.push_back(static_cast<int>(i));
        if (!IsPlainLemma(w.lemma)) continue;
        size_t split = static_cast<size_t>(SplitOf(w.lemma));
        pools_[split][static_cast<size_t>(s.pos)].push_back(w.lemma);
        all[split].push_back(w.lemma);
      }
    }
    for (size_t split = 0; split < 2; ++split) {
      for (auto& pool : pools_[split]) SortUnique(&pool);
      SortUnique(&all[split]);
      pool_words_[split] = all[split].size();
    }
  }

  Split SplitOf(std::string_view lemma) const {
    return WordSplit(absl::string_view(lemma.data(), lemma.size()), options_);
  }

  const Synset& synset(int i) const { return wn_.synsets[static_cast<size_t>(i)]; }

  // Synsets that hold `lemma`, in WordNet's order.
  const std::vector<int>& Senses(std::string_view lemma) const {
    static const std::vector<int> kNone;
    auto it = senses_.find(lemma);
    return it == senses_.end() ? kNone : it->second;
  }

  void AddLemmas(int synset_index, WordSet* set) const {
    for (const Word& w : synset(synset_index).words) set->insert(w.lemma);
  }

  // Fills q->choices and q->label with `answer` and choices - 1 distractors of
  // `pos` from `split`'s pool, none in `excluded`. False when the pool has too few.
  bool Draw(SplitMix64& rng, Split split, Pos pos, std::string_view answer, const WordSet& excluded,
            Question* q) const {
    const std::vector<std::string_view>& pool = pools_[static_cast<size_t>(split)][static_cast<size_t>(pos)];
    const size_t want = static_cast<size_t>(options_.choices - 1);
    std::vector<std::string_view> picked;
    const int max_draws = 64 * options_.choices;
    for (int draws = 0; picked.size() < want && draws < max_draws && !pool.empty(); ++draws) {
      std::string_view c = pool[rng.Uniform(pool.size())];
      if (c == answer || excluded.count(c) > 0 || std::find(picked.begin(), picked.end(), c) != picked.end()) {
        continue;
      }
      picked.push_back(c);
    }
    if (picked.size() < want) return false;
    q->label = static_cast<int>(rng.Uniform(static_cast<uint64_t>(options_.choices)));
    q->pos = pos;
    q->choices.clear();
    size_t next = 0;
    for (int i = 0; i < options_.choices; ++i) {
      q->choices.emplace_back(i == q->label ? answer : picked[next++]);
    }
    return true;
  }

  // Distinct plain lemmas of `split`, all parts of speech.
  size_t PoolWords(Split split) const { return pool_words_[static_cast<size_t>(split)]; }

 private:
  const WordNet& wn_;
  const Options& options_;
  std::unordered_map<std::string_view, std::vector<int>> senses_;
  std::array<std::array<std::vector<std::string_view>, 4>, 2> pools_;  // sorted, distinct
  std::array<size_t, 2> pool_words_ = {0, 0};
};

class TaskRun {
 public:
  TaskRun(const Builder& b, Task task, const Options& options) : b_(b), options_(options) {
    result_.task = task;
    for (Split split : {Split::kTrain, Split::kValidation}) {
      rngs_[static_cast<size_t>(split)] =
          SplitMix64(DeriveSeed(options.seed, absl::StrCat(TaskName(task), "/", SplitName(split))));
    }
  }

  // A distinct question whose words all fall in `split`.
  void Emit(Question q, std::string_view answer, Split split, const WordSet& excluded) {
    ++result_.candidates;
    if (!b_.Draw(rngs_[static_cast<size_t>(split)], split, q.pos, answer, excluded, &q)) {
      ++result_.no_distractors;
      return;
    }
    result_.splits[static_cast<size_t>(split)].push_back(std::move(q));
  }
  // A distinct question with no answer in its word's split.
  void Straddles() {
    ++result_.candidates;
    ++result_.straddling;
  }

  TaskResult Finish() {
    for (Split split : {Split::kTrain, Split::kValidation}) {
      std::vector<Question>& qs = result_.splits[static_cast<size_t>(split)];
      int64_t cap = split == Split::kTrain ? options_.max_train : options_.max_val;
      if (cap <= 0 || static_cast<int64_t>(qs.size()) <= cap) continue;
      // A seeded sample of `cap` questions, kept in WordNet's order.
      SplitMix64 rng(
          DeriveSeed(options_.seed, absl::StrCat(TaskName(result_.task), "/", SplitName(split), "/sample")));
      std::vector<size_t> idx = SeededSample(qs.size(), static_cast<size_t>(cap), rng);
      std::sort(idx.begin(), idx.end());
      std::vector<Question> kept;
      kept.reserve(idx.size());
      for (size_t i : idx) kept.push_back(std::move(qs[i]));
      result_.capped[static_cast<size_t>(split)] = static_cast<int64_t>(qs.size()) - cap;
      qs = std::move(kept);
    }
    return std::move(result_);
  }

 private:
  const Builder& b_;
  const Options& options_;
  TaskResult result_;
  std::array<SplitMix64, 2> rngs_ = {SplitMix64(0), SplitMix64(0)};
};

// definition: Which word means "{definition}"? Answer: the first plain word of
// the synset that the definition does not give away (GivesAway). Distractors: never a word
// of a synset with the same definition.
TaskResult BuildDefinition(const WordNet& wn, const Builder& b, const Options& options) {
  TaskRun run(b, Task::kDefinition, options);
  std::unordered_map<std::string_view, std::vector<int>> by_definition;
  for (size_t i = 0; i < wn.synsets.size(); ++i) {
    by_definition[wn.synsets[i].definition].push_back(static_cast<int>(i));
  }
  std::unordered_set<std::string> seen;
  for (const Synset& s : wn.synsets) {
    if (s.definition.empty()) continue;
    std::string text = absl::StrCat("Which word means \"", s.definition, "\"?");
    if (seen.count(text) > 0) continue;
    const Word* answer = nullptr;
    for (const Word& w : s.words) {
      if (IsPlainLemma(w.lemma) && !GivesAway(s.definition, w.lemma)) {
        answer = &w;
        break;
      }
    }
    if (answer == nullptr) continue;
    seen.insert(text);
    WordSet excluded;
    for (int i : by_definition[s.definition]) b.AddLemmas(i, &excluded);
    Question q;
    q.question = std::move(text);
    q.pos = s.pos;
    run.Emit(std::move(q), answer->lemma, b.SplitOf(answer->lemma), excluded);
  }
  return run.Finish();
}

// hypernym (nouns and verbs): What is "{word}" a kind of? Answer: a word of a
// direct hypernym of one sense of the word (senses where the word comes first
// in its synset preferred, then WordNet's order), in the word's split.
// Distractors: never the word, its synonyms, or a word of any ancestor of any
// noun or verb sense of the word (so "animal" is no distractor for "dog").
TaskResult BuildHypernym(const WordNet& wn, const Builder& b, const Options& options) {
  TaskRun run(b, Task::kHypernym, options);
  std::unordered_set<std::string_view> seen;
  auto is_noun_or_verb = [](const Synset& s) { return s.pos == Pos::kNoun || s.pos == Pos::kVerb; };
  for (const Synset& s : wn.synsets) {
    if (!is_noun_or_verb(s)) continue;
    for (const Word& w : s.words) {
      if (!IsPlainLemma(w.lemma) || !seen.insert(w.lemma).second) continue;
      Split split = b.SplitOf(w.lemma);
      // The word's noun and verb senses, first-word senses first.
      std::vector<std::pair<int, int>> senses;  // (not first word, synset index)
      for (int i : b.Senses(w.lemma)) {
        const Synset& t = b.synset(i);
        if (!is_noun_or_verb(t)) continue;
        senses.emplace_back(t.words.front().lemma == w.lemma ? 0 : 1, i);
      }
      std::sort(senses.begin(), senses.end());
      WordSet excluded = {w.lemma};
      for (const auto& sense : senses) b.AddLemmas(sense.second, &excluded);
      const Word* answer = nullptr;
      Pos answer_pos = s.pos;  // that of the sense the answer came from
      bool any_answer = false;
      for (const auto& sense : senses) {
        for (const Pointer& p : b.synset(sense.second).pointers) {
          if (!IsHypernymPointer(p)) continue;
          for (const Word& h : b.synset(p.target_index).words) {
            if (!IsPlainLemma(h.lemma) || excluded.count(h.lemma) > 0) continue;
            any_answer = true;
            if (answer == nullptr && b.SplitOf(h.lemma) == split) {
              answer = &h;
              answer_pos = b.synset(sense.second).pos;
            }
          }
        }
        if (answer != nullptr) break;
      }
      if (answer == nullptr) {
        if (any_answer) run.Straddles();
        continue;
      }
      // Every ancestor of every sense.
      std::vector<int> stack;
      std::unordered_set<int> visited;
      for (const auto& sense : senses) stack.push_back(sense.second);
      while (!stack.empty()) {
        int i = stack.back();
        stack.pop_back();
        for (const Pointer& p : b.synset(i).pointers) {
          if (IsHypernymPointer(p) && visited.insert(p.target_index).second) {
            b.AddLemmas(p.target_index, &excluded);
            stack.push_back(p.target_index);
          }
        }
      }
      Question q;
      q.question = absl::StrCat("What is \"", w.lemma, "\" a kind of?");
      q.word = w.lemma;
      q.pos = answer_pos;
      run.Emit(std::move(q), answer->lemma, split, excluded);
    }
  }
  return run.Finish();
}

// antonym: What is the opposite of "{word}"? Answer: a lexical antonym (`!`) of
// the word in the word's split. Distractors: never the word, any of its
// antonyms, their synonyms, or the synsets similar (`&`) to those (the
// indirect antonyms of adjectives: "frigid" for "hot").
TaskResult BuildAntonym(const WordNet& wn, const Builder& b, const Options& options) {
  TaskRun run(b, Task::kAntonym, options);
  std::unordered_set<std::string_view> seen;
  for (const Synset& s : wn.synsets) {
    for (const Pointer& first : s.pointers) {
      if (first.symbol != "!" || !first.lexical()) continue;
      const std::string& word = s.words[static_cast<size_t>(first.source - 1)].lemma;
      if (!IsPlainLemma(word) || !seen.insert(word).second) continue;
      Split split = b.SplitOf(word);
      WordSet excluded = {word};
      const Word* answer = nullptr;
      Pos answer_pos = s.pos;
      bool any_answer = false;
      for (int i : b.Senses(word)) {
        const Synset& t = b.synset(i);
        for (const Pointer& p : t.pointers) {
          if (p.symbol != "!" || !p.lexical() || t.words[static_cast<size_t>(p.source - 1)].lemma != word) continue;
          const Synset& target = b.synset(p.target_index);
          b.AddLemmas(p.target_index, &excluded);
          for (const Pointer& sim : target.pointers) {
            if (sim.symbol == "&") b.AddLemmas(sim.target_index, &excluded);
          }
          const Word& a = target.words[static_cast<size_t>(p.target - 1)];
          if (!IsPlainLemma(a.lemma) || a.lemma == word) continue;
          any_answer = true;
          if (answer == nullptr && b.SplitOf(a.lemma) == split) {
            answer = &a;
            answer_pos = target.pos;
          }
        }
      }
      if (answer == nullptr) {
        if (any_answer) run.Straddles();
        continue;
      }
      Question q;
      q.question = absl::StrCat("What is the opposite of \"", word, "\"?");
      q.word = word;
      q.pos = answer_pos;
      run.Emit(std::move(q), answer->lemma, split, excluded);
    }
  }
  return run.Finish();
}

// pos: What part of speech is "{word}"? Choices: the four parts of speech in
// kAllPos's order; the answer is the one part of speech of the word's senses
// (words with senses in two parts of speech are left out). Each split keeps a
// seeded sample of equally many words of each part of speech (the least there
// is, and at most a quarter of the split's cap), interleaved, so that a model
// that always gives one answer scores 1/4 and learning shows as accuracy above it.
TaskResult BuildPartOfSpeech(const WordNet& wn, const Builder& b, const Options& options) {
  TaskResult result;
  result.task = Task::kPartOfSpeech;
  std::array<std::array<std::vector<Question>, 4>, 2> by_pos;  // [split][pos], WordNet's order
  std::unordered_set<std::string_view> seen;
  for (const Synset& s : wn.synsets) {
    for (const Word& w : s.words) {
      if (!IsPlainLemma(w.lemma) || !seen.insert(w.lemma).second) continue;
      bool one_pos = true;
      for (int i : b.Senses(w.lemma)) one_pos = one_pos && b.synset(i).pos == s.pos;
      if (!one_pos) continue;
      ++result.candidates;
      Question q;
      q.question = absl::StrCat("What part of speech is \"", w.lemma, "\"?");
      for (Pos pos : kAllPos) q.choices.emplace_back(PosName(pos));
      q.label = static_cast<int>(s.pos);
      q.word = w.lemma;
      q.pos = s.pos;
      q.choices_are_labels = true;
      by_pos[static_cast<size_t>(b.SplitOf(w.lemma))][static_cast<size_t>(s.pos)].push_back(std::move(q));
    }
  }
  for (Split split : {Split::kTrain, Split::kValidation}) {
    auto& groups = by_pos[static_cast<size_t>(split)];
    size_t per_pos = groups[0].size();
    for (const auto& g : groups) per_pos = std::min(per_pos, g.size());
    int64_t cap = split == Split::kTrain ? options.max_train : options.max_val;
    if (cap > 0) per_pos = std::min(per_pos, static_cast<size_t>(cap / 4));
    SplitMix64 rng(DeriveSeed(options.seed, absl::StrCat("pos/", SplitName(split), "/sample")));
    std::vector<Question>& out = result.splits[static_cast<size_t>(split)];
    // A seeded sample of per_pos questions of each part of speech, in a seeded
    // order, interleaved noun, verb, adjective, adverb, noun, ...: every prefix
    // of 4k questions (an evaluation's max_examples) is balanced too.
    std::array<std::vector<size_t>, 4> picked;
    for (size_t p = 0; p < 4; ++p) {
      std::vector<Question>& g = groups[p];
      result.capped[static_cast<size_t>(split)] += static_cast<int64_t>(g.size() - per_pos);
      picked[p] = SeededSample(g.size(), per_pos, rng);
    }
    for (size_t i = 0; i < per_pos; ++i) {
      for (size_t p = 0; p < 4; ++p) out.push_back(std::move(groups[p][picked[p][i]]));
    }
  }
  return result;
}

// The noun lexicographer files of WordNet 3.0 (lexnames(5)), 4 to 28.
constexpr absl::string_view kNounCategories[] = {
    "act",       "animal",   "artifact",   "attribute", "body",     "cognition", "communication",
    "event",     "feeling",  "food",       "group",     "location", "motive",    "object",
    "person",    "phenomenon", "plant",    "possession", "process", "quantity",  "relation",
    "shape",     "state",    "substance",  "time"};
constexpr int kFirstNounCategory = 4;
constexpr int kNumNounCategories = static_cast<int>(sizeof(kNounCategories) / sizeof(kNounCategories[0]));

// category (nouns): "{word}" means "{definition}". What kind of thing is it?
// One question per noun synset with a definition and a plain lemma (the first
// is the word; its split is the question's). Answer: the synset's category.
// Only categories with at least kMinPerCategory questions in each split take
// part, and each split keeps as many questions of each (the smallest count,
// and at most cap / categories), interleaved in a seeded order; distractors
// are drawn uniformly from the other categories that take part. So every
// category is as often the answer as any other and as often a distractor: a
// category's frequency tells nothing, and always giving one answer scores
// 1 / choices.
constexpr size_t kMinPerCategory = 20;

TaskResult BuildCategory(const WordNet& wn, const Builder& b, const Options& options) {
  TaskResult result;
  result.task = Task::kCategory;
  std::array<std::array<std::vector<Question>, kNumNounCategories>, 2> by_cat;  // [split][category]
  std::unordered_set<std::string> seen;
  for (const Synset& s : wn.synsets) {
    if (s.pos != Pos::kNoun || s.definition.empty() || NounCategory(s.lex_filenum).empty()) continue;
    const Word* word = nullptr;
    for (const Word& w : s.words) {
      if (IsPlainLemma(w.lemma)) {
        word = &w;
        break;
      }
    }
    if (word == nullptr) continue;
    std::string text = absl::StrCat("\"", word->lemma, "\" means \"", s.definition, "\". What kind of thing is it?");
    if (!seen.insert(text).second) continue;
    ++result.candidates;
    Question q;
    q.question = std::move(text);
    q.word = word->lemma;
    q.pos = Pos::kNoun;
    q.choices_are_labels = true;
    by_cat[static_cast<size_t>(b.SplitOf(word->lemma))][static_cast<size_t>(s.lex_filenum - kFirstNounCategory)]
        .push_back(std::move(q));
  }
  std::vector<int> taking_part;
  for (int c = 0; c < kNumNounCategories; ++c) {
    if (by_cat[0][static_cast<size_t>(c)].size() >= kMinPerCategory &&
        by_cat[1][static_cast<size_t>(c)].size() >= kMinPerCategory) {
      taking_part.push_back(c);
    }
  }
  const size_t k = taking_part.size();
  for (Split split : {Split::kTrain, Split::kValidation}) {
    auto& groups = by_cat[static_cast<size_t>(split)];
    std::vector<Question>& out = result.splits[static_cast<size_t>(split)];
    int64_t& capped = result.capped[static_cast<size_t>(split)];
    if (k < static_cast<size_t>(options.choices)) {  // too few categories for the distractors
      for (const auto& g : groups) result.no_distractors += static_cast<int64_t>(g.size());
      continue;
    }
    size_t per_cat = groups[static_cast<size_t>(taking_part[0])].size();
    for (int c : taking_part) per_cat = std::min(per_cat, groups[static_cast<size_t>(c)].size());
    const int64_t cap = split == Split::kTrain ? options.max_train : options.max_val;
    if (cap > 0) per_cat = std::min(per_cat, static_cast<size_t>(cap) / k);
    SplitMix64 rng(DeriveSeed(options.seed, absl::StrCat("category/", SplitName(split))));
    std::vector<std::vector<size_t>> picked(k);
    for (int c = 0; c < kNumNounCategories; ++c) {
      const auto& g = groups[static_cast<size_t>(c)];
      auto at = std::find(taking_part.begin(), taking_part.end(), c);
      if (at == taking_part.end()) {
        capped += static_cast<int64_t>(g.size());  // a category too small to take part
        continue;
      }
      capped += static_cast<int64_t>(g.size() - per_cat);
      picked[static_cast<size_t>(at - taking_part.begin())] = SeededSample(g.size(), per_cat, rng);
    }
    // Interleaved category by category, so that every prefix of k questions is balanced too.
    for (size_t i = 0; i < per_cat; ++i) {
      for (size_t j = 0; j < k; ++j) {
        Question q = std::move(groups[static_cast<size_t>(taking_part[j])][picked[j][i]]);
        std::vector<size_t> choice = {j};
        while (choice.size() < static_cast<size_t>(options.choices)) {
          const size_t d = static_cast<size_t>(rng.Uniform(k));
          if (std::find(choice.begin(), choice.end(), d) == choice.end()) choice.push_back(d);
        }
        q.label = static_cast<int>(rng.Uniform(static_cast<uint64_t>(options.choices)));
        std::swap(choice[0], choice[static_cast<size_t>(q.label)]);
        for (size_t d : choice) q.choices.emplace_back(kNounCategories[taking_part[d]]);
        out.push_back(std::move(q));
      }
    }
  }
  return result;
}

TaskResult Build(const WordNet& wn, const Builder& b, Task task, const Options& options) {
  switch (task) {
    case Task::kDefinition: return BuildDefinition(wn, b, options);
    case Task::kHypernym: return BuildHypernym(wn, b, options);
    case Task::kAntonym: return BuildAntonym(wn, b, options);
    case Task::kPartOfSpeech: return BuildPartOfSpeech(wn, b, options);
    case Task::kCategory: return BuildCategory(wn, b, options);
  }
  return TaskResult{};
}

}  // namespace

absl::string_view TaskName(Task task) {
  switch (task) {
    case Task::kDefinition: return "definition";
    case Task::kHypernym: return "hypernym";
    case Task::kAntonym: return "antonym";
    case Task::kPartOfSpeech: return "pos";
    case Task::kCategory: return "category";
  }
  return "?";
}

absl::StatusOr<Task> ParseTask(absl::string_view name) {
  for (Task t : kAllTasks) {
    if (TaskName(t) == name) return t;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown task '", name, "' (expected definition, hypernym, antonym, pos or category)"));
}

absl::string_view NounCategory(int lex_filenum) {
  const int i = lex_filenum - kFirstNounCategory;
  return i >= 0 && i < kNumNounCategories ? kNounCategories[i] : absl::string_view();
}

absl::string_view SplitName(Split split) { return split == Split::kTrain ? "train" : "validation"; }

absl::Status Options::Validate() const {
  if (!(val_fraction >= 0.0 && val_fraction <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("val_fraction ", val_fraction, " is not in [0, 1]"));
  }
  if (choices < 2 || choices > 26) {
    return absl::InvalidArgumentError(absl::StrCat("choices ", choices, " is not in [2, 26]"));
  }
  if (max_train < 0) return absl::InvalidArgumentError(absl::StrCat("max_train ", max_train, " is negative"));
  if (max_val < 0) return absl::InvalidArgumentError(absl::StrCat("max_val ", max_val, " is negative"));
  return absl::OkStatus();
}

uint64_t SplitMix64::Next() {
  state_ += 0x9e3779b97f4a7c15ULL;
  uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::Uniform(uint64_t n) {
  // Lemire's multiply-shift with rejection: exactly uniform.
  uint64_t x = Next();
  __uint128_t m = static_cast<__uint128_t>(x) * n;
  uint64_t low = static_cast<uint64_t>(m);
  if (low < n) {
    uint64_t threshold = (0 - n) % n;
    while (low < threshold) {
      x = Next();
      m = static_cast<__uint128_t>(x) * n;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

double SplitMix64::UniformDouble() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

uint64_t HashString(absl::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

bool IsPlainLemma(absl::string_view lemma) {
  if (lemma.empty() || lemma.size() > 30) return false;
  if (!absl::ascii_islower(lemma.front()) || !absl::ascii_islower(lemma.back())) return false;
  char prev = 0;
  for (char c : lemma) {
    bool ok = absl::ascii_islower(c) || c == '-' || c == '\'' || (c == ' ' && prev != ' ');
    if (!ok) return false;
    prev = c;
  }
  return true;
}

Split WordSplit(absl::string_view lemma, const Options& options) {
  double u = static_cast<double>(Mix(HashString(lemma) ^ Mix(options.seed ^ 0x5eedULL)) >> 11) * 0x1.0p-53;
  return u < options.val_fraction ? Split::kValidation : Split::kTrain;
}

bool ContainsWholeWord(absl::string_view text, absl::string_view word) {
  if (word.empty()) return false;
  std::string hay = absl::AsciiStrToLower(text);
  std::string needle = absl::AsciiStrToLower(word);
  auto is_word_char = [](char c) { return absl::ascii_isalnum(c); };
  for (size_t pos = hay.find(needle); pos != std::string::npos; pos = hay.find(needle, pos + 1)) {
    size_t end = pos + needle.size();
    bool left = pos == 0 || !is_word_char(hay[pos - 1]);
    bool right = end == hay.size() || !is_word_char(hay[end]);
    if (left && right) return true;
  }
  return false;
}

std::string GlossText(const Synset& synset) {
  std::vector<absl::string_view> lemmas;
  for (const Word& w : synset.words) lemmas.push_back(w.lemma);
  std::vector<std::string> parts;
  if (!synset.definition.empty()) parts.push_back(synset.definition);
  for (const std::string& ex : synset.examples) parts.push_back(absl::StrCat("\"", ex, "\""));
  std::string text = absl::StrCat(absl::StrJoin(lemmas, ", "), " (", PosName(synset.pos), ")");
  if (!parts.empty()) absl::StrAppend(&text, ": ", absl::StrJoin(parts, "; "));
  return text;
}

std::string CorpusJsonLine(const Synset& synset) {
  Json j = Json::object();
  j["text"] = GlossText(synset);
  return Dump(j);
}

std::string QuestionJsonLine(const Question& question) {
  Json j = Json::object();
  j["question"] = question.question;
  j["choices"] = question.choices;
  j["label"] = question.label;
  return Dump(j);
}

absl::StatusOr<TaskResult> BuildTask(const WordNet& wordnet, Task task, const Options& options) {
  D2_RETURN_IF_ERROR(options.Validate());
  Builder b(wordnet, options);
  return Build(wordnet, b, task, options);
}

namespace {

size_t DistinctWords(const std::vector<Question>& qs) {
  std::vector<std::string_view> words;
  for (const Question& q : qs) {
    if (!q.word.empty()) words.push_back(q.word);
    if (q.choices_are_labels) continue;
    for (const std::string& c : q.choices) words.push_back(c);
  }
  SortUnique(&words);
  return words.size();
}

std::string JsonLines(const std::vector<std::string>& lines) {
  size_t size = 0;
  for (const std::string& l : lines) size += l.size() + 1;
  std::string out;
  out.reserve(size);
  for (const std::string& l : lines) {
    out += l;
    out += '\n';
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<WrittenFile>> WriteDataset(const WordNet& wordnet, const DatasetRequest& request) {
  namespace fs = std::filesystem;
  const Options& options = request.options;
  D2_RETURN_IF_ERROR(options.Validate());
  std::string out_dir = request.out_dir;
  while (out_dir.size() > 1 && out_dir.back() == '/') out_dir.pop_back();  // "out/" is "out"
  if (out_dir.empty()) return absl::InvalidArgumentError("no output directory");
  std::vector<Task> tasks;
  for (Task t : request.tasks) {
    if (std::find(tasks.begin(), tasks.end(), t) == tasks.end()) tasks.push_back(t);
  }
  if (tasks.empty()) return absl::InvalidArgumentError("no tasks");

  std::error_code ec;
  fs::file_status st = fs::status(out_dir, ec);
  bool exists = fs::exists(st);
  if (exists && !fs::is_directory(st)) {
    return absl::FailedPreconditionError(absl::StrCat(out_dir, " exists and is not a directory"));
  }
  if (exists && !request.overwrite && !fs::is_empty(out_dir, ec)) {
    return absl::AlreadyExistsError(absl::StrCat(out_dir, " is not empty (--overwrite replaces it)"));
  }
  D2_ASSIGN_OR_RETURN(StagedDirectory staged, StagedDirectory::Create(out_dir));
  std::vector<WrittenFile> written;
  auto write = [&](const std::string& rel, const std::string& contents, int64_t records,
                   std::string summary) -> absl::Status {
    std::string path = absl::StrCat(staged.path(), "/", rel);
    fs::create_directories(fs::path(path).parent_path(), ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot create ", fs::path(path).parent_path().string(), ": ",
                                                    ec.message()));
    D2_RETURN_IF_ERROR(WriteFileAtomically(path, contents));
    written.push_back({absl::StrCat(out_dir, "/", rel), records, std::move(summary)});
    return absl::OkStatus();
  };

  std::vector<std::string> lines;
  lines.reserve(wordnet.synsets.size());
  for (const Synset& s : wordnet.synsets) lines.push_back(CorpusJsonLine(s));
  D2_RETURN_IF_ERROR(write("corpus.jsonl", JsonLines(lines), static_cast<int64_t>(lines.size()),
                           absl::StrCat(lines.size(), " glosses")));

  Builder b(wordnet, options);
  Json stats = Json::object();
  stats["wordnet_dir"] = request.wordnet_dir;
  stats["seed"] = options.seed;
  Json opts = Json::object();
  opts["val_fraction"] = options.val_fraction;
  opts["choices"] = options.choices;
  opts["max_train"] = options.max_train;
  opts["max_val"] = options.max_val;
  opts["tasks"] = Json::array();
  for (Task t : tasks) opts["tasks"].push_back(std::string(TaskName(t)));
  stats["options"] = opts;
  Json synsets = Json::object();
  synsets["total"] = wordnet.synsets.size();
  for (Pos pos : kAllPos) synsets[std::string(PosName(pos))] = wordnet.Count(pos);
  stats["synsets"] = synsets;
  stats["corpus_records"] = lines.size();
  Json words = Json::object();
  words["train"] = b.PoolWords(Split::kTrain);
  words["validation"] = b.PoolWords(Split::kValidation);
  stats["plain_words"] = words;
  stats["tasks"] = Json::object();

  for (Task task : tasks) {
    TaskResult r = Build(wordnet, b, task, options);
    Json t = Json::object();
    for (Split split : {Split::kTrain, Split::kValidation}) {
      const std::vector<Question>& qs = r.splits[static_cast<size_t>(split)];
      lines.clear();
      for (const Question& q : qs) lines.push_back(QuestionJsonLine(q));
      size_t n_words = DistinctWords(qs);
      D2_RETURN_IF_ERROR(write(absl::StrCat(TaskName(task), "/", SplitName(split), ".jsonl"), JsonLines(lines),
                               static_cast<int64_t>(qs.size()),
                               absl::StrCat(qs.size(), " questions, ", n_words, " words")));
      Json s = Json::object();
      s["questions"] = qs.size();
      s["words"] = n_words;
      s["capped"] = r.capped[static_cast<size_t>(split)];
      t[std::string(SplitName(split))] = s;
    }
    t["candidates"] = r.candidates;
    t["dropped_straddling"] = r.straddling;
    t["dropped_no_distractors"] = r.no_distractors;
    stats["tasks"][std::string(TaskName(task))] = t;
  }
  std::string stats_text = stats.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
  D2_RETURN_IF_ERROR(write("stats.json", stats_text, 0, "statistics"));
  D2_RETURN_IF_ERROR(staged.Commit(/*replace=*/exists));
  return written;
}

}  // namespace d2lora::datasets::wordnet
